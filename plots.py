"""Figures that more than one script draws. Every function returns nothing and writes one PNG."""
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import save_figure  # noqa: E402


def to_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) array for imshow."""
    return image.detach().cpu().permute(1, 2, 0).numpy()


def image_rows(rows: Sequence[Sequence[torch.Tensor]], titles: Sequence[Sequence[str]],
               row_labels: Sequence[str], path: Path, suptitle: str = "") -> None:
    """A grid of images in [0, 1]: one row per list, a title over every image."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.8 * n_rows), squeeze=False)
    for r, (row, row_titles) in enumerate(zip(rows, titles)):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            ax.imshow(to_hwc(row[c]), interpolation="nearest")
            ax.set_title(row_titles[c], fontsize=8)
        axes[r][0].set_ylabel(row_labels[r], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def per_class_accuracy(accuracies: dict[str, float], path: Path, title: str) -> None:
    names, values = list(accuracies), list(accuracies.values())
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(10, color="grey", linestyle=":", label="chance (10 %)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def confusion_matrix(matrix: list[list[int]], names: Sequence[str], path: Path, title: str) -> None:
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.5))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=6,
                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def curves(series: dict[str, tuple[list[float], list[float]]], path: Path, xlabel: str,
           ylabel: str, title: str, logy: bool = False) -> None:
    """Line plot of named (x, y) series."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, marker="o" if len(x) < 30 else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
