"""Null distributions for Task 3's findings: many models where nothing was learned, cheaply.

Naming a channel needs only forward passes and statistics over the test set, so hundreds of
baseline models can be drawn where decoder refits and pictures stay at a few seeds. Per draw the
same rules as the trained model's are applied (findings.channel_roles), on rows computed by
`fast_rows`, a vectorised twin of evidence.channel_table (tests/test_nulls.py checks that the two
agree). Each statistic of the trained model then gets a rank p-value against each null group,

    p = (1 + #{null draws >= trained}) / (1 + draws),

the claim "the trained model shows more of this than every kind of untrained model" the largest
of them (an intersection-union test), and Holm's correction across the tests of one family.
"""
import math
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from data import DISPLAY_NAMES
from models import ARCHITECTURE, Architecture
from study.evidence import EDGE_ANGLES, RANDOM_PATCHES, patch_measures, patches_at
from study.findings import ROLE_KINDS, channel_roles, hue_name

RULE_KINDS = tuple(ROLE_KINDS)
APPEARANCE_D = ("d_saturation", "d_luminance", "d_centre_surround", "d_texture_energy")
RULE_VALUES: dict[str, Callable[[dict], float]] = {
    # the number each rule thresholds, for one channel (larger = stronger claim)
    "class": lambda row: row["top_k_class_share"], "brightness": lambda row: row["r_luminance"],
    "darkness": lambda row: -row["r_luminance"],
    "colour": lambda row: max(abs(row["r_red_green"]), abs(row["r_blue_yellow"])),
    "edge": lambda row: row["r_gradient_energy"], "selective": lambda row: row["class_selectivity"],
    "look": lambda row: max([abs(row[key]) for key in APPEARANCE_D] + [row["d_orientation"]])}


def rule_value(rule: str, row: dict) -> float | None:
    """RULE_VALUES[rule] of the row; None where the rule is undefined for this channel."""
    return None if rule in row.get("undefined", ()) else RULE_VALUES[rule](row)


# --- statistics ---

def rank_p_value(observed: float, null: Sequence[float]) -> float:
    """One-sided rank p-value of `observed` against draws of its null: the share of the draws,
    the observed value counted among them, that reach at least as high (ties count against)."""
    null = list(null)
    return (1 + sum(v >= observed for v in null)) / (1 + len(null))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (monotone, at most 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def smallest_draws(tests: int, alpha: float = 0.05) -> int:
    """Draws a null needs so that a trained value above all of them can pass Holm over `tests`
    tests: 1 / (draws + 1) <= alpha / tests."""
    return math.ceil(tests / alpha) - 1


# --- a vectorised twin of evidence.channel_table ---

class Reference:
    """What every draw shares: the image measures under each receptive field, centred, and the
    appearance of the random reference patches (they depend on the images and the seed only)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, signals: dict[int, dict],
                 layers: Iterable, seed: int, k: int, arch: Architecture = ARCHITECTURE) -> None:
        self.arch = arch
        self.images, self.labels = images.cpu(), labels.cpu()
        self.k = min(k, len(labels))
        self.base = torch.bincount(self.labels, minlength=len(DISPLAY_NAMES)).double() / len(labels)
        self.onehot = torch.nn.functional.one_hot(self.labels, len(DISPLAY_NAMES)).double()
        self.layers = {stage.index: stage for stage in layers}
        self.tests = sum(stage.channels for stage in self.layers.values())
        self.signals, self.random = {}, {}
        for index, stage in self.layers.items():
            names = list(signals[index])
            s = torch.stack([signals[index][n].flatten(1) for n in names], 1).double()  # N, S, P
            s = s - s.mean((0, 2), keepdim=True)
            self.signals[index] = (names, s, s.pow(2).sum((0, 2)).sqrt())
            generator = torch.Generator().manual_seed(seed)  # as evidence.patch_appearance draws
            images_ = torch.randint(0, len(images), (RANDOM_PATCHES,), generator=generator)
            where = torch.randint(0, stage.size * stage.size, (RANDOM_PATCHES,), generator=generator)
            self.random[index] = patch_measures(patches_at(self.images, images_, where, index,
                                                           stage.size, arch))


def _effect_sizes(top: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Cohen's d of each row of top (C, k) against reference (C, R) or (R,), rounded as
    evidence.effect_size rounds it (0 where the pooled deviation is 0)."""
    top, reference = top.double(), reference.double()
    reference = reference.expand(len(top), -1) if reference.dim() == 1 else reference
    k, n = top.shape[1], reference.shape[1]
    pooled = (((k - 1) * top.var(1) + (n - 1) * reference.var(1)) / (k + n - 2)).sqrt()
    d = (top.mean(1) - reference.mean(1)) / pooled
    return torch.where(pooled > 0, torch.round(d * 100) / 100, torch.zeros_like(d))


def _weighted_angles(angles: torch.Tensor, weights: torch.Tensor, period: float):
    """Row-wise circular mean (degrees, [0, period)) and resultant length of weighted angles."""
    radians = torch.deg2rad(angles.double()) * (360 / period)
    w = weights.double()
    x, y = (w * radians.cos()).sum(1), (w * radians.sin()).sum(1)
    mean = (torch.rad2deg(torch.atan2(y, x)) * period / 360) % period
    return mean, torch.hypot(x, y) / w.sum(1).clamp_min(1e-12)


@torch.no_grad()
def fast_rows(z: torch.Tensor, layer: int, ref: Reference) -> list[dict]:
    """evidence.channel_table's row of every channel of one layer's maps z (N, C, H, W), with
    the keys the rules read, plus "images_active", "undefined" and "rules" as
    baselines.name_channels adds them: vectorised over channels and patches."""
    from scipy.stats import binom

    stage = ref.layers[layer]
    z = z.cpu()
    n, channels = z.shape[:2]
    flat = z.flatten(2).double()
    centred = flat - flat.mean((0, 2), keepdim=True)
    names, signals, signal_norms = ref.signals[layer]
    numerator = torch.einsum("ncp,nsp->cs", centred, signals)
    denominator = centred.pow(2).sum((0, 2)).sqrt()[:, None] * signal_norms[None]
    r = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))
    r = torch.round(r * 1000) / 1000
    spatial = z.double().mean((2, 3))  # N, C
    class_means = (ref.onehot.T @ spatial / ref.onehot.sum(0)[:, None]).T  # C, classes
    peaks, positions = z.flatten(2).max(2)  # N, C
    k = ref.k
    winners = peaks.topk(k, dim=0).indices  # k, C
    counts = ref.onehot[winners].sum(0)  # C, classes
    top_counts, top_classes = counts.max(1)
    p = binom.sf(top_counts.numpy() - 1, k, ref.base[top_classes].numpy())
    # the top-k receptive-field patches of every channel at once
    chosen = winners.T.flatten()  # C*k, channel-major
    where = positions[chosen, torch.arange(channels).repeat_interleave(k)]
    size, stride, offset = stage.receptive_field, stage.stride, stage.offset
    # fields of a padded network reach past the border: cut them from zero-padded images
    images = F.pad(ref.images, (offset, size, offset, size)) if offset else ref.images
    tops, lefts = (where // stage.size) * stride, (where % stage.size) * stride
    span = torch.arange(size)
    rows_ = (tops[:, None] + span)[:, None, :, None]
    cols_ = (lefts[:, None] + span)[:, None, None, :]
    patches = images[chosen[:, None, None, None], torch.arange(3)[None, :, None, None],
                     rows_, cols_].float() / 255
    top = {key: value.view(channels, k) for key, value in patch_measures(patches).items()}
    random = ref.random[layer]
    hue, hue_consistency = _weighted_angles(top["hue_deg"], top["saturation"], 360)
    exact_axis, orientation_consistency = _weighted_angles(top["orientation_deg"],
                                                           top["coherence"], 180)

    def alignment(m: dict, axis: torch.Tensor) -> torch.Tensor:
        return m["coherence"] * torch.cos(2 * torch.deg2rad(m["orientation_deg"] - axis[:, None].float()))
    d = {key: _effect_sizes(top[key], random[key])
         for key in ("saturation", "luminance", "centre_surround", "texture_energy")}
    rows = []
    d_orientation = _effect_sizes(alignment(top, exact_axis), alignment(
        {key: random[key][None].expand(channels, -1) for key in ("coherence", "orientation_deg")},
        exact_axis))
    active = (peaks > 0).sum(0)
    for c in range(channels):
        edge = {angle: float(r[c, names.index(f"edge_{angle}")]) for angle in EDGE_ANGLES}
        best = max(edge, key=edge.get)
        means = class_means[c]
        top_class = int(means.argmax())
        others = torch.cat([means[:top_class], means[top_class + 1:]]).mean()
        selectivity = float((means[top_class] - others) / (means[top_class] + others)) \
            if means[top_class] > 0 else 0.0
        share = round(100 * int(top_counts[c]) / k, 1)
        row = {
            "channel": c, "r_luminance": float(r[c, names.index("luminance")]),
            "r_red_green": float(r[c, names.index("red_green")]),
            "r_blue_yellow": float(r[c, names.index("blue_yellow")]),
            "r_gradient_energy": float(r[c, names.index("gradient_energy")]),
            "r_edge_by_angle": {str(a): v for a, v in edge.items()}, "preferred_edge_deg": best,
            "orientation_spread": round(max(edge.values()) - min(edge.values()), 3),
            "top_class": DISPLAY_NAMES[top_class], "class_selectivity": round(selectivity, 3),
            "top_k": k, "top_k_classes": {name: round(100 * float(v) / k, 1)
                                          for name, v in zip(DISPLAY_NAMES, counts[c])},
            "top_k_class": DISPLAY_NAMES[int(top_classes[c])], "top_k_class_share": share,
            "top_k_class_base_rate": round(100 * float(ref.base[top_classes[c]]), 1),
            "top_k_class_p_bonferroni": float(f"{min(1.0, float(p[c]) * ref.tests):.3g}"),
            "d_saturation": float(d["saturation"][c]), "hue_deg": round(float(hue[c])),
            "hue_name": hue_name(float(hue[c])),
            "hue_consistency": round(float(hue_consistency[c]), 3),
            "d_luminance": float(d["luminance"][c]),
            "d_centre_surround": float(d["centre_surround"][c]),
            "d_texture_energy": float(d["texture_energy"][c]),
            "orientation_deg": round(float(exact_axis[c])),
            "orientation_consistency": round(float(orientation_consistency[c]), 3),
            "d_orientation": float(d_orientation[c]), "images_active": int(active[c])}
        row["undefined"] = ((["class", "look"] if row["images_active"] < k else [])
                            + (["selective"] if float(means.min()) < 0 else []))
        kinds = sorted({role["kind"] for role, _ in channel_roles(row)})
        row["rules"] = [kind for kind in kinds if kind not in row["undefined"]]
        rows.append(row)
    return rows


def layer_summary(rows: list[dict]) -> dict:
    """What one draw contributes to the nulls of one layer: per rule the channels it names
    ("count"), the mean of the rule's value over the channels where it is defined ("mean", the
    continuous statistic) and every channel's value ("values", None where undefined)."""
    out = {}
    for rule in RULE_KINDS:
        values = [rule_value(rule, row) for row in rows]
        defined = [v for v in values if v is not None]
        out[rule] = {"count": sum(rule in row["rules"] for row in rows),
                     "mean": sum(defined) / len(defined) if defined else None, "values": values}
    return out
