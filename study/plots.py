"""Figures that more than one script draws. Every function returns nothing and writes one file.

Sizes are print sizes: a figure 6.3 in wide fills an A4 text width, and no font is below 7 pt
there. Plots go to SVG (vector), image grids to PNG at 200 dpi.
"""
import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from study.files import save_figure  # noqa: E402
from data import denormalize  # noqa: E402

TEXT_WIDTH_IN = 6.3
plt.rcParams.update({"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8,
                     "xtick.labelsize": 7.5, "ytick.labelsize": 7.5, "legend.fontsize": 7.5,
                     "svg.fonttype": "none", "figure.dpi": 100})


def save(fig: plt.Figure, path: Path) -> None:
    """SVG for plots, PNG at print resolution for pictures."""
    save_figure(fig, path, dpi=200, bbox_inches="tight", pad_inches=0.03)


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) array for imshow."""
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def bare(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def labelled_strip(images: torch.Tensor, names: Sequence[str], path: Path, title: str) -> None:
    """The tutorial's imshow(make_grid(images)) with each label under its image."""
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(min(4.4, 0.56 * n), 0.95))
    for ax, image, name in zip(np.atleast_1d(axes), images, names):
        ax.imshow(to_hwc(image / 255), interpolation="nearest")
        bare(ax)
        ax.set_xlabel(name)
    fig.suptitle(title, fontsize=8.5)
    save(fig, path)


def image_rows(rows: Sequence[Sequence[torch.Tensor]], titles: Sequence[Sequence[str]],
               row_labels: Sequence[str], path: Path, title: str = "",
               width: float = TEXT_WIDTH_IN) -> None:
    """A grid of images in [0, 1]: one row per list, a caption under every image."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    panel = (width - 0.3) / n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, (panel + 0.3) * n_rows + 0.25),
                             squeeze=False)
    for r, (row, row_titles) in enumerate(zip(rows, titles)):
        for c in range(n_cols):
            ax = axes[r][c]
            bare(ax)
            if c >= len(row):
                ax.axis("off")
                continue
            ax.imshow(to_hwc(row[c]), interpolation="nearest")
            ax.set_xlabel(row_titles[c], fontsize=7.5)
        axes[r][0].set_ylabel(row_labels[r])
    if title:
        fig.suptitle(title, fontsize=8.5)
    fig.tight_layout()
    save(fig, path)


def per_class_accuracy(accuracies: dict[str, float], path: Path, title: str) -> None:
    names, values = list(accuracies), list(accuracies.values())
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN / 2, 2.2))
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    chance = 100 / len(names)
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:g} %)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.tick_params(axis="x", rotation=45)
    ax.set_title(title)
    ax.legend(loc="upper right")
    save(fig, path)


def confusion_matrix(matrix: list[list[int]], names: Sequence[str], path: Path, title: str) -> None:
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2.95, 2.8))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7 if count < 1000 else 6.5,
                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true class", fraction=0.046)
    save(fig, path)


def loss_curves(history: dict, parts: dict[str, str], n_train: int, batch_size: int,
                log_every: int, path: Path, title: str, scale: dict[str, float] | None = None) -> None:
    """Running means (every log_every mini-batches) and epoch means of each logged loss part.

    `parts` maps a logged name to its legend label; `scale` multiplies a part before plotting.
    """
    scale = scale or {}
    steps_per_epoch = math.ceil(n_train / batch_size)
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN / 2, 2.2))
    for (name, label), colour in zip(parts.items(), ("tab:blue", "tab:orange", "tab:green")):
        factor = scale.get(name, 1.0)
        log = history["loss_log"]
        if log:  # none when an epoch has fewer than log_every mini-batches
            ax.plot([r["epoch"] - 1 + r["step"] / steps_per_epoch for r in log],
                    [factor * r[name] for r in log], color=colour, marker="o", markersize=2.5,
                    label=f"{label}, mean of {log_every} mini-batches")
        epochs = history["epoch_loss"]
        ax.plot([r["epoch"] for r in epochs], [factor * r[name] for r in epochs], color=colour,
                linestyle="none", marker="s", markersize=5, markerfacecolor="none",
                label=f"{label}, epoch mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path)


# --- Task 3 ---

def signed_rgb(d: torch.Tensor, scale: float) -> torch.Tensor:
    """A contribution (3, H, W) as an image: grey = 0, +-scale = full intensity."""
    return (0.5 + d / (2 * max(scale, 1e-12))).clamp(0, 1)


def stretch(image: torch.Tensor) -> torch.Tensor:
    """Min-max scale one image (all three channels together, so hue is kept) into [0, 1]."""
    low, high = image.min(), image.max()
    return ((image - low) / (high - low).clamp_min(1e-12)).clamp(0, 1)


def mosaic(tiles: list[torch.Tensor], columns: int = 3) -> torch.Tensor:
    import torchvision
    return torchvision.utils.make_grid(torch.stack(tiles), nrow=columns, padding=1, pad_value=1.0)


def single_channels_figure(result, image_u8: torch.Tensor, layer: int, title: str,
                           decoder_name: str, path: Path) -> None:
    """One figure of evidence.single_channels: where each channel fires, its map, its picture.

    Row 1 marks on the original the receptive field of the channel's strongest unit; row 2 is
    the activation map (the peak circled); row 3 the channel's contribution, decode(only c) -
    decode(empty latent), all at one symmetric scale (grey = 0); row 4 the tied deconvnet's
    projection, min-max scaled.
    """
    from matplotlib.patches import Rectangle

    z, channels, contributions, tied = result.z, result.channels, result.contributions, result.tied
    full, empty, share, boxes = result.full, result.empty, result.share, result.boxes
    width = z.shape[-1]
    positions = result.positions[None]
    common = contributions.abs().max().item()
    per_row, n = 6, 4  # channels per row block, rows per block
    blocks = [channels[i:i + per_row] for i in range(0, len(channels), per_row)]
    fig_rows = n * len(blocks)
    fig, axes = plt.subplots(fig_rows, per_row + 1, figsize=(6.0, 0.88 * fig_rows + 0.5), squeeze=False)
    reference = [(image_u8.cpu() / 255, "original"), (denormalize(full), "full latent"),
                 (denormalize(empty), "empty latent"), (None, "")]
    row_names = ["where it\nfires most", "activation", "contribution", "tied\ndeconvnet"]
    original = to_hwc(image_u8.cpu() / 255)
    for b, block in enumerate(blocks):
        for r in range(n):
            ax = axes[n * b + r][0]
            picture, caption = reference[r]
            if picture is not None:
                ax.imshow(to_hwc(picture), interpolation="nearest")
                ax.text(0.5, 0.03, caption, transform=ax.transAxes, ha="center", va="bottom",
                        fontsize=7, bbox=dict(facecolor="white", alpha=0.8, pad=1, linewidth=0))
            ax.set_ylabel(row_names[r], fontsize=7, labelpad=2)
        for col in range(per_row):
            for r in range(n):
                ax = axes[n * b + r][col + 1]
                if col >= len(block):
                    ax.axis("off")
                    continue
                c = block[col]
                k = channels.index(c)
                if r == 0:
                    top, left, size = boxes[c]
                    ax.imshow(original, interpolation="nearest")
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False,
                                           edgecolor="yellow", linewidth=1.2))
                    ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False,
                                           edgecolor="black", linewidth=0.5, linestyle="--"))
                    ax.set_title(f"ch {c}: {100 * share[c]:.0f} %", fontsize=7, pad=2)
                elif r == 1:
                    ax.imshow(z[c].cpu().numpy(), cmap="viridis", interpolation="nearest")
                    row_, col_ = divmod(int(positions[0, c]), width)
                    ax.plot(col_, row_, marker="o", markersize=5, markerfacecolor="none",
                            markeredgecolor="red", markeredgewidth=0.8)
                else:
                    picture = signed_rgb(contributions[k], common) if r == 2 else stretch(tied[k])
                    ax.imshow(to_hwc(picture), interpolation="nearest")
    for ax in axes.flat:
        bare(ax)
        if not ax.images:
            ax.set_frame_on(False)
    fig.suptitle(f"{title}: single z{layer} channels, the others zeroed ({decoder_name})\n"
                 "%: share of the activation energy; box: receptive field of the strongest unit; "
                 "contribution = decode(channel) - decode(empty)", fontsize=7.5)
    fig.tight_layout(pad=0.3, h_pad=0.35, w_pad=0.4, rect=(0, 0, 1, 1 - 0.36 / fig.get_figheight()))
    save(fig, path)


def top9_figure(top, layer: int, receptive_field: int, path: Path) -> None:
    """evidence.top9 as Zeiler & Fergus show it: per channel the k patches, enlarged, beside the
    projections of those single activations, each at its own symmetric scale (grey = 0)."""
    k = len(top.patches[0])
    size = receptive_field
    count = len(top.patches)
    mosaics = [(mosaic(patches), mosaic([signed_rgb(d, d.abs().max().item()) for d in projections]))
               for patches, projections in zip(top.patches, top.projections)]
    per_row = 3 if count <= 6 else 4
    n_rows = math.ceil(count / per_row)
    fig_width = 6.3 if per_row == 4 else 4.8
    fig, axes = plt.subplots(n_rows, 2 * per_row, figsize=(fig_width, (fig_width / (2 * per_row) + 0.16) * n_rows + 0.4),
                             squeeze=False, layout="constrained")
    for c, (patch, projection) in enumerate(mosaics):
        ax_patch, ax_proj = axes[c // per_row][2 * (c % per_row)], axes[c // per_row][2 * (c % per_row) + 1]
        ax_patch.imshow(to_hwc(patch), interpolation="nearest")
        ax_proj.imshow(to_hwc(projection), interpolation="nearest")
        ax_patch.set_title(f"ch {c}: patches", fontsize=7, pad=2)
        ax_proj.set_title(f"ch {c}: projections", fontsize=7, pad=2)
    for ax in axes.flat:
        bare(ax)
        if not ax.images:
            ax.axis("off")
    fig.suptitle(f"z{layer}: top-{k} test activations per channel ({size}x{size}-pixel receptive "
                 "fields, enlarged)\nprojections at their own symmetric scale, grey = 0", fontsize=7.5)
    save(fig, path)


def class_heatmap(means: dict[int, torch.Tensor], class_names: Sequence[str], path: Path) -> None:
    """Mean activation per class (rows) of every channel (columns), each channel's column
    divided by its largest class mean."""
    fig, axes = plt.subplots(1, 2, figsize=(4.45, 2.05), layout="constrained",
                             gridspec_kw={"width_ratios": [len(means[1]), len(means[2])]})
    for ax, layer in zip(axes, (1, 2)):
        m = means[layer]
        relative = (m / m.max(1, keepdim=True).values.clamp_min(1e-12)).T
        image = ax.imshow(relative.numpy(), cmap="magma", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(m)), [str(c) for c in range(len(m))], fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names if layer == 1 else [], fontsize=7)
        ax.set_xlabel(f"z{layer} channel")
    fig.colorbar(image, ax=axes, location="right", fraction=0.04, pad=0.02,
                 label="mean / channel's largest")
    fig.suptitle("mean activation per class", fontsize=8)
    save(fig, path)


def conv1_filters_figure(weights: torch.Tensor, path: Path) -> None:
    """The first-layer filters (C, 3, k, k) as RGB patches, each min-max scaled."""
    fig, axes = plt.subplots(2, math.ceil(len(weights) / 2), figsize=(1.75, 1.45), squeeze=False)
    for c, ax in enumerate(axes.flat):
        if c >= len(weights):
            ax.axis("off")
            continue
        ax.imshow(to_hwc(stretch(weights[c])), interpolation="nearest")
        ax.set_title(f"filter {c}", fontsize=7, pad=2)
        bare(ax)
    save(fig, path)



# --- the report's architecture figure ---

def architecture_figure(arch, path: Path) -> None:
    """Encoder on top, mirror decoder below, dashed lines for the max-pool switches; every
    box's text is derived from `arch` (models.ARCHITECTURE)."""
    from matplotlib.patches import FancyBboxPatch

    first, second = arch.layers
    fc = arch.describe()["fc"]
    image = f"{arch.image_channels}×{arch.image_size}×{arch.image_size}"

    def conv(stage) -> str:
        return (f"conv{stage.index} {stage.kernel}×{stage.kernel}\n+ ReLU\n"
                f"{stage.channels}×{stage.conv_size}×{stage.conv_size}")

    def pooled(stage) -> str:
        return f"max-pool\n{stage.name}\n" + "×".join(map(str, stage.shape))

    def deconv(stage, out: str) -> str:
        return (f"deconv{stage.index}\nConvT {stage.channels}→{stage.in_channels}\n"
                f"{stage.kernel}×{stage.kernel}" + (f"\n{out}" if out else ""))

    def unpool(stage) -> str:
        return f"unpool\n+ ReLU\n{stage.channels}×{stage.conv_size}×{stage.conv_size}"

    xs = [0.55 + 1.45 * i for i in range(7)]
    top = list(zip([f"input x\n{image}", conv(first), pooled(first), conv(second), pooled(second),
                    "fc\n" + "→".join(map(str, fc[:2])) + "\n→" + "→".join(map(str, fc[2:])),
                    f"class\nscores\n{arch.classes}"], xs))
    bottom = list(zip([f"recon-\nstruction\n{image}", deconv(first, ""), unpool(first),
                       deconv(second, "×".join(map(str, first.shape))), unpool(second)], xs))
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN, 2.0))
    ax.set_xlim(0, 10.6)
    ax.set_ylim(0, 3.1)
    ax.axis("off")

    def boxes(items, y, colour):
        for text, x in items:
            ax.add_patch(FancyBboxPatch(
                (x - 0.55, y - 0.45), 1.1, 0.9, boxstyle="round,pad=0.02", fc=colour, ec="black", lw=0.6))
            ax.text(x, y, text, ha="center", va="center", fontsize=7)
    boxes(top, 2.55, "#dbe9f6")
    boxes(bottom, 0.55, "#fde2cf")
    arrow = dict(arrowstyle="->", lw=0.8)
    for (_, a), (_, b) in zip(top, top[1:]):
        ax.annotate("", (b - 0.56, 2.55), (a + 0.56, 2.55), arrowprops=arrow)
    for (_, a), (_, b) in zip(bottom, bottom[1:]):
        ax.annotate("", (a + 0.56, 0.55), (b - 0.56, 0.55), arrowprops=arrow)
    ax.annotate("", (xs[4] + 0.3, 1.0), (xs[4] + 0.3, 2.1), arrowprops=arrow)
    ax.text(xs[4] + 0.37, 1.55, second.name, fontsize=7)
    for x, label in ((xs[2], "switches 1"), (xs[4], "switches 2")):
        ax.annotate("", (x - 0.25, 1.0), (x - 0.25, 2.1),
                    arrowprops=dict(arrowstyle="->", lw=0.8, linestyle="--", color="tab:red"))
        ax.text(x - 0.32, 1.55, label, fontsize=7, color="tab:red", ha="right")
    ax.text(9.0, 0.55, "loss = CE(scores, y)\n+ λ · L_rec(reconstruction, x)", fontsize=7,
            ha="center", va="center")
    save(fig, path)


# --- Task 3's randomisation baselines ---

BASELINE_ROWS = (("trained", "trained"), ("conv2", "random conv2"),
                 ("conv1_conv2", "random conv1+conv2"), ("permuted_labels", "permuted labels"))


def baseline_pictures_figure(figures: dict, split: str, path: Path, z2_shown: int = 6) -> None:
    """Single-channel pictures of one image, trained model against its randomisation baselines
    (the first model of each group): z1 through the refitted decoder (all channels), z2 through
    the learned decoder (the channels with the largest trained picture), each picture at its
    own symmetric scale (grey = 0). A blank z1 under 'random conv2' is the trained z1."""
    pictures, groups = figures["pictures"], figures["groups"]
    chosen = [(next((m for m, g in groups.items() if g == group and m in pictures), None), label)
              for group, label in BASELINE_ROWS]
    chosen = [(m, label) for m, label in chosen if m is not None]
    trained = pictures["trained"][split]
    z1 = list(range(len(trained["z1_refit"])))
    energy = trained["z2_learned"].pow(2).flatten(1).sum(1)
    z2 = sorted(energy.topk(min(z2_shown, len(energy))).indices.tolist())
    columns = [("z1_refit", c) for c in z1] + [("z2_learned", c) for c in z2]
    fig, axes = plt.subplots(len(chosen), len(columns), squeeze=False,
                             figsize=(TEXT_WIDTH_IN, 0.44 * len(chosen) + 0.35))
    for r, (model, label) in enumerate(chosen):
        for k, (decoder, c) in enumerate(columns):
            ax = axes[r][k]
            bare(ax)
            found = pictures[model][split].get(decoder)
            if found is None:
                ax.set_frame_on(False)
            else:
                d = found[c]
                ax.imshow(to_hwc(signed_rgb(d, d.abs().max().item())), interpolation="nearest")
            if r == 0:
                ax.set_title(f"{decoder[:2]} ch {c}", fontsize=7, pad=2)
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center", labelpad=4)
    fig.suptitle(f"{split} image: single-channel pictures, trained vs randomised (own scale, "
                 "grey = 0)", fontsize=7.5)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    save(fig, path)


def occlusion_figure(figures: dict, images: dict[str, torch.Tensor], occluder: dict, path: Path,
                     channels: int = 3) -> None:
    """Zeiler & Fergus's Fig. 7 for the trained model: per image, the true class's probability
    with the grey square at each position, and for the z2 channels whose strongest activation
    the square lowers most, that drop beside the |projection| of the channel's strongest unit."""
    maps = figures["occlusion"]["trained"]
    fig, axes = plt.subplots(len(images), 2 + 2 * channels, squeeze=False,
                             figsize=(TEXT_WIDTH_IN, 0.82 * len(images) + 0.25))
    for r, (split, image) in enumerate(images.items()):
        found = maps[split]
        drop = found["drop"]
        strongest = drop.flatten(1).amax(1).topk(channels).indices.tolist()
        panels = [(to_hwc(image.cpu() / 255), f"{split} image", None),
                  (found["probability"].numpy(), "P(true class)", "viridis")]
        for c in strongest:
            projection = found["strongest_unit_projections"]["z2_learned"][c].abs().sum(0)
            panels += [(drop[c].numpy(), f"z2 ch {c}: drop", "magma"),
                       (projection.numpy(), f"ch {c}: |projection|", "magma")]
        for ax, (picture, title, cmap) in zip(axes[r], panels):
            ax.imshow(picture, cmap=cmap, interpolation="nearest")
            ax.set_title(title, fontsize=7, pad=2)
            bare(ax)
    size = occluder["size"]
    fig.suptitle(f"occlusion ({size}x{size} grey square, stride {occluder['stride']}): what each "
                 "score depends on, against the decoder's picture", fontsize=7.5)
    fig.tight_layout(pad=0.3, h_pad=0.3, w_pad=0.3)
    save(fig, path)
