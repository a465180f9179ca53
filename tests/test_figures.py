"""Every figure function draws text of at least MIN_FONT_PT at a width the report places it at
(at most the text width, so nothing is scaled down), with no title that repeats a caption, and
colour bars beside its scalar maps."""
import matplotlib.text
import pytest
import torch

from data import DISPLAY_NAMES
from models import ARCHITECTURE
from study.reporting import latent_plots, plots


def smallest_font(fig) -> float:
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip()]
    return min(sizes)


def check(fig) -> None:
    assert smallest_font(fig) >= plots.MIN_FONT_PT
    assert fig.get_figwidth() <= plots.TEXT_WIDTH_IN + 1e-9
    assert not fig._suptitle  # the caption says it; no title repeats it
    plots.plt.close(fig)


def metrics(task: str) -> dict:
    history = {"loss_log": [{"epoch": 1, "step": 2000, "loss": 2.0, "ce": 2.0, "rec": 90.0}],
               "epoch_loss": [{"epoch": 1, "loss": 1.9, "ce": 1.9, "rec": 80.0},
                              {"epoch": 2, "loss": 1.6, "ce": 1.6, "rec": 70.0}]}
    return {**history, "config": {"batch_size": 4, "log_every": 2000}, "lambda": 0.01,
            "data": {"train_images": 50000}, "per_class_accuracy": {n: 50.0 for n in DISPLAY_NAMES}}


def test_task1_and_task2_figures():
    check(plots.training_figure(metrics("task1"), metrics("task2")))
    check(plots.per_class_figure({"Task 1": metrics("task1")["per_class_accuracy"],
                                  "Task 2": metrics("task2")["per_class_accuracy"]}))
    check(plots.confusion_figure([[100 * (i == j) + 3 for j in range(10)] for i in range(10)],
                                 DISPLAY_NAMES))
    check(plots.architecture_figure(ARCHITECTURE))
    summary = {"seeds": [0, 1, 2], "lambda_sweep": [
        {"lambda": lam, "seeds": [0, 1, 2] if lam == 0.01 else [0],
         "accuracy": {"mean": 50.0, "sd": 1.0 if lam == 0.01 else None, "n": 1},
         "psnr_db": {"mean": 17.0, "sd": 0.2 if lam == 0.01 else None, "n": 1}}
        for lam in (0.0, 1e-3, 0.01, 0.1)],
        "per_seed": [{"seed": 0, "task2_accuracy": 51.0, "task2_psnr_db": 17.1}],
        "task1_accuracy": {"mean": 53.0, "sd": 1.0, "n": 3}, "psnr_baselines_db": {"mean colour": 11.0}}
    check(plots.lambda_figure(summary))


def test_the_architecture_boxes_hold_their_text():
    fig = plots.architecture_figure(ARCHITECTURE)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [p.get_window_extent(renderer) for p in ax.patches]
    for text in ax.texts:
        inside = text.get_window_extent(renderer)
        cx, cy = (inside.x0 + inside.x1) / 2, (inside.y0 + inside.y1) / 2
        holder = [b for b in boxes if b.contains(cx, cy)]
        if holder:  # text in a box stays inside it
            assert holder[0].x0 <= inside.x0 and inside.x1 <= holder[0].x1, text.get_text()
    plots.plt.close(fig)


@pytest.mark.parametrize("literal", [False, True])
def test_single_channel_figure_has_a_colour_bar_and_the_literal_row(literal):
    from study.analysis.projections import SingleChannels

    g = torch.Generator().manual_seed(0)
    channels = list(range(6))
    result = SingleChannels(torch.rand(6, 14, 14, generator=g), channels,
                            torch.randn(6, 3, 32, 32, generator=g), torch.randn(6, 3, 32, 32, generator=g),
                            torch.zeros(3, 32, 32), torch.zeros(3, 32, 32), torch.full((6,), 1 / 6),
                            torch.zeros(6, dtype=torch.long), {c: (0, 0, 6) for c in channels}, {})
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
    fig = latent_plots.single_channels_figure(result, image, 1, "refitted", result if literal else None)
    rows = 5 if literal else 4
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == rows * 7
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    check(fig)


def marked_maps(fig, rows_of_maps: int = 1):
    """(map image, peak marker) of each activation panel: the axes whose image is a 2-D map
    drawn with a colour map and that carry one plotted marker."""
    found = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not ax.images or not ax.lines:
            continue
        found.append((ax, ax.images[0], ax.lines[0]))
    return found


@pytest.mark.parametrize("shape", [(6, 14, 14), (16, 5, 5), (4, 3, 7)])
def test_single_channel_maps_keep_their_shape_and_mark_their_argmax(shape):
    """Drawn from a result with a known peak per channel: each activation panel shows the whole
    map at its own shape, its axes end at the map's edges, the marker sits on the peak, and
    every map is drawn at the same size on the page."""
    from study.analysis.projections import SingleChannels

    channels, height, width = shape
    z = torch.zeros(shape)
    peaks = {c: ((3 * c + 1) % height, (5 * c + 2) % width) for c in range(channels)}
    for c, (row, col) in peaks.items():
        z[c, row, col] = 1.0 + c
    shown = list(range(channels))
    flat = torch.tensor([row * width + col for row, col in peaks.values()])
    result = SingleChannels(z, shown, torch.zeros(channels, 3, 32, 32), torch.zeros(channels, 3, 32, 32),
                            torch.zeros(3, 32, 32), torch.zeros(3, 32, 32),
                            torch.full((channels,), 1 / channels), flat,
                            {c: (-2, 30, 6) for c in shown}, {})
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    fig = latent_plots.single_channels_figure(result, image, 2, "refitted")
    fig.canvas.draw()
    maps = marked_maps(fig)
    assert len(maps) == channels
    sizes = set()
    for c, (ax, picture, marker) in enumerate(sorted(maps, key=lambda m: m[0].get_position().x0)):
        assert picture.get_array().shape == (height, width)
        left, right, bottom, top = picture.get_extent()
        assert (right - left, bottom - top) == (width, height)
        assert ax.get_xlim() == (left, right) and ax.get_ylim() == (bottom, top)
        row, col = peaks[c]
        assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (col, row)
        assert picture.get_array()[row, col] == picture.get_array().max()
        box = ax.get_position()
        sizes.add((round(box.width, 4), round(box.height, 4)))
    assert len(sizes) == 1  # no map squashed by the colour bar or by its marker
    plots.plt.close(fig)


def test_confusion_cells_are_readable_percentages_that_never_touch():
    """A 10-class matrix with three-digit counts: each cell prints its row share in whole
    percent (by hand: 734 of 1,000 -> '73'), and no two cell labels overlap on the page."""
    counts = [[734 if i == j else 29 + (i + j) % 3 for j in range(10)] for i in range(10)]
    fig = plots.confusion_figure(counts, DISPLAY_NAMES)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(cells) == 100
    for (i, j), text in cells.items():
        assert text.get_text() == str(round(100 * counts[i][j] / sum(counts[i])))
    boxes = [t.get_window_extent(renderer) for t in cells.values()]
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not boxes[a].overlaps(boxes[b])
    plots.plt.close(fig)


def test_epoch_means_sit_at_the_middle_of_their_epoch():
    fig = plots.training_figure(metrics("task1"), None)
    squares = [line for line in fig.axes[0].lines if line.get_marker() == "s"]
    assert list(squares[0].get_xdata()) == [0.5, 1.5]  # epochs 1 and 2
    plots.plt.close(fig)
