"""The report: every number and figure of Tasks 1-3, read from outputs/, as Markdown and PDF.

Numbers are never typed here: each comes from a task's metrics.json. A task whose outputs are
missing is reported as missing (with a warning), so a partial run still gives a partial report.

    python make_report.py            # after the three task scripts
"""
import io
import json
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from common import ArgumentParser, UsageError, atomic_path, prepare_output_dir, run_cli  # noqa: E402

MAX_PAGES = 8
REQUIRED_KEYS = {
    "task1": ("test_accuracy", "per_class_accuracy", "config", "train_seconds", "data"),
    "task2": ("test_accuracy", "test_psnr_db", "test_mse", "test_rec_loss", "config",
              "per_class_accuracy", "train_seconds"),
    "task3": ("images", "top9", "conv1_filters"),
}


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="folder holding task1/, task2/, task3/")
    parser.add_argument("--out", type=Path, default=None,
                        help="where report.md and report.pdf go (default: --outputs)")
    return parser.parse_args(argv)


def read_metrics(outputs: Path) -> dict[str, dict | None]:
    """metrics.json of each task, or None when that task has not been run."""
    found = {}
    for task, keys in REQUIRED_KEYS.items():
        path = outputs / task / "metrics.json"
        if not path.is_file():
            found[task] = None
            continue
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"{path} is not valid JSON ({error}); rerun {task} "
                             "or delete the file") from None
        if not isinstance(metrics, dict):
            raise UsageError(f"{path} does not hold a JSON object; rerun {task}")
        for key in keys:
            if key not in metrics:
                raise UsageError(f"{path} lacks the key '{key}'; rerun {task} with this "
                                 "version of the code")
        found[task] = metrics
    return found


# --- the document, as a list of blocks both writers understand ---
# ("h1"|"h2"|"p"|"caption", text), ("table", header, rows), ("image", relative path, caption)

def task1_blocks(m: dict) -> list[tuple]:
    c = m["config"]
    blocks = [("h1", "Task 1: the tutorial classifier"),
              ("p", f"The PyTorch tutorial's network (two 5x5 convolutions with 2x2 max-pooling, "
                    f"three fully connected layers) trained with SGD (learning rate {c['lr']}, "
                    f"momentum {c['momentum']}) on mini-batches of {c['batch_size']} for "
                    f"{c['epochs']} epochs, seed {c['seed']}, on {m['data']['train_images']} "
                    f"training images; tested on {m['test_images']} test images. Training took "
                    f"{m['train_seconds']} s on {m['environment']['device']}."),
              ("p", f"Test accuracy: {m['test_accuracy']} %."),
              ("table", ["class", *m["per_class_accuracy"]],
               [["accuracy (%)", *m["per_class_accuracy"].values()]])]
    if m.get("loss_log"):
        first, last = m["loss_log"][0], m["loss_log"][-1]
        blocks.append(("p", f"The running training loss fell from {first['loss']} (epoch "
                            f"{first['epoch']}, mini-batch {first['step']}) to {last['loss']} "
                            f"(epoch {last['epoch']}, mini-batch {last['step']})."))
    blocks += [("image", "task1/train_samples.png", "Training images with their labels."),
               ("image", "task1/loss_curve.png", "Training loss."),
               ("image", "task1/test_predictions.png", "Test images: ground truth and prediction."),
               ("image", "task1/per_class_accuracy.png", "Test accuracy per class."),
               ("image", "task1/confusion_matrix.png", "Confusion matrix on the test set.")]
    return blocks


def task2_blocks(m: dict) -> list[tuple]:
    c = m["config"]
    decoder = (f"its own Adam optimiser (learning rate {c['decoder_lr']})"
               if c["decoder_optimizer"] == "adam" else "the same SGD as the encoder")
    text = (f"The Task 1 encoder and head plus a mirror decoder (max-unpooling with the pooling "
            f"switches, ReLU, transposed convolution; twice), trained on eq. (1), "
            f"CE + lambda * L_rec with lambda = {m['lambda']}, for {c['epochs']} epochs at "
            f"batch size {c['batch_size']}; encoder and head with SGD (learning rate {c['lr']}, "
            f"momentum {c['momentum']}), the decoder with {decoder}. Training took "
            f"{m['train_seconds']} s.")
    blocks = [("h1", "Task 2: classifier with a deconvolutional mirror"), ("p", text)]
    result = (f"Test accuracy: {m['test_accuracy']} %")
    if "task1_test_accuracy" in m:
        result += (f" (Task 1: {m['task1_test_accuracy']} %, a change of "
                   f"{m['accuracy_change_vs_task1']} points)")
    result += (f". Reconstruction on the test set: L_rec {m['test_rec_loss']}, mean squared error "
               f"{m['test_mse']} on [0, 1] pixels, PSNR {m['test_psnr_db']} dB.")
    blocks.append(("p", result))
    if m.get("lambda_sweep"):
        blocks.append(("table", ["lambda", "accuracy (%)", "PSNR (dB)", "L_rec"],
                       [[r["lambda"], r["test_accuracy"], r["test_psnr_db"], r["test_rec_loss"]]
                        for r in m["lambda_sweep"]]))
    blocks += [("image", "task2/reconstructions.png",
                "Originals (top) and reconstructions (bottom), train and test images."),
               ("image", "task2/loss_curves.png", "Cross-entropy and weighted L_rec in training.")]
    if m.get("lambda_sweep"):
        blocks.append(("image", "task2/lambda_sweep.png", "Accuracy against PSNR over lambda."))
    return blocks


def task3_blocks(m: dict) -> list[tuple]:
    blocks = [("h1", "Task 3: what the latent channels encode"),
              ("p", "For one training and one test image each channel of z1 (and chosen channels "
                    "of z2) is decoded alone, all other channels set to zero. The figures show "
                    "each feature map, its reconstruction min-max scaled and at the common scale "
                    "of the full reconstruction, and the projection through the encoder's own "
                    "filters transposed (Zeiler & Fergus's deconvnet).")]
    for split, image in m["images"].items():
        z1 = image["z1"]["channels"]
        strongest = max(z1, key=lambda r: r["reconstruction_energy"])
        colourful = max(z1, key=lambda r: r["colour_share"])
        oriented = max(z1, key=lambda r: r["orientation_coherence"])
        blocks.append(("p", f"{split.capitalize()} image {image['index']} ({image['class']}): "
                            f"z1 channel {strongest['channel']} adds the most reconstruction energy "
                            f"({strongest['reconstruction_energy']}, activation-energy share "
                            f"{strongest['energy_share']}); channel {colourful['channel']} is the "
                            f"most colour-selective (colour share {colourful['colour_share']}, mean "
                            f"RGB {colourful['mean_rgb']}); channel {oriented['channel']} is the "
                            f"most oriented (coherence {oriented['orientation_coherence']}, edges at "
                            f"{oriented['edge_orientation_deg']} degrees). Sum of single-channel "
                            f"reconstructions minus the full one: z1 max gap "
                            f"{image['z1']['linearity']['max_abs_gap']:.1e}, z2 relative gap "
                            f"{image['z2']['linearity']['relative_gap']:.3f}."))
        blocks.append(("table", ["layer", "channel", "energy share", "rec. energy",
                                 "colour share", "edges (deg)", "coherence"],
                       [[layer, r["channel"], r["energy_share"], r["reconstruction_energy"],
                         r["colour_share"], r["edge_orientation_deg"], r["orientation_coherence"]]
                        for layer in ("z1", "z2") for r in image[layer]["channels"]]))
        for layer in ("z1", "z2"):
            blocks.append(("image", f"task3/{split}_{layer}.png",
                           f"{split.capitalize()} image, single {layer} channels."))
    blocks += [("image", "task3/conv1_filters.png", "The six conv1 filters."),
               ("image", "task3/top9_z1.png", "Top-9 test images per z1 channel."),
               ("image", "task3/top9_z2.png", "Top-9 test images per z2 channel."),
               ("p", "Which channel detects what is left to the reader's interpretation of these "
                     "figures; the measures above (colour share, edge orientation and coherence "
                     "of each channel's reconstruction) are the evidence for it.")]
    return blocks


def build_blocks(metrics: dict[str, dict | None]) -> tuple[list[tuple], list[str]]:
    blocks: list[tuple] = []
    missing = []
    for task, make in (("task1", task1_blocks), ("task2", task2_blocks), ("task3", task3_blocks)):
        if metrics[task] is None:
            missing.append(task)
            script = {"task1": "train_classifier.py", "task2": "train_deconv.py",
                      "task3": "visualize_latents.py"}[task]
            blocks += [("h1", f"{task}: not run"),
                       ("p", f"No outputs/{task}/metrics.json was found; run {script} to fill "
                             "this section.")]
        else:
            blocks += make(metrics[task])
    return blocks, missing


# --- writers ---

def write_markdown(blocks: list[tuple], title: str, path: Path) -> None:
    lines = [f"# {title}", ""]
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
            lines.append("")
        elif kind == "image":
            lines += [f"![{block[2]}]({block[1]})", "", f"*{block[2]}*", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


class PdfWriter:
    """Flows blocks down A4 pages drawn with matplotlib; counts the pages it makes."""

    WIDTH, HEIGHT, MARGIN = 8.27, 11.69, 0.7

    def __init__(self, pdf: PdfPages, root: Path, image_height: float) -> None:
        self.pdf, self.root, self.pages = pdf, root, 0
        self.image_height = image_height
        self.figure = None
        self.y = 0.0
        self.only_title = False

    def _new_page(self) -> None:
        self._finish_page()
        self.figure = plt.figure(figsize=(self.WIDTH, self.HEIGHT))
        self.y = self.HEIGHT - self.MARGIN

    def _finish_page(self) -> None:
        if self.figure is not None:
            self.pages += 1
            self.figure.text(0.5, 0.3 / self.HEIGHT, str(self.pages), ha="center", fontsize=8)
            self.pdf.savefig(self.figure)
            plt.close(self.figure)
            self.figure = None

    def _room(self, height: float) -> None:
        if self.figure is None or self.y - height < self.MARGIN:
            self._new_page()

    def _text(self, text: str, size: float, weight: str = "normal", width: int = 100,
              style: str = "normal") -> None:
        wrapped = textwrap.wrap(text, width) or [""]
        height = len(wrapped) * size * 1.45 / 72
        self._room(height)
        self.figure.text(self.MARGIN / self.WIDTH, self.y / self.HEIGHT, "\n".join(wrapped),
                         fontsize=size, weight=weight, style=style, va="top", linespacing=1.35)
        self.y -= height + 0.08

    def title(self, text: str, subtitle: str) -> None:
        self._text(text, 16, "bold", width=60)
        self._text(subtitle, 9, style="italic")
        self.only_title = True

    def add(self, block: tuple) -> None:
        kind = block[0]
        if kind == "h1":
            if self.figure is not None and not self.only_title:
                self._new_page()  # every task starts on a fresh page
            self.only_title = False
            self.y -= 0.1
            self._text(block[1], 13, "bold", width=70)
        elif kind == "p":
            self._text(block[1], 9)
        elif kind == "table":
            self._table(block[1], block[2])
        elif kind == "image":
            self._image(self.root / block[1], block[2])

    def _table(self, header: list[str], rows: list[list]) -> None:
        row_height = 0.19
        height = row_height * (len(rows) + 1)
        self._room(height)
        width = min(self.WIDTH - 2 * self.MARGIN, 0.95 * len(header))
        ax = self.figure.add_axes([(self.WIDTH - width) / 2 / self.WIDTH,
                                   (self.y - height) / self.HEIGHT,
                                   width / self.WIDTH, height / self.HEIGHT])
        ax.axis("off")
        table = ax.table(cellText=[[str(v) for v in row] for row in rows], colLabels=header,
                         loc="upper left", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        table.scale(1, 1)
        self.y -= height + 0.15

    def _image(self, path: Path, caption: str) -> None:
        if not path.is_file():
            self._text(f"[missing figure {path.name}]", 9, style="italic")
            return
        image = mpimg.imread(path)
        width = self.WIDTH - 2 * self.MARGIN
        height = width * image.shape[0] / image.shape[1]
        limit = self.image_height
        if height > limit:
            width, height = width * limit / height, limit
        self._room(height + 0.3)
        left = (self.WIDTH - width) / 2
        ax = self.figure.add_axes([left / self.WIDTH, (self.y - height) / self.HEIGHT,
                                   width / self.WIDTH, height / self.HEIGHT])
        ax.imshow(image)
        ax.axis("off")
        self.y -= height + 0.05
        self._text(caption, 8, style="italic")

    def close(self) -> int:
        self._finish_page()
        return self.pages


def write_pdf(blocks: list[tuple], title: str, subtitle: str, root: Path, path: Path) -> int:
    """Lay the report out with figures as tall as the page limit allows; return its page count."""
    for image_height in (3.6, 3.0, 2.5, 2.1, 1.8, 1.5):
        buffer = io.BytesIO()
        with PdfPages(buffer) as pdf:
            writer = PdfWriter(pdf, root, image_height)
            writer.title(title, subtitle)
            for block in blocks:
                writer.add(block)
            pages = writer.close()
        if pages <= MAX_PAGES:  # else try again with smaller figures
            with atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getvalue())
            return pages
    raise UsageError(f"the report does not fit in {MAX_PAGES} pages even with small figures; "
                     "run visualize_latents.py with fewer --z2-channels")


def main() -> None:
    args = parse_args()
    out = prepare_output_dir(args.out or args.outputs)
    metrics = read_metrics(args.outputs)
    blocks, missing = build_blocks(metrics)
    for task in missing:
        print(f"warning: outputs of {task} are missing; the report says so in its place",
              file=sys.stderr)
    title = "Visualising a CIFAR-10 CNN with a deconvolutional mirror"
    subtitle = (f"Report built {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the metrics "
                f"and figures in {args.outputs}/; Zeiler & Fergus (2014), PyTorch CIFAR-10 tutorial.")
    write_markdown(blocks, title, out / "report.md")
    pages = write_pdf(blocks, title, subtitle, args.outputs.resolve(), out / "report.pdf")
    print(f"wrote {out / 'report.md'} and {out / 'report.pdf'} ({pages} pages)")


if __name__ == "__main__":
    run_cli(main)
