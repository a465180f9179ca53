"""Figures that more than one script draws (Tasks 1 and 2, the sweep, the report; Task 3's are in
study/reporting/latent_plots.py).

Functions named *_figure return a matplotlib figure (the caller saves it, study.core.files.save_figure
through `save`); the older ones that take a path save what such a function returns. Sizes are
print sizes: a figure at most 6.3 in wide is placed at its drawn width, so no font is below 7 pt
on the page (MIN_FONT_PT; tests/test_figures.py checks every text object). No figure repeats its
caption as a title: the report's captions say what a figure shows. Plots go to SVG (vector),
image grids to PNG at 200 dpi.
"""
import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from study.core.common import UsageError  # noqa: E402
from study.core.files import save_figure  # noqa: E402
from study.training.loop import steps_per_epoch  # noqa: E402

TEXT_WIDTH_IN = 6.3
MIN_FONT_PT = 7
plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
                     "xtick.labelsize": 7.5, "ytick.labelsize": 7.5, "legend.fontsize": 7.5,
                     "svg.fonttype": "none", "figure.dpi": 100})


def save(fig: plt.Figure, path: Path) -> None:
    """SVG for plots, PNG at print resolution for pictures."""
    save_figure(fig, path, dpi=200, bbox_inches="tight", pad_inches=0.03)


def natural_width_in(path: Path) -> float:
    """A figure's width in inches as drawn (SVG: its width in pt; PNG: pixels over its dpi).

    The template places every figure at this width, so its fonts print at the size they were
    drawn with (>= 7 pt, see plots.py).
    """
    if path.suffix == ".svg":
        match = re.search(rb'<svg[^>]*\swidth="([\d.]+)pt"', path.read_bytes()[:2000])
        if match:
            return round(float(match.group(1)) / 72, 3)
        raise UsageError(f"{path} is not an SVG written by this repo (no width in pt); "
                         "rerun the script that draws it")
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            dpi = float(image.info.get("dpi", (200, 200))[0] or 200)
            if image.width * image.height > 4000 * 4000 or image.format != "PNG":
                raise ValueError("not a figure of this repo")
            return round(image.width / dpi, 3)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        raise UsageError(f"{path} is not a readable PNG of a sensible size; rerun the script "
                         "that draws it") from None


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
    save(fig, path)  # `title` is the caller's caption: the report prints it, the figure does not


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
    fig.tight_layout()  # `title` is the caption's: not drawn
    save(fig, path)


def per_class_accuracy(accuracies: dict[str, float], path: Path, title: str = "") -> None:
    save(per_class_figure({"": accuracies}), path)


def per_class_figure(runs: dict[str, dict[str, float]], width: float = TEXT_WIDTH_IN / 2) -> plt.Figure:
    """Test accuracy per class, one bar per run ({label: {class: %}}) and chance level."""
    names = list(next(iter(runs.values())))
    fig, ax = plt.subplots(figsize=(width, 2.25))
    step = 0.8 / len(runs)
    for k, ((label, accuracies), colour) in enumerate(zip(runs.items(), ("tab:blue", "tab:orange"))):
        x = np.arange(len(names)) + (k - (len(runs) - 1) / 2) * step
        bars = ax.bar(x, [accuracies[n] for n in names], step, color=colour, label=label or None)
        if len(runs) == 1:
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
    chance = 100 / len(names)
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:g} %)")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False,
              borderaxespad=0.2, fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def confusion_matrix(matrix: list[list[int]], names: Sequence[str], path: Path, title: str = "") -> None:
    save(confusion_figure(matrix, names), path)


def confusion_figure(matrix: list[list[int]], names: Sequence[str]) -> plt.Figure:
    """Each cell: the percentage of the true class's test images given that prediction, a whole
    number (at most three digits, so neighbouring cells never run together)."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN / 2, 2.75))
    image = ax.imshow(100 * rates, cmap="Blues", vmin=0, vmax=100)
    for (i, j), rate in np.ndenumerate(rates):
        ax.text(j, i, f"{100 * rate:.0f}", ha="center", va="center", fontsize=7,
                color="white" if rate > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="% of the true class", fraction=0.046)
    fig.tight_layout(pad=0.2)
    return fig


def loss_curves(history: dict, parts: dict[str, str], steps: int, log_every: int, path: Path,
                title: str = "", scale: dict[str, float] | None = None) -> None:
    """A run's losses (draw_losses) in a figure of their own at `path`; `steps` per epoch."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN / 2, 2.3))
    draw_losses(ax, history, parts, steps, log_every, scale)
    fig.tight_layout(pad=0.2)
    save(fig, path)


def draw_losses(ax: plt.Axes, history: dict, parts: dict[str, str], steps: int, log_every: int,
                scale: dict[str, float] | None = None) -> None:
    """Running means (every log_every mini-batches) and epoch means of each logged loss part,
    into `ax`; the legend sits above the axes, never over the data.

    `parts` maps a logged name to its legend label; `steps` is the mini-batches per epoch
    (steps_per_epoch); `scale` multiplies a part before plotting.
    """
    scale = scale or {}
    for (name, label), colour in zip(parts.items(), ("tab:blue", "tab:orange", "tab:green")):
        factor = scale.get(name, 1.0)
        log = history["loss_log"]
        if log:  # none when an epoch has fewer than log_every mini-batches
            ax.plot([r["epoch"] - 1 + r["step"] / steps for r in log],
                    [factor * r[name] for r in log], color=colour, marker="o", markersize=2.5,
                    label=f"{label}, mean of {log_every} mini-batches")
        epochs = history["epoch_loss"]  # a mean over an epoch belongs to the epoch's middle
        ax.plot([r["epoch"] - 0.5 for r in epochs], [factor * r[name] for r in epochs], color=colour,
                linestyle="none" if log else "-", marker="s", markersize=5, markerfacecolor="none",
                label=f"{label}, epoch mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
              borderaxespad=0.2, ncol=1)


def training_figure(task1: dict | None, task2: dict | None) -> plt.Figure:
    """Task 1's loss and Task 2's two loss terms side by side, from their metrics files."""
    present = [(m, parts, scale) for m, parts, scale in (
        (task1, {"loss": "Task 1 cross-entropy"}, None),
        (task2, {"ce": "Task 2 cross-entropy", "rec": "Task 2 reconstruction term"},
         {"rec": (task2 or {}).get("lambda", 1.0)})) if m]
    fig, axes = plt.subplots(1, len(present), figsize=(TEXT_WIDTH_IN, 1.95), squeeze=False)
    for ax, (m, parts, scale) in zip(axes[0], present):
        c = m["config"]
        draw_losses(ax, m, parts, steps_per_epoch(m["data"]["train_images"], c["batch_size"]),
                    c["log_every"], scale)
    fig.tight_layout(pad=0.2, w_pad=1.5)
    return fig


def lambda_figure(summary: dict) -> plt.Figure:
    """Test accuracy and PSNR against λ, all at seed 0 (one line), and at the default λ the mean
    ± sd over the seeds as a separate marker; grey: Task 1's seed mean and the PSNR baselines."""
    rows, per_seed = summary["lambda_sweep"], summary["per_seed"]
    first = summary["seeds"][0]
    fig, axes = plt.subplots(1, 2, figsize=(TEXT_WIDTH_IN, 2.05))
    x = list(range(len(rows)))
    for ax, key, seed_key, label in ((axes[0], "accuracy", "task2_accuracy", "test accuracy (%)"),
                                     (axes[1], "psnr_db", "task2_psnr_db", "test PSNR (dB)")):
        seed0 = []
        for r in rows:
            several = len(r["seeds"]) > 1
            own = next((s[seed_key] for s in per_seed if s["seed"] == first), None) if several else None
            seed0.append(own if several else r[key]["mean"])
            if several and r[key]["sd"] is not None:
                ax.errorbar([rows.index(r) + 0.12], [r[key]["mean"]], yerr=[r[key]["sd"]],
                            marker="D", markersize=4, capsize=3, color="tab:orange",
                            linestyle="none", label=f"mean ± sd of seeds {', '.join(map(str, r['seeds']))}")
        ax.plot(x, seed0, marker="o", color="tab:blue", label=f"seed {first}")
        ax.set_xticks(x, [f"{r['lambda']:g}" for r in rows])
        ax.set_xlabel("λ (weight of the reconstruction term)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if "task1_accuracy" in summary:
        t1 = summary["task1_accuracy"]
        axes[0].axhline(t1["mean"], color="grey", linestyle="--", linewidth=1,
                        label=f"Task 1, mean of {t1['n']} seeds")
    for (name, value), style in zip(summary.get("psnr_baselines_db", {}).items(),
                                    (":", "-.", "--", (0, (1, 3)))):
        axes[1].axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    for ax in axes:
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
                  borderaxespad=0.2, ncol=2)
    fig.tight_layout(pad=0.2, w_pad=1.5)
    return fig


# --- the report's architecture figure ---

def architecture_labels(arch) -> tuple[list[str], list[str]]:
    """The architecture figure's box texts, left to right: the encoder's (input, conv and pool
    per stage, fc, scores) and the mirror decoder's below them (reconstruction, then per stage
    deconv and unpool); every number from `arch`. Deeper nets get shorter words."""
    stages = arch.layers
    fc = arch.describe()["fc"]
    image = f"{arch.image_channels}×{arch.image_size}×{arch.image_size}"
    compact = len(stages) > 2  # narrower columns: shorter words, the same numbers

    def conv(stage) -> str:
        kind = f"conv{stage.index}\n{stage.kernel}×{stage.kernel}" if compact else \
            f"conv{stage.index} {stage.kernel}×{stage.kernel}\n+ ReLU"
        return f"{kind}\n{stage.channels}×{stage.conv_size}×{stage.conv_size}"

    def pooled(stage) -> str:
        return f"{'pool' if compact else 'max-pool'}\n{stage.name}\n" + "×".join(map(str, stage.shape))

    def deconv(stage, out: str) -> str:
        if compact:
            return (f"deconv{stage.index}\n{stage.channels}→{stage.in_channels}"
                    + (f"\n{out}" if out else ""))
        return (f"deconv{stage.index}\n{stage.channels}→{stage.in_channels}, "
                f"{stage.kernel}×{stage.kernel}" + (f"\n{out}" if out else ""))

    def unpool(stage) -> str:
        return (f"unpool\n{'' if compact else '+ ReLU'}\n"
                f"{stage.channels}×{stage.conv_size}×{stage.conv_size}").replace("\n\n", "\n")

    head = "fc\n" + "\n→".join("→".join(map(str, fc[i:i + 2])) for i in range(0, len(fc), 2))
    top = [f"input x\n{image}", *[text for stage in stages for text in (conv(stage), pooled(stage))],
           head, f"class\nscores\n{arch.classes}"]
    below = [stage_ and "×".join(map(str, stage_.shape)) for stage_ in (None, *stages[:-1])]
    bottom = [f"recon-\nstruction\n{image}",
              *[text for stage, out in zip(stages, below)
                for text in (deconv(stage, out if stage.index > 1 else ""), unpool(stage))]]
    return top, bottom


def architecture_figure(arch) -> plt.Figure:
    """Encoder on top, mirror decoder below, dashed lines for the max-pool switches; every
    box's text is derived from `arch` (models.ARCHITECTURE) by architecture_labels."""
    from matplotlib.patches import FancyBboxPatch

    stages = arch.layers
    top_texts, bottom_texts = architecture_labels(arch)
    # one column per box: input, conv and pool per stage, fc, scores (7 for the tutorial's net)
    columns = len(top_texts)
    step = min(1.54, 9.9 / (columns - 1))
    xs = [0.68 + step * i for i in range(columns)]
    top, bottom = list(zip(top_texts, xs)), list(zip(bottom_texts, xs))
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN, 2.0))
    width = min(1.32, step - 0.1)
    ax.set_xlim(0, max(10.9, xs[-1] + width / 2 + 0.05))
    ax.set_ylim(0, 3.1)
    ax.axis("off")

    def boxes(items, y, colour):
        for text, x in items:
            ax.add_patch(FancyBboxPatch(
                (x - width / 2, y - 0.47), width, 0.94, boxstyle="round,pad=0.02", fc=colour, ec="black", lw=0.6))
            ax.text(x, y, text, ha="center", va="center", fontsize=7)
    boxes(top, 2.55, "#dbe9f6")
    boxes(bottom, 0.55, "#fde2cf")
    arrow = dict(arrowstyle="->", lw=0.8)
    for (_, a), (_, b) in zip(top, top[1:]):
        ax.annotate("", (b - width / 2 - 0.01, 2.55), (a + width / 2 + 0.01, 2.55), arrowprops=arrow)
    for (_, a), (_, b) in zip(bottom, bottom[1:]):
        ax.annotate("", (a + width / 2 + 0.01, 0.55), (b - width / 2 - 0.01, 0.55), arrowprops=arrow)
    last = xs[2 * len(stages)]  # the last pooled map, which the decoder reads
    ax.annotate("", (last + 0.3, 1.0), (last + 0.3, 2.1), arrowprops=arrow)
    ax.text(last + 0.37, 1.55, stages[-1].name, fontsize=7)
    for stage in stages:
        x = xs[2 * stage.index]
        ax.annotate("", (x - 0.25, 1.0), (x - 0.25, 2.1),
                    arrowprops=dict(arrowstyle="->", lw=0.8, linestyle="--", color="tab:red"))
        ax.text(x - 0.32, 1.55, f"switches {stage.index}", fontsize=7, color="tab:red", ha="right")
    loss = "loss =\n" r"CE + $\lambda L_\mathrm{rec}$"
    # 10 pt, so that the subscript (mathtext draws it at 0.7 of the size) prints at 7 pt
    ax.text((xs[-2] + xs[-1]) / 2 + 0.1, 0.55, loss, fontsize=10, ha="center", va="center")
    return fig
