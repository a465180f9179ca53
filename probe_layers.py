"""Linear probes per layer (Alain & Bengio 2016): how much of the class each layer of a trained
encoder makes linearly readable, against the same encoder with its convolutions re-initialised
from the top down (cascading randomisation), the same network trained on permuted labels, and
the raw pixels (the floor).

The probe's protocol (features, classifier, images) is fixed in study/analysis/probes.py. A layer is
probed on a re-initialised model only where the re-initialisation reaches it (a cascade from
the top leaves the layers below its first re-initialised convolution as they were trained).
Each baseline's probe, and the pixels' one, is compared with the trained one's on the same test
images by an exact McNemar test; Holm's correction runs over all of them (every layer, every
baseline).

    python probe_layers.py                # the tutorial's Task 2 model (outputs/task2)
    python probe_layers.py --checkpoint outputs/depth/task2/deconv_net.pth \\
        --permuted-checkpoint outputs/depth/runs/task2_permuted_seed0/deconv_net.pth \\
        --out outputs/depth/probes
"""
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from data import DISPLAY_NAMES, load_cifar10, normalize
from models import ARCHITECTURE
from study.analysis.nulls import holm
from study.analysis.probes import (PROBE_TRAIN_IMAGES, describe_protocol, pixel_probe_predictions,
                                   probe_layer_predictions, require_finite_features)
from study.analysis.random_models import baseline_seeds, cascades, changed_layers, reinitialised
from study.core.common import (ArgumentParser, UsageError, add_data_arguments, add_output_arguments,
                               add_threads_argument, environment_info, fast_layout, number, run_cli,
                               select_device)
from study.core.files import save_json
from study.core.layout import METRICS, Outputs
from study.core.readers import field, read_json, require_complete, require_items
from study.runs.folders import check_output_dir, run_folder
from study.runs.identity import check_permuted, file_sha256
from study.training.checkpoints import architecture_beside, load_model
from study.training.loop import mcnemar


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Outputs().task2_checkpoint,
                        help="the trained network: a DeconvNet written by train_deconv.py")
    parser.add_argument("--permuted-checkpoint", type=Path, default=None,
                        help="the same network trained on permuted labels (train_deconv.py "
                             "--permute-labels); without it that baseline is left out")
    parser.add_argument("--train-images", type=number(int, 10), default=PROBE_TRAIN_IMAGES,
                        help="training images each probe is fitted on (a stratified subset)")
    parser.add_argument("--pixels-from", type=Path, default=None,
                        help="the output folder of an earlier probe_layers.py run on the same "
                             "data, --seed and --train-images: its raw-pixel floor is read "
                             "instead of fitted again (the floor does not depend on the network; "
                             "its fit is the slowest probe, minutes on the full data)")
    add_data_arguments(parser)
    add_output_arguments(parser, out=str(Outputs().probes))
    add_threads_argument(parser)
    return parser.parse_args(argv)


def load_network(path: Path, flag: str) -> torch.nn.Module:
    """A finished Task 2 model, in eval mode, or a one-line error saying how to make it."""
    if not path.is_file():
        raise UsageError(f"no Task 2 checkpoint at {path}; run train_deconv.py first (or pass {flag})")
    require_complete(path.parent, "the Task 2 folder", f"rerun train_deconv.py into it (or pass another {flag})")
    return load_model(path, "DeconvNet", flag).eval().requires_grad_(False)


def training_seed(checkpoint: Path) -> int:
    """The seed the network was trained with (its metrics.json), so that no baseline reuses it."""
    metrics = checkpoint.with_name(METRICS)
    if not metrics.is_file():
        return 0
    seed = read_json(metrics, "Task 2 metrics", "rerun train_deconv.py").get("config", {}).get("seed", 0)
    return seed if isinstance(seed, int) else 0


def earlier_pixel_predictions(folder: Path, data, seed: int, train_images: int) -> np.ndarray:
    """The raw-pixel probe's test predictions written by an earlier run into `folder`, which must
    have probed the same images (content hash and counts) with the same protocol, seed and
    training images: else one UsageError saying which differs."""
    fix = "rerun probe_layers.py into it with the same data and settings, or leave out --pixels-from"
    require_complete(folder, "--pixels-from", fix)
    path = folder / METRICS
    metrics = read_json(path, "--pixels-from: the probes' metrics", fix)
    if metrics.get("task") != "probes":
        raise UsageError(f"--pixels-from {folder} holds no probe_layers.py results; {fix}")
    theirs, ours = field(metrics, "data", dict, what=str(path), fix=fix), data.describe()
    expected = {"content_sha256": ours["content_sha256"], "train_images": ours["train_images"],
                "test_images": ours["test_images"],
                "protocol": describe_protocol(train_images), "seed": seed}
    found = {**{k: theirs.get(k) for k in ("content_sha256", "train_images", "test_images")},
             "protocol": metrics.get("protocol"), "seed": metrics.get("config", {}).get("seed")
             if isinstance(metrics.get("config"), dict) else None}
    differing = [key for key in expected if found[key] != expected[key]]
    if differing:
        raise UsageError(f"--pixels-from {folder} probed other {' and '.join(differing)} than "
                         f"this run; {fix}")
    predicted = require_items(field(metrics, "pixel_predictions", list, ours["test_images"],
                                    ours["test_images"], str(path), fix),
                              int, 0, len(DISPLAY_NAMES) - 1, f"{path}: pixel_predictions", fix)
    return np.array(predicted)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    arch = architecture_beside(args.checkpoint)
    device = select_device(args.device, args.threads, onednn=arch != ARCHITECTURE)
    check_output_dir(args.out, "probes", args.data_dir)
    net = fast_layout(load_network(args.checkpoint, "--checkpoint"), device)
    permuted = (fast_layout(load_network(args.permuted_checkpoint, "--permuted-checkpoint"), device)
                if args.permuted_checkpoint is not None else None)
    if permuted is not None and permuted.arch != arch:
        raise UsageError(f"--permuted-checkpoint {args.permuted_checkpoint} is another architecture "
                         f"than --checkpoint {args.checkpoint}")
    # which network this is, for whoever combines these probes with other runs (the depth
    # report); and the permuted-labels baseline must be one (run_identity), as for Task 3
    checkpoint_sha256 = file_sha256(args.checkpoint)
    beside = args.checkpoint.with_name(METRICS)
    trained_metrics = (read_json(beside, "Task 2 metrics", "rerun train_deconv.py")
                       if beside.is_file() else {})
    permuted_info = (None if permuted is None else
                     check_permuted(args.permuted_checkpoint, file_sha256(args.permuted_checkpoint),
                                    checkpoint_sha256, trained_metrics))
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    pixel_predictions = (None if args.pixels_from is None else  # checked before any probe is fitted
                         earlier_pixel_predictions(args.pixels_from, data, args.seed, args.train_images))

    # The encoders: trained, each cascade of re-initialisations (one seed, never the training
    # seed), and the permuted-labels twin; each with the layers it changes.
    trained_with = training_seed(args.checkpoint)
    seed = baseline_seeds(trained_with)[0]
    every_layer = {stage.index for stage in arch.layers}
    models = {"trained": (net, every_layer)}
    for cascade in cascades(arch):
        models[cascade] = (reinitialised(net, cascade, seed, trained_with), changed_layers(cascade, arch))
    if permuted is not None:
        models["permuted_labels"] = (permuted, every_layer)

    # every network's features are finite on a first batch, before the folder is touched
    with torch.no_grad():
        sample = normalize(data.test_images[:256]).to(device)
        for name, (model, changed) in models.items():
            latents = model.to(device).encode(sample)
            for layer in sorted(changed):
                require_finite_features(latents.at(layer).cpu().numpy(), layer=layer)

    # --threads bounds the probes' BLAS too (scikit-learn's fits), not only PyTorch: make depth
    # probes the tutorial's net on one core beside the training runs
    with threadpool_limits(limits=args.threads), run_folder(args.out, "probe_layers.py", args.data_dir) as out:
        data = data.to(device)
        layers: dict[str, dict] = {stage.name: {"accuracy": {}, "mcnemar": {}} for stage in arch.layers}
        predictions: dict[str, dict] = {stage.name: {} for stage in arch.layers}
        seconds = {}
        progress = tqdm(total=sum(len(changed) for _, changed in models.values()) + 1,
                        desc="linear probes", unit="probe", disable=args.quiet)
        test_labels = data.test_labels.cpu().numpy()
        for name, (model, changed) in models.items():
            clock = time.perf_counter()
            found = probe_layer_predictions(model.to(device), data, sorted(changed), args.seed,
                                            args.train_images)
            for layer, predicted in found.items():
                predictions[layer][name] = (predicted == test_labels).tolist()
                layers[layer]["accuracy"][name] = round(float((predicted == test_labels).mean()), 4)
            seconds[name] = round(time.perf_counter() - clock, 2)
            progress.update(len(changed))
        clock = time.perf_counter()
        if pixel_predictions is None:
            pixel_predictions = pixel_probe_predictions(data, args.seed, args.train_images)
        pixels_correct = pixel_predictions == test_labels
        pixels = round(float(pixels_correct.mean()), 4)
        for layer in predictions:  # the floor, compared with every layer
            predictions[layer]["pixels"] = pixels_correct.tolist()
        seconds["pixels"] = round(time.perf_counter() - clock, 2)
        progress.update(1)
        progress.close()
        # trained against each baseline, per layer: McNemar, then Holm over the whole family
        tests = [(layer, name, mcnemar(correct["trained"], correct[name]))
                 for layer, correct in predictions.items() for name in correct if name != "trained"]
        for (layer, name, test), adjusted in zip(tests, holm([t["p_value"] for _, _, t in tests])):
            layers[layer]["mcnemar"][name] = {**test, "p_holm": round(adjusted, 4)}
        for layer, found in layers.items():
            shown = ", ".join(f"{name} {100 * accuracy:.1f} %" for name, accuracy in found["accuracy"].items())
            print(f"{layer}: {shown}")
        print(f"raw pixels: {100 * pixels:.1f} %")
        save_json({
            "task": "probes", "checkpoint": str(args.checkpoint),
            "checkpoint_sha256": checkpoint_sha256, "permuted_checkpoint": permuted_info,
            "architecture": arch.describe(), "protocol": describe_protocol(args.train_images),
            "randomised": {"seed": seed, "training_seed": trained_with,
                           "cascades": {k: list(v) for k, v in cascades(arch).items()}},
            "layers": layers, "pixels": pixels, "seconds": seconds,
            "pixel_predictions": pixel_predictions.tolist(),  # for a later run's --pixels-from
            "pixels_from": None if args.pixels_from is None else str(args.pixels_from),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "wall_seconds": round(time.perf_counter() - started, 2),
            "data": data.describe(), "environment": environment_info(device),
        }, out / METRICS)
        print(f"wrote {out / 'metrics.json'}")


if __name__ == "__main__":
    run_cli(main)
