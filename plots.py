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

from common import save_figure  # noqa: E402

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
    ax.axhline(10, color="grey", linestyle=":", label="chance (10 %)")
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
