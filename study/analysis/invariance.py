"""What does each layer become invariant to? (Zeiler & Fergus 2014, Fig. 5.)

Test images are moved, scaled, rotated or mirrored by growing amounts; per layer, the distance
between the layer's features of an image and of its transformed copy, divided by the length of
the original's features (so layers of different sizes compare), averaged over the images; and
the probability the network gives the true class of the transformed image. The same on random
networks of the same architecture says how much of a layer's invariance is the architecture's
(pooling alone buys some) and how much training changed: for each layer and transformation, the
trained network's distance at the largest amount gets two rank p-values against the random
networks' (more invariant: smaller; less invariant: larger), Holm over every layer,
transformation and direction.
"""
import math

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from data import batches, normalize
from models import DeconvNet
from study.analysis.nulls import holm

ALPHA = 0.05
GREY = 128  # what a transformation fills in where the image had nothing (about 0 after normalising)
FRAME = 16  # grey pixels framed around an image before it is turned or scaled (see _bilinear)
TRANSFORMS = {  # kind -> the amounts, the identity first
    "translation": [0, 2, 4, 6, 8],  # pixels, to the right and down
    "scale": [1.0, 0.9, 0.8, 1.1, 1.2],
    "rotation": [0, 10, 20, 30, -10, -20, -30],  # degrees, clockwise (torchvision's convention)
    "flip": [0, 1],  # mirrored left-right or not
}


def transform(images: torch.Tensor, kind: str, amount: float) -> torch.Tensor:
    """uint8 images (N, 3, H, W) moved, scaled, rotated or mirrored by `amount` (bilinear,
    grey where the image had nothing); the identity amount returns them unchanged."""
    if kind == "flip":
        return images.flip(-1) if amount else images
    if kind == "translation":
        return TF.affine(images, angle=0.0, translate=[int(amount), int(amount)], scale=1.0,
                         shear=[0.0], interpolation=InterpolationMode.NEAREST, fill=GREY)
    if kind == "scale":
        return _bilinear(images, angle=0.0, scale=float(amount))
    if kind == "rotation":
        return _bilinear(images, angle=float(amount), scale=1.0)
    raise ValueError(f"no transformation {kind!r}; one of {', '.join(TRANSFORMS)}")


def _bilinear(images: torch.Tensor, angle: float, scale: float) -> torch.Tensor:
    """Rotated and scaled about the centre, bilinear. The images are first framed in grey wide
    enough that no sample falls outside (a corner turned by 45 degrees or shrunk to 0.7 reads
    within 16 pixels of the frame): torchvision's own fill blends a bilinear sample across the
    border with zeros, which draws a dark seam (down to 96 of 128 on a grey image)."""
    framed = F.pad(images, (FRAME,) * 4, value=GREY)
    moved = TF.affine(framed, angle=angle, translate=[0, 0], scale=scale, shear=[0.0],
                      interpolation=InterpolationMode.BILINEAR, fill=GREY)
    return moved[..., FRAME:-FRAME, FRAME:-FRAME]


@torch.no_grad()
def features(net: DeconvNet, images: torch.Tensor, batch_size: int = 500
             ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """({layer: (N, C*H*W) flattened pooled maps}, (N, classes) probabilities)."""
    maps: dict[int, list[torch.Tensor]] = {s.index: [] for s in net.arch.layers}
    probabilities = []
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    for x, _ in batches(images, labels, batch_size):
        x = normalize(x)
        latents = net.encode(x)  # one pass: the maps, and the class scores from the last one
        for s in net.arch.layers:
            maps[s.index].append(latents.at(s.index).flatten(1).double().cpu())
        probabilities.append(F.softmax(net.head(latents.last), dim=1).double().cpu())
    return {k: torch.cat(v) for k, v in maps.items()}, torch.cat(probabilities)


def relative_distance(original: torch.Tensor, moved: torch.Tensor) -> float:
    """Mean over images of ||moved - original|| / ||original|| (0 where an image's features are
    all zero and stay so)."""
    norm = original.norm(dim=1)
    change = (moved - original).norm(dim=1)
    ratio = torch.where(norm > 0, change / norm.clamp_min(1e-12), torch.zeros_like(change))
    return float(ratio.mean())


def transformed(images: torch.Tensor) -> dict[tuple[str, float], torch.Tensor]:
    """Every transformed copy invariance_curves reads ({(kind, amount): images}, the identity
    amounts left out), made once for all the networks that read them."""
    return {(kind, amount): transform(images, kind, amount)
            for kind, amounts in TRANSFORMS.items() for amount in amounts[1:]}


def largest(amounts: list[float]) -> float:
    """The amount farthest from the identity (the first): where the tests are made."""
    return max(amounts, key=lambda a: abs(a - amounts[0]))


def invariance_curves(net: DeconvNet, images: torch.Tensor, labels: torch.Tensor,
                      moved_images: dict[tuple[str, float], torch.Tensor] | None = None,
                      largest_only: bool = False) -> dict:
    """{kind: {"amounts", "distance": {layer name: [per amount]}, "true_class": [per amount]}};
    `moved_images`: transformed(images), when several networks read the same copies;
    `largest_only`: the identity and the largest amount only (all a null draw needs)."""
    moved_images = moved_images if moved_images is not None else transformed(images)
    base = features(net, images)
    result = {}
    for kind, amounts in TRANSFORMS.items():
        amounts = [amounts[0], largest(amounts)] if largest_only else amounts
        distance = {s.name: [] for s in net.arch.layers}
        true_class = []
        for k, amount in enumerate(amounts):  # the first amount is the identity: the base itself
            moved, probabilities = base if k == 0 else features(net, moved_images[kind, amount])
            for s in net.arch.layers:
                distance[s.name].append(round(relative_distance(base[0][s.index], moved[s.index]), 5))
            true_class.append(round(float(probabilities[torch.arange(len(labels)), labels.cpu()].mean()), 5))
        result[kind] = {"amounts": amounts, "distance": distance, "true_class": true_class}
    return result


def compare_with_random(trained: dict, random: list[dict]) -> dict:
    """Per transformation and layer, at the largest amount (the last in order of size): the
    trained distance, the random networks' distances, rank p (smaller = more invariant than the
    random networks), Holm over every layer and transformation."""
    tests = []
    for kind, block in trained.items():
        amounts = block["amounts"]
        far = largest(amounts)
        for layer, values in block["distance"].items():
            # a draw may hold the largest amount only (largest_only): found by its amount
            nulls = [r[kind]["distance"][layer][r[kind]["amounts"].index(far)] for r in random]
            value = values[amounts.index(far)]
            more = (1 + sum(v <= value for v in nulls)) / (1 + len(nulls))
            less = (1 + sum(v >= value for v in nulls)) / (1 + len(nulls))
            tests.append({"transform": kind, "layer": layer, "amount": far,
                          "trained": value, "random": nulls, "p_more": round(more, 5),
                          "p_less": round(less, 5)})
    # both directions are asked of every layer and transformation: one Holm family
    adjusted = holm([t["p_more"] for t in tests] + [t["p_less"] for t in tests])
    for test, more, less in zip(tests, adjusted[:len(tests)], adjusted[len(tests):]):
        test["p_more_holm"], test["p_less_holm"] = round(more, 5), round(less, 5)
        test["more_invariant"], test["less_invariant"] = bool(more < ALPHA), bool(less < ALPHA)
    family = 2 * len(tests)
    return {"tests": tests, "draws": len(random), "smallest_p": round(1 / (1 + len(random)), 5),
            # power: Holm's first step over the family, and the random networks it needs (a
            # result survives when its adjusted p is below ALPHA: family / (1 + draws) < ALPHA)
            "first_step": round(ALPHA / family, 5), "draws_needed": draws_needed(family)}


def draws_needed(family: int) -> int:
    """The fewest random networks whose smallest rank p, 1 / (1 + draws), passes Holm's first
    step over `family` tests (adjusted: family / (1 + draws) < ALPHA)."""
    return math.floor(family / ALPHA + 1e-9)


def tests_of(layers: int) -> int:
    """The size of the Holm family for a network of `layers` layers: every layer and
    transformation, in both directions."""
    return 2 * layers * len(TRANSFORMS)
