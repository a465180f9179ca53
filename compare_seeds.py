"""Do different seeds learn the same channels? Task 2's networks of every seed, matched channel
by channel, against pairs of random networks.

Per layer, every pair of seeds is matched one-to-one (Hungarian, on the correlation of the
channels' responses over Task 3's rule images; study/analysis/convergence.py), and each matched
correlation is weighed against the same matching between pairs of independently initialised
random networks (--null-draws pairs, forward passes only): rank p, Holm over the layer's channels
and seed pairs. Writes OUT/metrics.json and OUT/seeds_agree.png (each layer's matched
correlations against the null, and the first layer's filters of every seed in matched order).

    python compare_seeds.py                    # after make all (Task 2 with seeds 0, 1, 2)
"""
import time
from pathlib import Path

import numpy as np
import torch

from data import load_cifar10
from models import DeconvNet
from study.analysis.convergence import channel_responses, seeds_agree
from study.analysis.nulls import NULL_IMAGES, rule_images
from study.core.common import (MAX_SEED, ArgumentParser, UsageError, add_data_arguments,
                               add_threads_argument, environment_info, number, number_list, run_cli,
                               select_device)
from study.core.files import save_json
from study.core.layout import METRICS, OUTPUTS_FORMAT, Outputs
from study.core.settings import MAX_NULL_DRAWS, SWEEP_SEEDS
from study.reporting import plots
from study.runs.folders import check_output_dir, run_folder, task2_checkpoints
from study.runs.identity import done_before, file_sha256, record_done
from study.training.checkpoints import architecture_beside, load_model

NULL_DRAWS = 299  # the layers' test: Holm over 2 layers x 3 pairs needs p < 0.05 / 6 = 1 / 120
FIRST_NULL_SEED = 5001  # random networks' seeds: 5001, 5002, ... (two per draw)


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="the study's outputs folder (make all): Task 2 of every seed")
    parser.add_argument("--seeds", type=number_list(int, 0, MAX_SEED),
                        default=list(SWEEP_SEEDS), help="the Task 2 seeds to compare, the first "
                        "being the one in OUTPUTS/task2, e.g. 0,1,2")
    parser.add_argument("--null-draws", type=number(int, 19, MAX_NULL_DRAWS), default=NULL_DRAWS,
                        help=f"pairs of random networks matched for the null, 19 to {MAX_NULL_DRAWS:,}")
    parser.add_argument("--images", type=number(int, 10, NULL_IMAGES), default=NULL_IMAGES,
                        help="test images the channels respond to, N chosen as Task 3 chooses "
                             "its rule images (fewer keep a deep network's nulls to minutes)")
    parser.add_argument("--out", type=Path, default=None, help="default: OUTPUTS/seeds")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--force", action="store_true",
                        help="compare again even when OUT holds this very comparison")
    add_data_arguments(parser)
    add_threads_argument(parser)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:  # repeats are dropped by number_list
        parser.error("--seeds needs two or more different seeds, e.g. 0,1,2")
    args.out = args.out or Outputs(args.outputs).seeds
    return args


SHOWN_FILTERS = 16  # conv1 filters drawn per seed: more would be too small to see


def figure(result: dict, filters: list[np.ndarray], seeds: list[int]) -> plots.plt.Figure:
    """Left: per layer, each seed pair's matched correlations against the null's 95th
    percentile; right: conv1's filters of every seed (the first SHOWN_FILTERS of the first
    seed's and their partners), in the order matched to the first seed."""
    total = filters[0].shape[0]
    filters = [f[:SHOWN_FILTERS] for f in filters]
    layers = list(result)
    fig, axes = plots.plt.subplots(1, 2, figsize=(plots.TEXT_WIDTH_IN, 2.1),
                                   gridspec_kw={"width_ratios": [1.2, 1]})
    left, right = axes
    for k, name in enumerate(layers):
        block = result[name]
        for j, (pair, found) in enumerate(block["pairs"].items()):
            x = k + (j - 1) * 0.18 + np.random.default_rng(j).uniform(-0.05, 0.05, len(found["r"]))
            left.scatter(x, found["r"], s=6, color=f"C{j}", label=f"seeds {pair}" if k == 0 else None)
        left.hlines(block["null"]["q95_r"], k - 0.4, k + 0.4, colors="k", linestyles="dashed",
                    label="random pairs, 95th pct" if k == 0 else None)
    left.set_xticks(range(len(layers)), layers)
    left.set_ylabel("matched correlation")
    left.legend(fontsize=7, frameon=False, loc="lower left")
    size = filters[0].shape[1]
    gap = np.ones((size, 1, 3))  # a white line between filters, and between seeds
    rows = [np.concatenate([part for c in range(len(f)) for part in (f[c], gap)][:-1], axis=1)
            for f in filters]
    width = rows[0].shape[1]
    stacked = [part for row in rows for part in (row, np.ones((1, width, 3)))][:-1]
    right.imshow(np.concatenate(stacked, axis=0), interpolation="nearest")
    size += 1
    right.set_yticks([size * (k + 0.5) for k in range(len(seeds))], [f"seed {s}" for s in seeds],
                     fontsize=7)
    right.set_xticks([])
    shown = filters[0].shape[0]
    right.set_title("conv1 filters, matched to the first seed"
                    + (f" (the first {shown})" if shown < total else ""), fontsize=7)
    fig.tight_layout()
    return fig


def rgb_filters(net: DeconvNet, order: list[int]) -> np.ndarray:
    """conv1's filters (C, k, k, 3), each min-max scaled, in `order`."""
    w = net.conv1.weight.detach().cpu().permute(0, 2, 3, 1).numpy()[order]
    low = w.min(axis=(1, 2, 3), keepdims=True)
    high = w.max(axis=(1, 2, 3), keepdims=True)
    return (w - low) / np.maximum(high - low, 1e-12)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    tree = Outputs(args.outputs)
    paths = task2_checkpoints(tree, args.seeds)
    arch = architecture_beside(paths[0])
    device = select_device(args.device, args.threads)
    check_output_dir(args.out, "seeds", args.data_dir)
    nets = [load_model(p, "DeconvNet", "checkpoint", arch=architecture_beside(p)).eval()
            for p in paths]
    if any(net.arch != arch for net in nets):
        raise UsageError("the seeds' Task 2 models are of different architectures; compare "
                         "models of one architecture")
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    # the same comparison already made (same networks, data and protocol) is not made again
    identity = {"script": "compare_seeds.py", "checkpoints": [file_sha256(p) for p in paths],
                "seeds": args.seeds, "null_draws": args.null_draws, "seed": args.seed,
                "images": args.images,
                "data_sha256": data.content_hash, "format": OUTPUTS_FORMAT}
    if done_before(args.out, identity, args.force,
                   "the same seeds' networks, data and protocol"):
        return
    chosen = rule_images(len(data.test_labels), args.images, seed=args.seed)
    images = data.test_images[chosen].to(device)
    responses = [channel_responses(net.to(device), images) for net in nets]
    null_pairs = []
    for d in range(args.null_draws):
        pair = []
        for k in range(2):
            torch.manual_seed(FIRST_NULL_SEED + 2 * d + k)
            pair.append(channel_responses(DeconvNet(arch).eval().to(device), images))
        null_pairs.append(tuple(pair))
    result = seeds_agree(responses, null_pairs, args.seeds)
    order = [list(range(arch.layer(1).channels))] + [
        result["z1"]["pairs"][f"{args.seeds[0]}-{s}"]["partner"] for s in args.seeds[1:]]
    with run_folder(args.out, "compare_seeds.py", args.data_dir) as out:
        plots.save(figure(result, [rgb_filters(n.cpu(), o) for n, o in zip(nets, order)],
                          args.seeds), out / "seeds_agree.png")
        for name, block in result.items():
            print(f"{name}: {len(block['counterpart_in_every_seed'])} of {block['channels']} "
                  f"channels of seed {args.seeds[0]} have a counterpart in every other seed "
                  f"beyond the null (Holm); null 95th percentile r = {block['null']['q95_r']:.2f}")
        save_json({"task": "seeds", "seeds": args.seeds, "checkpoints": [str(p) for p in paths],
                   "architecture": arch.describe(), "layers": result,
                   "protocol": {"null_draws": args.null_draws, "first_null_seed": FIRST_NULL_SEED,
                                "images": len(chosen), "alpha": 0.05,
                                "response": "each channel's largest pooled value per image",
                                "matching": "Hungarian on Pearson r (linear_sum_assignment)",
                                "holm": "over the layer's channels and every seed pair"},
                   "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "wall_seconds": round(time.perf_counter() - started, 2),
                   "data": data.describe(), "environment": environment_info(device)},
                  out / METRICS)
        record_done(out, identity)
        print(f"wrote {out}/: metrics.json and seeds_agree.png")


if __name__ == "__main__":
    run_cli(main)
