"""Task 3: what each latent channel of the Task 2 model encodes, with the evidence.

For one training and one test image (of different classes), the image is reconstructed from one
latent channel at a time, all other channels zeroed: every channel of z1 (6x14x14) and chosen
channels of z2 (16x5x5). Before any picture is read, the decoders are checked on the real,
full latents (PSNR on the test set) and against controls (empty latent, another image's latent,
another image's switches). Every channel is then characterised over the whole test set:
correlation with local luminance, colour opposition and edges under its receptive field, mean
activation per class, sparsity, and its top-9 test patches, and named by written rules.

    python visualize_latents.py --data-dir ../shared/cifar10
"""
import copy
import hashlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import plots
from common import (ArgumentParser, UsageError, add_data_arguments, add_output_arguments,
                    check_output_dir, environment_info, load_torch_file, number, read_json,
                    require_complete, run_cli, run_folder, save_json, save_torch, select_device)
from data import DISPLAY_NAMES, batches, denormalize, load_cifar10, normalize, warn
from explorer import write_explorer
from models import Z1_SHAPE, Z2_SHAPE, DeconvNet, Latents, load_model
from training import psnr_db

CHANNELS = {1: Z1_SHAPE[0], 2: Z2_SHAPE[0]}
# Receptive field of one pooled unit: (size, stride) in pixels. z1: a 5x5 filter at 2x2 pooled
# positions covers 6x6 pixels, every 2 pixels; z2: 6x6 z1 units, i.e. 16x16 pixels, every 4.
RECEPTIVE_FIELD = {1: (6, 2), 2: (16, 4)}
# Rules that turn a channel's statistics into words (also printed in the report).
RULES = {"luminance_r": 0.6, "colour_r": 0.4, "edge_r": 0.4, "orientation_spread": 0.1,
         "class_selectivity": 0.3,
         # class make-up of the top-K images: share (%), factor over chance, corrected p
         "class_share_pct": 30, "class_over_chance": 3, "significance": 0.05,
         # appearance of the top-K patches against random patches: Cohen's d ("large")
         "appearance_d": 0.8, "hue_consistency": 0.5}
TOP_K = 100  # strongest test images per channel for the class make-up and patch appearance
RANDOM_PATCHES = 2000  # the reference the strongest patches are compared with
EDGE_ANGLES = (0, 45, 90, 135)  # edge orientation, degrees counter-clockwise from horizontal
EDGE_NAMES = {0: "horizontal", 45: "rising diagonal (/)", 90: "vertical",
              135: "falling diagonal (\\)"}


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/task2/deconv_net.pth"),
                        help="DeconvNet written by train_deconv.py")
    parser.add_argument("--train-class", choices=DISPLAY_NAMES, default=None,
                        help="explain the first training image of this class (default: horse)")
    parser.add_argument("--test-class", choices=DISPLAY_NAMES, default=None,
                        help="explain the first test image of this class (default: cat, the "
                             "first image of the original test batch)")
    parser.add_argument("--train-index", type=number(int, 0), default=None,
                        help="explain this training image instead of --train-class (index into "
                             "the loaded train split, in any data layout)")
    parser.add_argument("--test-index", type=number(int, 0), default=None,
                        help="explain this test image instead of --test-class, indexed likewise")
    parser.add_argument("--z1-channels", default="all",
                        help="z1 channels to show: 'all' (6) or e.g. 0,3")
    parser.add_argument("--z2-channels", default="top6",
                        help="z2 channels to show: 'topK' (the K of largest activation energy "
                             "for that image), 'all' (16) or e.g. 0,5,11")
    parser.add_argument("--fit-epochs", type=number(int, 1), default=2,
                        help="epochs to fit the layer-1 decoder on the real z1")
    add_data_arguments(parser)
    add_output_arguments(parser, out="outputs/task3")
    return parser.parse_args(argv)


def channel_choice(layer: int, text: str) -> tuple[str, list[int] | int | None]:
    """Parse --z1-channels/--z2-channels: ('all', None), ('top', K) or ('list', [...])."""
    count, flag = CHANNELS[layer], f"--z{layer}-channels"
    if text == "all":
        return "all", None
    if text.startswith("top"):
        if layer == 1:
            raise UsageError(f"{flag} {text!r}: z1 has only 6 channels, give 'all' or channel "
                             "numbers such as 0,3")
        k = text[3:]
        if not (k.isascii() and k.isdigit()) or not 1 <= int(k) <= count:
            raise UsageError(f"{flag} {text!r}: give topK with K in 1..{count}, e.g. top6")
        return "top", int(k)
    try:
        if not text.isascii():
            raise ValueError
        channels = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give 'all', 'topK' or channel numbers such as "
                         "0,5,11" if layer == 2 else
                         f"{flag} {text!r}: give 'all' or channel numbers such as 0,3") from None
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise UsageError(f"{flag}: channel {bad[0]} does not exist; z{layer} has channels "
                         f"0..{count - 1}")
    return "list", sorted(set(channels))


# --- a layer-1 decoder that is valid on the real z1 ---

def fit_layer1_decoder(refit: DeconvNet, images: torch.Tensor, epochs: int, seed: int,
                       quiet: bool) -> float:
    """Give `refit` a fresh deconv1 (ConvTranspose2d(6, 3, 5)) fitted to invert its real z1.

    Task 2's deconv1 only ever sees deconv2's output, never the encoder's z1, so it is not a
    decoder of z1. The encoder stays frozen; the layer is trained through DeconvNet.decode (unpool
    with the switches, ReLU, transposed conv) with Adam, batch 32 and the mean squared error
    (eq. (1)'s L_rec / 1024). Returns the seconds taken.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    refit.deconv1 = nn.ConvTranspose2d(6, 3, 5).to(images.device)
    optimizer = torch.optim.Adam(refit.deconv1.parameters(), lr=3e-3)
    steps = epochs * math.ceil(len(images) / 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    refit.eval()
    progress = tqdm(total=steps, desc="fitting the z1 decoder", unit="batch", leave=False,
                    disable=quiet or None, file=sys.stderr)
    for _ in range(epochs):
        for images_u8, _ in batches(images, torch.zeros(len(images), device=images.device), 32,
                                    generator):
            x = normalize(images_u8)
            with torch.no_grad():
                latents = refit.encode(x)
            loss = F.mse_loss(refit.decode(latents, 1), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update()
    progress.close()
    refit.requires_grad_(False)
    return time.perf_counter() - started


def layer1_refit(net: DeconvNet, checkpoint: Path, images: torch.Tensor, data_sha256: str,
                 epochs: int, seed: int, quiet: bool) -> tuple[DeconvNet, dict]:
    """The Task 2 model with deconv1 refitted on real z1, cached next to the checkpoint."""
    checkpoint_sha256 = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    cache = checkpoint.with_name("layer1_decoder.pth")
    key = {"checkpoint_sha256": checkpoint_sha256, "data_sha256": data_sha256, "epochs": epochs,
           "seed": seed}
    refit = copy.deepcopy(net)
    try:
        cached = load_torch_file(cache, "layer-1 decoder cache") if cache.is_file() else None
    except UsageError:
        cached = None  # damaged: fitted again
    if isinstance(cached, dict) and cached.get("key") == key:
        refit.deconv1.load_state_dict(cached["state"])
        return refit, {**key, "cache": str(cache), "fitted_now": False,
                       "fit_seconds": cached["fit_seconds"]}
    seconds = round(fit_layer1_decoder(refit, images, epochs, seed, quiet), 2)
    try:
        save_torch({"key": key, "state": refit.deconv1.state_dict(), "fit_seconds": seconds},
                   cache)
    except UsageError as error:  # a read-only checkpoint folder costs a refit next time
        warn(f"could not cache the layer-1 decoder ({error})")
    return refit, {**key, "cache": str(cache), "fitted_now": True, "fit_seconds": seconds}


# --- decoder checks and controls over the test set ---

def _agreement(x_hat: torch.Tensor, x01: torch.Tensor) -> tuple[float, float]:
    """(squared error sum of the [0,1]-clipped image, Pearson r over all pixel values)."""
    y = denormalize(x_hat)
    return (y - x01).pow(2).sum().item(), torch.corrcoef(torch.stack([y.flatten(), x01.flatten()]))[0, 1].item()


@torch.no_grad()
def decoder_checks(decoders: dict[str, tuple[DeconvNet, int, bool]], images: torch.Tensor,
                   batch_size: int = 1000) -> dict:
    """Full-latent reconstruction quality of each decoder on the test set: PSNR and r."""
    results = {}
    for name, (model, layer, tied) in decoders.items():
        squared, correlations = 0.0, []
        for images_u8 in images.split(batch_size):
            x = normalize(images_u8)
            error, r = _agreement(model.decode(model.encode(x), layer, tied=tied), images_u8 / 255)
            squared += error
            correlations.append(r * len(x))
        results[name] = {"psnr_db": round(psnr_db(squared / images.numel()), 2),
                         "correlation": round(sum(correlations) / len(images), 3)}
    return results


@torch.no_grad()
def controls(model: DeconvNet, layer: int, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """What the decoder makes of latents that do not belong to the image, on the test set.

    own: the image's latent and switches. empty: all channels zero, own switches.
    other latent: the next test image's latent with own switches. other switches: own latent
    with the next image's switches. If 'empty' or 'other latent' scores near 'own', the
    picture comes from the switches, not from the channels.
    """
    cases = ("own latent and switches", "empty latent, own switches",
             "other image's latent, own switches", "own latent, other image's switches")
    sums = {case: [0.0, 0.0] for case in cases}
    for images_u8 in images.split(batch_size):
        x = normalize(images_u8)
        own = model.encode(x)
        other = Latents(*(t.roll(1, 0) for t in own))
        variants = (own, own.with_map(layer, torch.zeros_like(own.at(layer))),
                    own.with_map(layer, other.at(layer)), other.with_map(layer, own.at(layer)))
        for case, latents in zip(cases, variants):
            error, r = _agreement(model.decode(latents, layer), images_u8 / 255)
            sums[case][0] += error
            sums[case][1] += r * len(x)
    return {case: {"psnr_db": round(psnr_db(error / images.numel()), 2),
                   "correlation": round(r / len(images), 3)} for case, (error, r) in sums.items()}


# --- every channel over the test set ---

def local_signals(images_u8: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """Image measures averaged under each unit's receptive field: (N, H, W) maps per name."""
    x = images_u8.float() / 255
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    gx = F.pad(luminance[..., :, 1:] - luminance[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(luminance[..., 1:, :] - luminance[..., :-1, :], (0, 0, 0, 1))
    maps = {"luminance": luminance, "red_green": r - g, "blue_yellow": b - (r + g) / 2,
            "gradient_energy": gx ** 2 + gy ** 2}
    for angle in EDGE_ANGLES:
        # An edge at `angle` has its gradient across it: the derivative along angle + 90 degrees
        # (image rows grow downwards, hence the minus sign on the vertical part).
        across = math.radians(angle + 90)
        maps[f"edge_{angle}"] = (math.cos(across) * gx - math.sin(across) * gy) ** 2
    size, stride = RECEPTIVE_FIELD[layer]
    return {name: F.avg_pool2d(m, size, stride)[:, 0] for name, m in maps.items()}


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.norm() * b.norm()).item()
    return (a @ b).item() / denominator if denominator > 0 else 0.0


@torch.no_grad()
def channel_statistics(net: DeconvNet, images: torch.Tensor, labels: torch.Tensor,
                       layer: int) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Per channel: correlations with local image measures, class means, sparsity.

    Returns (rows, activations (N, C, H, W), class means (C, 10)).
    """
    activations = []
    for images_u8, _ in batches(images, labels, 1000):
        latents = net.encode(normalize(images_u8))
        activations.append(latents.at(layer).cpu())
    z = torch.cat(activations)
    signals = local_signals(images.cpu(), layer)
    labels = labels.cpu()
    class_means = torch.stack([z[labels == k].mean(dim=(0, 2, 3)) for k in range(10)], 1)
    rows = []
    for c in range(z.shape[1]):
        a = z[:, c]
        r = {name: round(pearson(a, m), 3) for name, m in signals.items()}
        edge_r = {angle: r.pop(f"edge_{angle}") for angle in EDGE_ANGLES}
        best_angle = max(edge_r, key=edge_r.get)
        means = class_means[c]
        top = int(means.argmax())
        others = torch.cat([means[:top], means[top + 1:]]).mean()
        selectivity = ((means[top] - others) / (means[top] + others)).item() if means[top] > 0 else 0.0
        rows.append({
            "channel": c, "mean_activation": round(a.mean().item(), 4),
            "r_luminance": r["luminance"], "r_red_green": r["red_green"],
            "r_blue_yellow": r["blue_yellow"], "r_gradient_energy": r["gradient_energy"],
            "r_edge_by_angle": {str(k): v for k, v in edge_r.items()},
            "preferred_edge_deg": best_angle,
            "orientation_spread": round(max(edge_r.values()) - min(edge_r.values()), 3),
            "top_class": DISPLAY_NAMES[top], "class_selectivity": round(selectivity, 3),
            "zero_share": round((a == 0).float().mean().item(), 3),
            "always_zero_positions": round((a == 0).all(0).float().mean().item(), 3),
        })
    return rows, z, class_means


# --- what a channel's strongest images are: their classes and how their patches look ---

def strongest_units(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A channel's strength on an image: the largest value of its pooled map over positions.

    z (N, C, H, W) -> (peaks (N, C), flat positions (N, C) of those peaks, row-major).
    """
    return z.flatten(2).max(2)


def receptive_box(layer: int, position: int, width: int) -> tuple[int, int, int]:
    """(top, left, size) in pixels of the receptive field of the unit at flat `position`."""
    size, stride = RECEPTIVE_FIELD[layer]
    return (position // width) * stride, (position % width) * stride, size


def class_makeup(peaks: torch.Tensor, labels: torch.Tensor, k: int, tests: int) -> list[dict]:
    """Per channel: the class shares (%) of its k strongest test images, and a binomial test.

    The largest share is tested (one-sided, exact) against that class's share of the whole test
    set (10 % on CIFAR-10), Bonferroni-corrected over `tests` channels.
    """
    from scipy.stats import binomtest

    labels = labels.cpu()
    base = torch.bincount(labels, minlength=10).double() / len(labels)
    rows = []
    for c in range(peaks.shape[1]):
        winners = peaks[:, c].topk(k).indices
        counts = torch.bincount(labels[winners], minlength=10)
        top = int(counts.argmax())
        p = binomtest(int(counts[top]), k, float(base[top]), alternative="greater").pvalue
        rows.append({"top_k": k,
                     "top_k_classes": {name: round(100 * int(n) / k, 1)
                                       for name, n in zip(DISPLAY_NAMES, counts)},
                     "top_k_class": DISPLAY_NAMES[top],
                     "top_k_class_share": round(100 * int(counts[top]) / k, 1),
                     "top_k_class_base_rate": round(100 * float(base[top]), 1),
                     "top_k_class_p_bonferroni": float(f"{min(1.0, p * tests):.3g}")})
    return rows


HUE_NAMES = ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"),
             (255, "blue"), (290, "purple"), (345, "magenta"), (360, "red"))


def hue_name(degrees: float) -> str:
    return next(name for limit, name in HUE_NAMES if degrees % 360 < limit)


def patch_measures(patches: torch.Tensor) -> dict[str, torch.Tensor]:
    """Appearance of square patches (N, 3, s, s) in [0, 1]: one value per patch and measure.

    saturation and hue of the mean colour (HSV); luminance; centre minus surround luminance
    (centre = the middle half of the side); texture energy (mean squared luminance gradient);
    the structure tensor's dominant edge orientation (degrees counter-clockwise from horizontal)
    and coherence (0 = no orientation, 1 = one orientation only).
    """
    colour = patches.mean(dim=(2, 3))
    high, low = colour.max(1).values, colour.min(1).values
    r, g, b = colour.unbind(1)
    hue = torch.rad2deg(torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)) % 360
    lum = 0.299 * patches[:, 0] + 0.587 * patches[:, 1] + 0.114 * patches[:, 2]
    s = lum.shape[-1]
    inner = slice(s // 4, s - s // 4)
    centre = lum[:, inner, inner]
    surround = (lum.sum(dim=(1, 2)) - centre.sum(dim=(1, 2))) / (s * s - centre[0].numel())
    # Both derivatives at the centres of 2x2 pixel blocks (forward differences of single rows
    # or columns would sit half a pixel apart and miss diagonal edges); y grows upwards.
    dx, dy = lum[:, :, 1:] - lum[:, :, :-1], lum[:, :-1, :] - lum[:, 1:, :]
    gx, gy = (dx[:, 1:] + dx[:, :-1]) / 2, (dy[:, :, 1:] + dy[:, :, :-1]) / 2
    jxx, jyy, jxy = (gx * gx).sum((1, 2)), (gy * gy).sum((1, 2)), (gx * gy).sum((1, 2))
    gradient_angle = 0.5 * torch.atan2(2 * jxy, jxx - jyy)
    coherence = ((jxx - jyy) ** 2 + 4 * jxy ** 2).sqrt() / (jxx + jyy).clamp_min(1e-12)
    return {"saturation": (high - low) / high.clamp_min(1e-12), "hue_deg": hue,
            "luminance": lum.mean(dim=(1, 2)), "centre_surround": centre.mean(dim=(1, 2)) - surround,
            "texture_energy": (gx ** 2 + gy ** 2).mean(dim=(1, 2)),
            "orientation_deg": (torch.rad2deg(gradient_angle) + 90) % 180, "coherence": coherence}


def effect_size(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cohen's d of sample a against sample b (pooled standard deviation)."""
    a, b = a.double(), b.double()
    pooled = (((len(a) - 1) * a.var() + (len(b) - 1) * b.var()) / (len(a) + len(b) - 2)).sqrt()
    return round(((a.mean() - b.mean()) / pooled).item(), 2) if pooled > 0 else 0.0


def _weighted_angle(angles_deg: torch.Tensor, weights: torch.Tensor, period: float) -> tuple[float, float]:
    """Circular mean (degrees, in [0, period)) and resultant length (0..1) of weighted angles."""
    radians = torch.deg2rad(angles_deg.double()) * (360 / period)
    w = weights.double()
    x, y = (w * radians.cos()).sum(), (w * radians.sin()).sum()
    mean = (math.degrees(math.atan2(y, x)) * period / 360) % period
    return mean, (x.hypot(y) / w.sum().clamp_min(1e-12)).item()


def patches_at(images_u8: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor,
               layer: int, width: int) -> torch.Tensor:
    """The receptive-field patches (N, 3, s, s) in [0, 1] of the units at flat `positions`."""
    boxes = [receptive_box(layer, int(p), width) for p in positions]
    return torch.stack([images_u8[int(i), :, top:top + size, left:left + size]
                        for i, (top, left, size) in zip(indices, boxes)]).float().cpu() / 255


def patch_appearance(images_u8: torch.Tensor, peaks: torch.Tensor, positions: torch.Tensor,
                     layer: int, width: int, k: int, seed: int,
                     n_random: int = RANDOM_PATCHES) -> list[dict]:
    """Per channel: how its k strongest patches differ from random patches of the same layer.

    Each measure of `patch_measures` as an effect size (Cohen's d) against random receptive
    fields (seeded random image and position); hue as the saturation-weighted circular mean of
    the k patches with its consistency; orientation as the coherence-weighted axial mean with
    its consistency, and as the effect size of each patch's alignment with it.
    """
    generator = torch.Generator().manual_seed(seed)
    random_images = torch.randint(0, len(images_u8), (n_random,), generator=generator)
    random_positions = torch.randint(0, width * width, (n_random,), generator=generator)
    reference = patch_measures(patches_at(images_u8, random_images, random_positions, layer, width))
    rows = []
    for c in range(peaks.shape[1]):
        winners = peaks[:, c].topk(k).indices
        top = patch_measures(patches_at(images_u8, winners, positions[winners, c], layer, width))
        hue, hue_consistency = _weighted_angle(top["hue_deg"], top["saturation"], 360)
        orientation, orientation_consistency = _weighted_angle(
            top["orientation_deg"], top["coherence"], 180)

        def alignment(m: dict) -> torch.Tensor:
            return m["coherence"] * torch.cos(2 * torch.deg2rad(m["orientation_deg"] - orientation))
        rows.append({
            "d_saturation": effect_size(top["saturation"], reference["saturation"]),
            "mean_saturation": round(top["saturation"].mean().item(), 3),
            "hue_deg": round(hue), "hue_name": hue_name(hue),
            "hue_consistency": round(hue_consistency, 3),
            "d_luminance": effect_size(top["luminance"], reference["luminance"]),
            "d_centre_surround": effect_size(top["centre_surround"], reference["centre_surround"]),
            "d_texture_energy": effect_size(top["texture_energy"], reference["texture_energy"]),
            "orientation_deg": round(orientation),
            "orientation_consistency": round(orientation_consistency, 3),
            "d_orientation": effect_size(alignment(top), alignment(reference)),
        })
    return rows


def nearest_edge_name(degrees: float) -> str:
    angle = min(EDGE_ANGLES, key=lambda a: min(abs(degrees - a), 180 - abs(degrees - a)))
    return EDGE_NAMES[angle]


def channel_roles(row: dict) -> list[tuple[str, str]]:
    """Every rule of RULES that holds for a channel: (short tag, clause quoting its numbers).

    Tags name the rule's kind before the colon ("class:horse", "look:saturated blue",
    "brightness", "colour:red/green", "edge", "selective:cat"), for counting and the report.
    """
    roles = []
    if "top_k_classes" in row and row["top_k_class_share"] >= RULES["class_share_pct"]:
        # Named for its class whenever one class holds >= 30 % of its strongest images; the
        # factor over chance and the corrected p-value are quoted so the reader can weigh it.
        significant = (row["top_k_class_p_bonferroni"] < RULES["significance"]
                       and row["top_k_class_share"] >= RULES["class_over_chance"]
                       * row["top_k_class_base_rate"])
        roles.append((f"class:{row['top_k_class']}",
                      f"class-dominant for {row['top_k_class']} ({row['top_k_class_share']:.0f} % "
                      f"of its top-{row['top_k']} test images, chance "
                      f"{row['top_k_class_base_rate']:.0f} %, corrected p = "
                      f"{row['top_k_class_p_bonferroni']:.1g}"
                      + ("" if significant else ", not significant") + ")"))
    if abs(row["r_luminance"]) >= RULES["luminance_r"]:
        kind = "brightness" if row["r_luminance"] > 0 else "darkness"
        roles.append((kind, f"a {kind} detector (r = {row['r_luminance']:+.2f} with local luminance)"))
    for key, positive, negative, signal in (("r_red_green", "red", "green", "R-G"),
                                            ("r_blue_yellow", "blue", "yellow", "B-(R+G)/2")):
        if abs(row[key]) >= RULES["colour_r"]:
            first, second = (positive, negative) if row[key] > 0 else (negative, positive)
            roles.append((f"colour:{first}/{second}", f"colour-opponent, {first} over {second} "
                          f"(r = {row[key]:+.2f} with {signal})"))
    if row["r_gradient_energy"] >= RULES["edge_r"]:
        text = f"an edge detector (r = {row['r_gradient_energy']:+.2f} with local gradient energy"
        if row["orientation_spread"] >= RULES["orientation_spread"]:
            angle = row["preferred_edge_deg"]
            text += (f"; prefers {EDGE_NAMES[angle]} edges, r = "
                     f"{row['r_edge_by_angle'][str(angle)]:+.2f} vs a spread of "
                     f"{row['orientation_spread']:.2f} over orientations")
        roles.append(("edge", text + ")"))
    if row["class_selectivity"] >= RULES["class_selectivity"]:
        roles.append((f"selective:{row['top_class']}", f"class-selective for {row['top_class']} "
                      f"(selectivity {row['class_selectivity']:.2f})"))
    looks = appearance(row)
    if looks:
        roles.append(("look:" + ", ".join(short for short, _ in looks),
                      "tuned to patches that are " + ", ".join(text for _, text in looks)
                      + " against random patches"))
    return roles


def appearance(row: dict) -> list[tuple[str, str]]:
    """How the strongest patches differ from random ones, where the effect size is large."""
    if "d_saturation" not in row:
        return []
    large, looks = RULES["appearance_d"], []
    if row["d_saturation"] >= large:
        consistent = row["hue_consistency"] >= RULES["hue_consistency"]
        hue = row["hue_name"] if consistent else "of varied hue"
        looks.append((f"saturated {hue}", f"saturated {hue} ("
                      + (f"hue {row['hue_deg']}°, " if consistent else "")
                      + f"d = {row['d_saturation']:+.1f})"))
    elif row["d_saturation"] <= -large:
        looks.append(("grey", f"grey (d saturation = {row['d_saturation']:+.1f})"))
    if abs(row["d_luminance"]) >= large:
        word = "bright" if row["d_luminance"] > 0 else "dark"
        looks.append((word, f"{word} (d = {row['d_luminance']:+.1f})"))
    if abs(row["d_centre_surround"]) >= large:
        word = "light on dark" if row["d_centre_surround"] > 0 else "dark on light"
        looks.append((word, f"{word} (centre vs surround, d = {row['d_centre_surround']:+.1f})"))
    if row["d_orientation"] >= large:
        word = f"{nearest_edge_name(row['orientation_deg'])} structure"
        looks.append((word, f"of {word} ({row['orientation_deg']}°, d = {row['d_orientation']:+.1f})"))
    if abs(row["d_texture_energy"]) >= large:
        word = "textured" if row["d_texture_energy"] > 0 else "smooth"
        looks.append((word, f"{word} (d = {row['d_texture_energy']:+.1f})"))
    return looks


def describe_channel(layer: int, row: dict) -> str:
    """One sentence naming the channel by every rule that holds, quoting the numbers behind it."""
    roles = channel_roles(row)
    name = f"z{layer} channel {row['channel']}"
    if not roles:
        return (f"{name} is mixed: no rule fits (|r| luminance {abs(row['r_luminance']):.2f}, "
                f"R-G {abs(row['r_red_green']):.2f}, B-Y {abs(row['r_blue_yellow']):.2f}, "
                f"edges {row['r_gradient_energy']:+.2f}; class selectivity "
                f"{row['class_selectivity']:.2f}"
                + (f"; top class {row['top_k_class']} {row['top_k_class_share']:.0f} %"
                   if "top_k_classes" in row else "")
                + f"; zero on {100 * row['zero_share']:.0f} % of positions).")
    return f"{name} is " + "; ".join(text for _, text in roles) + "."


# --- figures ---

def signed_rgb(d: torch.Tensor, scale: float) -> torch.Tensor:
    """A contribution (3, H, W) as an image: grey = 0, +-scale = full intensity."""
    return (0.5 + d / (2 * max(scale, 1e-12))).clamp(0, 1)


def stretch(image: torch.Tensor) -> torch.Tensor:
    """Min-max scale one image (all three channels together, so hue is kept) into [0, 1]."""
    low, high = image.min(), image.max()
    return ((image - low) / (high - low).clamp_min(1e-12)).clamp(0, 1)


@torch.no_grad()
def explain_image(model: DeconvNet, tied_model: DeconvNet, image_u8: torch.Tensor, title: str,
                  layer: int, channels: list[int], decoder_name: str, path: Path) -> dict:
    """One figure: where each channel fires, its activation map and its contribution.

    Row 1 marks on the original the receptive field of the channel's strongest unit; row 2 is
    the activation map (the peak circled); row 3 the contribution of the channel,
    decode(only c) - decode(empty latent): what the channel adds to what the switches and biases
    give on their own; row 4 the tied deconvnet's projection.
    """
    from matplotlib.patches import Rectangle

    x = normalize(image_u8[None])
    latents = model.encode(x)
    z = latents.at(layer)[0]
    width = z.shape[-1]
    singles = model.decode(latents, layer, keep=[[c] for c in channels])
    empty = model.decode(latents, layer, keep=[[]])[0]
    full = model.decode(latents, layer)[0]
    tied = tied_model.decode(latents, layer, keep=[[c] for c in channels], tied=True)
    contributions = singles - empty
    common = contributions.abs().max().item()
    energy = z.pow(2).sum(dim=(1, 2))
    share = energy / energy.sum().clamp_min(1e-12)
    peaks, positions = strongest_units(z[None])
    boxes = {c: receptive_box(layer, int(positions[0, c]), width) for c in channels}

    per_row, n = 6, 4  # channels per row block, rows per block
    blocks = [channels[i:i + per_row] for i in range(0, len(channels), per_row)]
    fig_rows = n * len(blocks)
    fig, axes = plt_subplots(fig_rows, per_row + 1, 6.0, 0.88 * fig_rows + 0.5)
    reference = [(image_u8.cpu() / 255, "original"), (denormalize(full), "full latent"),
                 (denormalize(empty), "empty latent"), (None, "")]
    row_names = ["where it\nfires most", "activation", "contribution", "tied\ndeconvnet"]
    original = plots.to_hwc(image_u8.cpu() / 255)
    for b, block in enumerate(blocks):
        for r in range(n):
            ax = axes[n * b + r][0]
            picture, caption = reference[r]
            if picture is not None:
                ax.imshow(plots.to_hwc(picture), interpolation="nearest")
                ax.text(0.5, 0.03, caption, transform=ax.transAxes, ha="center", va="bottom",
                        fontsize=7, bbox=dict(facecolor="white", alpha=0.8, pad=1, linewidth=0))
            ax.set_ylabel(row_names[r], fontsize=7, labelpad=2)
        for col in range(per_row):
            for r in range(n):
                ax = axes[n * b + r][col + 1]
                if col >= len(block):
                    ax.axis("off")
                    continue
                c = block[col]
                k = channels.index(c)
                if r == 0:
                    top, left, size = boxes[c]
                    ax.imshow(original, interpolation="nearest")
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False,
                                           edgecolor="yellow", linewidth=1.2))
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False,
                                           edgecolor="black", linewidth=0.5, linestyle="--"))
                    ax.set_title(f"ch {c}: {100 * share[c]:.0f} %", fontsize=7, pad=2)
                elif r == 1:
                    ax.imshow(z[c].cpu().numpy(), cmap="viridis", interpolation="nearest")
                    row_, col_ = divmod(int(positions[0, c]), width)
                    ax.plot(col_, row_, marker="o", markersize=5, markerfacecolor="none",
                            markeredgecolor="red", markeredgewidth=0.8)
                else:
                    picture = signed_rgb(contributions[k], common) if r == 2 else stretch(tied[k])
                    ax.imshow(plots.to_hwc(picture), interpolation="nearest")
    for ax in axes.flat:
        plots.bare(ax)
        if not ax.images:
            ax.set_frame_on(False)
    fig.suptitle(f"{title}: single z{layer} channels, the others zeroed ({decoder_name})\n"
                 "%: share of the activation energy; box: receptive field of the strongest unit; "
                 "contribution = decode(channel) - decode(empty)", fontsize=7.5)
    fig.tight_layout(pad=0.3, h_pad=0.35, w_pad=0.4, rect=(0, 0, 1, 1 - 0.36 / fig.get_figheight()))
    plots.save(fig, path)
    residual = (contributions.sum(0) + empty - full).abs().max().item() if layer == 1 and \
        len(channels) == CHANNELS[1] else None
    return {"channels": [{"channel": c, "energy_share": round(share[c].item(), 4),
                          "peak_activation": round(peaks[0, c].item(), 4),
                          "peak_position": list(divmod(int(positions[0, c]), width)),
                          "strongest_box": dict(zip(("top", "left", "size"), boxes[c])),
                          "contribution_rms": round(contributions[k].pow(2).mean().sqrt().item(), 4)}
                         for k, c in enumerate(channels)],
            "sum_of_contributions_minus_full_max_abs": residual}


def plt_subplots(rows: int, cols: int, width: float, height: float, **kwargs):
    import matplotlib.pyplot as plt
    return plt.subplots(rows, cols, figsize=(width, height), squeeze=False, **kwargs)


@torch.no_grad()
def top9(model: DeconvNet, z: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, layer: int,
         path: Path, k: int = 9) -> list[dict]:
    """Per channel, the k test images with its strongest activation, as Zeiler & Fergus show them.

    Left: the image patch under the receptive field of that activation, enlarged. Right: the
    projection of that single activation (all else zeroed) minus the empty-latent image, cropped
    to the same field, each at its own symmetric scale (grey = 0).
    """
    size = RECEPTIVE_FIELD[layer][0]
    count, width = z.shape[1], z.shape[-1]
    peaks, positions = strongest_units(z)  # (N, C)
    winners = peaks.topk(k, dim=0).indices.T  # (C, k)
    mosaics, rows = [], []
    for c in range(count):
        chosen = winners[c].to(images.device)
        x = normalize(images[chosen])
        latents = model.encode(x)
        field = latents.at(layer)
        where = positions[winners[c], c].to(images.device)
        single = torch.zeros_like(field)
        rows_k = torch.arange(k, device=field.device)
        single.view(k, count, -1)[rows_k, c, where] = field.view(k, count, -1)[rows_k, c, where]
        zeroed = torch.zeros_like(field)
        projection = (model.decode(latents.with_map(layer, single), layer)
                      - model.decode(latents.with_map(layer, zeroed), layer))
        patches, projections = [], []
        boxes = [receptive_box(layer, int(p), width) for p in where.tolist()]
        for i, (top, left, _) in enumerate(boxes):
            patches.append(images[chosen[i], :, top:top + size, left:left + size].cpu() / 255)
            d = projection[i, :, top:top + size, left:left + size].cpu()
            projections.append(signed_rgb(d, d.abs().max().item()))
        mosaics.append((_mosaic(patches), _mosaic(projections)))
        flat = torch.stack([p.flatten() for p in projections])
        similarity = torch.corrcoef(flat)[~torch.eye(k, dtype=torch.bool)].nan_to_num().mean()
        rows.append({"channel": c, "test_indices": winners[c].tolist(),
                     "boxes": [list(box) for box in boxes],
                     "classes": [DISPLAY_NAMES[i] for i in labels[winners[c]].tolist()],
                     "peak_activation": round(peaks[winners[c][0], c].item(), 4),
                     # mean pairwise r of the nine projections: near 1 = one fixed pattern
                     "projection_similarity": round(similarity.item(), 3)})
    per_row = 3 if count <= 6 else 4
    n_rows = math.ceil(count / per_row)
    fig_width = 6.3 if per_row == 4 else 4.8
    fig, axes = plt_subplots(n_rows, 2 * per_row, fig_width,
                             (fig_width / (2 * per_row) + 0.16) * n_rows + 0.4, layout="constrained")
    for c, (patch, projection) in enumerate(mosaics):
        ax_patch, ax_proj = axes[c // per_row][2 * (c % per_row)], axes[c // per_row][2 * (c % per_row) + 1]
        ax_patch.imshow(plots.to_hwc(patch), interpolation="nearest")
        ax_proj.imshow(plots.to_hwc(projection), interpolation="nearest")
        ax_patch.set_title(f"ch {c}: patches", fontsize=7, pad=2)
        ax_proj.set_title(f"ch {c}: projections", fontsize=7, pad=2)
    for ax in axes.flat:
        plots.bare(ax)
        if not ax.images:
            ax.axis("off")
    fig.suptitle(f"z{layer}: top-{k} test activations per channel ({size}x{size}-pixel receptive "
                 "fields, enlarged)\nprojections at their own symmetric scale, grey = 0", fontsize=7.5)
    plots.save(fig, path)
    return rows


def _mosaic(tiles: list[torch.Tensor], columns: int = 3) -> torch.Tensor:
    import torchvision
    return torchvision.utils.make_grid(torch.stack(tiles), nrow=columns, padding=1, pad_value=1.0)


def class_heatmap(means: dict[int, torch.Tensor], path: Path) -> None:
    """Mean activation per class (rows) of every channel (columns), each channel's column
    divided by its largest class mean."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(4.45, 2.05), layout="constrained",
                             gridspec_kw={"width_ratios": [6, 16]})
    for ax, layer in zip(axes, (1, 2)):
        m = means[layer]
        relative = (m / m.max(1, keepdim=True).values.clamp_min(1e-12)).T
        image = ax.imshow(relative.numpy(), cmap="magma", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(m)), [str(c) for c in range(len(m))], fontsize=7)
        ax.set_yticks(range(10), DISPLAY_NAMES if layer == 1 else [], fontsize=7)
        ax.set_xlabel(f"z{layer} channel")
    fig.colorbar(image, ax=axes, location="right", fraction=0.04, pad=0.02,
                 label="mean / channel's largest")
    fig.suptitle("mean activation per class", fontsize=8)
    plots.save(fig, path)


def conv1_filters_figure(net: DeconvNet, path: Path) -> list[dict]:
    """The six 3x5x5 first-layer filters as RGB patches, each min-max scaled."""
    import matplotlib.pyplot as plt
    weights = net.conv1.weight.detach().cpu()
    fig, axes = plt.subplots(2, 3, figsize=(1.75, 1.45))
    stats = []
    for c, ax in enumerate(axes.flat):
        ax.imshow(plots.to_hwc(stretch(weights[c])), interpolation="nearest")
        ax.set_title(f"filter {c}", fontsize=7, pad=2)
        plots.bare(ax)
        w = weights[c]
        stats.append({"filter": c, "colour_share": round(
            ((w - w.mean(0)).pow(2).sum() / w.pow(2).sum()).item(), 3)})
    plots.save(fig, path)
    return stats


# --- the task ---

DEFAULT_CLASSES = {"train": "horse", "test": "cat"}


def pick_image(labels: torch.Tensor, index: int | None, class_name: str | None, split: str) -> tuple[int, str]:
    """The image to explain: --{split}-index if given, else the first of --{split}-class."""
    if index is not None and class_name is not None:
        raise UsageError(f"--{split}-index and --{split}-class both choose the {split} image; "
                         "give one of them")
    class_name = class_name or DEFAULT_CLASSES[split]
    if index is not None:
        if index >= len(labels):
            raise UsageError(f"--{split}-index {index} is past the end of the {split} set "
                             f"({len(labels)} images); pick 0..{len(labels) - 1}")
        return index, f"--{split}-index {index}"
    members = (labels.cpu() == DISPLAY_NAMES.index(class_name)).nonzero().flatten()
    if not len(members):
        raise UsageError(f"the loaded {split} set has no {class_name}; pass another "
                         f"--{split}-class or a larger --subset")
    return int(members[0]), f"the first {split} image of class {class_name}"


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    choices = {1: channel_choice(1, args.z1_channels), 2: channel_choice(2, args.z2_channels)}
    device = select_device(args.device)
    check_output_dir(args.out)
    # These are measurements, not training: full float32 on GPUs too (TF32 would blur the
    # layer-1 affinity check and the PSNRs in the fourth digit).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.checkpoint.is_dir():
        raise UsageError(f"--checkpoint {args.checkpoint} is a folder; pass the deconv_net.pth "
                         "inside it")
    if not args.checkpoint.is_file():
        raise UsageError(f"no Task 2 checkpoint at {args.checkpoint}; run train_deconv.py first "
                         "(or pass --checkpoint)")
    require_complete(args.checkpoint.parent, "the Task 2 folder",
                     "rerun train_deconv.py into it (or pass another --checkpoint)")
    net = load_model(args.checkpoint, "DeconvNet", "--checkpoint").to(device).eval()
    task2_metrics = args.checkpoint.with_name("metrics.json")
    task2 = (read_json(task2_metrics, "Task 2 metrics", "rerun train_deconv.py")
             if task2_metrics.is_file() else {})
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    picks = {"train": pick_image(data.train_labels, args.train_index, args.train_class, "train"),
             "test": pick_image(data.test_labels, args.test_index, args.test_class, "test")}
    with run_folder(args.out, "visualize_latents.py") as out:
        data = data.to(device)

        # 1. Decoders worth reading: refit layer 1 on the real z1, then measure every decoder.
        refit, refit_info = layer1_refit(net, args.checkpoint, data.train_images, data.content_hash,
                                         args.fit_epochs, args.seed, args.quiet)
        decoders = decoder_checks({"z1, Task 2 deconv1 (literal)": (net, 1, False),
                                   "z1, deconv1 refit on real z1": (refit, 1, False),
                                   "z1, tied (conv1 transposed)": (net, 1, True),
                                   "z2, Task 2 decoder": (net, 2, False),
                                   "z2, tied (conv2, conv1 transposed)": (net, 2, True)},
                                  data.test_images)
        for name, result in decoders.items():
            print(f"full-latent test PSNR, {name}: {result['psnr_db']:.2f} dB (r = {result['correlation']:.2f})")
        layer_models = {1: (refit, "z1 decoder refit on real z1"), 2: (net, "Task 2 decoder")}
        control_results = {f"z{layer}": controls(model, layer, data.test_images)
                           for layer, (model, _) in layer_models.items()}

        # 2. Every channel over the whole test set, named by the rules.
        #    Each channel's K strongest test images: their classes and how their patches look.
        channels, activations, class_means = {}, {}, {}
        k = min(TOP_K, len(data.test_labels))
        for layer in (1, 2):
            rows, activations[layer], class_means[layer] = channel_statistics(
                net, data.test_images, data.test_labels, layer)
            peaks, positions = strongest_units(activations[layer])
            makeup = class_makeup(peaks, data.test_labels, k, tests=sum(CHANNELS.values()))
            looks = patch_appearance(data.test_images, peaks, positions, layer,
                                     activations[layer].shape[-1], k, args.seed)
            for row, classes, look in zip(rows, makeup, looks):
                row.update(classes, **look)
                row["roles"] = [tag for tag, _ in channel_roles(row)]
                row["finding"] = describe_channel(layer, row)
                print(row["finding"])
            channels[f"z{layer}"] = rows
        class_heatmap(class_means, out / "class_selectivity.svg")
        top = {f"z{layer}": top9(layer_models[layer][0], activations[layer], data.test_images,
                                 data.test_labels, layer, out / f"top9_z{layer}.png")
               for layer in (1, 2)}
        filters = conv1_filters_figure(net, out / "conv1_filters.png")

        # 3. The two images, one channel at a time.
        explained = {}
        for split, (index, why) in picks.items():
            images = data.train_images if split == "train" else data.test_images
            labels = data.train_labels if split == "train" else data.test_labels
            label = DISPLAY_NAMES[int(labels[index])]
            explained[split] = {"index": index, "class": label, "chosen_as": why}
            for layer, (model, decoder_name) in layer_models.items():
                kind, value = choices[layer]
                z = model.encode(normalize(images[index][None]))
                energy = z.at(layer)[0].pow(2).sum(dim=(1, 2))
                shown = (list(range(CHANNELS[layer])) if kind == "all" else
                         sorted(energy.topk(value).indices.tolist()) if kind == "top" else value)
                explained[split][f"z{layer}"] = explain_image(
                    model, net, images[index], f"{split} image {index} ({label})", layer, shown,
                    decoder_name, out / f"{split}_z{layer}.png")
                print(f"{split} image {index} ({label}), z{layer}: channels {shown}")

        # 4. The explorer: the same network, decoders and channel cards in one offline page.
        explorer_bytes = write_explorer(
            out / "explorer.html", net, refit.deconv1, data.test_images, data.test_labels,
            {"test": {"index": picks["test"][0]},
             "train": {"index": picks["train"][0], "label": int(data.train_labels[picks["train"][0]]),
                       "pixels": data.train_images[picks["train"][0]]}},
            {"channels": channels, "top9": top})
        print(f"wrote {out / 'explorer.html'} ({explorer_bytes / 2 ** 20:.2f} MB); open it in a browser")

        save_json({
            "task": "task3", "checkpoint": str(args.checkpoint),
            "explorer": {"file": "explorer.html", "bytes": explorer_bytes},
            "task2_config": task2.get("config"),
            "layer1_refit": refit_info, "decoders": decoders, "controls": control_results,
            "rules": RULES, "channels": channels,
            "appearance_reference": {"random_patches": RANDOM_PATCHES, "top_k": k,
                                     "seed": args.seed},
            "class_means": {f"z{layer}": [[round(v, 4) for v in row] for row in m.tolist()]
                            for layer, m in class_means.items()},
            "images": explained, "top9": top, "conv1_filters": filters,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "wall_seconds": round(time.perf_counter() - started, 2),
            "data": data.describe(), "environment": environment_info(device),
        }, out / "metrics.json")
        print(f"wrote {out}/: metrics.json and figures")


if __name__ == "__main__":
    run_cli(main)
