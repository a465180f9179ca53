"""The companion report beyond.pdf, "Beyond the assignment": four of Zeiler & Fergus's
questions, asked of the tutorial's network (make all) and of a deeper one (make depth).

1. Do different seeds learn the same channels? (compare_seeds.py)
2. When do channels form during training? (formation.py)
3. What does each layer become invariant to? (invariance.py)
4. Does learning show with depth? Per layer of the tutorial's net and of the deeper net, the
   class-dominant channels and the linear probe's accuracy, each against networks that learned
   nothing:
   * the count of class-dominant channels (Task 3's "class" rule) against its null draws (the
     rank p-value Task 3 computed, the largest over the null groups), Holm-corrected over the
     layers of the network;
   * the linear probe's test accuracy against each baseline's (exact McNemar, Holm over the
     network's layers and baselines, computed by probe_layers.py).

Reads OUTPUTS (seeds/, formation/, invariance/, task3/) and OUTPUTS/depth (the same, with
task1, task2, probes and probes_tutorial); typesets report/beyond.typ with them (at most
MAX_PAGES pages). No number is typed here or in the template; a part that has not been run is
said to be missing. The template's verdicts are checked against the run (study.reporting.claims:
a run that contradicts one stops the build naming the sentence); they are in force only for the
full-data runs they were written for.

    python make_beyond_report.py          # what make all and make depth run
"""
import argparse
import json
import shutil
import tempfile
from pathlib import Path

from models import Architecture
from study.analysis.nulls import ALPHA, holm
from study.analysis.task3_result import Task3Result, read_task3
from study.core.common import ArgumentParser, UsageError, output_folder, run_cli
from study.core.files import atomic_path, prepare_output_dir
from study.core.ids import ModelId
from study.core.layout import BEYOND_REPORT, DECONV_CHECKPOINT, METRICS, Outputs
from study.core.readers import check_metrics, field, read_json, require, require_complete
from study.reporting import claims, plots
from study.reporting.beyond_claims import CLAIMS
from study.reporting.page_check import layout_problems
from study.reporting.questions import full_data, question_facts
from study.runs.folders import check_output_dir
from study.runs.identity import file_sha256

MAX_PAGES = 6
TEMPLATE = Path(__file__).resolve().parent / "report" / "beyond.typ"
RULE = "class"  # Task 3's rule for a class-dominant channel


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="the study's outputs (make all), with depth/ (make depth) if made")
    parser.add_argument("--out", type=output_folder, default=argparse.SUPPRESS,
                        help="where beyond.pdf goes (default: OUTPUTS)")
    return parser.parse_args(argv)


UNIT, PERCENT, ANY, POSITIVE = (0, 1), (0, 100), (None, None), (0, None)
# What the depth report reads of each part's metrics.json, checked once where it is read
# (study.core.readers.check_metrics); per layer values are checked by check_layers.
EXPECTED = {
    "task1": [("test_accuracy", float, PERCENT), ("train_seconds", float, POSITIVE)],
    "task2": [("test_accuracy", float, PERCENT), ("train_seconds", float, POSITIVE),
              ("test_psnr_db", float, ANY), ("config", dict, ANY), ("config.arch", str, (1, 40)),
              ("config.epochs", int, (1, None)), ("config.batch_size", int, (1, None))],
    "probes": [("architecture", dict, ANY), ("layers", dict, (1, None)), ("pixels", float, UNIT),
               ("config", dict, ANY), ("config.train_images", int, (1, None))],
}


def optional(path: Path, part: str, what: str) -> dict | Task3Result | None:
    """The metrics.json of a part of the study ("task1", "task2", "task3" or "probes"; Task 3's
    as its typed Task3Result), or None when that part has not been run; a one-line error when
    its folder holds a run that did not finish (its files may be older than that run), or when
    a value this report reads of that part (EXPECTED, or Task 3's own reader) is missing or not
    of its type and range."""
    fix = "rerun make depth (or that part of it)"
    require_complete(path.parent, "the folder", fix)
    if not path.is_file():
        return None
    if part == "task3":
        result = read_task3(path, fix)
        for layer in result.layers:  # the count this report reads, where there is one
            where = f"{path}: baselines: rules: {layer.name}: counts: {RULE}"
            if RULE in layer.nulls["counts"]:
                check_metrics(layer.nulls["counts"][RULE], COUNT, where, fix)
        return result
    metrics = read_json(path, what, fix)
    check_metrics(metrics, EXPECTED[part], str(path), fix)
    if part == "probes":
        check_probe_layers(metrics, path, fix)
    return metrics


COUNT = [("trained", int, (0, None)), ("p_value", float, UNIT), ("baselines", dict, ANY),
         ("baselines.*", dict, ANY), ("baselines.*.mean", (float, type(None)), POSITIVE)]


def check_probe_layers(metrics: dict, path: Path, fix: str) -> None:
    """The probes' per-layer values, for exactly the layers of the architecture they record (a
    layer named otherwise, or missing, is one line)."""
    try:
        names = [stage.name for stage in Architecture.from_description(metrics["architecture"]).layers]
    except ValueError as error:
        raise UsageError(f"{path}: architecture: {error}; {fix}") from None
    if sorted(metrics["layers"]) != sorted(names):
        raise UsageError(f"{path}: layers are {sorted(metrics['layers'])}, not the network's "
                         f"{names}; {fix}")
    expected = [("accuracy", dict, (1, None)), ("accuracy.trained", float, UNIT),
                ("accuracy.*", float, UNIT),
                ("mcnemar", dict, ANY), ("mcnemar.*.p_value", float, UNIT),
                ("mcnemar.*.p_holm", float, UNIT)]
    for name in names:
        check_metrics(metrics["layers"][name], expected, f"{path}: layers: {name}", fix)


def group_label(group: str, depth: int) -> str:
    """Short words for a baseline group id of a network with `depth` stages."""
    if group == "pixels":
        return "raw pixels"
    try:
        return ModelId.parse(group).short
    except ValueError:
        return group


def layer_facts(task3: Task3Result | None, probes: dict | None) -> list[dict]:
    """Per layer: the class-dominant count against its nulls and the probe against its
    baselines, with Holm over the layers (counts) as the docstring above says."""
    layers = []
    counted = {layer.name: layer for layer in task3.layers} if task3 else {}
    names = [n for n in (probes or {}).get("layers", {})] or list(counted)
    for name in names:
        entry = {"layer": name}
        layer = counted.get(name)
        count = layer.nulls["counts"].get(RULE) if layer else None
        if count is not None:
            entry["count"] = {"trained": count["trained"], "channels": len(layer.channels),
                              "nulls": {g: b.get("mean") for g, b in count["baselines"].items()},
                              "p_value": count["p_value"]}
        probe = (probes or {}).get("layers", {}).get(name)
        if probe is not None:
            entry["probe"] = {"accuracy": probe["accuracy"], "mcnemar": probe["mcnemar"],
                              "pixels": probes["pixels"]}
        layers.append(entry)
    counted = [e for e in layers if "count" in e]
    for entry, adjusted in zip(counted, holm([e["count"]["p_value"] for e in counted])):
        entry["count"]["p_holm"] = adjusted
    return layers


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def probe_beats(probe: dict) -> bool:
    """Whether a layer's probe reads more than every baseline and raw pixels, every difference
    surviving Holm."""
    trained = probe["accuracy"]["trained"]
    others = [a for g, a in probe["accuracy"].items() if g != "trained"]
    worst = max((t["p_holm"] for t in probe["mcnemar"].values()), default=None)
    return (bool(others) and all(trained > a for a in others) and trained > probe["pixels"]
            and worst is not None and worst < ALPHA)


def layer_sentence(entry: dict, depth: int) -> str:
    """One sentence saying whether learning shows at this layer, from the two tests."""
    parts, shows = [], []
    probe = entry.get("probe")
    if probe:
        trained = probe["accuracy"]["trained"]
        others = {g: a for g, a in probe["accuracy"].items() if g != "trained"}
        worst = max(probe["mcnemar"].values(), key=lambda t: t["p_holm"]) if probe["mcnemar"] else None
        beats = probe_beats(probe)
        best_group, best = max(others.items(), key=lambda item: item[1]) if others else ("", 0.0)
        parts.append(f"the linear probe reads {percent(trained)} of the test images right, against "
                     f"at most {percent(best)} for a baseline ({group_label(best_group, depth)}) and "
                     f"{percent(probe['pixels'])} for raw pixels"
                     + (f" (every difference: Holm {p_text(worst['p_holm'])}"
                        f"{' or less' if worst['p_holm'] >= 0.001 else ''})" if beats else
                        " (not above every baseline at Holm p < 0.05)"))
        shows.append(beats)
    count = entry.get("count")
    if count:
        nulls = ", ".join(f"{group_label(g, depth)} {m:.{0 if float(m).is_integer() else 1}f}"
                          for g, m in count["nulls"].items() if m is not None)
        survives = count["p_holm"] < ALPHA
        parts.append(f"{count['trained']} of its {count['channels']} channels are class-dominant "
                     f"against means of {nulls} in models that learned nothing (Holm "
                     f"{p_text(count['p_holm'])}{'' if survives else ', not significant'})")
        shows.append(survives)
    if not parts:
        return f"{entry['layer']}: not measured."
    if len(shows) == 2:
        verdict = ("learning shows in both tests" if all(shows) else
                   "learning shows in the probe only" if shows[0] else
                   "learning shows in the channel count only" if shows[1] else
                   "learning does not show")
    else:
        tested, missing = ("probe", "channel count") if probe else ("channel count", "probe")
        verdict = (f"learning shows in the {tested}" if shows[0] else
                   f"learning does not show in the {tested}") + f" (the {missing} was not measured)"
    return f"{entry['layer']}: {verdict}: " + "; ".join(parts) + "."


def depth_figure(networks: dict[str, dict]) -> plots.plt.Figure:
    """Per network (columns), per layer: the share of class-dominant channels (top) and the
    probe's test accuracy (bottom), trained against the baselines."""
    fig, axes = plots.plt.subplots(2, len(networks), figsize=(plots.TEXT_WIDTH_IN, 5.2),
                                   squeeze=False)
    styles = {"trained": ("black", "o", "-")}
    palette = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                    "tab:pink", "tab:olive"])
    for column, (title, network) in enumerate(networks.items()):
        depth, layers = network["depth"], network["layers"]
        x = list(range(1, len(layers) + 1))
        top, bottom = axes[0][column], axes[1][column]
        series: dict[str, list] = {}
        for entry in layers:
            count = entry.get("count")
            if count:
                series.setdefault("trained", []).append((int(entry["layer"][1:]), count["trained"] / count["channels"]))
                for g, m in count["nulls"].items():
                    if m is not None:
                        series.setdefault(g, []).append((int(entry["layer"][1:]), m / count["channels"]))
        for g, points in series.items():
            if g not in styles:
                styles[g] = (next(palette), "s", "--")
            colour, marker, line = styles[g]
            top.plot(*zip(*points), color=colour, marker=marker, linestyle=line, label=group_label(g, depth))
        probes: dict[str, list] = {}
        for entry in layers:
            for g, a in entry.get("probe", {}).get("accuracy", {}).items():
                probes.setdefault(g, []).append((int(entry["layer"][1:]), 100 * a))
        for g, points in probes.items():
            if g not in styles:
                styles[g] = (next(palette), "s", "--")
            colour, marker, line = styles[g]
            bottom.plot(*zip(*points), color=colour, marker=marker, linestyle=line, label=group_label(g, depth))
        pixels = next((e["probe"]["pixels"] for e in layers if "probe" in e), None)
        if pixels is not None:
            bottom.axhline(100 * pixels, color="grey", linestyle=":", label="raw pixels")
        if not series:
            top.text(0.5, 0.5, "not measured", ha="center", va="center", transform=top.transAxes)
        top.set_title(title)
        top.set_ylabel("class-dominant channels (share)")
        bottom.set_ylabel("linear probe, test accuracy (%)")
        for ax in (top, bottom):
            ax.set_xticks(x, [f"z{k}" for k in x])
            ax.set_xlabel("layer")
            ax.grid(alpha=0.3)
    # one legend for every panel, below them: inside a panel it hid the lines it names
    legend: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    rows = 0
    if legend:
        columns = 3
        rows = -(-len(legend) // columns)
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=columns,
                   fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.045 * rows, 1, 1))
    return fig


def network_facts(task3: Task3Result | None, probes: dict | None, title: str) -> dict | None:
    if task3 is None and probes is None:
        return None
    layers = layer_facts(task3, probes)
    depth = len(probes["architecture"]["layers"]) if probes else task3.architecture.depth
    return {"title": title, "depth": depth, "layers": layers,
            "sentences": [layer_sentence(e, depth) for e in layers],
            # the layers where each test shows learning (the brief's counts)
            "probe_shows": [e["layer"] for e in layers if "probe" in e and probe_beats(e["probe"])],
            "count_shows": [e["layer"] for e in layers
                            if "count" in e and e["count"]["p_holm"] < ALPHA],
            "draws": task3.protocol["draws"] if task3 else None,
            "probe_train_images": (probes or {}).get("config", {}).get("train_images")}


def check_same_network(task3: Task3Result | None, probes: dict | None, checkpoint: Path,
                       folders: tuple[Path, Path]) -> None:
    """Task 3 and the probes combined in one row must have read the same network: the one in
    `checkpoint` (by SHA-256); else one line naming the folder that read another."""
    fix = "rerun make depth (it redoes what read another network)"
    expected = file_sha256(checkpoint)
    read = {folders[0]: task3.layer1_refit["checkpoint_sha256"] if task3 is not None else expected,
            folders[1]: (probes or {}).get("checkpoint_sha256") if probes is not None else expected}
    for folder, found in read.items():
        if found != expected:
            what = "records no network" if found is None else "read another network"
            raise UsageError(f"{folder} {what} than {checkpoint} (SHA-256 differs), so its "
                             f"results are not this study's; {fix}")


def depth_facts(outputs: Path) -> dict | None:
    """Question 4: the deeper network's runs and both networks' layer tests, or None before
    make depth."""
    tree = Outputs(outputs)
    depth = tree.depth.root
    deep = {part: optional(depth / part / METRICS, part, f"deep {part} metrics")
            for part in ("task1", "task2", "task3", "probes")}
    if deep["task2"] is None:
        return None
    tutorial = {"task3": optional(tree.task("task3") / METRICS, "task3", "Task 3 metrics"),
                "probes": optional(tree.depth.probes_tutorial / METRICS, "probes",
                                   "tutorial probe metrics")}
    check_same_network(deep["task3"], deep["probes"], depth / "task2" / DECONV_CHECKPOINT,
                       (depth / "task3", depth / "probes"))
    check_same_network(tutorial["task3"], tutorial["probes"], tree.task2_checkpoint,
                       (tree.task("task3"), tree.depth.probes_tutorial))
    t1, t2 = deep["task1"] or {}, deep["task2"]
    config = t2.get("config", {})
    decoders = deep["task3"].decoders if deep["task3"] else {}
    networks = {}
    for key, found, title in (("tutorial", tutorial, "The tutorial's net (2 stages)"),
                              ("deep", deep, f"The deeper net ({config.get('arch', 'deep')})")):
        facts = network_facts(found["task3"], found["probes"], title)
        if facts is not None:
            networks[key] = facts
    mcnemar_p = None  # Task 2's comparison with Task 1, where the run made one
    comparison = t2.get("task1_comparison")
    if isinstance(comparison, dict) and "mcnemar" in comparison:
        where, fix = f"{depth / 'task2' / METRICS}: task1_comparison", "rerun make depth"
        mcnemar_p = field(require(comparison["mcnemar"], dict, what=f"{where}: mcnemar", fix=fix),
                          "p_value", float, 0, 1, f"{where}: mcnemar", fix)
    return {
        "arch": config.get("arch"), "epochs": config.get("epochs"), "batch": config.get("batch_size"),
        "task1_accuracy": t1.get("test_accuracy"), "task1_seconds": t1.get("train_seconds"),
        "task2_accuracy": t2.get("test_accuracy"), "task2_seconds": t2.get("train_seconds"),
        "task2_psnr": t2.get("test_psnr_db"), "mcnemar_p": mcnemar_p,
        # the learned decoders only: a tied deconvnet's output has no pixel scale to compare
        "psnr_per_layer": [[decoder.label, reading.psnr_db]
                           for decoder, reading in decoders.items() if not decoder.tied],
        "networks": networks, "full_data": full_data(t2),
    }


# the figures each question's script drew, by network: (facts key, folder, file)
FIGURES = {"seeds": ("seeds", "seeds_agree.png"), "formation": ("formation", "formation.png"),
           "formation_units": ("formation", "formation_units.png"),
           "invariance": ("invariance", "invariance.png")}


def build_facts(outputs: Path) -> tuple[dict, dict[str, Path]]:
    """(everything the template prints: per network the three questions' facts, the depth
    study's (None before make depth), the figures' names and widths, and whether the prose is
    in force; the figures the scripts drew, by name, for typeset to copy)."""
    tree = Outputs(outputs)
    networks = {"tutorial": question_facts(tree)}
    if tree.depth.root.is_dir():
        networks["deep"] = question_facts(tree.depth)
    if not any(found for network in networks.values() for found in network.values()):
        raise UsageError(f"no question beyond the assignment has been asked in {outputs}: run "
                         "make all first (its seeds, formation and invariance steps)")
    depth = depth_facts(outputs)
    figures = {}
    for network, found in networks.items():
        root = tree if network == "tutorial" else tree.depth
        for name, (key, file) in FIGURES.items():
            path = getattr(root, key) / file
            if found[key] is not None and path.is_file():
                figures[f"{network}-{name}"] = path
    facts = {"networks": networks, "depth": depth, "alpha": ALPHA,
             "figures": {name: [f"{name}{path.suffix}", plots.natural_width_in(path)]
                         for name, path in figures.items()}}
    facts["prose"] = prose_in_force(facts)
    return facts, figures


def prose_in_force(facts: dict) -> bool:
    """The template's verdicts were written for the full-data runs of make all and make
    depth: elsewhere (a subset, tiny data) the report gives the numbers without them."""
    asked = [found for network in facts["networks"].values() for found in network.values()
             if found is not None]
    return all(found["full_data"] for found in asked) and (
        facts["depth"] is None or facts["depth"]["full_data"])


def typeset(facts: dict, figures: dict[str, Path], folder: Path, out: Path) -> None:
    """beyond.pdf from the template, the facts and the figures (copied into `folder`, the
    only folder the template may read)."""
    import typst

    for name, path in figures.items():
        shutil.copyfile(path, folder / facts["figures"][name][0])
    if facts["prose"]:  # the written verdicts must hold for this run, before anything is written
        claims.check_verdicts(facts, TEMPLATE.read_text(), CLAIMS, "report/beyond.typ",
                              "study/reporting/beyond_claims.py")
    try:
        pdf = typst.compile(TEMPLATE.read_bytes(), root=str(folder), format="pdf",
                            sys_inputs={"facts": json.dumps(facts)})
    except Exception as error:  # typst reports its problems as its own errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"typst could not typeset {BEYOND_REPORT} ({first})") from None
    pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
    if pages > MAX_PAGES:
        raise UsageError(f"{BEYOND_REPORT} would have {pages} pages, more than {MAX_PAGES}")
    problems = layout_problems(pdf)  # as the report's: in the text block, cited, before the end
    faults = problems["outside"] + problems["after_references"] + problems["uncited"]
    if faults:
        raise UsageError(f"the typeset {BEYOND_REPORT} breaks its layout ({faults[0]}"
                         + (f", and {len(faults) - 1} more" if len(faults) > 1 else "")
                         + "); report/beyond.typ needs mending")
    with atomic_path(out / BEYOND_REPORT) as path:
        path.write_bytes(pdf)


def main() -> None:
    args = parse_args()
    out = getattr(args, "out", Outputs(args.outputs).root)
    check_output_dir(out)
    facts, figures = build_facts(args.outputs)
    prepare_output_dir(out)
    with tempfile.TemporaryDirectory(prefix="beyond-figures-") as folder:
        if facts["depth"] is not None:
            depth = facts["depth"]
            drawn = Path(folder) / "depth.svg"
            plots.save(depth_figure({n["title"]: n for n in depth["networks"].values()}), drawn)
            facts["figures"]["depth"] = [drawn.name, plots.natural_width_in(drawn)]
            for network in depth["networks"].values():
                for sentence in network["sentences"]:
                    print(sentence)
        typeset(facts, figures, Path(folder), out)
    print(f"wrote {out / BEYOND_REPORT}")


if __name__ == "__main__":
    run_cli(main)
