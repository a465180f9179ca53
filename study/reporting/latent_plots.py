"""Task 3's figures: single-channel decodes, top-9 patches and projections, class means, conv1's
filters, and the pictures and occlusion maps of the randomisation baselines. Each *_figure
returns a figure that the caller saves; sizes follow study/reporting/plots.py (no font under 7 pt)."""
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib
import torch

from data import denormalize
from study.reporting.plots import TEXT_WIDTH_IN, bare, plt, save, to_hwc

if TYPE_CHECKING:  # drawing never runs the baselines; it only reads their figure data
    from models import Architecture
    from study.analysis.baselines import BaselineFigures


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


def single_channels_figure(result, image_u8: torch.Tensor, layer: int, decoder: str,
                           literal=None) -> plt.Figure:
    """One figure of projections.single_channels, one column per channel shown.

    Rows: the original with the receptive field of the channel's strongest unit (title: the
    channel's share of the activation energy); the activation map, one colour scale for all
    channels (colour bar); the image decoded from this channel alone (`decoder`'s name labels
    the row); its contribution decode(only c) - decode(empty latent) at one symmetric scale
    (grey = 0); with `literal` (the same for Task 2's own layer-1 decoder), that decoder's
    single-channel image too. The left column: the original, and each decoder's full-latent and
    empty-latent decodes.
    """
    z, channels, contributions = result.z, result.channels, result.contributions
    common = contributions.abs().max().item()
    peak = max(z[c].max().item() for c in channels) or 1.0
    rows = [("where it\nfires most", None), ("activation", None), (f"alone,\n{decoder}", "single"),
            ("contri-\nbution", "contribution")]
    if literal is not None:
        rows.append(("alone, Task 2\ndecoder", "literal"))
    panel = 0.62
    fig, axes = plt.subplots(len(rows), len(channels) + 1,
                             figsize=(min(TEXT_WIDTH_IN, panel * (len(channels) + 1) + 1.0),
                                      panel * len(rows) + 0.25), squeeze=False)
    left = [(image_u8.cpu() / 255, "original"), (None, ""),
            (denormalize(result.full), "full latent"), (denormalize(result.empty), "empty latent"),
            (denormalize(literal.full) if literal is not None else None, "full latent")]
    original = to_hwc(image_u8.cpu() / 255)
    maps = []
    for r, (label, kind) in enumerate(rows):
        ax = axes[r][0]
        picture, caption = left[r]
        if picture is not None:
            ax.imshow(to_hwc(picture), interpolation="nearest")
            ax.set_xlabel(caption, fontsize=7, labelpad=1)
        ax.set_ylabel(label, fontsize=7, labelpad=2)
        for k, c in enumerate(channels):
            ax = axes[r][k + 1]
            if r == 0:
                _where_it_fires(ax, original, result.boxes[c],
                                f"z{layer}:{c} {100 * result.share[c]:.0f} %")
            elif r == 1:
                maps.append(_activation_panel(ax, z[c].cpu(), peak, int(result.positions[c])))
            elif kind == "single":
                ax.imshow(to_hwc(denormalize(contributions[k] + result.empty)), interpolation="nearest")
            elif kind == "contribution":
                ax.imshow(to_hwc(signed_rgb(contributions[k], common)), interpolation="nearest")
            else:
                ax.imshow(to_hwc(denormalize(literal.contributions[k] + literal.empty)),
                          interpolation="nearest")
    for ax in axes.flat:
        bare(ax)
        if not ax.images:
            ax.set_frame_on(False)
    fig.tight_layout(pad=0.2, h_pad=0.3, w_pad=0.3)
    if maps:  # in the empty left cell of the activation row: no map gives up width to it
        _colour_bar_in(fig, axes[1][0], maps[0])
    return fig


def _where_it_fires(ax: plt.Axes, original, box: tuple[int, int, int], title: str) -> None:
    """The image with the receptive field `box` (top, left, side) of a channel's strongest
    unit outlined; a padded net's field may reach past the border: its part in the image."""
    from matplotlib.patches import Rectangle

    from study.analysis.evidence import clip_box

    box_top, box_left, box_height, box_width = clip_box(box, original.shape[0])
    ax.imshow(original, interpolation="nearest")
    for colour, line, style in (("yellow", 1.2, "-"), ("black", 0.5, "--")):
        ax.add_patch(Rectangle((box_left - 0.5, box_top - 0.5), box_width, box_height,
                               fill=False, edgecolor=colour, linewidth=line, linestyle=style))
    ax.set_title(title, fontsize=7, pad=2)


def _activation_panel(ax: plt.Axes, z_map: torch.Tensor, peak: float, position: int):
    """One activation map at the shared scale [0, peak], its strongest unit (flat index
    `position`) circled in red; the map keeps its own extent. Returns the image."""
    shown = ax.imshow(z_map.numpy(), cmap="viridis", vmin=0, vmax=peak, interpolation="nearest")
    peak_row, peak_col = divmod(position, z_map.shape[-1])
    ax.plot(peak_col, peak_row, marker="o", markersize=5, markerfacecolor="none",
            markeredgecolor="red", markeredgewidth=0.8)
    ax.set_xlim(-0.5, z_map.shape[-1] - 0.5)  # nothing drawn on it may widen the axes
    ax.set_ylim(z_map.shape[-2] - 0.5, -0.5)
    return shown


def _colour_bar_in(fig: plt.Figure, holder: plt.Axes, image) -> None:
    """`image`'s colour bar, narrow, inside the (empty) cell `holder`, three ticks."""
    holder.set_frame_on(False)
    cell = holder.get_position()
    bar = fig.colorbar(image, cax=fig.add_axes(
        (cell.x0 + 0.3 * cell.width, cell.y0 + 0.05 * cell.height, 0.14 * cell.width,
         0.9 * cell.height), label="<colorbar>"))
    bar.ax.tick_params(labelsize=7, length=2, pad=1)
    bar.locator = matplotlib.ticker.MaxNLocator(3)
    bar.update_ticks()


def top9_figure(top, layer: int, receptive_field: int, per_row: int = 6) -> plt.Figure:
    """projections.top9 as Zeiler & Fergus show it: per channel the k patches, enlarged (left), beside
    the projections of those single activations (right), each at its own symmetric scale
    (grey = 0); one title per channel over the pair; `per_row` channels a row, at text width."""
    count = len(top.patches)
    mosaics = [(mosaic(patches), mosaic([signed_rgb(d, d.abs().max().item()) for d in projections]))
               for patches, projections in zip(top.patches, top.projections)]
    per_row = min(per_row, count)
    n_rows = math.ceil(count / per_row)
    fig_width = TEXT_WIDTH_IN
    fig, axes = plt.subplots(n_rows, 2 * per_row, figsize=(fig_width, (fig_width / (2 * per_row) + 0.2) * n_rows),
                             squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.3})
    for c, (patch, projection) in enumerate(mosaics):
        ax_patch, ax_proj = axes[c // per_row][2 * (c % per_row)], axes[c // per_row][2 * (c % per_row) + 1]
        ax_patch.imshow(to_hwc(patch), interpolation="nearest")
        ax_proj.imshow(to_hwc(projection), interpolation="nearest")
        ax_patch.set_title(f"z{layer}:{c}", fontsize=7, pad=2, loc="left")
    for ax in axes.flat:
        bare(ax)
        if not ax.images:
            ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01)
    return fig


def class_heatmap(means: dict[int, torch.Tensor], class_names: Sequence[str], path: Path) -> None:
    """Mean activation per class (rows) of every channel (columns), each channel's column
    divided by its largest class mean; one panel per layer of `means` ({layer: (C, classes)})."""
    layers = sorted(means)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.45, 2.05), layout="constrained",
                             gridspec_kw={"width_ratios": [len(means[k]) for k in layers]},
                             squeeze=False)
    axes = axes[0]
    for ax, layer in zip(axes, layers):
        m = means[layer]
        relative = (m / m.max(1, keepdim=True).values.clamp_min(1e-12)).T
        image = ax.imshow(relative.numpy(), cmap="magma", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(m)), [str(c) for c in range(len(m))], fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names if layer == layers[0] else [],
                      fontsize=7)
        ax.set_xlabel(f"z{layer} channel")
    fig.colorbar(image, ax=axes, location="right", fraction=0.04, pad=0.02,
                 label="mean / channel's largest")
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


# --- Task 3's randomisation baselines ---

def baseline_rows(arch: "Architecture") -> list[tuple[str, str]]:
    """(group, row label) of the baseline-pictures figure of a net of `arch`: the trained model,
    the refit's noise floor, one cascade step per stage, the permuted labels (labels from
    study.core.settings)."""
    from study.core.ids import ModelId

    groups = [ModelId("trained"), ModelId("refit_seed"),
              *(ModelId.cascade(first, arch.depth) for first in range(arch.depth, 0, -1)),
              ModelId("permuted")]
    return [(str(g), g.short.replace("refit of", "refit\nof")) for g in groups]


def baseline_pictures_figure(figures: "BaselineFigures", split: str, decoders: dict[int, str],
                             last_shown: int | list[int] = 6) -> plt.Figure:
    """Single-channel pictures of one image, the trained model against its baselines (the first
    model of each group, and the trained encoder with decoders refitted from another seed: the
    noise floor): every channel of the first layer and, of the last layer, the channels
    `last_shown` lists (an int: that many with the largest trained picture), through decoders
    {layer: decoder id}, each picture at its own symmetric scale (grey = 0). A blank panel: that
    layer is the trained one there."""
    pictures, groups = figures.pictures, figures.groups
    chosen = [(next((m for m, g in groups.items() if g == group and m in pictures), None), label)
              for group, label in baseline_rows(figures.models["trained"].arch)]
    chosen = [(m, label) for m, label in chosen if m is not None]
    trained = pictures["trained"][split]
    layers = sorted(decoders)
    columns = []
    for layer in layers:
        found = trained[decoders[layer]]
        if layer == layers[-1] and len(layers) > 1 and not isinstance(last_shown, int):
            shown = sorted(last_shown)
        elif layer == layers[-1] and len(layers) > 1:
            energy = found.pow(2).flatten(1).sum(1)
            shown = sorted(energy.topk(min(last_shown, len(energy))).indices.tolist())
        else:
            shown = list(range(len(found)))
        columns += [(layer, c) for c in shown]
    fig, axes = plt.subplots(len(chosen), len(columns), squeeze=False,
                             figsize=(TEXT_WIDTH_IN, 0.5 * len(chosen) + 0.3))
    for r, (model, label) in enumerate(chosen):
        for k, (layer, c) in enumerate(columns):
            ax = axes[r][k]
            bare(ax)
            found = pictures[model][split].get(decoders[layer])
            if found is None:
                ax.set_frame_on(False)
            else:
                d = found[c]
                ax.imshow(to_hwc(signed_rgb(d, d.abs().max().item())), interpolation="nearest")
            if r == 0:
                ax.set_title(f"z{layer}:{c}", fontsize=7, pad=2)
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center", labelpad=4)
    fig.tight_layout(pad=0.2, h_pad=0.2, w_pad=0.2)
    return fig


def occlusion_figure(figures: "BaselineFigures", images: dict[str, torch.Tensor], decoder: str,
                     channels: int = 2, layer: str = "") -> plt.Figure:
    """Zeiler & Fergus's Fig. 7 for the trained model: per image, the true class's probability
    with the grey square at each position, and for the last-layer channels whose strongest
    activation the square lowers most, that drop beside the |projection| of the channel's
    strongest unit through `decoder`. Every map has its colour bar."""
    maps = figures.occlusion["trained"]
    panels_per_row = 2 + 2 * channels
    fig, axes = plt.subplots(len(images), panels_per_row, squeeze=False,
                             figsize=(TEXT_WIDTH_IN, 1.05 * len(images) + 0.1))
    for r, (split, image) in enumerate(images.items()):
        found = maps[split]
        drop = found["drop"]
        strongest = drop.flatten(1).amax(1).topk(channels).indices.tolist()
        panels = [(to_hwc(image.cpu() / 255), f"{split} image", None),
                  (found["probability"].numpy(), "P(true class)", "viridis")]
        for c in strongest:
            projection = found["strongest_unit_projections"][decoder][c].abs().sum(0)
            name = f"{layer}:{c}" if layer else f"channel {c}"
            panels += [(drop[c].numpy(), f"{name} drop", "magma"),
                       (projection.numpy(), f"{name} |projection|", "magma")]
        for ax, (picture, title, cmap) in zip(axes[r], panels):
            shown = ax.imshow(picture, cmap=cmap, interpolation="nearest")
            ax.set_title(title, fontsize=7, pad=2)
            bare(ax)
            if cmap is not None:
                bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
                bar.ax.tick_params(labelsize=7, length=2, pad=1)
                bar.locator = matplotlib.ticker.MaxNLocator(3)
                bar.update_ticks()
    fig.tight_layout(pad=0.2, h_pad=0.4, w_pad=0.3)
    return fig
