"""The report: every number and figure of the study, read from outputs/, typeset with Typst.

report/report.typ holds the prose and layout; this script reads the metrics files, turns them
into `facts` (numbers rounded to what they can carry, as text) and compiles the template with
them into report.pdf (at most 8 pages), plus a short Markdown twin, report.md. No number is
typed here or in the template. A task whose outputs are missing is reported as missing.

    python make_report.py            # after make all (or the task scripts)
"""
import argparse
import hashlib
import json
import os
import re
from pathlib import Path

from models import ARCHITECTURE, Architecture
from study.analysis.task3_result import read_task3
from study.core.common import ArgumentParser, UsageError, output_folder, run_cli, say
from study.core.files import atomic_path, prepare_output_dir
from study.core.layout import METRICS, REPORT, SUMMARY, Outputs
from study.core.readers import check_metrics, read_json, require_complete
from study.reporting import plots
from study.reporting.claims import check_verdicts
from study.reporting.facts import REPORT_FIGURES, build_facts, captions, figure_files
from study.reporting.page_check import layout_problems
from study.runs.folders import check_output_dir
from study.runs.summary import run_settings

MAX_PAGES = 8
TEMPLATE = Path(__file__).resolve().parent / "report" / "report.typ"
SOURCES = {"task1": ("task1/metrics.json", "train_classifier.py"),
           "task2": ("task2/metrics.json", "train_deconv.py"),
           "task3": ("task3/metrics.json", "visualize_latents.py"),
           "seeds": ("runs/summary.json", "sweep.py"),
           "convergence": ("seeds/metrics.json", "compare_seeds.py")}
PERCENT, ANY, POSITIVE = (0, 100), (None, None), (0, None)
# What the report reads of each metrics file: (key, kind, (low, high)); "a.b" is a nested key,
# "rows[].key" every row of a list. Floats are finite (never NaN or inf), ranges inclusive.
EXPECTED = {
    "task1": [("test_accuracy", float, PERCENT), ("test_accuracy_standard_error", float, PERCENT),
              ("test_images", int, (1, None)), ("per_class_accuracy", dict, (1, None)),
              ("per_class_accuracy.*", float, PERCENT), ("confusion_matrix", list, (1, None)),
              ("confusion_matrix[]", list, (1, None)), ("loss_log", list, ANY),
              ("loss_log[].loss", float, POSITIVE), ("config", dict, ANY),
              ("config.epochs", int, (1, None)), ("config.lr", float, (0, None)),
              ("config.seed", int, (0, None)), ("config.subset", float, (0, 1)),
              ("train_seconds", float, POSITIVE), ("data", dict, ANY),
              ("data.train_images", int, (1, None)), ("data.test_images", int, (1, None)),
              ("environment", dict, ANY)],
    "task2": [("test_accuracy", float, PERCENT), ("test_accuracy_standard_error", float, PERCENT),
              ("test_psnr_db", float, ANY), ("test_mse", float, POSITIVE),
              ("test_rec_loss", float, POSITIVE), ("lambda", float, POSITIVE),
              ("lambda_as_mse_weight", float, POSITIVE), ("config", dict, ANY),
              ("per_class_accuracy", dict, (1, None)), ("per_class_accuracy.*", float, PERCENT),
              ("per_class_standard_error_max", float, PERCENT),
              ("psnr_baselines_db", dict, (1, None)), ("psnr_baselines_db.*", float, ANY),
              ("task1_comparison", dict, ANY), ("train_seconds", float, POSITIVE)],
    "convergence": [("seeds", list, (2, None)), ("layers", dict, (1, None)),
                    ("layers.*.channels", int, (1, None)),
                    ("layers.*.counterpart_in_every_seed", list, ANY),
                    ("layers.*.null.draws", int, (1, None)), ("layers.*.null.q95_r", float, (-1, 1)),
                    ("layers.*.pairs", dict, (1, None)), ("layers.*.pairs.*.mean_r", float, (-1, 1)),
                    ("layers.*.pairs.*.p_mean_holm", float, (0, 1))],
    "seeds": [("per_seed", list, ANY), ("per_seed[].task1_accuracy", float, PERCENT),
              ("per_seed[].task2_accuracy", float, PERCENT), ("per_seed[].task2_psnr_db", float, ANY),
              ("lambda_sweep", list, ANY), ("lambda_sweep[].lambda", float, POSITIVE),
              ("lambda_sweep[].accuracy.mean", float, PERCENT)],
}


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="folder holding task1/, task2/, task3/ and runs/, relative to the "
                             "current folder")
    parser.add_argument("--out", type=output_folder, default=argparse.SUPPRESS,
                        help="where report.pdf and report.md go (default: the --outputs folder)")
    return parser.parse_args(argv)


def check_provenance(metrics: dict, outputs: Path) -> None:
    """Refuse to combine results that do not belong together (a newer run of one part failed,
    or one part was made from another run's model)."""
    task1, task2, task3 = metrics["task1"], metrics["task2"], metrics["task3"]
    model = Outputs(outputs).task2_checkpoint
    if task3 and model.is_file():
        made_from = task3.layer1_refit["checkpoint_sha256"]
        if made_from != hashlib.sha256(model.read_bytes()).hexdigest():
            raise UsageError(f"{outputs / 'task3'} was made from another Task 2 model than "
                             f"{model}; rerun visualize_latents.py (or make all)")
    compared = (task2 or {}).get("task1_comparison", {})
    if task1 and "task1_test_accuracy" in compared:
        settings = {k: task1.get("config", {}).get(k) for k in compared.get("task1_settings", {})}
        if compared["task1_test_accuracy"] != task1.get("test_accuracy") or \
                settings != compared.get("task1_settings", settings) or \
                "task1_settings" not in compared:
            raise UsageError(f"{outputs / 'task2'} was compared with another Task 1 run than "
                             f"{outputs / 'task1'} holds (settings, data or accuracy differ); "
                             "rerun train_deconv.py (or make all)")
    seeds = metrics["seeds"]
    for task, found in (("task1", task1), ("task2", task2)):
        if not (seeds and found):
            continue
        row = next((r for r in seeds.get("per_seed", [])
                    if r.get("seed") == found.get("config", {}).get("seed")), None)
        if row is not None and row.get(f"{task}_settings") != run_settings(found):
            raise UsageError(f"{outputs / 'runs' / SUMMARY} was made from another "
                             f"{task.replace('task', 'Task ')} run than {outputs / task} holds "
                             "(its seed table would contradict it); rerun sweep.py (or make all)")


def companion_pointer(outputs: Path) -> dict | None:
    """What the abstract says of the companion report when it has been made (None before):
    whether it holds the deeper network, with its number of stages and test accuracy (its
    Task 2 run)."""
    if not Outputs(outputs).beyond_report.is_file():
        return None
    metrics = Outputs(outputs).depth.task("task2") / METRICS
    found = read_json(metrics, "deep Task 2 metrics", "rerun make depth") if metrics.is_file() else {}
    layers = found.get("architecture", {}).get("layers")
    accuracy = found.get("test_accuracy")
    if not isinstance(layers, list) or not isinstance(accuracy, (int, float)):
        return {"deep": False}
    return {"deep": True, "stages": len(layers), "accuracy": f"{accuracy:.1f}"}


def read_metrics(outputs: Path) -> dict[str, dict | None]:
    """Each source's JSON (Task 3's as its typed Task3Result), or None when it has not been
    run; one-line errors for damaged files."""
    found = {}
    for name, (relative, script) in SOURCES.items():
        path = outputs / relative
        if name != "seeds":
            require_complete(path.parent, "the output folder",
                             f"rerun {script} (or make all) before making the report")
        if not path.is_file():
            found[name] = None
            continue
        if name == "task3":  # the typed result, checked by its own reader
            found[name] = read_task3(path, f"rerun {script} with this version of the code")
            continue
        metrics = read_json(path, "metrics file", f"rerun {script} or delete the file")
        check_metrics(metrics, EXPECTED[name], str(path),
                      f"rerun {script} with this version of the code")
        found[name] = metrics
    return found


def figure_facts(facts: dict, outputs: Path, out: Path) -> dict[str, list]:
    """Per figure that exists: [absolute path, width as drawn (in), caption]."""
    words = captions(facts)
    layers = (facts["t3"] or {}).get("layers", [])
    files = {key: outputs / path for key, path in figure_files(layers).items()}
    for kind in ("train", "test", "top9"):  # report.md shows every layer's: the first's caption
        if layers and f"t3_{kind}_first" in words:
            words.setdefault(f"t3_{kind}_{layers[0]}", words[f"t3_{kind}_first"])
    files.update({key: out / f"{key}.svg" for key in REPORT_FIGURES})
    for key, path in files.items():  # a figure is a file the runs wrote, never a link out
        if path.is_symlink() or (path.exists() and not any(
                path.resolve().is_relative_to(root.resolve()) for root in (outputs, out))):
            raise UsageError(f"{path} is a link (to {os.path.realpath(path)}), not a figure the "
                             "runs wrote; the report embeds no file from outside the outputs "
                             "folder: remove the link and rerun the script that draws it")
    # absolute paths here; `typeset` copies the figures into its own root before compiling
    return {key: [str(path.resolve()), plots.natural_width_in(path), words.get(key, "")]
            for key, path in files.items() if path.is_file()}


def draw_report_figures(metrics: dict, arch: Architecture, out: Path) -> None:
    """The figures drawn from the metrics files (not by a task script), into `out`: the
    architecture, the training losses, the per-class accuracy of both tasks, Task 1's confusion
    matrix and the λ sweep; each one that its metrics allow, stale ones removed."""
    from data import DISPLAY_NAMES

    task1, task2, seeds = metrics["task1"], metrics["task2"], metrics["seeds"]
    figures = {"architecture": lambda: plots.architecture_figure(arch)}
    if task1 or task2:
        figures["training"] = lambda: plots.training_figure(task1, task2)
        figures["per_class"] = lambda: plots.per_class_figure(
            {label: m["per_class_accuracy"] for label, m in (("Task 1", task1), ("Task 2", task2)) if m})
    if task1:
        figures["confusion"] = lambda: plots.confusion_figure(task1["confusion_matrix"], DISPLAY_NAMES)
    if seeds and seeds.get("lambda_sweep") and seeds.get("per_seed"):
        figures["lambda_sweep"] = lambda: plots.lambda_figure(seeds)
    for key in REPORT_FIGURES:
        (out / f"{key}.svg").unlink(missing_ok=True)
        if key in figures:
            plots.save(figures[key](), out / f"{key}.svg")


# --- writers ---

SVG_REFERENCE = re.compile(rb"""(?:href|src)\s*=\s*["']\s*(?!data:|#)([^"']*)""", re.IGNORECASE)


def staged_figures(figs: dict[str, list], folder: Path) -> dict[str, list]:
    """Copy each figure into `folder`, Typst's root, and point the facts at the copies.

    Typst then reads nothing outside that folder: no figure (or a link inside an SVG) can put
    another file of the disk into the PDF. An SVG that refers to any file (rather than to its
    own data) is refused.
    """
    staged = {}
    for key, (path, width, caption) in figs.items():
        data = Path(path).read_bytes()
        if path.endswith(".svg") and SVG_REFERENCE.search(data):
            reference = SVG_REFERENCE.search(data).group(1).decode(errors="replace")
            raise UsageError(f"{path} refers to another file ({reference!r}); the report embeds "
                             "self-contained figures only: rerun the script that draws it")
        name = f"{key}{Path(path).suffix}"
        (folder / name).write_bytes(data)
        staged[key] = [f"/{name}", width, caption]
    return staged


def typeset(facts: dict) -> bytes:
    """The PDF, compiled with a root that holds a copy of the figures and nothing else."""
    import tempfile

    import typst

    with tempfile.TemporaryDirectory(prefix="report-figures-") as folder:
        staged = {**facts, "figs": staged_figures(facts["figs"], Path(folder))}
        try:
            return typst.compile(TEMPLATE.read_bytes(), root=folder, format="pdf",
                                 sys_inputs={"facts": json.dumps(staged)})
        except Exception as error:  # typst reports template or figure problems as its own errors
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"typst could not typeset the report ({first}); rerun the task "
                             "scripts so that every figure is complete") from None


def compile_pdf(facts: dict, path: Path) -> int:
    """Typeset; if the text runs past the page limit, once more with a tighter text setting.
    The PDF is then read back: a figure or table past the text block or after the References,
    or one the text never cites, stops the build; a page less than full is a warning."""
    pdf = typeset(facts)
    if page_count(pdf) > MAX_PAGES:
        pdf = typeset({**facts, "compact": True})
    pages = page_count(pdf)
    if pages > MAX_PAGES:
        raise UsageError(f"the report has {pages} pages, more than {MAX_PAGES}; show fewer "
                         "channels (visualize_latents.py --z2-channels top3)")
    problems = layout_problems(pdf)
    faults = problems["outside"] + problems["after_references"] + problems["uncited"]
    if faults:
        raise UsageError(f"the typeset report breaks its layout ({faults[0]}"
                         + (f", and {len(faults) - 1} more" if len(faults) > 1 else "")
                         + "); report/report.typ needs mending")
    for problem in problems["underfilled"]:
        say(f"note: {problem}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(pdf)
    return pages


def page_count(pdf: bytes) -> int:
    """Pages of a PDF: the /Count of its page tree root."""
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf)]
    counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", pdf)]
    return max(counts, default=0)


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!])")


def md(text: object) -> str:
    """A string from a metrics file as Markdown text: markup characters escaped, one line.

    Class names, findings and messages are data: `<img onerror=...>` or `*x*` must print as
    typed, never become HTML or emphasis, and a newline must not start a new block.
    """
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown(facts: dict, outputs: Path, out: Path) -> str:
    """A short twin of the PDF: the headline numbers, the tables and the figures."""
    def link(key: str, caption: str) -> list[str]:
        if key not in facts["figs"]:
            return [f"*[missing figure: {caption}]*", ""]
        path, _, words = facts["figs"][key]
        relative = os.path.relpath(outputs / path, out)
        return [f"![{caption}]({Path(relative).as_posix()})", f"*{md(words or caption)}*", ""]

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                + ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows] + [""])

    lines = [f"# {facts['title']}", ""]
    t1, t2, t3, seeds = facts["t1"], facts["t2"], facts["t3"], facts["seeds"]
    lines += ["## Task 1: the tutorial classifier", ""]
    if t1:
        lines += [f"Test accuracy {t1['accuracy']} % (standard error {t1['se']} points) on "
                  f"{t1['n_test']} test images after {t1['epochs_words']}; best class "
                  f"{md(t1['best'][0])} ({t1['best'][1]} %), worst {md(t1['worst'][0])} "
                  f"({t1['worst'][1]} %).", ""]
        lines += table(["epoch", "mini-batch", "running loss"], t1["losses"])
        lines += table(["class", "accuracy (%)"], t1["per_class"])
        for key, caption in (("t1_samples", "training images"), ("training", "training losses"),
                             ("t1_predictions", "GroundTruth vs Predicted"),
                             ("per_class", "accuracy per class"), ("confusion", "confusion matrix")):
            lines += link(key, caption)
    else:
        lines += ["No outputs/task1/metrics.json was found; run train_classifier.py to fill this "
                  "section.", ""]
    lines += ["## Task 2: classifier with a deconvolutional mirror", ""]
    if t2:
        lines += [f"Test accuracy {t2['accuracy']} %, reconstruction PSNR {t2['psnr']} dB "
                  f"(lambda {t2['lambda']}, an MSE weight of {t2['mse_weight']}). "
                  f"{md(t2['comparison_message'])}.", ""]
        lines += table(["reconstruction", "test PSNR (dB)"],
                       [["Task 2 decoder", t2["psnr"]], *t2["baselines"]])
        for key, caption in (("architecture", "architecture"), ("t2_reconstructions", "reconstructions")):
            lines += link(key, caption)
    else:
        lines += ["No outputs/task2/metrics.json was found; run train_deconv.py to fill this "
                  "section.", ""]
    if seeds:
        lines += ["### Seeds and lambda", ""]
        lines += table(["seed", "Task 1 (%)", "Task 2 (%)", "difference", "McNemar p", "PSNR (dB)"],
                       seeds["rows"])
        lines += table(["lambda", "seeds", "accuracy (%)", "PSNR (dB)"], seeds["lambda_rows"])
        lines += link("lambda_sweep", "lambda trade-off")
    lines += ["## Task 3: what the latent channels encode", ""]
    if t3:
        lines += table(["decoder, and what it is fed (test set)", "PSNR (dB)", "r"],
                       t3["decoder_rows"])
        lines += table(["channel", "r luminance", "r R-G", "r B-Y", "r gradient",
                        f"top-{t3['top_k']} class (%)", "the rules name", "learned (a)",
                        "single channel (b)"], t3["channel_rows"])
        lines += ["### Did training make it, and is it a single channel's?", "",
                  f"Against {t3['draws']} random networks per cascade step (a) and {t3['draws']} "
                  "rotations of the trained layer (b), Holm-corrected:", ""]
        lines += table(["layer, pattern", "trained", *t3["cascade"], "rotations", "permuted",
                        "p (a)", "needed (a)", "p (b)", "needed (b)"], t3["count_rows"])
        for question, found in (("(a) against random networks", t3["learned"]),
                                ("(b) against rotations", t3["single"]),
                                ("both questions", t3["both"])):
            lines += [f"- Single-channel descriptions that survive {question}: "
                      + (", ".join(f"{md(i['name'])} {md(i['rule'])} ({md(i['p'])})" for i in found)
                         or "none")]
        lines += [""]
        for key, caption in (("t3_baseline_pictures", "pictures, trained vs randomised"),
                             ("t3_occlusion", "occlusion")):
            lines += link(key, caption)
        layers = (facts["t3"] or {}).get("layers", [])
        for kind, words in (("train", "train image"), ("test", "test image"), ("top9", "top-9")):
            for name in layers:  # every layer's, where the PDF shows the first and the last
                lines += link(f"t3_{kind}_{name}", f"{words}, {name}")
        lines += link("t3_classes", "mean activation per class")
    else:
        lines += ["No outputs/task3/metrics.json was found; run visualize_latents.py to fill "
                  "this section.", ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    out = getattr(args, "out", args.outputs)
    check_output_dir(out, "report")
    if not args.outputs.is_dir():
        raise UsageError(f"--outputs {args.outputs} is not a folder: nothing to report; run "
                         "make all (or the task scripts) first, or pass the right folder")
    metrics = read_metrics(args.outputs)
    if not any(metrics.values()):
        raise UsageError(f"{args.outputs} holds no metrics files (task1/, task2/, task3/, "
                         "runs/): nothing to report; run make all (or the task scripts) first")
    check_provenance(metrics, args.outputs)
    for name, found in metrics.items():
        if found is None and name != "seeds":
            say(f"warning: outputs of {name} are missing; the report says so in its place")
    if metrics["seeds"] is None:
        say("note: no runs/summary.json (sweep.py); the report has no seed or lambda tables")
    try:
        facts = build_facts(metrics)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise UsageError(f"a metrics file under {args.outputs} lacks or garbles a value "
                         f"({type(error).__name__}: {error}); rerun the task scripts with this "
                         "version of the code (make all)") from None
    if facts["prose"]:  # the written verdicts must hold for this run, before anything is written
        check_verdicts(metrics, TEMPLATE.read_text())
    else:
        print(f"note: {facts['neutral_note']}")
    out = prepare_output_dir(out)
    try:
        described = next((m["architecture"] for m in metrics.values() if m and "architecture" in m),
                         None)
        # The architecture of the runs reported (each metrics file records it), drawn from
        # its description; ARCHITECTURE only when no run recorded one.
        draw_report_figures(metrics, Architecture.from_description(described) if described
                            else ARCHITECTURE, out)
        facts["figs"] = figure_facts(facts, args.outputs, out)
        facts["companion"] = companion_pointer(args.outputs)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise UsageError(f"a metrics file under {args.outputs} lacks or garbles a value "
                         f"({type(error).__name__}: {error}); rerun the task scripts with this "
                         "version of the code (make all)") from None
    pages = compile_pdf(facts, out / REPORT)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(facts, args.outputs.resolve(), out.resolve()))
    print(f"wrote {out / 'report.pdf'} ({pages} pages) and {out / 'report.md'}")


if __name__ == "__main__":
    run_cli(main)
