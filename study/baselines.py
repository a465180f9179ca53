"""Randomisation baselines of Task 3: randomised and rotated models, picture similarity, projection diversity and occlusion.

Would an untrained network give the same picture and the same sentence (Adebayo et al. 2018; He et
al. 2017; Bau et al. 2017; Zeiler & Fergus 2014, Fig. 7)? Compute only: `randomisation_baselines`
returns the JSON-ready block for task3/metrics.json and the tensors a figure row needs.

Models: "trained"; cascading randomisation of a deep copy, "conv2" (conv2 re-initialised by
PyTorch's default init, conv1 trained) then "conv1_conv2" (the same seed gives both the same random
conv2), seeds never the training seed, head kept; "permuted_labels" (train_deconv.py
--permute-labels), if given; "rotation": the trained z1 and z2 along random orthonormal directions.
The learned decoders are refitted on every frozen encoder, the trained one's too, by one reduced
protocol (REFIT); the tied deconvnet needs none. z1 is untouched under "conv2", so it is compared
with the other groups only. Pictures, refits, PSNRs and occlusion use the first few seeds;
the rules are weighed against null distributions of many more draws (null_distributions:
NULL_DRAWS re-initialisations per cascade stage and as many random rotations, forward passes
only), with rank p-values and Holm's correction (study/nulls.py).
"""
import copy
import math
import statistics
import time
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from study import evidence
from data import CIFAR10, normalize
from study.decoders import decoder_checks, picture_decoder
from study.evidence import TOP_K, channel_table, projection_diversity, strongest_units, unit_projections
from study import nulls
from study.findings import ROLE_KINDS, channel_roles
from study.nulls import rule_value  # noqa: F401 (read by tests and findings)
from models import ARCHITECTURE, Architecture, DeconvNet, Latents
from study.settings import randomised_group
from study.occlusion import OCCLUDER, deconvnet_scores, occlusion_agreement, occlusion_maps



def cascades(arch: Architecture) -> dict[str, tuple[str, ...]]:
    """Cascading randomisation (Adebayo et al.) from the top convolution down: group id -> the
    convolutions re-initialised, in order. The tutorial's net: {"conv2": ("conv2",),
    "conv1_conv2": ("conv2", "conv1")}."""
    depth = arch.depth
    return {randomised_group(first, depth)[0]: tuple(f"conv{k}" for k in range(depth, first - 1, -1))
            for first in range(depth, 0, -1)}


CASCADES = cascades(ARCHITECTURE)  # the tutorial's
SEEDS_PER_CASCADE = 3
FIRST_SEED = 1001  # baseline seeds count up from here, skipping the training seed
# The reduced refit (Task 3's own refit is 2 epochs of 50k images, ~22 s per decoder): the same
# optimiser, learning rate, one-cycle schedule, batch and loss, for a fixed number of steps on
# the same images in the same order for every model.
REFIT = {"steps": 400, "batch_size": 32, "lr": 3e-3, "seed": 0}  # steps: at most 2 passes
OCCLUSION_IMAGES = 500
CHECK_IMAGES = 2000  # test images on which each refitted decoder's PSNR is measured
RULE_KINDS = tuple(ROLE_KINDS)  # "class", "look", "brightness", "darkness", "colour", ...
MODEL_GROUPS = (*CASCADES, "permuted_labels")  # the tutorial's randomised models


# --- models ---

def baseline_seeds(training_seed: int, count: int = SEEDS_PER_CASCADE,
                   first: int = FIRST_SEED) -> list[int]:
    """`count` initialisation seeds from `first` upwards, never the training seed."""
    return [s for s in range(first, first + count + 1) if s != training_seed][:count]


def reinitialised(net: DeconvNet, cascade: str, seed: int, training_seed: int) -> DeconvNet:
    """A deep copy of `net` with the layers of cascades(net.arch)[cascade] re-initialised (PyTorch's default
    init, reset_parameters, on the CPU so the seed means the same on any device). `net` and the
    global random state are untouched; a seed equal to the training seed is refused."""
    if seed == training_seed:
        raise ValueError(f"seed {seed} is the training seed; a baseline needs another")
    device = next(net.parameters()).device
    model = copy.deepcopy(net).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in cascades(net.arch)[cascade]:
            getattr(model, name).reset_parameters()
    return model.to(device).eval().requires_grad_(False)


def random_rotation(channels: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthonormal (channels x channels) matrix: QR of a Gaussian, sign-fixed."""
    q, r = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def rotate(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """z (N, C, H, W) read along the columns of q: new channel j = sum_c q[c, j] z[:, c]."""
    return torch.einsum("cj,nchw->njhw", q.to(z), z)


def refit_decoders(model: DeconvNet, train_images: torch.Tensor, layers: Iterable[int] | None = None,
                   protocol: dict = REFIT) -> tuple[dict[int, DeconvNet], float]:
    """Fresh learned decoders fitted on `model`'s frozen encoder: {layer: copy of model}, seconds.

    Layer k (every layer by default): new deconv1 .. deconv k fitted through decode(latents, k)
    (layer 1 as fit_layer1_decoder does). Adam, one-cycle to protocol["lr"], MSE,
    protocol["steps"] batches of protocol["batch_size"] training images; the initial weights and
    the batches depend on protocol["seed"] only, so every model gets the same. One encoder pass
    per batch serves both layers.
    """
    started = time.perf_counter()
    stages = model.arch.layers
    layers = [s.index for s in stages] if layers is None else list(layers)
    device = train_images.device
    fitted, optimisers, schedules = {}, {}, {}
    for layer in layers:
        copy_ = copy.deepcopy(model).eval().requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(protocol["seed"] + layer)
            for stage in stages:  # all made, first stage first, so a seed means the same
                setattr(copy_, f"deconv{stage.index}", nn.ConvTranspose2d(
                    stage.channels, stage.in_channels, stage.kernel, padding=stage.padding))
        copy_.to(device)
        trained = [p for stage in stages[:layer]
                   for p in getattr(copy_, f"deconv{stage.index}").parameters()]
        fitted[layer] = copy_
        optimisers[layer] = torch.optim.Adam(trained, lr=protocol["lr"])
        schedules[layer] = torch.optim.lr_scheduler.OneCycleLR(
            optimisers[layer], max_lr=protocol["lr"], total_steps=protocol["steps"])
    generator = torch.Generator().manual_seed(protocol["seed"])
    n, size = len(train_images), protocol["batch_size"]
    order = torch.cat([torch.randperm(n, generator=generator)
                       for _ in range(math.ceil(protocol["steps"] * size / n))]).to(device)
    for step in range(protocol["steps"]):
        x = normalize(train_images[order[step * size:(step + 1) * size]])
        with torch.no_grad():
            latents = model.encode(x)
        for layer, copy_ in fitted.items():
            loss = F.mse_loss(copy_.decode(latents, layer), x)
            optimisers[layer].zero_grad()
            loss.backward()
            optimisers[layer].step()
            schedules[layer].step()
    for copy_ in fitted.values():
        copy_.requires_grad_(False)
    return fitted, time.perf_counter() - started


# --- naming channels by the rules ---

class Replay:
    """An 'encoder' that hands back precomputed maps, batch after batch, in the order
    channel_statistics reads the images (consecutive batches from the first): Task 3's statistics
    on latents already computed (shared forward passes, rotated channels, synthetic latents)."""

    def __init__(self, *maps: torch.Tensor) -> None:
        self.maps, self.start = maps, 0  # z1, z2, ...

    def encode(self, x: torch.Tensor) -> Latents:
        start = self.start if self.start < len(self.maps[0]) else 0  # a new pass from the first image
        self.start = start + len(x)
        if self.start > len(self.maps[0]):
            raise ValueError("Replay read out of step with the precomputed latents")
        return Latents(tuple(z[start:self.start].to(x.device) for z in self.maps),
                       (None,) * len(self.maps))


def name_channels(z: dict[int, torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                  seed: int, signals: dict | None = None) -> dict[int, list[dict]]:
    """Task 3's rows (evidence.channel_table) for latents z {1: (N, C1, H1, W1), 2: ...} of the
    test images, each with "rules" (the kinds of the RULES that hold), "images_active" and
    "undefined" (rules that cannot be read for this channel, neither counted nor compared):

    * "class" and "look" for a channel above zero on fewer than TOP_K images (a dead unit, common
      after re-initialising): its top-K are ties, the first images in data order (the test set
      is sorted by class);
    * "selective" for a channel with a negative class mean (a rotated direction): the index
      (top - others) / (top + others) assumes activations >= 0.
    """
    rows, _, class_means = channel_table(Replay(z[1], z[2]), images, labels, seed, signals=signals)
    k = min(TOP_K, len(labels))
    for layer, layer_rows in rows.items():
        active = (strongest_units(z[layer])[0] > 0).sum(0)
        for row, n, means in zip(layer_rows, active.tolist(), class_means[layer]):
            row["images_active"] = n
            row["undefined"] = (["class", "look"] if n < k else []) + (["selective"] if means.min() < 0 else [])
            kinds = sorted({role["kind"] for role, _ in channel_roles(row)})  # findings' rules
            row["rules"] = [kind for kind in kinds if kind not in row["undefined"]]
    return rows


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# --- null distributions of the rules: many models, forward passes only ---

NULL_DRAWS = 299  # per group: a value above every draw then passes Holm over 14 tests (p 1/300)
NULL_IMAGES = 2000  # test images (seeded choice) the rules are read on, trained and null alike
NULL_GROUPS = (*CASCADES, "rotation")  # the tutorial's groups with many draws: the verdicts' nulls


def null_group_names(arch: Architecture) -> tuple[str, ...]:
    """The groups with many draws, the verdicts' nulls: every cascade stage, and rotations."""
    return (*cascades(arch), "rotation")
ALPHA = 0.05


def null_groups(layer: int, arch: Architecture = ARCHITECTURE) -> tuple[str, ...]:
    """The null groups that change a layer: re-initialising conv2 leaves z1 as trained."""
    return tuple(g for g in null_group_names(arch)
                 if g == "rotation" or layer in _changed_layers(g, arch))


@torch.no_grad()
def _null_latents(model: DeconvNet, x: torch.Tensor) -> dict[int, torch.Tensor]:
    latents = model.encode(x)
    return {stage.index: latents.at(stage.index).cpu() for stage in model.arch.layers}


def _test(observed: float | None, nulls_by_group: dict[str, list]) -> dict:
    """Rank p-value of `observed` against each group's draws (None values left out) and the
    largest of them, the p-value of 'above every kind of null' (intersection-union)."""
    p = {}
    for group, values in nulls_by_group.items():
        values = [v for v in values if v is not None]
        p[group] = 1.0 if observed is None or not values else nulls.rank_p_value(observed, values)
    return {"p": {g: round(v, 5) for g, v in p.items()}, "p_value": max(p.values(), default=1.0)}


def _describe(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"draws": 0}
    mean, sd = _mean_sd(values)
    return {"draws": len(values), "mean": round(mean, 3), "sd": round(sd, 3),
            "max": round(max(values), 3), "q95": round(sorted(values)[int(0.95 * (len(values) - 1))], 3)}


def null_distributions(net: DeconvNet, data: CIFAR10, training_seed: int, trained_rows: dict,
                       *, permuted: DeconvNet | None = None, draws: int = NULL_DRAWS,
                       images: int = NULL_IMAGES, seed: int = 0) -> dict:
    """Every rule of Task 3 against its null distribution (the "rules" block of metrics.json).

    Draws `draws` re-initialisations per cascade stage and `draws` Haar-random rotations of the
    trained latents (Bau et al.), and reads every rule on the same `images` test images for the
    trained model and every draw (nulls.fast_rows). trained_rows: {layer: Task 3's rows of the
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
    n = len(data.test_labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    chosen = order[:min(images, n)].sort().values
    x_u8, labels = data.test_images.cpu()[chosen], data.test_labels.cpu()[chosen]
    signals = {s.index: evidence.local_signals(x_u8, s.index, net.arch) for s in layers}
    ref = nulls.Reference(x_u8, labels, signals, layers, seed, TOP_K, net.arch)
    x = normalize(x_u8.to(next(net.parameters()).device))

    def summary(z: dict[int, torch.Tensor], only: Iterable[int] | None = None) -> dict:
        return {s.index: nulls.layer_summary(nulls.fast_rows(z[s.index], s.index, ref))
                for s in layers if only is None or s.index in only}

    trained_z = _null_latents(net, x)
    trained = {s.index: nulls.fast_rows(trained_z[s.index], s.index, ref) for s in layers}
    trained_summary = {layer: nulls.layer_summary(rows) for layer, rows in trained.items()}
    sampled: dict[str, list[dict]] = {g: [] for g in null_group_names(net.arch)}
    seconds = {}
    for cascade in cascades(net.arch):
        clock = time.perf_counter()
        changed = [s.index for s in layers if s.index in _changed_layers(cascade, net.arch)]
        for s in baseline_seeds(training_seed, draws):
            sampled[cascade].append(summary(_null_latents(
                reinitialised(net, cascade, s, training_seed), x), changed))
        seconds[cascade] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    for r in range(draws):
        generator = torch.Generator().manual_seed(r)
        q = {s.index: random_rotation(s.channels, generator) for s in layers}
        sampled["rotation"].append(summary({layer: rotate(z, q[layer]) for layer, z in trained_z.items()}))
    seconds["rotation"] = round(time.perf_counter() - clock, 2)
    permuted_summary = (summary(_null_latents(permuted.eval(), x)) if permuted is not None else None)

    def pooled(layer: int, rule: str, group: str) -> list:
        return [v for d in sampled[group] for v in d[layer][rule]["values"] if v is not None]

    result, count_tests, mean_tests, share_tests, claim_tests = {}, [], [], [], []
    for stage in layers:
        layer, groups = stage.index, null_groups(stage.index, net.arch)
        counts = {}
        for rule in RULE_KINDS:
            mine = trained_summary[layer][rule]
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
            count_tests.append(entry)
            mean_tests.append(mean_stat)
        channels = []
        for row, fast in zip(trained_rows[layer], trained[layer]):
            share = {"rule": "class", "value": nulls.rule_value("class", fast),
                     **_test(nulls.rule_value("class", fast),
                             {g: pooled(layer, "class", g) for g in groups})}
            share_tests.append(share)
            claims = []
            for kind in (role["kind"] for role in row["roles"]):
                if kind == "class" or kind in (c["rule"] for c in claims):
                    continue
                value = nulls.rule_value(kind, fast)
                claim = {"rule": kind, "value": None if value is None else round(value, 3),
                         **_test(value, {g: pooled(layer, kind, g) for g in groups})}
                claims.append(claim)
                claim_tests.append(claim)
            channels.append({"channel": row["channel"], "class_share": share, "claims": claims})
        result[stage.name] = {"counts": counts, "channels": channels}
    for family in (count_tests, mean_tests, share_tests, claim_tests):
        for test, adjusted in zip(family, nulls.holm([t["p_value"] for t in family])):
            test["p_value"] = round(test["p_value"], 5)
            test["p_holm"] = round(adjusted, 5)
            test["survives"] = adjusted < ALPHA
    for layer_block in result.values():  # the names older readers look for
        for entry in layer_block["counts"].values():
            entry["evidence_of_learning"] = entry["survives"]
    return {**result, "protocol": {
        "draws": draws, "images": len(chosen), "groups": {s.name: list(null_groups(s.index, net.arch)) for s in layers},
        "alpha": ALPHA, "smallest_p": round(1 / (draws + 1), 5),
        "families": {"counts": len(count_tests), "mean_statistic": len(mean_tests),
                     "class_share": len(share_tests), "claims": len(claim_tests)},
        "p_value": "rank p = (1 + draws >= trained) / (1 + draws) per group; the largest over "
                   "the groups (the trained model above every kind of null); Holm per family",
        "permuted_labels": "one run: described, not tested against"},
        "seconds": {**seconds, "total": round(time.perf_counter() - started, 2)}}


def _changed_layers(cascade: str, arch: Architecture = ARCHITECTURE) -> set[int]:
    """Layers whose latents a cascade changes: the first re-initialised convolution and above."""
    first = min(int(name.removeprefix("conv")) for name in cascades(arch)[cascade])
    return {s.index for s in arch.layers if s.index >= first}


# --- pictures ---

@torch.no_grad()
def single_channel_pictures(model: DeconvNet, image_u8: torch.Tensor, layer: int,
                            tied: bool = False) -> torch.Tensor:
    """(C, 3, H, W): each channel decoded alone minus the empty latent's decode (for the tied
    deconvnet, which has no bias, the empty decode is zero), as Task 3's figures show them."""
    latents = model.encode(normalize(image_u8[None]))
    channels = latents.at(layer).shape[1]
    singles = model.decode(latents, layer, keep=[[c] for c in range(channels)], tied=tied)
    return singles - model.decode(latents, layer, keep=[[]], tied=tied)


def picture_similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Adebayo et al.'s measures of two pictures (3, H, W): Spearman rank correlation of the
    absolute values, and SSIM of |a| / max|a| against |b| / max|b| (data_range 1, colour as the
    channel axis). A flat picture scores 1 against the same flat picture, else 0 (no ranking or
    structure to agree with)."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    a, b = a.detach().abs().double().cpu(), b.detach().abs().double().cpu()
    flat_a, flat_b = bool(a.min() == a.max()), bool(b.min() == b.max())
    if flat_a or flat_b:
        same = float(flat_a and flat_b and torch.equal(a, b))
        return {"spearman": same, "ssim": same}
    rho = spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic
    scaled = [(t / t.max()).numpy() for t in (a, b)]
    ssim = structural_similarity(scaled[0], scaled[1], data_range=1.0, channel_axis=0)
    return {"spearman": float(rho), "ssim": float(ssim)}


# --- the whole block ---

def baseline_decoders(arch: Architecture) -> dict[str, tuple[int, bool]]:
    """The decoders every model is read with: identifier -> (layer, tied). Per layer the one its
    pictures use (decoders.picture_decoder: "z1_refit", ..., "z2_learned" for the tutorial),
    refitted here on each model, and the tied deconvnet."""
    decoders = {}
    for stage in arch.layers:
        decoders[picture_decoder(arch, stage.index)] = (stage.index, False)
        decoders[f"{stage.name}_tied"] = (stage.index, True)
    return decoders


DECODERS = baseline_decoders(ARCHITECTURE)  # the tutorial's


def _by_group(values: dict[str, float | None], groups: dict[str, str]) -> dict:
    """{group: {"mean", "sd", "values"}} of per-model values (None: not measured)."""
    out = {}
    for group in dict.fromkeys(groups.values()):
        own = [v for m, v in values.items() if groups.get(m) == group and v is not None]
        if own:
            mean, sd = _mean_sd(own)
            out[group] = {"mean": round(mean, 4), "sd": round(sd, 4), "values": own}
    return out


@torch.no_grad()
def _latents(model: DeconvNet, images: torch.Tensor, batch_size: int = 1000) -> dict[int, torch.Tensor]:
    parts = [model.encode(normalize(x)) for x in images.split(batch_size)]
    return {stage.index: torch.cat([p.at(stage.index) for p in parts]).cpu()
            for stage in model.arch.layers}


def _measure(model: DeconvNet, decoders: dict[str, tuple[DeconvNet, int, bool]], data: CIFAR10,
             report: dict[str, tuple[torch.Tensor, int]], occluded: torch.Tensor) -> dict:
    """Everything one model contributes: latents, projection diversity, the report
    images' pictures and occlusion maps, and the occlusion agreement."""
    images = data.test_images
    z = _latents(model, images)
    x = normalize(torch.stack([image for image, _ in report.values()]))
    base, maps = occlusion_maps(deconvnet_scores(model), x)
    top = model.arch.depth  # occlusion reads the last layer (z2 for the tutorial's net)
    classes, channels = model.arch.classes, model.arch.layer(top).channels
    with torch.no_grad():  # each last-layer channel's strongest unit, projected (Z&F Fig. 7c)
        latents = model.encode(x)
        where = strongest_units(latents.last)[1].flatten()
        expanded = latents.apply(lambda t: t.repeat_interleave(channels, 0))
        channel = torch.arange(channels, device=x.device).repeat(len(x))
        strongest = {d: unit_projections(m, expanded, top, channel, where, tied).view(
            len(x), channels, *x.shape[1:]).cpu() for d, (m, layer, tied) in decoders.items() if layer == top}
    return {
        "z": z,
        "diversity": {d: projection_diversity(m, z[layer], images, layer, tied)
                      for d, (m, layer, tied) in decoders.items()},
        "pictures": {split: {d: single_channel_pictures(m, image, layer, tied).cpu()
                             for d, (m, layer, tied) in decoders.items()}
                     for split, (image, _) in report.items()},
        "occlusion": occlusion_agreement(model, {d: (m, tied) for d, (m, layer, tied)
                                                 in decoders.items() if layer == top},
                                         images[occluded.to(images.device)]),
        "occlusion_figure": {split: {"probability": maps[i, label].cpu(),
                                     "probability_unoccluded": base[i, label].item(),
                                     "drop": (base[i, classes:, None, None] - maps[i, classes:]).cpu(),
                                     "strongest_unit_projections": {d: p[i] for d, p in strongest.items()}}
                             for i, (split, (_, label)) in enumerate(report.items())}}


def similarity_table(pictures: dict[str, dict], groups: dict[str, str]) -> dict:
    """picture_similarity of every trained single-channel picture against the same picture of
    each randomised model: {"rows": [{"image", "decoder", "channel", "model", "group",
    "spearman", "ssim"}], "summary": {decoder: {group: {"spearman_mean", "spearman_sd",
    "ssim_mean", "ssim_sd", "n"}}}} (mean and sd over images, channels and seeds)."""
    rows = []
    for name, per_split in pictures.items():
        if groups[name] in ("trained", "rotation"):
            continue
        for split, per_decoder in per_split.items():
            for d, theirs in per_decoder.items():
                for c, (a, b) in enumerate(zip(pictures["trained"][split][d], theirs)):
                    scores = picture_similarity(a, b)
                    rows.append({"image": split, "decoder": d, "channel": c, "model": name,
                                 "group": groups[name], **{k: round(v, 4) for k, v in scores.items()}})
    summary = {}
    for d in dict.fromkeys(r["decoder"] for r in rows):
        for group in dict.fromkeys(groups.values()):
            own = [r for r in rows if r["decoder"] == d and r["group"] == group]
            if own:
                (rho, rho_sd), (ssim, ssim_sd) = (_mean_sd([r[k] for r in own]) for k in ("spearman", "ssim"))
                summary.setdefault(d, {})[group] = {
                    "spearman_mean": round(rho, 4), "spearman_sd": round(rho_sd, 4),
                    "ssim_mean": round(ssim, 4), "ssim_sd": round(ssim_sd, 4), "n": len(own)}
    return {"rows": rows, "summary": summary}


def randomisation_baselines(net: DeconvNet, data: CIFAR10, training_seed: int,
                            picks: dict[str, int], *, permuted: DeconvNet | None = None,
                            seeds: list[int] | None = None, refit: dict = REFIT,
                            occlusion_images: int = OCCLUSION_IMAGES,
                            trained_rows: dict[int, list[dict]], null_draws: int = NULL_DRAWS,
                            seed: int = 0) -> tuple[dict, dict]:
    """Task 3's randomisation baselines: (JSON-ready block, tensors for a figure row).

    net: the trained Task 2 model; training_seed: its seed (Task 2 metrics config "seed");
    picks: {"train": index, "test": index} of the report images; permuted: the Task 2 model
    trained with --permute-labels; trained_rows: Task 3's rows of the trained model per layer,
    with their "roles" (the claims weighed against the nulls); null_draws: models per null
    group (null_distributions); seed: Task 3's seed (appearance reference patches, the
    occlusion images). Models are named "trained", "permuted_labels", "conv2_seed1001",
    "conv1_conv2_seed1001", ...; decoders by DECODERS' identifiers.
    The block: "protocol"; "models" {model: {"group", "seed", "refit_seconds", "psnr_db"
    {decoder: dB}}}; "rules" (null_distributions); "picture_similarity" (similarity_table);
    "projection_diversity" {"per_model" {model: {decoder: rows}}, "summary" {decoder: {group:
    {"mean", "sd", "values"} of the flagged channels}}}; "occlusion" {"images", "per_model"
    {model: {decoder: {"mean", "sd", "n"}}}, "summary" {decoder: {group: {"mean", "sd",
    "values"} of the per-model means}}}; "seconds" (wall per part, "total", and "cpu_total", the
    process's CPU time over all threads). The figure data: {"pictures" {model:
    {split: {decoder: (C, 3, H, W)}}}, "occlusion" {model: {split: {"probability": (P, P) of
    the true class occluded there, "probability_unoccluded", "drop": (C, P, P) of each z2
    channel's strongest value (unoccluded - occluded), "strongest_unit_projections": {decoder:
    (C, 3, H, W)}}}}, "groups" {model: group}, "models" {model: DeconvNet}, "refitted" {model:
    {layer: the copy whose learned decoder was refitted for that layer}}.
    """
    started, cpu, seconds = time.perf_counter(), time.process_time(), {"refits": 0.0}
    # at most two passes over the training images (a small --subset needs far fewer steps)
    passes = math.ceil(2 * len(data.train_labels) / refit["batch_size"])
    refit = {**refit, "steps": max(1, min(refit["steps"], passes))}
    seeds = seeds if seeds is not None else baseline_seeds(training_seed)
    arch, decoder_kinds = net.arch, baseline_decoders(net.arch)
    models, groups = {"trained": net}, {"trained": "trained"}
    if permuted is not None:
        models["permuted_labels"], groups["permuted_labels"] = permuted.eval(), "permuted_labels"
    for cascade in cascades(arch):
        for s in seeds:
            models[f"{cascade}_seed{s}"] = reinitialised(net, cascade, s, training_seed)
            groups[f"{cascade}_seed{s}"] = cascade
    chooser = torch.Generator().manual_seed(seed)
    occluded = torch.randperm(len(data.test_labels), generator=chooser)[:occlusion_images].sort().values
    report = {split: (images[picks[split]], int(labels[picks[split]])) for split, images, labels in
              (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels))}
    info, measured, refitted = {}, {}, {}
    for name, model in models.items():
        clock = time.perf_counter()
        # under a cascade the layers below its first convolution are the trained ones: not
        # refitted, not compared
        changed = (_changed_layers(groups[name], arch) if groups[name] in cascades(arch)
                   else {s.index for s in arch.layers})
        fitted, took = refit_decoders(model, data.train_images, sorted(changed), refit)
        seconds["refits"] += took
        refitted[name] = fitted
        decoders = {d: ((model if tied else fitted[layer]), layer, tied) for d, (layer, tied)
                    in decoder_kinds.items() if layer in changed}
        checks = decoder_checks({d: v for d, v in decoders.items() if not v[2]},
                                data.test_images[:CHECK_IMAGES])
        info[name] = {"group": groups[name], "seed": int(name.rsplit("seed", 1)[1]) if "seed" in name else None,
                      "refit_seconds": round(took, 2),
                      "psnr_db": {d: c["psnr_db"] for d, c in checks.items()}}
        measured[name] = _measure(model, decoders, data, report, occluded)
        del measured[name]["z"]
        if name == "trained":  # the noise floor of the refit: the trained encoder, decoders of another seed
            other, took = refit_decoders(model, data.train_images, None, {**refit, "seed": refit["seed"] + 1})
            seconds["refits"] += took
            measured["trained_refit_seed"] = {"pictures": {split: {
                d: single_channel_pictures(other[layer], image, layer).cpu()
                for d, (layer, tied) in decoder_kinds.items() if not tied} for split, (image, _) in report.items()}}
            groups["trained_refit_seed"] = "refit_seed"
        seconds[name] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    pictures = {m: part["pictures"] for m, part in measured.items() if "pictures" in part}
    similarity = similarity_table(pictures, groups)
    seconds["similarity"] = round(time.perf_counter() - clock, 2)
    diversity = {m: part["diversity"] for m, part in measured.items() if "diversity" in part}
    occlusion = {m: part["occlusion"] for m, part in measured.items() if "occlusion" in part}
    block = {
        "protocol": {
            "training_seed": training_seed, "seeds": seeds,
            "cascades": {k: list(v) for k, v in cascades(arch).items()}, "head": "trained in every model",
            "refit": {**refit, "optimiser": "Adam, one-cycle", "loss": "MSE", "models": "all, alike"},
            "below a cascade": "the layers under its first re-initialised convolution are the "
                               "trained ones: not refitted, not compared",
            "refit_seed": "the trained encoder with decoders refitted from seed + 1: the pictures' noise floor",
            "undefined rules": "'class', 'look' on channels active on < top_k test images; "
                               "'selective' on channels with a negative class mean (rotations)",
            "psnr_test_images": min(CHECK_IMAGES, len(data.test_labels)),
            "occluder": {**OCCLUDER, "grey": "0 in the normalised input"},
            "rules": "null_distributions: many draws per group, forward passes only (rules.protocol)",
            "similarity": "Spearman of |values|; SSIM of |values| / max, data_range 1",
            "projection_diversity": "mean pairwise r of the top-9 projections vs the top-9 patches"},
        "models": info,
        "psnr_summary": {d: _by_group({m: v["psnr_db"].get(d) for m, v in info.items()}, groups)
                         for d, (_, tied) in decoder_kinds.items() if not tied},
        "rules": null_distributions(net, data, training_seed, trained_rows, permuted=permuted,
                                    draws=null_draws, seed=seed),
        "picture_similarity": similarity,
        "projection_diversity": {"per_model": diversity, "summary": {d: _by_group(
            {m: sum(r["flagged"] for r in per[d]) if d in per else None for m, per in diversity.items()},
            groups) for d in decoder_kinds}},
        "occlusion": {"images": len(occluded), "per_model": occlusion, "summary": {d: _by_group(
            {m: per[d]["mean"] for m, per in occlusion.items()}, groups)
            for d in decoder_kinds if decoder_kinds[d][0] == arch.depth}},
    }
    block["seconds"] = {**{k: round(v, 2) for k, v in seconds.items()},
                        "total": round(time.perf_counter() - started, 2),
                        "cpu_total": round(time.process_time() - cpu, 2)}  # all threads
    return block, {"pictures": pictures, "groups": groups, "models": models, "refitted": refitted,
                   "occlusion": {m: part["occlusion_figure"] for m, part in measured.items()
                                 if "occlusion_figure" in part}}
