"""What each latent channel responds to, measured over the test set (no drawing here).

Per channel: correlations with image measures under its receptive field, mean activation per
class, the class make-up of its K strongest test images and how their patches look against
random patches (the projections back to pixels are in study/analysis/projections.py). Receptive fields
come from the network's architecture (models.ARCHITECTURE by default).

Padded networks: a unit's field starts `offset` pixels before the image (models.ConvLayer) and
may reach past the border. Measures under a field average the pixels of the image inside it;
patches and projection crops are cut from the image padded with zeros (black), so every patch
has the field's full size; boxes drawn on a figure are clipped to the image (`clip_box`).
"""
import math

import torch
import torch.nn.functional as F

from data import DISPLAY_NAMES, batches, normalize
from models import ARCHITECTURE, Architecture, DeconvNet
from study.analysis.findings import hue_name

EDGE_ANGLES = (0, 45, 90, 135)  # edge orientation, degrees counter-clockwise from horizontal
TOP_K = 100  # strongest test images per channel for the class make-up and patch appearance
RANDOM_PATCHES = 2000  # the reference the strongest patches are compared with


# --- every channel over the test set ---

def local_signals(images_u8: torch.Tensor, layer: int,
                  arch: Architecture = ARCHITECTURE) -> dict[str, torch.Tensor]:
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
    stage = arch.layer(layer)
    return {name: field_average(m, stage)[:, 0] for name, m in maps.items()}


def field_average(maps: torch.Tensor, stage) -> torch.Tensor:
    """(N, 1, size, size): the average of each (N, 1, H, W) map over every unit's receptive
    field, counting only the pixels inside the image (a padded net's border units see fewer).

    The maps are zero-padded by the offset before the first pixel and as far as the last unit's
    field reaches after the last one, so that avg_pool2d yields one value per unit; dividing by
    the same pooling of a mask of ones turns the padded sums into averages of real pixels.
    Without padding (offset 0, fields inside the image) this is avg_pool2d itself.
    """
    size, field, stride, before = stage.size, stage.receptive_field, stage.stride, stage.offset
    height = maps.shape[-1]
    after = max(0, (size - 1) * stride + field - before - height)
    if before == 0 and after == 0:
        return F.avg_pool2d(maps, field, stride)[..., :size, :size]
    padding = (before, after, before, after)
    sums = F.avg_pool2d(F.pad(maps, padding), field, stride)[..., :size, :size]
    inside = F.avg_pool2d(F.pad(torch.ones_like(maps[:1]), padding), field, stride)[..., :size, :size]
    return sums / inside


def arch_of(encoder) -> Architecture:
    """The architecture of a network, or the tutorial's for an encoder that carries none (a
    stand-in that replays precomputed latents)."""
    return getattr(encoder, "arch", ARCHITECTURE)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.norm() * b.norm()).item()
    return (a @ b).item() / denominator if denominator > 0 else 0.0


@torch.no_grad()
def channel_statistics(net: DeconvNet, images: torch.Tensor, labels: torch.Tensor, layer: int,
                       signals: dict[str, torch.Tensor] | None = None
                       ) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Per channel: correlations with local image measures, class means, sparsity.

    Returns (rows, activations (N, C, H, W), class means (C, 10)).
    """
    activations = []
    for images_u8, _ in batches(images, labels, 1000):
        latents = net.encode(normalize(images_u8))
        activations.append(latents.at(layer).cpu())
    z = torch.cat(activations)
    # the image measures depend on the images only: a caller reading many models passes them once
    signals = signals if signals is not None else local_signals(images.cpu(), layer, arch_of(net))
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


def strongest_units(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A channel's strength on an image: the largest value of its pooled map over positions.

    z (N, C, H, W) -> (peaks (N, C), flat positions (N, C) of those peaks, row-major).
    """
    return z.flatten(2).max(2)


def receptive_box(layer: int, position: int, width: int,
                  arch: Architecture = ARCHITECTURE) -> tuple[int, int, int]:
    """(top, left, size) in pixels of the receptive field of the unit at flat `position`; in a
    padded net top and left may be negative and the box may end past the image."""
    stage = arch.layer(layer)
    size, stride, offset = stage.receptive_field, stage.stride, stage.offset
    return (position // width) * stride - offset, (position % width) * stride - offset, size


def clip_box(box: tuple[int, int, int], image_size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a receptive box's part inside the image: what a figure
    draws (a field reaching past the border would otherwise be drawn outside the picture)."""
    top, left, size = box
    t, l = max(top, 0), max(left, 0)
    return t, l, max(0, min(top + size, image_size) - t), max(0, min(left + size, image_size) - l)


def crop(image: torch.Tensor, box: tuple[int, int, int]) -> torch.Tensor:
    """(C, s, s): the part of a (C, H, W) tensor under a receptive box, zeros where the box
    reaches past the border."""
    top, left, size = box
    height, width = image.shape[-2:]
    if top >= 0 and left >= 0 and top + size <= height and left + size <= width:
        return image[:, top:top + size, left:left + size]
    out = torch.zeros(image.shape[0], size, size, dtype=image.dtype, device=image.device)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + size, height), min(left + size, width)
    if t1 > t0 and l1 > l0:
        out[:, t0 - top:t1 - top, l0 - left:l1 - left] = image[:, t0:t1, l0:l1]
    return out


def class_makeup(peaks: torch.Tensor, labels: torch.Tensor, k: int, tests: int) -> list[dict]:
    """Per channel: the class shares (%) of its k strongest test images, and a binomial test.

    The largest share is tested (one-sided, exact) against that class's share of the whole test
    set, Bonferroni-corrected over `tests` channels.
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
               layer: int, width: int, arch: Architecture = ARCHITECTURE) -> torch.Tensor:
    """The receptive-field patches (N, 3, s, s) in [0, 1] of the units at flat `positions`."""
    boxes = [receptive_box(layer, int(p), width, arch) for p in positions]
    return torch.stack([crop(images_u8[int(i)], box)
                        for i, box in zip(indices, boxes)]).float().cpu() / 255


def patch_appearance(images_u8: torch.Tensor, peaks: torch.Tensor, positions: torch.Tensor,
                     layer: int, k: int, seed: int, *, n_random: int = RANDOM_PATCHES,
                     arch: Architecture = ARCHITECTURE) -> list[dict]:
    """Per channel: how its k strongest patches differ from random patches of the same layer.

    Each measure of `patch_measures` as an effect size (Cohen's d) against random receptive
    fields (seeded random image and position); hue as the saturation-weighted circular mean of
    the k patches with its consistency; orientation as the coherence-weighted axial mean with
    its consistency, and as the effect size of each patch's alignment with it.
    """
    width = arch.layer(layer).size  # the side of the layer's maps
    generator = torch.Generator().manual_seed(seed)
    random_images = torch.randint(0, len(images_u8), (n_random,), generator=generator)
    random_positions = torch.randint(0, width * width, (n_random,), generator=generator)
    reference = patch_measures(patches_at(images_u8, random_images, random_positions, layer, width,
                                          arch))
    rows = []
    for c in range(peaks.shape[1]):
        winners = peaks[:, c].topk(k).indices
        top = patch_measures(patches_at(images_u8, winners, positions[winners, c], layer, width, arch))
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


def conv1_filter_stats(net: DeconvNet) -> list[dict]:
    """Per first-layer filter: the share of its weight energy in differences between R, G, B."""
    weights = net.conv1.weight.detach().cpu()
    return [{"filter": c, "colour_share": round(
        ((w - w.mean(0)).pow(2).sum() / w.pow(2).sum()).item(), 3)} for c, w in enumerate(weights)]


def channel_table(net: DeconvNet, images: torch.Tensor, labels: torch.Tensor, seed: int,
                  k: int = TOP_K, signals: dict[int, dict[str, torch.Tensor]] | None = None
                  ) -> tuple[dict[int, list[dict]], dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Every statistic of every channel of both layers, one row per channel (no words yet).

    Returns (rows per layer, activations (N, C, H, W) per layer, class means (C, classes) per
    layer). The class test is Bonferroni-corrected over the channels of both layers. `signals`:
    local_signals of these images per layer, if already computed.
    """
    rows, activations, class_means = {}, {}, {}
    k = min(k, len(labels))
    arch = arch_of(net)
    tests = sum(stage.channels for stage in arch.layers)
    for stage in arch.layers:
        layer = stage.index
        rows[layer], activations[layer], class_means[layer] = channel_statistics(
            net, images, labels, layer, (signals or {}).get(layer))
        peaks, positions = strongest_units(activations[layer])
        makeup = class_makeup(peaks, labels, k, tests=tests)
        looks = patch_appearance(images, peaks, positions, layer, k, seed, arch=arch)
        for row, classes, look in zip(rows[layer], makeup, looks):
            row.update(classes, **look)
    return rows, activations, class_means
