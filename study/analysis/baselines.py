"""Randomisation baselines of Task 3: randomised and rotated models, picture similarity, projection diversity and occlusion.

Would an untrained network give the same picture and the same sentence (Adebayo et al. 2018; He et
al. 2017; Bau et al. 2017; Zeiler & Fergus 2014, Fig. 7)? Compute only: `randomisation_baselines`
returns a BaselineResult (written to task3/metrics.json by its to_json) and the BaselineFigures
tensors a figure row needs.

Models: "trained"; cascading randomisation of a deep copy, "conv2" (conv2 re-initialised by
PyTorch's default init, conv1 trained) then "conv1_conv2" (the same seed gives both the same random
conv2), seeds never the training seed, head kept; "permuted_labels" (train_deconv.py
--permute-labels), if given; "rotation": the trained z1 and z2 along random orthonormal directions.
The learned decoders are refitted on every frozen encoder, the trained one's too, by one reduced
protocol (REFIT); the tied deconvnet needs none. z1 is untouched under "conv2", so it is compared
with the other groups only. Pictures, refits, PSNRs and occlusion use the first few seeds;
the rules are weighed against null distributions of many more draws (null_distributions:
NULL_DRAWS re-initialisations per cascade stage and as many random rotations, forward passes
only), with rank p-values and Holm's correction (study/analysis/nulls.py).
"""
import math
import time
from dataclasses import asdict, dataclass, field

import torch

from data import CIFAR10, normalize
from models import Architecture, DeconvNet, Latents
from study.analysis.decoders import decoder_checks, picture_decoder
from study.analysis.evidence import TOP_K, channel_table, strongest_units
from study.analysis.findings import ROLE_KINDS, channel_roles
from study.analysis.nulls import NULL_DRAWS, mean_sd, null_distributions
from study.analysis.occlusion import OCCLUDER, deconvnet_scores, occlusion_agreement, occlusion_maps
from study.analysis.projections import projection_diversity, unit_projections
from study.analysis.random_models import (REFIT, baseline_seeds, cascades, changed_layers,
                                          refit_decoders, reinitialised)
from study.core.ids import DecoderId, ModelId

OCCLUSION_IMAGES = 500
CHECK_IMAGES = 2000  # test images on which each refitted decoder's PSNR is measured
RULE_KINDS = tuple(ROLE_KINDS)  # "class", "look", "brightness", "darkness", "colour", ...


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
    rows, _, class_means = channel_table(Replay(*(z[layer] for layer in sorted(z))), images, labels,
                                         seed, signals=signals)
    k = min(TOP_K, len(labels))
    for layer, layer_rows in rows.items():
        active = (strongest_units(z[layer])[0] > 0).sum(0)
        for row, n, means in zip(layer_rows, active.tolist(), class_means[layer]):
            row["images_active"] = n
            row["undefined"] = (["class", "look"] if n < k else []) + (["selective"] if means.min() < 0 else [])
            kinds = sorted({role["kind"] for role, _ in channel_roles(row)})  # findings' rules
            row["rules"] = [kind for kind in kinds if kind not in row["undefined"]]
    return rows


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


# --- the result ---

@dataclass(frozen=True)
class BaselineModel:
    """One model the baselines read: its group ("trained", "conv2", "permuted_labels", ...), the
    seed of its re-initialisation (None for trained models), the seconds its decoders took to
    refit, and each learned decoder's test PSNR {decoder id: dB}."""

    group: str
    seed: int | None
    refit_seconds: float
    psnr_db: dict[str, float]


@dataclass(frozen=True)
class BaselineResult:
    """Task 3's randomisation baselines, as written under "baselines" in task3/metrics.json.

    protocol: the settings and what each group means; models: {model name: BaselineModel};
    psnr_summary: {decoder: {group: {"mean", "sd", "values"}}}; rules: null_distributions' block
    (per layer the rule counts and each channel's claims against the nulls, Holm-corrected);
    picture_similarity: similarity_table's {"rows", "summary"}; projection_diversity:
    {"per_model" {model: {decoder: rows}}, "summary" {decoder: {group: {"mean", "sd", "values"}
    of the flagged channels}}}; occlusion: {"images", "per_model" {model: {decoder: {"mean",
    "sd", "n"}}}, "summary" {decoder: {group: {"mean", "sd", "values"} of the per-model
    means}}}; seconds: wall per part, "total", and "cpu_total" (the process's CPU time over all
    threads).
    """

    protocol: dict
    models: dict[str, BaselineModel]
    psnr_summary: dict
    rules: dict
    picture_similarity: dict
    projection_diversity: dict
    occlusion: dict
    seconds: dict

    def to_json(self) -> dict:
        """The JSON-ready block: every field, in this order, the models as plain objects."""
        return asdict(self)


@dataclass(frozen=True)
class BaselineFigures:
    """The tensors Task 3's baseline figures and the explorer's models are drawn from.

    pictures: {model: {split: {decoder: (C, 3, H, W) single-channel pictures}}}; groups: {model:
    group}; models: {model: DeconvNet}; refitted: {model: {layer: the copy whose learned decoder
    was refitted for that layer}}; occlusion: {model: {split: {"probability": (P, P) of the true
    class occluded there, "probability_unoccluded", "drop": (C, P, P) of each last-layer
    channel's strongest value (unoccluded - occluded), "strongest_unit_projections": {decoder:
    (C, 3, H, W)}}}}.
    """

    pictures: dict
    groups: dict[str, str]
    models: dict[str, DeconvNet]
    refitted: dict
    ids: dict[str, ModelId]
    occlusion: dict


# --- the whole block ---

def baseline_decoders(arch: Architecture) -> dict[str, tuple[int, bool]]:
    """The decoders every model is read with: identifier -> (layer, tied). Per layer the one its
    pictures use (decoders.picture_decoder: "z1_refit", ..., "z2_learned" for the tutorial),
    refitted here on each model, and the tied deconvnet."""
    decoders = {}
    for stage in arch.layers:
        decoders[picture_decoder(arch, stage.index)] = (stage.index, False)
        decoders[str(DecoderId(stage.index, "tied"))] = (stage.index, True)
    return decoders




def _by_group(values: dict[str, float | None], groups: dict[str, str]) -> dict:
    """{group: {"mean", "sd", "values"}} of per-model values (None: not measured)."""
    out = {}
    for group in dict.fromkeys(groups.values()):
        own = [v for m, v in values.items() if groups.get(m) == group and v is not None]
        if own:
            mean, sd = mean_sd(own)
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
                (rho, rho_sd), (ssim, ssim_sd) = (mean_sd([r[k] for r in own]) for k in ("spearman", "ssim"))
                summary.setdefault(d, {})[group] = {
                    "spearman_mean": round(rho, 4), "spearman_sd": round(rho_sd, 4),
                    "ssim_mean": round(ssim, 4), "ssim_sd": round(ssim_sd, 4), "n": len(own)}
    return {"rows": rows, "summary": summary}


@dataclass(frozen=True)
class BaselineSettings:
    """How many models the baselines read and how: re-initialisation `seeds` per cascade step
    (None: SEEDS_PER_CASCADE from FIRST_SEED, never the training seed), the decoder `refit`,
    the `occlusion_images`, the `null_draws` per null group, and Task 3's `seed` (appearance
    reference patches, the occlusion images)."""

    seeds: list[int] | None = None
    refit: dict = field(default_factory=lambda: dict(REFIT))
    occlusion_images: int = OCCLUSION_IMAGES
    null_draws: int = NULL_DRAWS
    seed: int = 0


def randomisation_baselines(net: DeconvNet, data: CIFAR10, training_seed: int,
                            picks: dict[str, int], trained_rows: dict[int, list[dict]],
                            permuted: DeconvNet | None = None,
                            settings: BaselineSettings = BaselineSettings()
                            ) -> tuple[BaselineResult, BaselineFigures]:
    """Task 3's randomisation baselines: the result (BaselineResult) and the tensors for its
    figures (BaselineFigures).

    net: the trained Task 2 model; training_seed: its seed (Task 2 metrics config "seed");
    picks: {"train": index, "test": index} of the report images; trained_rows: Task 3's rows of
    the trained model per layer, with their "roles" (the claims weighed against the nulls);
    permuted: the Task 2 model trained with --permute-labels. Models are named by ModelId
    ("trained", "permuted_labels", "conv2_seed1001", ...); decoders by baseline_decoders' identifiers.
    """
    started, cpu = time.perf_counter(), time.process_time()
    # at most two passes over the training images (a small --subset needs far fewer steps)
    passes = math.ceil(2 * len(data.train_labels) / settings.refit["batch_size"])
    refit = {**settings.refit, "steps": max(1, min(settings.refit["steps"], passes))}
    seeds = settings.seeds if settings.seeds is not None else baseline_seeds(training_seed)
    ids, models, groups = _baseline_models(net, training_seed, seeds, permuted)
    chooser = torch.Generator().manual_seed(settings.seed)
    occluded = torch.randperm(len(data.test_labels),
                              generator=chooser)[:settings.occlusion_images].sort().values
    report = {split: (images[picks[split]], int(labels[picks[split]])) for split, images, labels in
              (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels))}
    info, measured, refitted, seconds = _measure_models(models, groups, ids, data, report,
                                                        occluded, refit)
    clock = time.perf_counter()
    pictures = {m: part["pictures"] for m, part in measured.items() if "pictures" in part}
    similarity = similarity_table(pictures, groups)
    seconds["similarity"] = round(time.perf_counter() - clock, 2)
    diversity = {m: part["diversity"] for m, part in measured.items() if "diversity" in part}
    occlusion = {m: part["occlusion"] for m, part in measured.items() if "occlusion" in part}
    rules = null_distributions(net, data, training_seed, trained_rows, permuted=permuted,
                               draws=settings.null_draws, seed=settings.seed)
    arch, decoder_kinds = net.arch, baseline_decoders(net.arch)
    result = BaselineResult(
        protocol=_baseline_protocol(arch, training_seed, seeds, refit, len(data.test_labels)),
        models=info,
        psnr_summary={d: _by_group({m: v.psnr_db.get(d) for m, v in info.items()}, groups)
                      for d, (_, tied) in decoder_kinds.items() if not tied},
        rules=rules,
        picture_similarity=similarity,
        projection_diversity={"per_model": diversity, "summary": {d: _by_group(
            {m: sum(r["flagged"] for r in per[d]) if d in per else None for m, per in diversity.items()},
            groups) for d in decoder_kinds}},
        occlusion={"images": len(occluded), "per_model": occlusion, "summary": {d: _by_group(
            {m: per[d]["mean"] for m, per in occlusion.items()}, groups)
            for d in decoder_kinds if decoder_kinds[d][0] == arch.depth}},
        seconds={**{k: round(v, 2) for k, v in seconds.items()},
                 "total": round(time.perf_counter() - started, 2),
                 "cpu_total": round(time.process_time() - cpu, 2)})  # all threads
    figures = BaselineFigures(pictures, groups, models, refitted, ids,
                              {m: part["occlusion_figure"] for m, part in measured.items()
                               if "occlusion_figure" in part})
    return result, figures


def _baseline_models(net: DeconvNet, training_seed: int, seeds: list[int],
                     permuted: DeconvNet | None) -> tuple[dict, dict, dict]:
    """({name: ModelId}, {name: model}, {name: group}): the trained model, its permuted-labels
    twin, and per cascade step (from the top stage down) one re-initialisation per seed."""
    arch = net.arch
    ids = {"trained": ModelId("trained")}
    models, groups = {"trained": net}, {"trained": "trained"}
    if permuted is not None:
        ids["permuted_labels"] = ModelId("permuted")
        models["permuted_labels"], groups["permuted_labels"] = permuted.eval(), "permuted_labels"
    for first in range(arch.depth, 0, -1):
        cascade = str(ModelId.cascade(first, arch.depth))
        for s in seeds:
            model = ModelId.cascade(first, arch.depth, s)
            ids[str(model)] = model
            models[str(model)] = reinitialised(net, cascade, s, training_seed)
            groups[str(model)] = cascade
    return ids, models, groups


def _measure_models(models: dict, groups: dict, ids: dict, data: CIFAR10, report: dict,
                    occluded: torch.Tensor, refit: dict) -> tuple[dict, dict, dict, dict]:
    """Every model read as the trained one is: its decoders refitted on the layers it changes,
    their PSNRs, pictures, projections and occlusion; and the trained encoder with decoders
    refitted from another seed (the refit's noise floor, added to `groups` as "refit_seed").
    Returns ({name: BaselineModel}, {name: measurements}, {name: refitted copies}, seconds)."""
    arch = models["trained"].arch
    decoder_kinds = baseline_decoders(arch)
    info, measured, refitted, seconds = {}, {}, {}, {"refits": 0.0}
    for name, model in models.items():
        clock = time.perf_counter()
        # under a cascade the layers below its first convolution are the trained ones: not
        # refitted, not compared
        changed = (changed_layers(groups[name], arch) if groups[name] in cascades(arch)
                   else {s.index for s in arch.layers})
        fitted, took = refit_decoders(model, data.train_images, sorted(changed), refit)
        seconds["refits"] += took
        refitted[name] = fitted
        decoders = {d: ((model if tied else fitted[layer]), layer, tied) for d, (layer, tied)
                    in decoder_kinds.items() if layer in changed}
        checks = decoder_checks({d: v for d, v in decoders.items() if not v[2]},
                                data.test_images[:CHECK_IMAGES])
        info[name] = BaselineModel(groups[name], ids[name].seed,
                                   round(took, 2), {d: c["psnr_db"] for d, c in checks.items()})
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
    return info, measured, refitted, seconds


def _baseline_protocol(arch: Architecture, training_seed: int, seeds: list[int], refit: dict,
                       test_images: int) -> dict:
    """How the baseline models were made and read, as metrics.json records it."""
    return {
        "training_seed": training_seed, "seeds": seeds,
        "cascades": {k: list(v) for k, v in cascades(arch).items()}, "head": "trained in every model",
        "refit": {**refit, "optimiser": "Adam, one-cycle", "loss": "MSE", "models": "all, alike"},
        "below a cascade": "the layers under its first re-initialised convolution are the "
                           "trained ones: not refitted, not compared",
        "refit_seed": ModelId("refit_seed").long,
        "undefined rules": "'class', 'look' on channels active on < top_k test images; "
                           "'selective' on channels with a negative class mean (rotations)",
        "psnr_test_images": min(CHECK_IMAGES, test_images),
        "occluder": {**OCCLUDER, "grey": "0 in the normalised input"},
        "rules": "null_distributions: many draws per group, forward passes only (rules.protocol)",
        "similarity": "Spearman of |values|; SSIM of |values| / max, data_range 1",
        "projection_diversity": "mean pairwise r of the top-9 projections vs the top-9 patches"}
