"""Null distributions for Task 3's findings: many models where nothing was learned, cheaply.

Naming a channel needs only forward passes and statistics over the test set, so hundreds of
baseline models can be drawn where decoder refits and pictures stay at a few seeds. Per draw the
same rules as the trained model's are applied (findings.channel_roles), on rows computed by
`fast_rows`, a vectorised twin of evidence.channel_table (tests/test_nulls.py checks that the two
agree). Each statistic of the trained model then gets a rank p-value against each null group,

    p = (1 + #{null draws >= trained}) / (1 + draws),

and two questions are answered apart, each with Holm's correction across the tests of a family:

- "learned" (did training make this?): the trained model against networks that learned
  nothing, every stage of cascading re-initialisation; its p is the largest over those groups
  (an intersection-union test: the pattern must beat every kind of random network);
- "single_channel" (is it a property of single channels rather than of the layer?): the trained
  channels against random rotations of the same trained layer, which keep everything the layer
  holds but mix its channels.

The combined "p_value" / "p_holm" / "survives" (the largest over every group) is what a channel's
words keep: a description is kept only when it was learned and belongs to the channel.
"""
import math
import statistics
import time
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from data import CIFAR10, DISPLAY_NAMES, normalize
from models import ARCHITECTURE, Architecture, DeconvNet
from study.analysis import evidence
from study.analysis.evidence import EDGE_ANGLES, RANDOM_PATCHES, TOP_K, patch_measures, patches_at
from study.analysis.findings import ROLE_KINDS, channel_roles, hue_name
from study.analysis.random_models import (baseline_seeds, cascades, changed_layers, random_rotation,
                                          reinitialised, rotate)

RULE_KINDS = tuple(ROLE_KINDS)
PATCH_CHUNK = 4096  # receptive-field patches measured at once (deep4's z4: 25 MB of pixels)
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
        # patch_measures of every (image, unit position) met so far, per layer: a patch's
        # measures depend on that patch alone, and the strongest images of hundreds of draws
        # keep returning to the same few thousand patches (deep4's z4 has 8,000 in 2,000 images
        # against 25,600 top-k patches a draw)
        self._measured: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]] = {}

    def top_patch_measures(self, layer: int, images: torch.Tensor,
                           positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """patch_measures of the receptive fields of layer `layer` at flat unit `positions` of
        test `images` (two index tensors of one length), each patch measured once per run."""
        stage = self.layers[layer]
        units = stage.size * stage.size
        if layer not in self._measured:
            # fields of a padded network reach past the border: cut them from zero-padded images
            size, offset = stage.receptive_field, stage.offset
            padded = F.pad(self.images, (offset, size, offset, size)) if offset else self.images
            self._measured[layer] = (torch.zeros(len(self.labels) * units, dtype=torch.bool), {},
                                     padded)
        done, values, padded = self._measured[layer]
        keys = images * units + positions
        missing = keys.unique()
        missing = missing[~done[missing]]
        for chunk in missing.split(PATCH_CHUNK) if len(missing) else ():
            measured = patch_measures(_patches(stage, padded, chunk // units, chunk % units))
            for name, value in measured.items():
                values.setdefault(name, torch.zeros(len(done), dtype=value.dtype))[chunk] = value
            done[chunk] = True
        return {name: value[keys] for name, value in values.items()}


def _patches(stage, padded: torch.Tensor, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The receptive-field patches (n, 3, s, s) in [0, 1] of a layer's units at flat positions
    of the given images, cut from the images as padded for that layer (Reference)."""
    size, stride = stage.receptive_field, stage.stride
    tops, lefts = (positions // stage.size) * stride, (positions % stage.size) * stride
    span = torch.arange(size)
    rows_ = (tops[:, None] + span)[:, None, :, None]
    cols_ = (lefts[:, None] + span)[:, None, None, :]
    return padded[images[:, None, None, None], torch.arange(3)[None, :, None, None],
                  rows_, cols_].float() / 255


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
    z = z.cpu()
    r = _signal_correlations(z, layer, ref)
    classes = _class_statistics(z, ref)
    looks = _top_patch_looks(z, layer, ref, classes)
    return [_fast_row(c, r, classes, looks, ref) for c in range(z.shape[1])]


def _signal_correlations(z: torch.Tensor, layer: int, ref: Reference) -> dict[str, torch.Tensor]:
    """Each channel's Pearson r (3 decimals) with every local signal of the rule images:
    {signal name: (C,)}."""
    flat = z.flatten(2).double()
    centred = flat - flat.mean((0, 2), keepdim=True)
    names, signals, signal_norms = ref.signals[layer]
    numerator = torch.einsum("ncp,nsp->cs", centred, signals)
    denominator = centred.pow(2).sum((0, 2)).sqrt()[:, None] * signal_norms[None]
    r = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))
    r = torch.round(r * 1000) / 1000
    return {name: r[:, k] for k, name in enumerate(names)}


def _class_statistics(z: torch.Tensor, ref: Reference) -> dict[str, torch.Tensor]:
    """Per channel: its mean per class, its peak and where on every image, its k strongest
    images, their class counts, the top class and its binomial tail p, and how many images
    it is active on."""
    from scipy.stats import binom

    spatial = z.double().mean((2, 3))  # N, C
    peaks, positions = z.flatten(2).max(2)  # N, C
    winners = peaks.topk(ref.k, dim=0).indices  # k, C
    counts = ref.onehot[winners].sum(0)  # C, classes
    top_counts, top_classes = counts.max(1)
    return {"class_means": (ref.onehot.T @ spatial / ref.onehot.sum(0)[:, None]).T,  # C, classes
            "positions": positions, "winners": winners, "counts": counts,
            "top_counts": top_counts, "top_classes": top_classes,
            "p": torch.from_numpy(binom.sf(top_counts.numpy() - 1, ref.k,
                                           ref.base[top_classes].numpy())),
            "active": (peaks > 0).sum(0)}


def _top_patch_looks(z: torch.Tensor, layer: int, ref: Reference, classes: dict) -> dict:
    """The appearance of the top-k receptive-field patches of every channel at once, against
    the random patches: hue and orientation (and how consistent), and the effect sizes d."""
    channels, k = z.shape[1], ref.k
    chosen = classes["winners"].T.flatten()  # C*k, channel-major
    where = classes["positions"][chosen, torch.arange(channels).repeat_interleave(k)]
    top = {key: value.view(channels, k)
           for key, value in ref.top_patch_measures(layer, chosen, where).items()}
    random = ref.random[layer]
    hue, hue_consistency = _weighted_angles(top["hue_deg"], top["saturation"], 360)
    axis, orientation_consistency = _weighted_angles(top["orientation_deg"], top["coherence"], 180)

    def alignment(m: dict) -> torch.Tensor:
        return m["coherence"] * torch.cos(2 * torch.deg2rad(m["orientation_deg"] - axis[:, None].float()))
    return {"hue": hue, "hue_consistency": hue_consistency, "orientation": axis,
            "orientation_consistency": orientation_consistency,
            **{key: _effect_sizes(top[key], random[key])
               for key in ("saturation", "luminance", "centre_surround", "texture_energy")},
            "orientation_d": _effect_sizes(alignment(top), alignment(
                {key: random[key][None].expand(channels, -1)
                 for key in ("coherence", "orientation_deg")}))}


def _fast_row(c: int, r: dict, classes: dict, looks: dict, ref: Reference) -> dict:
    """Channel c's row, with the keys and rounding of evidence.channel_table's."""
    k = ref.k
    edge = {angle: float(r[f"edge_{angle}"][c]) for angle in EDGE_ANGLES}
    means = classes["class_means"][c]
    top_class, top = int(means.argmax()), int(classes["top_classes"][c])
    others = torch.cat([means[:top_class], means[top_class + 1:]]).mean()
    selectivity = float((means[top_class] - others) / (means[top_class] + others)) \
        if means[top_class] > 0 else 0.0
    hue = float(looks["hue"][c])
    row = {
        "channel": c, "r_luminance": float(r["luminance"][c]),
        "r_red_green": float(r["red_green"][c]), "r_blue_yellow": float(r["blue_yellow"][c]),
        "r_gradient_energy": float(r["gradient_energy"][c]),
        "r_edge_by_angle": {str(a): v for a, v in edge.items()},
        "preferred_edge_deg": max(edge, key=edge.get),
        "orientation_spread": round(max(edge.values()) - min(edge.values()), 3),
        "top_class": DISPLAY_NAMES[top_class], "class_selectivity": round(selectivity, 3),
        "top_k": k, "top_k_classes": {name: round(100 * float(v) / k, 1)
                                      for name, v in zip(DISPLAY_NAMES, classes["counts"][c])},
        "top_k_class": DISPLAY_NAMES[top],
        "top_k_class_share": round(100 * int(classes["top_counts"][c]) / k, 1),
        "top_k_class_base_rate": round(100 * float(ref.base[top]), 1),
        "top_k_class_p_bonferroni": float(f"{min(1.0, float(classes['p'][c]) * ref.tests):.3g}"),
        "d_saturation": float(looks["saturation"][c]), "hue_deg": round(hue),
        "hue_name": hue_name(hue), "hue_consistency": round(float(looks["hue_consistency"][c]), 3),
        "d_luminance": float(looks["luminance"][c]),
        "d_centre_surround": float(looks["centre_surround"][c]),
        "d_texture_energy": float(looks["texture_energy"][c]),
        "orientation_deg": round(float(looks["orientation"][c])),
        "orientation_consistency": round(float(looks["orientation_consistency"][c]), 3),
        "d_orientation": float(looks["orientation_d"][c]),
        "images_active": int(classes["active"][c])}
    row["undefined"] = ((["class", "look"] if row["images_active"] < k else [])
                        + (["selective"] if float(means.min()) < 0 else []))
    kinds = sorted({role["kind"] for role, _ in channel_roles(row)})
    row["rules"] = [kind for kind in kinds if kind not in row["undefined"]]
    return row


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


# --- null distributions of the rules: many models, forward passes only ---

NULL_DRAWS = 999  # per group: the smallest p is 1/1000; Holm's first step over 14 tests (0.0036)
# then lets a trained count pass with up to two draws at or above it
NULL_IMAGES = 2000  # test images (a seeded choice, rule_images) every rule is read on: Task 3's
# channel table and every null draw alike, so each count is one measurement on one image set
NULL_GROUPS = (*cascades(ARCHITECTURE), "rotation")  # the tutorial's groups with many draws: the verdicts' nulls


def null_group_names(arch: Architecture) -> tuple[str, ...]:
    """The groups with many draws, the verdicts' nulls: every cascade stage, and rotations."""
    return (*cascades(arch), "rotation")
ALPHA = 0.05
# The two questions the nulls answer, and the groups each reads (see the module docstring).
QUESTIONS = ("learned", "single_channel")


def question_groups(question: str, groups: Iterable[str]) -> list[str]:
    """The null groups that answer `question`, among a test's `groups`."""
    return [g for g in groups if (g == "rotation") == (question == "single_channel")]


def answer_questions(family: list[dict]) -> None:
    """Add to each test of a family (dicts with "p": {group: rank p}) its answer to each
    question: the p over that question's groups (the largest; 1 where the test has none of
    them), Holm-corrected over the family, and whether it survives at ALPHA."""
    for question in QUESTIONS:
        raw = [max((t["p"][g] for g in question_groups(question, t["p"])), default=1.0)
               for t in family]
        for test, p, adjusted in zip(family, raw, holm(raw)):
            test.setdefault("questions", {})[question] = {
                "p_value": round(p, 5), "p_holm": round(adjusted, 5), "survives": adjusted < ALPHA}


def bonferroni(p: float, tests: int) -> float:
    """A p-value corrected for `tests` tests by Bonferroni (Holm's first step), at most 1."""
    return round(min(1.0, p * tests), 5)


def detectable(null: Sequence[float], alpha: float) -> float | None:
    """The smallest whole value that would reach a rank p <= alpha against these draws (None:
    none can, the draws are too few): the test's power, in the statistic's own units."""
    allowed = math.floor(alpha * (1 + len(null))) - 1  # draws that may reach the value
    if allowed < 0:
        return None
    ranked = sorted(null, reverse=True)
    return math.floor(ranked[allowed]) + 1 if allowed < len(ranked) else 0


def null_groups(layer: int, arch: Architecture = ARCHITECTURE) -> tuple[str, ...]:
    """The null groups that change a layer: re-initialising conv2 leaves z1 as trained."""
    return tuple(g for g in null_group_names(arch)
                 if g == "rotation" or layer in changed_layers(g, arch))


def rule_images(test_images: int, images: int = NULL_IMAGES, seed: int = 0) -> torch.Tensor:
    """The indices (sorted) of the test images every rule of Task 3 is read on, for the trained
    model and every null draw: `images` of the `test_images` chosen at random with `seed`."""
    order = torch.randperm(test_images, generator=torch.Generator().manual_seed(seed + 1))
    return order[:min(images, test_images)].sort().values


@torch.no_grad()
def _null_latents(model: DeconvNet, x: torch.Tensor, below: torch.Tensor | None = None,
                  first: int = 1) -> dict[int, torch.Tensor]:
    """The pooled maps of stages `first` and up, on the CPU: the encoder's computation without
    the switches (the rules read maps only). `below`: the map stage `first` reads (stage
    first-1's, on x's device) where first > 1. A cascade re-initialises the stages from the top
    down, so the stages under its first changed one compute the trained maps: starting there
    gives the same maps as the whole encoder, at a fraction of the cost (deep4's first stage
    alone is about half of it)."""
    h = x if first == 1 else below
    maps = {}
    for stage in model.arch.layers[first - 1:]:
        h = F.max_pool2d(F.relu(model.pre_activation(stage, h)), stage.pool, stage.pool)
        maps[stage.index] = h.cpu()
    return maps


def _test(observed: float | None, nulls_by_group: dict[str, list]) -> dict:
    """Rank p-value of `observed` against each group's draws (None values left out) and the
    largest of them, the p-value of 'above every kind of null' (intersection-union)."""
    p = {}
    for group, values in nulls_by_group.items():
        values = [v for v in values if v is not None]
        p[group] = 1.0 if observed is None or not values else rank_p_value(observed, values)
    return {"p": {g: round(v, 5) for g, v in p.items()}, "p_value": max(p.values(), default=1.0)}


def _describe(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"draws": 0}
    mean, sd = mean_sd(values)
    return {"draws": len(values), "mean": round(mean, 3), "sd": round(sd, 3),
            "max": round(max(values), 3), "q95": round(sorted(values)[int(0.95 * (len(values) - 1))], 3)}


def null_distributions(net: DeconvNet, data: CIFAR10, training_seed: int, trained_rows: dict,
                       *, permuted: DeconvNet | None = None, draws: int = NULL_DRAWS,
                       images: int = NULL_IMAGES, seed: int = 0) -> dict:
    """Every rule of Task 3 against its null distribution (the "rules" block of metrics.json).

    Draws `draws` re-initialisations per cascade stage and `draws` Haar-random rotations of the
    trained latents (Bau et al.), and reads every rule on the same `images` test images for the
    trained model and every draw (fast_rows). trained_rows: {layer: Task 3's rows of the
    trained model on the whole test set}; a channel's claims are the rules it meets there.

    Three families of tests, each Holm-corrected, each test's p the largest over NULL_GROUPS:
    "counts" (per layer and rule, the channels named; the continuous statistic, the rule's mean
    value over the layer's channels, is tested beside it as its own family), "class_share" (each
    channel's top-class share against every channel of the null draws of its layer) and "claims"
    (every other rule a channel meets, its value against the same pooled null). The permuted-
    labels model is one run: it is described, never tested against.
    """
    started = time.perf_counter()
    layers = net.arch.layers
    chosen = rule_images(len(data.test_labels), images, seed)
    x_u8, labels = data.test_images.cpu()[chosen], data.test_labels.cpu()[chosen]
    signals = {s.index: evidence.local_signals(x_u8, s.index, net.arch) for s in layers}
    ref = Reference(x_u8, labels, signals, layers, seed, TOP_K, net.arch)
    x = normalize(x_u8.to(next(net.parameters()).device))

    def summary(z: dict[int, torch.Tensor], only: Iterable[int] | None = None) -> dict:
        return {s.index: layer_summary(fast_rows(z[s.index], s.index, ref))
                for s in layers if only is None or s.index in only}

    trained_z = _null_latents(net, x)
    trained = {s.index: fast_rows(trained_z[s.index], s.index, ref) for s in layers}
    sampled, seconds = _draw_nulls(net, x, trained_z, training_seed, draws, summary)
    permuted_summary = (summary(_null_latents(permuted.eval(), x)) if permuted is not None else None)
    result, families = {}, {"counts": [], "mean_statistic": [], "class_share": [], "claims": []}
    for stage in layers:
        result[stage.name] = _layer_tests(stage, net.arch, trained[stage.index],
                                          trained_rows[stage.index], sampled, permuted_summary,
                                          families)
    _correct(families, sum(s.channels for s in layers) * (len(RULE_KINDS) - 1))
    for layer_block in result.values():  # the names older readers look for
        for entry in layer_block["counts"].values():
            entry["evidence_of_learning"] = entry["survives"]
    return {**result, "protocol": _protocol(net.arch, draws, len(chosen), families),
            "seconds": {**seconds, "total": round(time.perf_counter() - started, 2)}}


def _draw_nulls(net: DeconvNet, x: torch.Tensor, trained_z: dict, training_seed: int,
                draws: int, summary: Callable) -> tuple[dict[str, list[dict]], dict]:
    """`draws` summaries per null group: re-initialisations per cascade step (from its first
    re-initialised stage up, on the trained map below it), and Haar-random rotations of the
    trained latents. Returns ({group: [summary per draw]}, {group: seconds})."""
    layers = net.arch.layers
    trained_on_device = {layer: z.to(x.device) for layer, z in trained_z.items()}
    sampled: dict[str, list[dict]] = {g: [] for g in null_group_names(net.arch)}
    seconds = {}
    for cascade in cascades(net.arch):
        clock = time.perf_counter()
        changed = [s.index for s in layers if s.index in changed_layers(cascade, net.arch)]
        first = min(changed)
        for s in baseline_seeds(training_seed, draws):
            sampled[cascade].append(summary(_null_latents(
                reinitialised(net, cascade, s, training_seed), x, trained_on_device.get(first - 1),
                first), changed))
        seconds[cascade] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    for r in range(draws):
        generator = torch.Generator().manual_seed(r)
        q = {s.index: random_rotation(s.channels, generator) for s in layers}
        sampled["rotation"].append(summary({layer: rotate(z, q[layer]) for layer, z in trained_z.items()}))
    seconds["rotation"] = round(time.perf_counter() - clock, 2)
    return sampled, seconds


def _layer_tests(stage, arch, trained: list[dict], trained_rows: list[dict], sampled: dict,
                 permuted_summary: dict | None, families: dict[str, list]) -> dict:
    """One layer's tests against its nulls (each test also appended to its family in
    `families`, for Holm): per rule the count and the mean statistic; per channel its top-class
    share and every other claim it makes."""
    layer, groups = stage.index, null_groups(stage.index, arch)
    mine_summary = layer_summary(trained)

    def pooled(rule: str, group: str) -> list:
        return [v for d in sampled[group] for v in d[layer][rule]["values"] if v is not None]

    counts = {}
    for rule in RULE_KINDS:
        mine = mine_summary[rule]
        entry = {"trained": mine["count"], "channels": stage.channels, "baselines": {}}
        for g in groups:
            values = [d[layer][rule]["count"] for d in sampled[g]]
            entry["baselines"][g] = {**_describe(values), "counts": values}
        if permuted_summary is not None:
            entry["baselines"]["permuted_labels"] = {
                "draws": 1, "mean": permuted_summary[layer][rule]["count"],
                "counts": [permuted_summary[layer][rule]["count"]]}
        entry.update(_test(mine["count"], {g: [d[layer][rule]["count"] for d in sampled[g]]
                                           for g in groups}))
        mean_stat = {"trained": None if mine["mean"] is None else round(mine["mean"], 3),
                     "baselines": {g: _describe([d[layer][rule]["mean"] for d in sampled[g]])
                                   for g in groups},
                     **_test(mine["mean"], {g: [d[layer][rule]["mean"] for d in sampled[g]]
                                            for g in groups})}
        if permuted_summary is not None and permuted_summary[layer][rule]["mean"] is not None:
            mean_stat["baselines"]["permuted_labels"] = {
                "draws": 1, "mean": round(permuted_summary[layer][rule]["mean"], 3)}
        entry["mean_statistic"] = mean_stat
        counts[rule] = entry
        families["counts"].append(entry)
        families["mean_statistic"].append(mean_stat)
    channels = []
    for row, fast in zip(trained_rows, trained):
        share = {"rule": "class", "value": rule_value("class", fast),
                 **_test(rule_value("class", fast), {g: pooled("class", g) for g in groups})}
        families["class_share"].append(share)
        claims = []
        for kind in (role["kind"] for role in row["roles"]):
            if kind == "class" or kind in (c["rule"] for c in claims):
                continue
            value = rule_value(kind, fast)
            claim = {"rule": kind, "value": None if value is None else round(value, 3),
                     **_test(value, {g: pooled(kind, g) for g in groups})}
            claims.append(claim)
            families["claims"].append(claim)
        channels.append({"channel": row["channel"], "class_share": share, "claims": claims})
    return {"counts": counts, "channels": channels}


def _correct(families: dict[str, list], possible: int) -> None:
    """Holm per family, both questions answered; for the claims, Bonferroni over every channel x
    description pair (`possible`) as a sensitivity bound; for the counts, the power of Holm's
    first step (the smallest count that would pass)."""
    for family in families.values():
        for test, adjusted in zip(family, holm([t["p_value"] for t in family])):
            test["p_value"] = round(test["p_value"], 5)
            test["p_holm"] = round(adjusted, 5)
            test["survives"] = adjusted < ALPHA
        answer_questions(family)
    # Sensitivity of the claims family: it holds only the descriptions the rules gave, chosen on
    # the same images; Bonferroni over every channel x description pair they could have given
    # (Holm's first step over that larger family) bounds what a family fixed in advance allows.
    for test in families["claims"]:
        for verdict in test["questions"].values():
            verdict["p_every_pair"] = bonferroni(verdict["p_value"], possible)
    count_tests = families["counts"]
    for entry in count_tests:  # power: the count each question's first Holm step would need
        for question in QUESTIONS:
            needed = [detectable(entry["baselines"][g]["counts"], ALPHA / len(count_tests))
                      for g in question_groups(question, entry["p"])]
            entry["questions"][question]["detectable_count"] = (
                None if not needed or None in needed else max(needed))


def _protocol(arch, draws: int, images: int, families: dict[str, list]) -> dict:
    """How the nulls were drawn and tested, as metrics.json records it."""
    counts = len(families["counts"])
    return {
        "draws": draws, "images": images,
        "groups": {s.name: list(null_groups(s.index, arch)) for s in arch.layers},
        "alpha": ALPHA, "smallest_p": round(1 / (draws + 1), 5),
        # power of the count family: Holm's first step, and the draws that may reach a count
        # that passes it
        "count_first_step": round(ALPHA / max(counts, 1), 5),
        "count_draws_allowed": max(0, math.floor(ALPHA / max(counts, 1) * (draws + 1)) - 1),
        "families": {**{name: len(tests) for name, tests in families.items()},
                     "claims_possible": sum(s.channels for s in arch.layers) * (len(RULE_KINDS) - 1)},
        "p_value": "rank p = (1 + draws >= trained) / (1 + draws) per group; the largest over "
                   "the groups (the trained model above every kind of null); Holm per family",
        "questions": {"learned": "did training make this? the largest p over the cascade groups "
                                 "(random networks); Holm per family",
                      "single_channel": "is it a property of single channels rather than of the "
                                        "layer? p against random rotations of the trained layer; "
                                        "Holm per family",
                      "detectable_count": "the smallest count that Holm's first step over the "
                                          "count family would pass (power)"},
        "permuted_labels": "one run: described, not tested against"}


def mean_sd(values: list[float]) -> tuple[float, float]:
    """(mean, sample sd; 0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
