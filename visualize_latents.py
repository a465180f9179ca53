"""Task 3: what each latent channel of the Task 2 model encodes.

For one training and one test image, reconstruct the image from a single channel at a time
(all other channels zeroed): every channel of z1 (6x14x14), decoded through the layer-1 decoder,
and chosen channels of z2 (16x5x5), decoded through both layers. Beside the learned decoder,
the classic Zeiler & Fergus deconvnet (the encoder's own filters, transposed) projects the same
channels; top-9 figures show which test images drive each channel hardest.

    python visualize_latents.py --data-dir ../shared/cifar10
"""
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision

import plots
from common import (ArgumentParser, UsageError, add_common_arguments, environment_info,
                    fraction, load_checkpoint, load_state, non_negative_int, prepare_output_dir,
                    run_cli, save_figure, save_json, select_device)
from data import DISPLAY_NAMES, batches, denormalize, load_cifar10, normalize
from models import Z1_SHAPE, Z2_SHAPE, DeconvNet, Latents

LAYERS = {"z1": Z1_SHAPE[0], "z2": Z2_SHAPE[0]}


def channel_list(layer: str, default: str):
    """argparse type for --z1-channels/--z2-channels: 'all', 'top3', or '0,5,11'."""
    count = LAYERS[layer]

    def parse(text: str) -> list[int] | str:
        if text in ("all", "top3"):
            return text
        try:
            channels = [int(part) for part in text.split(",")]
        except ValueError:
            raise UsageError(f"--{layer}-channels {text!r}: give 'all', 'top3' or channel "
                             f"numbers such as 0,5,11") from None
        bad = [c for c in channels if not 0 <= c < count]
        if bad:
            raise UsageError(f"--{layer}-channels: channel {bad[0]} does not exist; {layer} has "
                             f"channels 0..{count - 1}")
        return sorted(set(channels))
    parse.__name__ = f"{layer} channel list (default {default})"
    return parse


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/task2/deconv_net.pth"),
                        help="DeconvNet written by train_deconv.py")
    parser.add_argument("--train-index", type=non_negative_int, default=0,
                        help="training image to explain (index into the loaded train split; "
                             "image folders are in class then file order)")
    parser.add_argument("--test-index", type=non_negative_int, default=0,
                        help="test image to explain, indexed likewise")
    parser.add_argument("--z1-channels", default="all",
                        help="z1 channels to show: 'all' (6) or e.g. 0,3")
    parser.add_argument("--z2-channels", default="top3",
                        help="z2 channels to show: 'top3' (largest activation energy for "
                             "that image), 'all' (16) or e.g. 0,5,11")
    parser.add_argument("--subset", type=fraction, default=1.0,
                        help="use this stratified fraction of CIFAR-10 (as in Tasks 1-2)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of --subset")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    add_common_arguments(parser, out="outputs/task3")
    return parser.parse_args(argv)


# --- the core operation: keep one channel, zero the rest, decode ---

def isolate_channels(z: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """(C, H, W) -> (len(channels), C, H, W): copy k keeps only z[channels[k]], zeros elsewhere."""
    isolated = torch.zeros(len(channels), *z.shape, dtype=z.dtype, device=z.device)
    for k, c in enumerate(channels):
        isolated[k, c] = z[c]
    return isolated


def layer_map(latents: Latents, layer: str) -> torch.Tensor:
    """The pooled map of `layer` ("z1" or "z2") among the encoder's outputs."""
    return latents.z1 if layer == "z1" else latents.z2


def decode(net: DeconvNet, z: torch.Tensor, latents: Latents, layer: str,
           tied: bool = False) -> torch.Tensor:
    """Decode maps z (N, C, H, W) of `layer` to images with the switches in `latents`.

    `latents` holds one image (its switches serve all N maps) or N images. `tied` projects
    through the encoder's own filters instead of the learned decoder.
    """
    n = len(z)
    indices1 = latents.indices1.expand(n, -1, -1, -1)
    if layer == "z1":
        return (net.tied_decode_layer1 if tied else net.decode_layer1)(z, indices1)
    indices2 = latents.indices2.expand(n, -1, -1, -1)
    return (net.tied_decode_layer2 if tied else net.decode_layer2)(z, indices2, indices1)


@torch.no_grad()
def single_channel_reconstructions(net: DeconvNet, latents: Latents, layer: str,
                                   channels: list[int], tied: bool = False) -> torch.Tensor:
    """Reconstructions (len(channels), 3, 32, 32) of one encoded image from single channels."""
    isolated = isolate_channels(layer_map(latents, layer)[0], channels)
    return decode(net, isolated, latents, layer, tied)


@torch.no_grad()
def decode_full(net: DeconvNet, latents: Latents, layer: str, scale: float = 1.0,
                tied: bool = False) -> torch.Tensor:
    """Decode the whole latent (scale 1) or nothing at all (scale 0) of one encoded image."""
    return decode(net, layer_map(latents, layer) * scale, latents, layer, tied)[0]


@torch.no_grad()
def linearity_gap(net: DeconvNet, latents: Latents, layer: str) -> dict:
    """How far the sum of all single-channel reconstructions is from the full one.

    Layer 1 is affine in z1 (z1 >= 0, so the ReLU after unpooling is the identity):
    sum_c decode(z1|c) - (C-1) * decode(0) == decode(z1). Layer 2 is not (a ReLU follows
    the second unpooling), and the gap measures by how much.
    """
    count = LAYERS[layer]
    singles = single_channel_reconstructions(net, latents, layer, list(range(count)))
    full, empty = decode_full(net, latents, layer), decode_full(net, latents, layer, scale=0.0)
    gap = singles.sum(0) - (count - 1) * empty - full
    return {"max_abs_gap": gap.abs().max().item(),
            "relative_gap": (gap.norm() / (full - empty).norm().clamp_min(1e-12)).item()}


# --- numbers that say what a channel carries ---

def channel_measures(z: torch.Tensor, contributions: torch.Tensor, reconstructions: torch.Tensor,
                     channels: list[int]) -> list[dict]:
    """Energy, colour and orientation of each channel's reconstruction.

    `contributions` are reconstruction minus decode(0): what the channel adds to the bias image.
    colour_share: part of the contribution's energy that is not grey (0 = luminance only).
    orientation: from the gradient structure tensor of the contribution's grey image; the angle
    of the dominant edges (0 = horizontal, 90 = vertical) and a coherence in [0, 1].
    """
    energy = z.pow(2).sum(dim=(1, 2))
    total = energy.sum().clamp_min(1e-12)
    contribution_energy = contributions.pow(2).sum(dim=(1, 2, 3))
    rows = []
    for k, c in enumerate(channels):
        d = contributions[k]
        grey = d.mean(0)
        colour_share = ((d - grey).pow(2).sum() / d.pow(2).sum().clamp_min(1e-12)).item()
        gy, gx = torch.gradient(grey)
        jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
        coherence = (torch.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy).clamp_min(1e-12)).item()
        gradient_angle = 0.5 * math.degrees(math.atan2(2 * jxy.item(), (jxx - jyy).item()))
        edge_angle = (gradient_angle + 90) % 180  # edges run across the gradient
        rows.append({
            "channel": c,
            "activation_energy": round(energy[c].item(), 4),
            "energy_share": round((energy[c] / total).item(), 4),
            "reconstruction_energy": round(contribution_energy[k].item(), 4),
            "mean_rgb": [round(v, 4) for v in denormalize(reconstructions[k]).mean(dim=(1, 2)).tolist()],
            "colour_share": round(colour_share, 4),
            "edge_orientation_deg": round(edge_angle, 1),
            "orientation_coherence": round(coherence, 4),
        })
    return rows


def stretch(images: torch.Tensor) -> torch.Tensor:
    """Min-max scale each image (all three channels together, so hue is kept) into [0, 1]."""
    flat = images.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    return ((images - low[:, None, None, None]) /
            (high - low).clamp_min(1e-12)[:, None, None, None]).clamp(0, 1)


# --- figures ---

@torch.no_grad()
def explain_image(net: DeconvNet, image: torch.Tensor, label: int, split: str, index: int,
                  layer: str, choice, out: Path) -> dict:
    """One figure and the measures for one image and one layer."""
    x = normalize(image.unsqueeze(0))[0]
    latents = net.encode(x.unsqueeze(0))
    z = layer_map(latents, layer)[0]
    energy = z.pow(2).sum(dim=(1, 2))
    if choice == "all":
        channels, how = list(range(LAYERS[layer])), "all channels"
    elif choice == "top3":
        channels = energy.topk(3).indices.tolist()
        how = "the 3 channels of largest activation energy for this image"
    else:
        channels, how = choice, "channels chosen on the command line"

    learned = single_channel_reconstructions(net, latents, layer, channels)
    tied = single_channel_reconstructions(net, latents, layer, channels, tied=True)
    full = decode_full(net, latents, layer)
    empty = decode_full(net, latents, layer, scale=0.0)
    measures = channel_measures(z, learned - empty, learned, channels)

    n = len(channels) + 1
    fig, axes = plt.subplots(4, n, figsize=(1.7 * n + 0.6, 7.4), squeeze=False)
    row_names = ["feature map", "learned decoder\n(each panel min-max)",
                 "learned decoder\n(common scale)", "tied-weight deconvnet\n(each panel min-max)"]
    whole = [denormalize(x), stretch(full[None])[0], denormalize(full),
             stretch(decode_full(net, latents, layer, tied=True)[None])[0]]
    for r in range(4):
        ax = axes[r][0]
        ax.imshow(plots.to_hwc(whole[r]), interpolation="nearest")
        ax.set_title(["original", "all channels", "all channels", "all channels"][r], fontsize=8)
        ax.set_ylabel(row_names[r], fontsize=8)
    share = energy / energy.sum().clamp_min(1e-12)
    for k, c in enumerate(channels):
        ax = axes[0][k + 1]
        heat = ax.imshow(z[c].cpu().numpy(), cmap="viridis", interpolation="nearest")
        fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
        ax.set_title(f"ch {c}: {100 * share[c]:.1f} % energy", fontsize=8)
        for r, picture in ((1, stretch(learned[k:k + 1])[0]), (2, denormalize(learned[k])),
                           (3, stretch(tied[k:k + 1])[0])):
            axes[r][k + 1].imshow(plots.to_hwc(picture), interpolation="nearest")
            axes[r][k + 1].set_title(f"ch {c}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{split} image {index} ({DISPLAY_NAMES[label]}): single {layer} channels "
                 f"({how}); others zeroed", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / f"{split}_{layer}.png", dpi=110)
    return {"channels": measures, "how_chosen": how,
            "linearity": linearity_gap(net, latents, layer)}


def conv1_filters_figure(net: DeconvNet, path: Path) -> list[dict]:
    """The six 3x5x5 first-layer filters as RGB patches, each min-max scaled."""
    weights = net.conv1.weight.detach().cpu()
    patches = stretch(weights)
    fig, axes = plt.subplots(1, len(weights), figsize=(1.3 * len(weights), 1.7))
    stats = []
    for c, ax in enumerate(axes):
        ax.imshow(plots.to_hwc(patches[c]), interpolation="nearest")
        ax.set_title(f"filter {c}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        w = weights[c]
        stats.append({"filter": c, "colour_share": round(
            ((w - w.mean(0)).pow(2).sum() / w.pow(2).sum()).item(), 4)})
    fig.suptitle("conv1 filters (RGB, each min-max scaled)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=130)
    return stats


@torch.no_grad()
def top9(net: DeconvNet, images: torch.Tensor, labels: torch.Tensor, layer: str,
         path: Path, k: int = 9) -> list[dict]:
    """Per channel, the k test images that drive it hardest, beside their projections.

    As in Zeiler & Fergus, the projection keeps only the channel's single strongest activation.
    One batched pass scores the whole test set; only the winners are decoded.
    """
    net.eval()
    peaks = []
    for x, _ in batches(images, labels, 1000):
        peaks.append(layer_map(net.encode(x), layer).flatten(2).amax(2))
    peaks = torch.cat(peaks)  # (N, C)
    count = peaks.shape[1]
    winners = peaks.topk(k, dim=0).indices.T  # (C, k)

    x = normalize(images[winners.flatten()])
    latents = net.encode(x)
    z = layer_map(latents, layer)
    channel = torch.arange(count, device=z.device).repeat_interleave(k)
    keep = torch.zeros_like(z)
    rows = torch.arange(len(z), device=z.device)
    flat = z[rows, channel].flatten(1)
    strongest = flat.argmax(1)
    keep.view(len(z), z.shape[1], -1)[rows, channel, strongest] = flat[rows, strongest]
    projections = stretch(decode(net, keep, latents, layer)  # minus the empty-latent image:
                          - decode(net, torch.zeros_like(keep), latents, layer))

    pairs = torch.stack([denormalize(x), projections], 1).flatten(0, 1)  # image, projection, ...
    grid = torchvision.utils.make_grid(pairs.cpu(), nrow=2 * k, padding=1, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(2 * k * 0.55, count * 0.6 + 0.6))
    ax.imshow(plots.to_hwc(grid), interpolation="nearest")
    ax.set_yticks([(c + 0.5) * 33 for c in range(count)], [f"ch {c}" for c in range(count)],
                  fontsize=7)
    ax.set_xticks([])
    ax.set_title(f"{layer}: top-{k} test images per channel, each followed by the projection of "
                 "its strongest activation (minus the empty-latent image, min-max)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return [{"channel": c, "test_indices": winners[c].tolist(),
             "classes": [DISPLAY_NAMES[i] for i in labels[winners[c]].tolist()],
             "peak_activation": round(peaks[winners[c][0], c].item(), 4)} for c in range(count)]


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    z1_choice = channel_list("z1", "all")(args.z1_channels)
    z2_choice = channel_list("z2", "top3")(args.z2_channels)
    device = select_device(args.device)
    if not args.checkpoint.is_file():
        raise UsageError(f"no Task 2 checkpoint at {args.checkpoint}; run train_deconv.py first "
                         "(or pass --checkpoint)")
    checkpoint = load_checkpoint(args.checkpoint, "DeconvNet", "--checkpoint")
    net = DeconvNet()
    load_state(net, checkpoint["model_state"], args.checkpoint, "--checkpoint")
    net.to(device).eval()
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    for split, index, labels in (("train", args.train_index, data.train_labels),
                                 ("test", args.test_index, data.test_labels)):
        if index >= len(labels):
            raise UsageError(f"--{split}-index {index} is past the end of the {split} set "
                             f"({len(labels)} images); pick 0..{len(labels) - 1}")
    out = prepare_output_dir(Path(args.out))

    images = {"train": (data.train_images, data.train_labels, args.train_index),
              "test": (data.test_images, data.test_labels, args.test_index)}
    explained = {}
    for split, (split_images, split_labels, index) in images.items():
        image, label = split_images[index].to(device), int(split_labels[index])
        explained[split] = {"index": index, "class": DISPLAY_NAMES[label]}
        for layer, choice in (("z1", z1_choice), ("z2", z2_choice)):
            if layer == "z1" and choice == "top3":
                choice = "all"
            explained[split][layer] = explain_image(net, image, label, split, index, layer,
                                                    choice, out)
            if not args.quiet:
                shown = [m["channel"] for m in explained[split][layer]["channels"]]
                print(f"{split} image {index} ({DISPLAY_NAMES[label]}), {layer}: channels {shown}")

    filters = conv1_filters_figure(net, out / "conv1_filters.png")
    test_images, test_labels = data.test_images.to(device), data.test_labels.to(device)
    top = {layer: top9(net, test_images, test_labels, layer, out / f"top9_{layer}.png")
           for layer in LAYERS}
    for split in explained:
        for layer in LAYERS:
            gap = explained[split][layer]["linearity"]
            print(f"{split} {layer}: sum of single-channel reconstructions vs full: "
                  f"max |gap| {gap['max_abs_gap']:.2e}, relative {gap['relative_gap']:.3f}")

    save_json({
        "task": "task3", "checkpoint": str(args.checkpoint),
        "checkpoint_config": checkpoint.get("config"),
        "images": explained, "conv1_filters": filters, "top9": top,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": round(time.perf_counter() - started, 2),
        "data": data.describe(), "environment": environment_info(device),
    }, out / "metrics.json")
    print(f"wrote {out}/: metrics.json and figures")


if __name__ == "__main__":
    run_cli(main)
