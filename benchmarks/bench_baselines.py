"""The randomisation baselines of Task 3 (baselines.py) on a trained model: the numbers and the time.

Runs baselines.randomisation_baselines with its defaults on the Task 2 model (and on the model
trained with --permute-labels, if given), writes the block as JSON and prints the tables: rule
counts trained vs baselines, the claims that exceed every baseline, picture similarity,
projection diversity, occlusion agreement, and the wall and CPU seconds.

    python train_deconv.py --data-dir ../shared/cifar10 --out /tmp/bl/task2
    python train_deconv.py --data-dir ../shared/cifar10 --out /tmp/bl/perm --permute-labels
    python -m benchmarks.bench_baselines --data-dir ../shared/cifar10 \\
        --checkpoint /tmp/bl/task2/deconv_net.pth --permuted /tmp/bl/perm/deconv_net.pth
"""
import json
from pathlib import Path

import torch

from data import default_data_dir, load_cifar10
from study.analysis import baselines
from study.analysis.evidence import channel_table
from study.analysis.findings import channel_roles
from study.core.common import ArgumentParser, number
from study.core.readers import read_json
from study.training.checkpoints import load_model
from visualize_latents import pick_image


def tables(block: dict) -> str:
    """The block as plain-text tables."""
    lines = ["test PSNR of the refitted decoders (first 2,000 test images, reduced refit):"]
    lines += [f"  {m:22s} {i['psnr_db']}" for m, i in block["models"].items()]
    layers = [name for name in block["rules"] if name.startswith("z")]
    lines.append("\nchannels named, trained against each null (mean ± sd of the draws), rank p "
                 "(largest over the nulls) and Holm p:")
    for layer in layers:
        for rule, e in block["rules"][layer]["counts"].items():
            cells = [f"{g} {b['mean']:.1f}" + (f"±{b['sd']:.1f}" if "sd" in b else "")
                     for g, b in e["baselines"].items()]
            lines.append(f"  {layer} {rule:10s} {e['trained']:2d}/{e['channels']:<2d} | "
                         + " | ".join(cells) + f" | p {e['p_value']:.3f} | Holm {e['p_holm']:.3f}")
    lines.append("\nchannel claims that survive their nulls (Holm):")
    for layer in layers:
        for channel in block["rules"][layer]["channels"]:
            tested = [channel["class_share"]] * ("class_share" in channel) + channel["claims"]
            for claim in tested:
                if claim.get("survives"):
                    lines.append(f"  {layer}:{channel['channel']} {claim['rule']} {claim['value']} "
                                 f"(Holm p {claim['p_holm']})")
    lines.append("\npicture similarity, trained vs (Spearman of |values|, SSIM; mean ± sd):")
    for d, per in block["picture_similarity"]["summary"].items():
        for g, e in per.items():
            lines.append(f"  {d:10s} {g:16s} rho {e['spearman_mean']:.2f} ± {e['spearman_sd']:.2f}"
                         f"  SSIM {e['ssim_mean']:.2f} ± {e['ssim_sd']:.2f}  (n = {e['n']})")
    lines.append("\nprojection diversity, channels whose top-9 projections are more alike than their patches:")
    for d, per in block["projection_diversity"]["summary"].items():
        lines.append(f"  {d:10s} " + ", ".join(f"{g} {e['mean']:.1f} ± {e['sd']:.1f}" for g, e in per.items()))
    lines.append(f"\nocclusion vs projection, Spearman over {block['occlusion']['images']} test images "
                 "(per-model mean; mean ± sd over models):")
    for d, per in block["occlusion"]["summary"].items():
        lines.append(f"  {d:10s} " + ", ".join(f"{g} {e['mean']:.3f} ± {e['sd']:.3f}" for g, e in per.items()))
    lines.append(f"\nseconds: {block['seconds']}")
    return "\n".join(lines)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="CIFAR-10 copy (image folders or cifar-10-batches-py)")
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/task2/deconv_net.pth"),
                        help="the Task 2 model (its metrics.json beside it gives the training seed)")
    parser.add_argument("--permuted", type=Path, default=None,
                        help="a Task 2 model trained with --permute-labels (baseline (c))")
    parser.add_argument("--threads", type=number(int, 1), default=torch.get_num_threads(),
                        help="torch threads")
    parser.add_argument("--out", type=Path, default=Path("baselines.json"), help="the block as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data_dir, quiet=True)
    net = load_model(args.checkpoint, "DeconvNet", "--checkpoint").eval()
    permuted = load_model(args.permuted, "DeconvNet", "--permuted").eval() if args.permuted else None
    training_seed = read_json(args.checkpoint.with_name("metrics.json"), "Task 2 metrics",
                              "rerun train_deconv.py")["config"]["seed"]
    picks = {split: pick_image(labels, None, None, split)[0]
             for split, labels in (("train", data.train_labels), ("test", data.test_labels))}
    rows, _, _ = channel_table(net, data.test_images, data.test_labels, seed=0)
    for layer_rows in rows.values():  # the claims the nulls weigh, as Task 3 names them
        for row in layer_rows:
            row["roles"] = [role for role, _ in channel_roles(row)]
    result, _ = baselines.randomisation_baselines(net, data, training_seed, picks, rows, permuted)
    block = result.to_json()
    args.out.write_text(json.dumps(block, indent=1, allow_nan=False))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; wrote {args.out}\n")
    print(tables(block))


if __name__ == "__main__":
    main()
