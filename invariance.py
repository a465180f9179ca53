"""What does each layer become invariant to? Task 2's network and random networks of the same
architecture, on test images moved, scaled, rotated and mirrored (Zeiler & Fergus 2014, Fig. 5).

Per layer and transformation: the distance between the features of an image and of its
transformed copy, relative to the features' length, averaged over --images test images, and the
true class's probability; the same for --random-draws random networks, and per layer a rank p
for "more invariant than the random networks" at the largest amount, Holm over every layer and
transformation (study/analysis/invariance.py). Writes OUT/metrics.json and OUT/invariance.png.

    python invariance.py                     # after make all: outputs/task2 into outputs/invariance
"""
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data import load_cifar10
from models import DeconvNet
from study.analysis.invariance import (TRANSFORMS, compare_with_random, draws_needed,
                                       invariance_curves, tests_of, transformed)
from study.analysis.nulls import rule_images
from study.core.common import (ArgumentParser, UsageError, add_data_arguments, add_threads_argument,
                               environment_info, number, run_cli, select_device)
from study.core.files import save_json
from study.core.layout import METRICS, OUTPUTS_FORMAT, Outputs
from study.core.readers import require_complete
from study.core.settings import usable_cores
from study.reporting import plots
from study.runs.folders import check_output_dir, run_folder
from study.runs.identity import done_before, file_sha256, record_done
from study.training.checkpoints import architecture_beside, load_model

FIRST_RANDOM_SEED = 7001
CURVE_DRAWS = 19  # random networks measured at every amount (the figure's dashed curves); the
# others at the largest amounts only, where the tests are made


def default_draws(layers: int) -> int:
    """The fewest random networks that let a result survive Holm over the network's tests,
    rounded up to one below a hundred (the tutorial's 16 tests: 399; four layers' 32: 699)."""
    return 100 * math.ceil((draws_needed(tests_of(layers)) + 1) / 100) - 1


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Outputs().task2_checkpoint,
                        help="the trained network: a DeconvNet written by train_deconv.py")
    parser.add_argument("--images", type=number(int, 10, 10_000), default=500,
                        help="test images transformed: N chosen as Task 3 chooses its rule images")
    parser.add_argument("--random-draws", type=number(int, CURVE_DRAWS, 9_999), default=None,
                        help="random networks the trained one is compared with (default: the "
                        "fewest that let a result survive Holm over the network's tests, e.g. "
                        "399 for the tutorial's 2 layers)")
    parser.add_argument("--out", type=Path, default=Outputs().invariance,
                        help="the output folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--force", action="store_true",
                        help="measure again even when OUT holds this very measurement")
    add_data_arguments(parser)
    add_threads_argument(parser, default=usable_cores())  # forward passes only: every core
    return parser.parse_args(argv)


def figure(trained: dict, random: list[dict]) -> plots.plt.Figure:
    """One panel per transformation: each layer's relative feature distance (trained: solid,
    random networks' mean: dashed) and the true class's probability (trained, right axis)."""
    fig, axes = plots.plt.subplots(1, len(TRANSFORMS), figsize=(plots.TEXT_WIDTH_IN, 1.9))
    for ax, (kind, block) in zip(axes, trained.items()):
        order = sorted(range(len(block["amounts"])), key=lambda i: block["amounts"][i])
        x = [block["amounts"][i] for i in order]
        for k, (layer, values) in enumerate(block["distance"].items()):
            ax.plot(x, [values[i] for i in order], color=f"C{k}", marker="o", ms=2, label=layer)
            mean = [sum(r[kind]["distance"][layer][i] for r in random) / len(random) for i in order]
            ax.plot(x, mean, color=f"C{k}", linestyle="dashed", linewidth=0.8)
        twin = ax.twinx()
        twin.plot(x, [block["true_class"][i] for i in order], color="k", linewidth=0.8)
        twin.set_ylim(0, 1)
        twin.tick_params(labelsize=7)
        ax.set_title(kind, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("relative feature distance", fontsize=7)
    twin.set_ylabel("true class probability (black)", fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plots.plt.Line2D([], [], color="grey", linestyle="dashed", linewidth=0.8))
    axes[0].legend(handles, [*labels, "random nets"], fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if not args.checkpoint.is_file():
        raise UsageError(f"no Task 2 checkpoint at {args.checkpoint}; run make all (or "
                         "train_deconv.py) first, or pass --checkpoint")
    require_complete(args.checkpoint.parent, "the Task 2 folder", "rerun train_deconv.py")
    arch = architecture_beside(args.checkpoint)
    device = select_device(args.device, args.threads)
    check_output_dir(args.out, "invariance", args.data_dir)
    net = load_model(args.checkpoint, "DeconvNet", "--checkpoint", arch=arch).eval().to(device)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    chosen = rule_images(len(data.test_labels), args.images, seed=args.seed)
    images, labels = data.test_images[chosen].to(device), data.test_labels[chosen].to(device)
    args.random_draws = args.random_draws or default_draws(arch.depth)
    identity = {"script": "invariance.py", "checkpoint": file_sha256(args.checkpoint),
                "images": args.images, "random_draws": args.random_draws, "seed": args.seed,
                "first_random_seed": FIRST_RANDOM_SEED, "data_sha256": data.content_hash,
                "format": OUTPUTS_FORMAT}
    if done_before(args.out, identity, args.force, "the same network, data and protocol"):
        return
    moved = transformed(images)  # made once: every network reads the same copies
    trained = invariance_curves(net, images, labels, moved)
    random = []
    for d in tqdm(range(args.random_draws), desc="random networks", unit="net",
                  disable=args.quiet, leave=False):
        torch.manual_seed(FIRST_RANDOM_SEED + d)
        random.append(invariance_curves(DeconvNet(arch).eval().to(device), images, labels, moved,
                                        largest_only=d >= CURVE_DRAWS))
    tests = compare_with_random(trained, random)
    with run_folder(args.out, "invariance.py", args.data_dir) as out:
        plots.save(figure(trained, random[:CURVE_DRAWS]), out / "invariance.png")
        for test in tests["tests"]:
            print(f"{test['transform']:11s} {test['layer']}: distance {test['trained']:.3f} at "
                  f"{test['amount']} (random networks {min(test['random']):.3f} to "
                  f"{max(test['random']):.3f}), Holm p more invariant {test['p_more_holm']:.3f}, "
                  f"less invariant {test['p_less_holm']:.3f}")
        save_json({"task": "invariance", "checkpoint": str(args.checkpoint),
                   "architecture": arch.describe(), "trained": trained, "random": random,
                   "tests": tests, "transforms": TRANSFORMS, "images": len(chosen),
                   "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "wall_seconds": round(time.perf_counter() - started, 2),
                   "data": data.describe(), "environment": environment_info(device)}, out / METRICS)
        record_done(out, identity)
        print(f"wrote {out}/: metrics.json and invariance.png")


if __name__ == "__main__":
    run_cli(main)
