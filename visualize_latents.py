"""Task 3: what each latent channel of the Task 2 model encodes, with the evidence.

For one training and one test image (of different classes), the image is reconstructed from one
latent channel at a time, all other channels zeroed: every channel of z1 (6x14x14) and chosen
channels of z2 (16x5x5). Before any picture is read, the decoders are checked on the real,
full latents (PSNR on the test set) and against controls (empty latent, another image's latent,
another image's switches). Every channel is then characterised over a seeded set of 2,000 test
images, the one its null tests read too: correlation with local luminance, colour opposition and
edges under its receptive field, mean activation per class, sparsity, and its top-9 test patches,
and named by written rules.

    python visualize_latents.py --data-dir ../shared/cifar10
"""
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data import DISPLAY_NAMES, load_cifar10, normalize
from models import ARCHITECTURE, Architecture, DeconvNet
from study.analysis.baselines import (OCCLUSION_IMAGES, BaselineFigures, BaselineSettings,
                                      randomisation_baselines)
from study.analysis.decoders import controls, decoder_checks, decoders_of, layer1_refit
from study.analysis.evidence import (RANDOM_PATCHES, TOP_K, channel_table, conv1_filter_stats, crop,
                                     patch_measures)
from study.analysis.findings import (RULES, against_baselines, channel_roles, describe_channel,
                                     hue_name, projections_alike, surviving_roles)
from study.analysis.nulls import NULL_DRAWS, rule_images
from study.analysis.projections import single_channels, top9
from study.analysis.random_models import SEEDS_PER_CASCADE, baseline_seeds
from study.analysis.task3_result import LayerResult, Reading, Task3Result
from study.core.common import (ArgumentParser, UsageError, add_data_arguments, add_output_arguments,
                               add_threads_argument, environment_info, fast_layout, number, run_cli,
                               select_device)
from study.core.files import save_json, save_torch
from study.core.ids import DecoderId, ModelId
from study.core.layout import BASELINE_MODELS, DECONV_CHECKPOINT, METRICS, Outputs
from study.core.readers import read_json, require_complete
from study.core.settings import MAX_BASELINE_SEEDS, MAX_NULL_DRAWS, MAX_OCCLUSION_IMAGES
from study.reporting import latent_plots, plots
from study.runs.folders import check_output_dir, remove_tree, run_folder
from study.runs.identity import check_permuted
from study.training.checkpoints import architecture_beside, load_model

CHANNELS = {stage.index: stage.channels for stage in ARCHITECTURE.layers}  # for --help


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Outputs().task2_checkpoint,
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
                        help=f"z1 channels to show: 'all' ({CHANNELS[1]}) or e.g. 0,3")
    parser.add_argument("--z2-channels", default="top6",
                        help="z2 channels to show: 'topK' (the K of largest activation energy "
                             f"for that image), 'all' ({CHANNELS[2]}) or e.g. 0,5,11")
    parser.add_argument("--fit-epochs", type=number(int, 1), default=2,
                        help="epochs to fit the layer-1 decoder on the real z1")
    parser.add_argument("--permuted-checkpoint", type=Path, default=None,
                        help="a DeconvNet trained on permuted labels (train_deconv.py "
                             "--permute-labels; sweep.py makes one): the data-randomisation "
                             "baseline; without it only the model randomisations are run")
    parser.add_argument("--null-draws", type=number(int, 19, MAX_NULL_DRAWS), default=NULL_DRAWS,
                        help="models drawn per null group (re-initialisations per cascade "
                             "stage, and rotations), 19 to {:,}: the smallest p-value is "
                             "1/(draws + 1)".format(MAX_NULL_DRAWS))
    parser.add_argument("--baseline-seeds", type=number(int, 1, MAX_BASELINE_SEEDS),
                        default=SEEDS_PER_CASCADE,
                        help="re-initialisations per cascade stage whose pictures, refitted "
                             "decoders, PSNRs and occlusion are measured (the nulls draw more), "
                             f"1 to {MAX_BASELINE_SEEDS}")
    parser.add_argument("--occlusion-images", type=number(int, 1, MAX_OCCLUSION_IMAGES),
                        default=OCCLUSION_IMAGES,
                        help="test images on which occlusion is compared with the projections, "
                             f"1 to {MAX_OCCLUSION_IMAGES:,}")
    add_data_arguments(parser)
    add_output_arguments(parser, out=str(Outputs().task("task3")))
    add_threads_argument(parser)
    return parser.parse_args(argv)


def channel_choice(layer: int, text: str, count: int | None = None
                   ) -> tuple[str, list[int] | int | None]:
    """Parse --z1-channels/--z2-channels for a layer of `count` channels (the tutorial's by
    default): ('all', None), ('top', K) or ('list', [...])."""
    count, flag = count or CHANNELS[layer], f"--z{layer}-channels"
    if text == "all":
        return "all", None
    if text.startswith("top"):
        if layer == 1:
            raise UsageError(f"{flag} {text!r}: z1 has only {count} channels, give 'all' or "
                             "channel numbers such as 0,3")
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
    twice = sorted({c for c in channels if channels.count(c) > 1})
    if twice:
        raise UsageError(f"{flag}: channel {twice[0]} is given twice; name each channel once")
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise UsageError(f"{flag}: channel {bad[0]} does not exist; z{layer} has channels "
                         f"0..{count - 1}")
    return "list", sorted(set(channels))


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


def load_task2_model(checkpoint: Path, device: torch.device, flag: str = "--checkpoint",
                     arch: Architecture | None = None) -> tuple[DeconvNet, str]:
    """The Task 2 model and the SHA-256 of its checkpoint file, or a one-line error."""
    if checkpoint.is_dir():
        raise UsageError(f"{flag} {checkpoint} is a folder; pass the deconv_net.pth inside it")
    if not checkpoint.is_file():
        raise UsageError(f"no Task 2 checkpoint at {checkpoint}; run train_deconv.py first "
                         f"(or pass {flag})")
    require_complete(checkpoint.parent, "the Task 2 folder",
                     f"rerun train_deconv.py into it (or pass another {flag})")
    # One read: the hash (which keys the refit cache and the metrics) and the weights (which
    # Task 3 and the explorer use) come from the same bytes, even if Task 2 rewrites the file.
    try:
        data = checkpoint.read_bytes()
    except OSError as error:
        raise UsageError(f"{flag} {checkpoint} cannot be read ({error.strerror or error}); "
                         "check its permissions") from None
    net = load_model(checkpoint, "DeconvNet", flag, data=data, arch=arch)
    return fast_layout(net.to(device), device).eval(), hashlib.sha256(data).hexdigest()


def images_of(data, split: str) -> torch.Tensor:
    return data.train_images if split == "train" else data.test_images


def shown_channels(choice: tuple[str, list[int] | int | None], z: torch.Tensor) -> list[int]:
    """The channels to draw for one image: all, the K of largest energy, or a given list."""
    kind, value = choice
    if kind == "all":
        return list(range(z.shape[0]))
    if kind == "top":
        return sorted(z.pow(2).sum(dim=(1, 2)).topk(value).indices.tolist())
    return value


def explorer_models(figures: BaselineFigures, trained_layer1: torch.nn.ConvTranspose2d,
                    arch: Architecture) -> list[dict]:
    """The first model of each randomisation group for the explorer's model switch, each with
    the decoders refitted on its own features (where a cascade leaves z1 as trained, the trained
    model's refitted layer-1 decoder)."""
    depth = arch.depth
    groups = [*(ModelId.cascade(first, depth) for first in range(depth, 0, -1)), ModelId("permuted")]
    words = {str(group): group.long for group in groups}
    models = []
    for group, word in words.items():
        name = next((m for m, g in figures.groups.items() if g == group), None)
        if name is None:
            continue
        fitted = figures.refitted[name]
        models.append({"id": name, "model": figures.ids[name],
                       "label": f"{word} ({name.replace('_', ' ')})",
                       "net": fitted[depth], "layer1_decoder": fitted[1].deconv1 if 1 in fitted
                       else trained_layer1})
    return models


def save_explorer_models(models: list[dict], folder: Path) -> None:
    """Each model as build_explorer.py reads a checkpoint: deconv_net.pth, the layer1_decoder.pth
    fitted for it (keyed by that file's hash) and model.json with its label and what it is
    (ModelId)."""
    for model in models:
        where = folder / model["id"]
        where.mkdir(parents=True, exist_ok=True)
        # saved in the usual layout, as every checkpoint is (Task 3 reads deep nets channels-last;
        # the layer-1 decoders are made fresh, in the usual layout, for every model)
        save_torch({k: v.contiguous() for k, v in model["net"].state_dict().items()},
                   where / DECONV_CHECKPOINT)
        sha256 = hashlib.sha256((where / DECONV_CHECKPOINT).read_bytes()).hexdigest()
        save_torch({"key": {"checkpoint_sha256": sha256},
                    "state": model["layer1_decoder"].state_dict()}, where / "layer1_decoder.pth")
        save_json({"label": model["label"], "model": model["model"].to_json()},
                  where / "model.json")


@dataclass
class Readers:
    """Step 1's result: which decoder reads each layer, and how well every decoder reads."""

    refit: DeconvNet  # the Task 2 model with deconv1 refitted on the real z1
    refit_info: dict
    decoders: dict[DecoderId, Reading]  # every decoder's full-latent test PSNR and r
    pictured_by: dict[int, DecoderId]  # layer -> the decoder its pictures use
    layer_models: dict[int, tuple[DeconvNet, str]]  # layer -> (that decoder's model, its words)
    controls: dict[int, dict[str, Reading]]  # layer -> the switch and latent controls


def read_decoders(net: DeconvNet, args, checkpoint_sha256: str, data) -> Readers:
    """1. Decoders worth reading: refit layer 1 on the real z1, then measure every decoder on the
    full latents of the test set and against the controls."""
    arch = net.arch
    refit, refit_info = layer1_refit(net, args.checkpoint, checkpoint_sha256, data.train_images,
                                     data.content_hash, args.fit_epochs, args.seed, args.quiet)
    readers = decoders_of(net, refit)
    decoders = {decoder: Reading(decoder.label, found["psnr_db"], found["correlation"])
                for decoder, found in decoder_checks(readers, data.test_images).items()}
    for reading in decoders.values():
        print(f"full-latent test PSNR, {reading.label}: {reading.psnr_db:.2f} dB "
              f"(r = {reading.correlation:.2f})")
    pictured_by = {stage.index: DecoderId.picture(stage.index, arch.depth) for stage in arch.layers}
    layer_models = {layer: (readers[decoder][0], "refitted" if decoder.kind == "refit"
                            else "Task 2 decoder") for layer, decoder in pictured_by.items()}
    controls_found = {layer: {case: Reading(**found) for case, found in
                              controls(model, layer, data.test_images).items()}
                      for layer, (model, _) in layer_models.items()}
    return Readers(refit, refit_info, decoders, pictured_by, layer_models, controls_found)


def measure_channels(net: DeconvNet, readers: Readers, data, seed: int, out: Path) -> tuple:
    """2. Every channel over the rule images: statistics, the class make-up and patch appearance
    of its K strongest test images, its top-9 projections. Every rule is read on one seeded set
    of test images, the one the nulls read too, so the channel table and the null tests count
    the same thing. Returns (rule images, rows per layer, class means per layer, top-9 rows)."""
    device = data.test_labels.device
    sample = rule_images(len(data.test_labels), seed=seed)
    sample_images = data.test_images[sample.to(device)]
    sample_labels = data.test_labels[sample.to(device)]
    rows, activations, class_means = channel_table(net, sample_images, sample_labels, seed)
    latent_plots.class_heatmap(class_means, DISPLAY_NAMES, out / "class_selectivity.svg")
    top = {}
    for stage in net.arch.layers:
        strongest = top9(readers.layer_models[stage.index][0], activations[stage.index],
                         sample_images, sample_labels, stage.index)
        plots.save(latent_plots.top9_figure(strongest, stage.index, stage.receptive_field),
                   out / f"top9_{stage.name}.png")
        for row in strongest.rows:  # indices into the whole test split
            row["test_indices"] = sample[row["test_indices"]].tolist()
        top[stage.name] = strongest.rows
    latent_plots.conv1_filters_figure(net.conv1.weight.detach().cpu(), out / "conv1_filters.png")
    for layer_rows in rows.values():  # the claims the nulls weigh: each rule met
        for row in layer_rows:
            row["roles"] = [role for role, _ in channel_roles(row)]
    return sample, rows, class_means, top


def name_channels(arch: Architecture, rows: dict, baselines, pictured_by: dict) -> dict:
    """3b. Each channel named by the rules, each claim against its baseline, and whether its
    single-unit projections look alike: {layer name: rows with their finding}."""
    channels = {}
    diversity = baselines.projection_diversity["per_model"]["trained"]
    for stage in arch.layers:
        layer_rows, judged = rows[stage.index], baselines.rules[stage.name]
        alike = diversity[str(pictured_by[stage.index])]
        for row, judgement, similar in zip(layer_rows, judged["channels"], alike):
            row["baseline_claims"] = judgement
            row["surviving_roles"] = surviving_roles(row, judgement)
            row["projection_diversity"] = similar
            row["rule_sentence"] = describe_channel(stage.index, row)
            row["finding"] = " ".join(filter(None, (
                row["rule_sentence"], against_baselines(row, judgement,
                                                        baselines.rules["protocol"]),
                projections_alike(similar))))
            print(row["finding"])
        channels[stage.name] = layer_rows
    return channels


def explain_images(net: DeconvNet, readers: Readers, data, picks: dict, shown: dict,
                   out: Path) -> dict:
    """4. The two images, one channel at a time: per image and layer the single-channel figure
    (beside the refitted decoder's pictures, Task 2's own decoder read literally) and what lies
    under each channel's strongest unit."""
    explained = {}
    for split, (index, why) in picks.items():
        images = images_of(data, split)
        labels = data.train_labels if split == "train" else data.test_labels
        label = DISPLAY_NAMES[int(labels[index])]
        explained[split] = {"index": index, "class": label, "chosen_as": why}
        for layer, (model, decoder_name) in readers.layer_models.items():
            result = single_channels(model, net, images[index], layer, shown[split][layer])
            literal = (single_channels(net, net, images[index], layer, shown[split][layer])
                       if model is not net else None)
            name = net.arch.layer(layer).name
            plots.save(latent_plots.single_channels_figure(result, images[index], layer,
                                                           decoder_name, literal),
                       out / f"{split}_{name}.png")
            for row in result.rows["channels"]:  # what lies under the strongest unit
                patch = crop(images[index], result.boxes[row["channel"]])
                measured = patch_measures(patch[None].float().cpu() / 255)
                row["patch"] = {"saturation": round(measured["saturation"].item(), 3),
                                "hue_name": hue_name(measured["hue_deg"].item()),
                                "luminance": round(measured["luminance"].item(), 3)}
            explained[split][name] = result.rows
            print(f"{split} image {index} ({label}), {name}: channels {shown[split][layer]}")
    return explained


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    # The channels to draw, checked against the architecture recorded beside the checkpoint
    # before anything is loaded; layers past z2 show their six strongest.
    arch = architecture_beside(args.checkpoint)
    flags = {1: args.z1_channels, 2: args.z2_channels}
    choices = {stage.index: channel_choice(
        stage.index, flags.get(stage.index, f"top{min(6, stage.channels)}"), stage.channels)
        for stage in arch.layers}
    device = select_device(args.device, args.threads, onednn=arch != ARCHITECTURE)
    check_output_dir(args.out, "task3", args.data_dir)
    # These are measurements, not training: full float32 on GPUs too (TF32 would blur the
    # layer-1 affinity check and the PSNRs in the fourth digit).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    net, checkpoint_sha256 = load_task2_model(args.checkpoint, device, arch=arch)
    task2_metrics = args.checkpoint.with_name(METRICS)
    task2 = (read_json(task2_metrics, "Task 2 metrics", "rerun train_deconv.py")
             if task2_metrics.is_file() else {})
    training_seed = task2.get("config", {}).get("seed", args.seed)
    permuted, permuted_info = None, None
    if args.permuted_checkpoint is not None:  # must be what it is said to be (run_identity)
        permuted, permuted_sha256 = load_task2_model(args.permuted_checkpoint, device,
                                                     "--permuted-checkpoint")
        permuted_info = check_permuted(args.permuted_checkpoint, permuted_sha256,
                                       checkpoint_sha256, task2)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    picks = {"train": pick_image(data.train_labels, args.train_index, args.train_class, "train"),
             "test": pick_image(data.test_labels, args.test_index, args.test_class, "test")}
    with run_folder(args.out, "visualize_latents.py", args.data_dir) as out:
        remove_tree(out / BASELINE_MODELS)  # an earlier run's models are not this run's
        data = data.to(device)

        # 1. Decoders worth reading.
        readers = read_decoders(net, args, checkpoint_sha256, data)
        # 2. Every channel over the rule images.
        sample, rows, class_means, top = measure_channels(net, readers, data, args.seed, out)
        # 3. Which findings need a trained network? The same statistics, pictures and occlusion
        #    maps on randomised models, a model trained on permuted labels and randomly rotated
        #    channels; then each channel is named by the rules, each claim against its baseline.
        baselines, baseline_figures = randomisation_baselines(
            net, data, training_seed, {split: index for split, (index, _) in picks.items()},
            rows, permuted, BaselineSettings(
                seeds=baseline_seeds(training_seed, args.baseline_seeds),
                occlusion_images=args.occlusion_images, null_draws=args.null_draws,
                seed=args.seed))
        channels = name_channels(arch, rows, baselines, readers.pictured_by)
        pictured = {layer: str(decoder) for layer, decoder in readers.pictured_by.items()}
        # the channels each image's single-channel figure shows (step 4); the baselines'
        # figure shows the test image's own
        shown = {split: {layer: shown_channels(choices[layer], model.encode(normalize(
                             images_of(data, split)[index][None])).at(layer)[0])
                         for layer, (model, _) in readers.layer_models.items()}
                 for split, (index, _) in picks.items()}
        plots.save(latent_plots.baseline_pictures_figure(baseline_figures, "test",
                                                         pictured,
                                                         shown["test"][arch.depth]),
                   out / "baseline_pictures.png")
        plots.save(latent_plots.occlusion_figure(baseline_figures, {
            split: images_of(data, split)[picks[split][0]] for split in picks},
            pictured[arch.depth], layer=arch.layers[-1].name), out / "occlusion.png")
        # 4. The two images, one channel at a time.
        explained = explain_images(net, readers, data, picks, shown, out)
        # 5. What the explorer page shows beside the trained model: the first randomised model
        #    of each group, with the decoders refitted for it (build_explorer.py reads them).
        save_explorer_models(explorer_models(baseline_figures, readers.refit.deconv1, arch),
                             out / BASELINE_MODELS)

        result = Task3Result(
            architecture=arch,
            layers=tuple(LayerResult(
                stage, channels[stage.name], top[stage.name],
                [[round(v, 4) for v in row] for row in class_means[stage.index].tolist()],
                readers.controls[stage.index], baselines.rules[stage.name])
                for stage in arch.layers),
            decoders=readers.decoders, baselines=baselines.to_json(), images=explained,
            layer1_refit=readers.refit_info, rules=RULES,
            rule_images={"count": len(sample), "of": len(data.test_labels), "seed": args.seed},
            appearance_reference={"random_patches": RANDOM_PATCHES,
                                  "top_k": min(TOP_K, len(sample)), "seed": args.seed},
            conv1_filters=conv1_filter_stats(net), checkpoint=str(args.checkpoint),
            permuted_checkpoint=permuted_info, task2_config=task2.get("config"),
            config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            wall_seconds=round(time.perf_counter() - started, 2), data=data.describe(),
            environment=environment_info(device))
        save_json(result.to_json(), out / METRICS)
        print(f"wrote {out}/: metrics.json and figures")


if __name__ == "__main__":
    run_cli(main)
