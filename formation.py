"""When do channels form? Task 2's network (seed 0) at several points of its training, against
its finished self and the other seeds' finished networks (Zeiler & Fergus 2014, Fig. 4).

`make all` trains seed 0's Task 2 with `--snapshots` (sweep.py --snapshots; the training is
unchanged), which keeps its weights at the initialisation and after 1/8, 1/4, 1/2, 1 and 2
epochs; --run may name another run with snapshots, which must end in the study's own Task 2
network (checked weight for weight). A channel is described as in
compare_seeds.py: its largest pooled value on each of Task 3's rule images. Per layer and
snapshot:

* same units: each channel's correlation with the same channel of the finished network. The
  null is a random network's channel against the finished one (--null-draws networks): a
  channel has "settled" when its correlation is beyond that null (rank p, Holm over the layer's
  channels and snapshots). The initialisation is a snapshot too: what training had yet to change.
* other seeds: the snapshot's channels matched one-to-one (Hungarian) with each other seed's
  finished network, the mean matched correlation against the same matching of random networks
  (rank p of the mean, Holm over layers and snapshots): when does the part every seed learns
  appear?

Writes OUT/metrics.json, OUT/formation.png (both curves per layer against their nulls) and
OUT/formation_units.png (the tied deconvnet's projection of chosen channels' strongest unit at
every snapshot, Z&F Fig. 4).

    python formation.py                 # what make all runs, after the sweep
"""
import time
from pathlib import Path

import numpy as np
import torch

from data import load_cifar10
from models import DeconvNet
from study.analysis.convergence import (ALPHA, channel_responses, correlation_matrix,
                                        match_channels, rank_p)
from study.analysis.nulls import NULL_IMAGES, holm, rule_images
from study.analysis.projections import unit_projections
from study.core.common import (MAX_SEED, ArgumentParser, UsageError, add_data_arguments,
                               add_threads_argument, environment_info, number, number_list, run_cli,
                               select_device)
from study.core.files import save_json
from study.core.layout import DECONV_CHECKPOINT, METRICS, OUTPUTS_FORMAT, Outputs
from study.core.readers import field, read_json, require_complete, require_items
from study.core.settings import MAX_NULL_DRAWS, SWEEP_SEEDS
from study.reporting import plots
from study.runs.folders import check_output_dir, run_folder, task2_checkpoints
from study.runs.identity import done_before, file_sha256, record_done
from study.training.checkpoints import architecture_beside, load_model

NULL_DRAWS = 299  # Holm over 16 channels x 6 snapshots needs p < 0.05 / 96: 299 x 16 values give 1 / 4,785
FIRST_NULL_SEED = 7001  # the random networks' seeds: 7001, 7002, ...
FIX = "rerun make all (its sweep keeps seed 0's snapshots)"


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="the study's outputs (Task 2 of every seed, from make all)")
    parser.add_argument("--run", type=Path, default=None,
                        help="the Task 2 run with snapshots (default: OUTPUTS/task2, seed 0's)")
    parser.add_argument("--seeds", type=number_list(int, 0, MAX_SEED),
                        default=list(SWEEP_SEEDS),
                        help="the seeds of the study's Task 2 runs; the first is the run's")
    parser.add_argument("--null-draws", type=number(int, 19, MAX_NULL_DRAWS), default=NULL_DRAWS,
                        help="random networks in each null")
    parser.add_argument("--images", type=number(int, 10, NULL_IMAGES), default=NULL_IMAGES,
                        help="test images the channels respond to, N chosen as Task 3 chooses "
                             "its rule images (fewer keep a deep network's nulls to minutes)")
    parser.add_argument("--out", type=Path, default=None, help="default: OUTPUTS/formation")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--force", action="store_true",
                        help="compare again even when OUT holds this very comparison")
    add_threads_argument(parser)
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("--seeds needs the run's seed and at least one other to compare with")
    args.out = args.out or Outputs(args.outputs).formation
    args.run = args.run or Outputs(args.outputs).task("task2")
    return args


def snapshots_of(run: Path) -> list[tuple[float, Path]]:
    """(epochs done, checkpoint) of every snapshot the run recorded, in order."""
    require_complete(run, "the snapshots' run", FIX)
    metrics = read_json(run / METRICS, "the snapshots' run metrics", FIX)
    found = field(metrics, "snapshots", list, 2, 65, str(run / METRICS), FIX)  # 64 and step 0
    epochs = require_items([field(s, "epoch", float, 0, None, f"{run / METRICS}: snapshots", FIX)
                            for s in found], float, what=f"{run / METRICS}: snapshots")
    paths = [run / field(s, "file", str, 1, 200, f"{run / METRICS}: snapshots", FIX) for s in found]
    for path in paths:
        if not path.is_file() or path.resolve().parent != (run / "snapshots").resolve():
            raise UsageError(f"snapshot {path} is missing or outside {run / 'snapshots'}; {FIX}")
    return list(zip(epochs, paths))


def same_weights(a: Path, b: Path, arch) -> bool:
    """Whether two checkpoints hold the same weights, bit for bit (their files differ: torch.save
    names the archive's inner folder after a temporary file)."""
    first, second = (load_model(p, "DeconvNet", "checkpoint", arch=arch).state_dict() for p in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def units_null(final: dict, null: list[dict]) -> dict[int, np.ndarray]:
    """Per layer: every random network's channels' r with the same channels of the finished
    network, pooled (the same units' null, the same for every snapshot)."""
    return {layer: np.concatenate([np.diag(correlation_matrix(n[layer], final[layer]))
                                   for n in null]) for layer in final}


def matched(responses: dict, others: list[dict], layer: int) -> float:
    """A network's mean matched r with the other seeds' finished networks (Hungarian),
    averaged over them."""
    return float(np.mean([match_channels(responses[layer], o[layer])[1].mean() for o in others]))


def seeds_null(others: list[dict], null: list[dict]) -> dict[int, np.ndarray]:
    """Per layer: each random network's mean matched r with the other seeds (matched)."""
    return {layer: np.array([matched(n, others, layer) for n in null]) for layer in others[0]}


def same_units(snapshot: dict, final: dict, pooled: dict[int, np.ndarray]) -> dict:
    """Per layer: each channel's r with the same channel of the finished network, its rank p
    against random networks' channels (`pooled`: units_null), the mean r."""
    found = {}
    for layer in final:
        r = np.diag(correlation_matrix(snapshot[layer], final[layer]))
        found[f"z{layer}"] = {"r": [round(float(v), 4) for v in r],
                              "p": [rank_p(v, pooled[layer]) for v in r],
                              "mean_r": round(float(r.mean()), 4),
                              "null_q95_r": round(float(np.quantile(pooled[layer], 0.95)), 4)}
    return found


def other_seeds(snapshot: dict, others: list[dict], null_means: dict[int, np.ndarray]) -> dict:
    """Per layer: the mean matched r with the other seeds' finished networks (averaged over
    them), and its rank p against random networks matched with them the same way
    (`null_means`: seeds_null)."""
    found = {}
    for layer in snapshot:
        value = matched(snapshot, others, layer)
        found[f"z{layer}"] = {"mean_r": round(value, 4), "p": rank_p(value, null_means[layer]),
                              "null_q95_r": round(float(np.quantile(null_means[layer], 0.95)), 4)}
    return found


def corrected(rows: list[dict]) -> None:
    """Holm in place: same units over each layer's channels and snapshots, "settled" per
    channel; other seeds over every layer and snapshot."""
    for layer in rows[0]["same_units"]:
        tests = [(row, c) for row in rows for c in range(len(row["same_units"][layer]["p"]))]
        adjusted = holm([row["same_units"][layer]["p"][c] for row, c in tests])
        for (row, c), p in zip(tests, adjusted):
            row["same_units"][layer].setdefault("p_holm", []).append(round(p, 5))
        for row in rows:
            row["same_units"][layer]["settled"] = sum(p < ALPHA for p in row["same_units"][layer]["p_holm"])
    tests = [(row, layer) for row in rows for layer in row["other_seeds"]]
    for (row, layer), p in zip(tests, holm([row["other_seeds"][layer]["p"] for row, layer in tests])):
        row["other_seeds"][layer]["p_holm"] = round(p, 5)


def curves_figure(rows: list[dict]) -> plots.plt.Figure:
    """Per layer: the same units' mean r and the other seeds' mean matched r over training,
    each with its null's 95th percentile (dotted)."""
    layers = list(rows[0]["same_units"])
    fig, axes = plots.plt.subplots(1, len(layers), figsize=(plots.TEXT_WIDTH_IN, 2.3), squeeze=False)
    x = [row["epoch"] for row in rows]
    for ax, layer in zip(axes[0], layers):
        for key, colour, label in (("same_units", "tab:blue", "same units, finished network"),
                                   ("other_seeds", "tab:orange", "other seeds (matched)")):
            ax.plot(x, [row[key][layer]["mean_r"] for row in rows], marker="o", color=colour, label=label)
            ax.plot(x, [row[key][layer]["null_q95_r"] for row in rows], linestyle=":", color=colour,
                    label=f"{label.split(',')[0].split(' (')[0]}: random networks, 95th pct.")
        ax.set_title(layer)
        ax.set_xlabel("epochs of training")
        ax.set_ylabel("mean r")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


@torch.no_grad()
def units_figure(nets: list[DeconvNet], epochs: list[float], images: torch.Tensor,
                 chosen: list[tuple[int, int]]) -> plots.plt.Figure:
    """Rows: chosen (layer, channel); columns: snapshots. Each cell: the tied deconvnet's
    projection of that channel's strongest unit over the images (|value| summed over colours,
    own scale), cut to the unit's receptive field."""
    from data import normalize
    from study.analysis.evidence import crop, receptive_box

    fig, axes = plots.plt.subplots(len(chosen), len(nets), squeeze=False,
                                   figsize=(min(plots.TEXT_WIDTH_IN, 0.75 * len(nets) + 0.6),
                                            0.75 * len(chosen) + 0.3))
    for column, net in enumerate(nets):
        latents = net.encode(normalize(images))
        for row, (layer, channel) in enumerate(chosen):
            z = latents.at(layer)[:, channel].flatten(1)
            best = int(z.max(1).values.argmax())
            one = latents.apply(lambda t: t[best:best + 1])
            where = torch.tensor([int(z[best].argmax())])
            picture = unit_projections(net, one, layer, torch.tensor([channel]), where, tied=True)[0]
            box = receptive_box(layer, int(where), latents.at(layer).shape[-1], net.arch)
            magnitude = crop(picture.abs().sum(0, keepdim=True), box)[0]
            ax = axes[row][column]
            ax.imshow((magnitude / magnitude.max().clamp_min(1e-12)).numpy(), cmap="gray_r")
            plots.bare(ax)
            if row == 0:
                ax.set_title(f"{epochs[column]:g} ep.", fontsize=7)
            if column == 0:
                ax.set_ylabel(f"z{layer}:{channel}", fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    tree = Outputs(args.outputs)
    finals = task2_checkpoints(tree, args.seeds)
    snapshots = snapshots_of(args.run)
    arch = architecture_beside(finals[0])
    if not same_weights(args.run / DECONV_CHECKPOINT, finals[0], arch):
        raise UsageError(f"{args.run} did not end in the study's Task 2 network ({finals[0]}); "
                         "train it with Task 2's settings")
    device = select_device(args.device, args.threads)
    check_output_dir(args.out, "formation", args.data_dir)

    def load(path: Path) -> DeconvNet:
        return load_model(path, "DeconvNet", "checkpoint", arch=arch).eval().to(device)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    # the same comparison already made (same networks, snapshots, data, protocol) is not redone
    identity = {"script": "formation.py", "seeds": args.seeds, "null_draws": args.null_draws,
                "checkpoints": [file_sha256(p) for p in finals],
                "snapshots": [[epoch, file_sha256(path)] for epoch, path in snapshots],
                "seed": args.seed, "images": args.images, "data_sha256": data.content_hash,
                "format": OUTPUTS_FORMAT}
    if done_before(args.out, identity, args.force,
                   "the same networks, snapshots, data and protocol"):
        return
    images = data.test_images[rule_images(len(data.test_labels), args.images, seed=args.seed)]
    images = images.to(device)
    final = channel_responses(load(finals[0]), images)
    others = [channel_responses(load(p), images) for p in finals[1:]]
    null = []
    for d in range(args.null_draws):
        torch.manual_seed(FIRST_NULL_SEED + d)
        null.append(channel_responses(DeconvNet(arch).eval().to(device), images))
    pooled, null_means = units_null(final, null), seeds_null(others, null)  # once, for every snapshot
    nets = [load(path) for _, path in snapshots]
    rows = []
    for (epoch, path), net in zip(snapshots, nets):
        responses = channel_responses(net, images)
        rows.append({"epoch": epoch, "file": path.name,
                     "same_units": same_units(responses, final, pooled),
                     "other_seeds": other_seeds(responses, others, null_means)})
    corrected(rows)
    for row in rows:
        print(f"after {row['epoch']:g} epochs: " + "; ".join(
            f"{layer} {row['same_units'][layer]['settled']} of {len(row['same_units'][layer]['r'])} "
            f"channels settled, other seeds r = {row['other_seeds'][layer]['mean_r']:.2f} "
            f"(Holm p = {row['other_seeds'][layer]['p_holm']:.3f})" for layer in row["same_units"]))
    # the pictures: per layer the two channels the finished network responds to most
    chosen = [(layer, int(c)) for layer, found in final.items()
              for c in np.argsort(-found.mean(axis=0), kind="stable")[:2]]
    with run_folder(args.out, "formation.py", args.data_dir) as out:
        plots.save(curves_figure(rows), out / "formation.png")
        plots.save(units_figure([n.cpu() for n in nets], [e for e, _ in snapshots],
                                images.cpu(), chosen), out / "formation_units.png")
        save_json({"task": "formation", "run": str(args.run), "seeds": args.seeds,
                   "checkpoints": [str(p) for p in finals], "architecture": arch.describe(),
                   "snapshots": rows, "chosen": [f"z{l}:{c}" for l, c in chosen],
                   "protocol": {"null_draws": args.null_draws, "first_null_seed": FIRST_NULL_SEED,
                                "images": len(images), "alpha": ALPHA,
                                "response": "each channel's largest pooled value per image",
                                "same_units": "r with the same channel of the finished network; "
                                              "null: random networks' channels; Holm over the "
                                              "layer's channels and snapshots",
                                "other_seeds": "mean matched r (Hungarian) with the other seeds' "
                                               "finished networks; null: random networks matched "
                                               "alike; Holm over layers and snapshots"},
                   "wall_seconds": round(time.perf_counter() - started, 2),
                   "data": data.describe(), "environment": environment_info(device)},
                  out / METRICS)
        record_done(out, identity)
        print(f"wrote {out}/: metrics.json, formation.png and formation_units.png")


if __name__ == "__main__":
    run_cli(main)
