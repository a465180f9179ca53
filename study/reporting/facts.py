"""The report's facts: every number of the metrics files as text, rounded to what it carries,
and the sentences of the generated discussion, for report/report.typ and report.md alike.

Nothing here is measured and no result is typed: each value is read from a metrics file (the
architecture and the settings too, so a 1-epoch run's report says one epoch). The channel words
come from findings.py, the module that wrote them in Task 3.
"""
from datetime import datetime, timezone

from study.analysis.task3_result import Task3Result
from study.core.ids import ModelId
from study.core.text import plural, seeds_words
from study.reporting.claims import (channel_claims, control_cost, first_layer_channels,
                                    mean_interval, study_differences, survives)
from study.reporting.numbers import db, median, p_cell, p_value, pct, r2, seconds, spread

# --- facts per part ---

def device_words(environment: dict) -> str:
    """'the CPU' or the GPU's name, as a reader would say it."""
    gpu = environment.get("gpu")
    if gpu:
        return gpu
    if environment.get("device") == "cpu":
        return f"the CPU ({environment['cpu']})" if environment.get("cpu") else "the CPU"
    return environment.get("device", "")


def task1_facts(m: dict) -> dict:
    c = m["config"]
    per_class = m["per_class_accuracy"]
    names = list(per_class)
    confusion = m["confusion_matrix"]
    off = sorted(((confusion[i][j], names[i], names[j]) for i in range(len(names))
                  for j in range(len(names)) if i != j), reverse=True)[:3]
    best, worst = max(per_class, key=per_class.get), min(per_class, key=per_class.get)
    return {
        "accuracy": pct(m["test_accuracy"]), "se": pct(m["test_accuracy_standard_error"]),
        "n_test": str(m["test_images"]), "n_train": str(m["data"]["train_images"]),
        "epochs": str(c["epochs"]), "epochs_words": f"{c['epochs']} epoch{'s' * (c['epochs'] != 1)}",
        "batch": str(c["batch_size"]), "lr": f"{c['lr']:g}",
        "momentum": f"{c['momentum']:g}", "seed": str(c["seed"]), "log_every": str(c["log_every"]),
        "train_seconds": seconds(m["train_seconds"]), "device": device_words(m["environment"]),
        "losses": [[str(r["epoch"]), str(r["step"]), f"{r['loss']:.3f}"] for r in m["loss_log"]],
        **loss_table(m["loss_log"]),
        "per_class": [[name, f"{value:.1f}"] for name, value in per_class.items()],
        "best": [best, f"{per_class[best]:.1f}"], "worst": [worst, f"{per_class[worst]:.1f}"],
        "confusions": [[true, predicted, str(count)] for count, true, predicted in off],
        "wrong_shown": str(sum(t != g for t, g in zip(m["sample_predictions"]["ground_truth"],
                                                     m["sample_predictions"]["predicted"]))),
        "first_loss": f"{m['loss_log'][0]['loss']:.3f}" if m["loss_log"] else "",
        "last_loss": f"{m['loss_log'][-1]['loss']:.3f}" if m["loss_log"] else "",
        "ground_truth": " ".join(m["sample_predictions"]["ground_truth"]),
        "predicted": " ".join(m["sample_predictions"]["predicted"]),
    }


def loss_table(log: list[dict]) -> dict:
    """The running losses as a table with one row per epoch and one column per logged
    mini-batch ("–" where an epoch logged fewer)."""
    steps = sorted({r["step"] for r in log})
    epochs = sorted({r["epoch"] for r in log})
    found = {(r["epoch"], r["step"]): f"{r['loss']:.3f}" for r in log}
    return {"loss_steps": [f"{step:,}" for step in steps],
            "loss_rows": [[str(e), *(found.get((e, step), "–") for step in steps)] for e in epochs]}


def task2_facts(m: dict, task1: dict | None = None) -> dict:
    """Task 2's facts; with Task 1's metrics, also the largest per-class difference of the two."""
    c = m["config"]
    comparison = m["task1_comparison"]
    facts = {
        "accuracy": pct(m["test_accuracy"]), "se": pct(m["test_accuracy_standard_error"]),
        "psnr": db(m["test_psnr_db"]), "mse": f"{m['test_mse']:.4f}",
        "rec": f"{m['test_rec_loss']:.1f}", "lambda": f"{m['lambda']:g}",
        "mse_weight": f"{m['lambda_as_mse_weight']:g}",
        "decoder_optimizer": {"adam": "Adam", "sgd": "SGD"}[c["decoder_optimizer"]],
        "decoder_lr": f"{c['decoder_lr']:g}", "train_seconds": seconds(m["train_seconds"]),
        "log_every": str(c["log_every"]),
        "baselines": [[size_words(name), db(value)] for name, value in m["psnr_baselines_db"].items()],
        "per_class": [[name, f"{value:.1f}"] for name, value in m["per_class_accuracy"].items()],
        "compared": "mcnemar" in comparison, "comparison_message": comparison["message"],
    }
    if facts["compared"]:
        test = comparison["mcnemar"]
        facts.update(task1_accuracy=pct(comparison["task1_test_accuracy"]),
                     change=f"{comparison['accuracy_change']:+.2f}", p=p_value(test["p_value"]),
                     significant=test["p_value"] < 0.05,
                     only_task1=str(test["only_first_correct"]),
                     only_task2=str(test["only_second_correct"]))
    # Where the decoder's PSNR falls among the baselines, in words the template quotes.
    psnr, baselines = m["test_psnr_db"], m["psnr_baselines_db"]
    closest = min(baselines, key=lambda name: abs(baselines[name] - psnr))
    below = [name for name, value in baselines.items() if value <= psnr]
    above = [name for name, value in baselines.items() if value > psnr]
    facts.update(closest=[closest, db(baselines[closest])],
                 best_below=[max(below, key=baselines.get), db(max(baselines[n] for n in below))]
                 if below else None,
                 worst_above=[min(above, key=baselines.get), db(min(baselines[n] for n in above))]
                 if above else None,
                 class_se=f"{m['per_class_standard_error_max']:.1f}")
    if task1:
        first = task1["per_class_accuracy"]
        facts["class_diff_seed"] = f"{max(abs(v - first[k]) for k, v in m['per_class_accuracy'].items() if k in first):.1f}"
    thumbnails = sorted((v, k) for k, v in baselines.items() if "thumbnail" in k)
    low = [t for t in thumbnails if t[0] <= psnr]
    high = [t for t in thumbnails if t[0] > psnr]
    facts["thumb_low"] = [size_words(low[-1][1]), db(low[-1][0])] if low else None
    facts["thumb_high"] = [size_words(high[0][1]), db(high[0][0])] if high else None
    return facts


def size_words(name: str) -> str:
    """'4×4 thumbnail' for a metrics key '4x4 thumbnail': sizes as the text writes them."""
    import re
    return re.sub(r"(\d)x(\d)", "\\1×\\2", name)


def convergence_facts(c: dict) -> dict:
    """Do the seeds learn the same channels? (compare_seeds.py) as the report writes it."""
    layers = c["layers"]
    pairs = [v for block in layers.values() for v in block["pairs"].values()]
    return {"seeds": str(len(c["seeds"])), "draws": f"{next(iter(layers.values()))['null']['draws']:,}",
            "layers": {name: {"mean_r": f"{min(v['mean_r'] for v in block['pairs'].values()):.2f}–"
                                        f"{max(v['mean_r'] for v in block['pairs'].values()):.2f}",
                              "q95": f"{block['null']['q95_r']:.2f}",
                              "count": str(len(block["counterpart_in_every_seed"])),
                              "channels": str(block["channels"])}
                       for name, block in layers.items()},
            "p_max": p_cell(max(v["p_mean_holm"] for v in pairs)),
            "everywhere": [channel_name(name, c) for name, block in layers.items()
                           for c in block["counterpart_in_every_seed"]]}


def seeds_facts(s: dict) -> dict:
    facts = {"seeds": seeds_words(s["seeds"]), "n": str(len(s["per_seed"])),
             "rows": [[str(r["seed"]), pct(r["task1_accuracy"]), pct(r["task2_accuracy"]),
                       f"{r['difference']:+.2f}", p_cell(r["mcnemar"]["p_value"]),
                       db(r["task2_psnr_db"])] for r in s["per_seed"]],
             "lambda_rows": [[f"{r['lambda']:g}", ", ".join(map(str, r["seeds"])),
                              spread(r["accuracy"]), spread(r["psnr_db"])]
                             for r in s["lambda_sweep"]],
             "failed": ", ".join(s.get("failed_runs", [])),
             "wall_seconds": seconds(s.get("wall_seconds", 0.0)), "jobs": str(s.get("jobs", "")),
             "wall_minutes": f"{s.get('wall_seconds', 0.0) / 60:.1f}"}
    for key in ("task1_accuracy", "task2_accuracy", "difference", "task2_psnr_db"):
        if key in s:
            facts[key] = spread(s[key])
    if s["per_seed"]:
        ps = [r["mcnemar"]["p_value"] for r in s["per_seed"]]
        facts["p_range"] = (p_value(min(ps)) if len(ps) == 1 or p_value(min(ps)) == p_value(max(ps))
                            else f"{p_value(min(ps))} to {p_cell(max(ps))}")
        facts["none_significant"] = min(ps) >= 0.05
    differences = [r["difference"] for r in s["per_seed"]]
    if len(differences) > 1:
        mean, low, high = mean_interval(differences)
        facts["difference_ci"] = f"[{low:+.1f}, {high:+.1f}]"
        facts["difference_mean"] = f"{mean:+.2f}"
        facts["in_direction"] = str(sum((d < 0) == (mean < 0) and d != 0 for d in differences))
        facts["cost"] = f"{abs(mean):.2f}"
        facts["direction"] = "lower" if mean < 0 else "higher"
    if s.get("paired_t_test"):
        facts.update(t_p=p_value(s["paired_t_test"]["p_value"]),
                     t_significant=s["paired_t_test"]["p_value"] < 0.05,
                     lower=str(s["seeds_task2_lower"]),
                     significant_seeds=str(s["seeds_mcnemar_significant"]),
                     any_significant=s["seeds_mcnemar_significant"] > 0)
    spread_by_class = s.get("per_class_accuracy")
    if spread_by_class and len(s["per_seed"]) > 1:
        sds = [v["sd"] for task in spread_by_class.values() for v in task.values() if v["sd"] is not None]
        differences = [abs(spread_by_class["task2"][name]["mean"] - first["mean"])
                       for name, first in spread_by_class["task1"].items()]
        if sds:
            facts["class_sd_max"] = f"{max(sds):.1f}"
            facts["class_diff_max"] = f"{max(differences):.1f}"
    ends = [s["lambda_sweep"][0], s["lambda_sweep"][-1]] if len(s["lambda_sweep"]) > 1 else []
    facts["lambda_ends"] = [[f"{r['lambda']:g}", f"{r['accuracy']['mean']:.2f}",
                             f"{r['psnr_db']['mean']:.2f}"] for r in ends]
    return facts


def channel_name(layer: str, channel: int) -> str:
    """The one way the report names a channel: 'z2:12'."""
    return f"{layer}:{channel}"


RULE_WORDS = {"colour": "colour opposition", "brightness": "brightness", "darkness": "darkness",
              "edge": "edges", "look": "distinctive patches", "class": "top-class share",
              "selective": "class selectivity"}
RULE_SHORT = {"colour": "colour", "brightness": "bright", "darkness": "dark", "edge": "edges",
              "look": "patches", "class": "class share", "selective": "selective"}  # table cells


def task3_facts(t: Task3Result) -> dict:
    """Task 3's numbers as the report writes them: its tables' rows, the decoders, the nulls'
    survivors under each question, the named channel and the baselines' summaries."""
    first, last = t.layers[0], t.layers[-1]
    claims = channel_claims(t)
    both = _survivors(claims, None)
    return {
        "layers": [layer.name for layer in t.layers], "wall_minutes": f"{t.wall_seconds / 60:.1f}",
        "last_shown": str(len(t.images["test"][last.name]["channels"])),
        "images": {split: {"index": f"{v['index']:,}", "class": v["class"]}
                   for split, v in t.images.items()},
        **_decoder_facts(t),
        "first": first_layer_channels(first.channels),
        "flagged": str(sum(r["projection_diversity"]["flagged"] for r in last.channels)),
        "last_channels": str(len(last.channels)),
        "rule_images": f"{t.rule_images['count']:,}", "test_images": f"{t.rule_images['of']:,}",
        "top_k": str(t.appearance_reference["top_k"]),
        "random_patches": f"{t.appearance_reference['random_patches']:,}",
        "rules": {k: f"{v:g}" for k, v in t.rules.items()},
        "channel_rows": _channel_rows(t, claims),
        "count_rows": _count_rows(t),
        "cascade": [cascade_words(group) for group in t.cascade(last)],
        **_null_facts(t),
        "learned": _survivors(claims, "learned"), "single": _survivors(claims, "single_channel"),
        "both": both, "named": _named_channel(t, claims, both),
        **_baseline_summaries(t),
        "projection_similarity": {layer.name: f"{median([r['projection_similarity'] for r in layer.top9]):.2f}"
                                  for layer in t.layers},
        "linearity": _linearity(t.images["test"][first.name]),
    }


def _decoder_facts(t: Task3Result) -> dict:
    """The decoders' full-latent PSNRs, their table's rows and the controls' costs."""
    return {
        "literal_psnr": db(t.decoder(1, "literal").psnr_db),
        "refit_psnr": db(t.decoder(1, "refit").psnr_db),
        "last_psnr": db(t.decoder(t.architecture.depth, "learned").psnr_db),
        "tied_psnr": {layer.name: db(t.decoder(layer.index, "tied").psnr_db) for layer in t.layers},
        "refit_epochs": plural(t.layer1_refit["epochs"], "pass", "passes"),
        "refit_seconds": seconds(t.layer1_refit["fit_seconds"]),
        "decoder_rows": [[v.label, db(v.psnr_db), f"{v.correlation:.2f}"]
                         for v in t.decoders.values()]
                        + [[f"{layer.name}, {v.label}", db(v.psnr_db), f"{v.correlation:.2f}"]
                           for layer in t.layers for case, v in layer.controls.items()
                           if case != "own"],
        "controls": {layer.name: {case: db(v.psnr_db) for case, v in layer.controls.items()}
                     for layer in t.layers},
        "control_costs": {layer.name: {case: f"{control_cost(layer, case):.1f}"
                                       for case in layer.controls if case != "own"}
                          for layer in t.layers},
    }


def _null_facts(t: Task3Result) -> dict:
    """How the nulls were drawn and corrected, and the baselines' protocol, as text."""
    protocol, b = t.protocol, t.baselines
    return {
        "draws": f"{protocol['draws']:,}", "smallest_p": f"{protocol['smallest_p']:.3f}",
        "alpha": f"{protocol['alpha']:g}",
        "counts_family": str(protocol["families"]["counts"]),
        "first_step": f"{protocol['count_first_step']:.4f}",
        "allowed": str(protocol["count_draws_allowed"]),
        "share_family": str(protocol["families"]["class_share"]),
        "claims_family": str(protocol["families"]["claims"]),
        "claims_possible": str(protocol["families"].get("claims_possible", "")),
        "null_seconds": f"{b['rules']['seconds']['total']:.0f}",
        "refit_steps": str(b["protocol"]["refit"]["steps"]),
        "occluder": f"{b['protocol']['occluder']['size']}×{b['protocol']['occluder']['size']}",
        "occluder_stride": str(b["protocol"]["occluder"]["stride"]),
        "occlusion_images": str(b["occlusion"]["images"]),
        "baseline_seeds": str(len(b["protocol"]["seeds"])),
    }


def _linearity(first_layer_image: dict) -> str:
    """How far the first layer's single-channel pictures are from summing to the full one."""
    found = first_layer_image["sum_of_contributions_minus_full_max_abs"]
    return f"{found:.0e}" if found is not None else ""


def cascade_words(group: ModelId) -> str:
    """A cascade step as the counts table heads its column: the convolutions it re-initialises,
    'conv2', 'conv1–2', 'conv1–4' (narrow at any depth; the caption says they are random)."""
    first, last = group.stages[0], group.stages[-1]
    return f"conv{first}" if first == last else f"conv{first}–{last}"


def _survivors(claims: list, question: str | None) -> list[dict]:
    """The single-channel descriptions that survive `question` (None: both questions)."""
    return [{"name": channel_name(layer, channel), "rule": RULE_WORDS[rule],
             "p": p_value((test if question is None else test["questions"][question])["p_holm"])}
            for layer, channel, rule, test in claims if survives(test, question)]


def _channel_rows(t: Task3Result, claims: list) -> list[list[str]]:
    """The channel table: per channel its measures, the rules' names and each question's
    surviving descriptions."""
    def verdict_words(name: str, row: dict, question: str) -> str:
        kept = [RULE_SHORT[rule] for layer, channel, rule, test in claims
                if (layer, channel) == (name, row["channel"]) and survives(test, question)]
        return ", ".join(kept) or "–"

    rows = []
    for layer in t.layers:
        for row in layer.channels:
            words = ", ".join(dict.fromkeys(RULE_SHORT[r["kind"]] for r in row["roles"])) or "–"
            rows.append([channel_name(layer.name, row["channel"]), r2(row["r_luminance"]),
                         r2(row["r_red_green"]), r2(row["r_blue_yellow"]),
                         r2(row["r_gradient_energy"]),
                         f"{row['top_k_class']} {row['top_k_class_share']:.0f}", words,
                         verdict_words(layer.name, row, "learned"),
                         verdict_words(layer.name, row, "single_channel")])
    return rows


def _count_rows(t: Task3Result) -> list[list[str]]:
    """The counts table: per layer and rule met at least once, the trained count against each
    null group (the last layer's cascade steps, rotations, permuted labels), both questions'
    Holm p and the count each would have needed (power)."""
    cascade = t.cascade(t.layers[-1])
    rows = []
    for layer in t.layers:
        for rule, entry in layer.nulls["counts"].items():
            if not entry["trained"]:
                continue
            q, nulls = entry["questions"], layer.count_nulls(rule)

            def null(group: ModelId) -> str:
                found = nulls.get(group)
                return f"{found['mean']:.1f} ± {found['sd']:.1f}" if found and found.get("draws", 0) > 1 else "–"
            needed = {k: (str(v["detectable_count"]) if v["detectable_count"] is not None
                          and v["detectable_count"] <= entry["channels"] else "never")
                      for k, v in q.items()}
            permuted = nulls.get(ModelId("permuted"), {}).get("mean")
            rows.append([f"{layer.name} {RULE_WORDS[rule]}", f"{entry['trained']}/{entry['channels']}",
                         *(null(g) for g in cascade), null(ModelId("rotation")),
                         "–" if permuted is None else f"{permuted:g}",
                         p_cell(q["learned"]["p_holm"]), needed["learned"],
                         p_cell(q["single_channel"]["p_holm"]), needed["single_channel"]])
    return rows


def _baseline_summaries(t: Task3Result) -> dict:
    """rho: picture similarity per layer and group; occlusion: the last layer's occlusion
    agreement per group; psnr: PSNR per layer and group; each read through the decoder that
    layer's pictures use, groups named as the metrics file names them."""
    def texts(summary: dict, key: str, words) -> dict[str, str]:
        return {str(group): words(v[key]) for group, v in summary.items()}
    def two(value: float) -> str:
        return f"{value:.2f}"
    return {"rho": {layer.name: texts(t.summary("similarity", layer), "spearman_mean", two)
                    for layer in t.layers},
            "occlusion": texts(t.summary("occlusion", t.layers[-1]), "mean", two),
            "psnr": {layer.name: texts(t.summary("psnr", layer), "mean", db) for layer in t.layers}}


def _named_channel(t: Task3Result, claims: list, both: list[dict]) -> dict | None:
    """The one description that survives both questions, with its channel's class make-up and
    colour, or None when not exactly one does."""
    surviving_both = [(layer, channel, test) for layer, channel, _, test in claims
                      if survives(test, None)]
    if len(surviving_both) != 1:
        return None
    layer, channel, test = surviving_both[0]
    row = t.layer(layer).channels[channel]
    ranked = sorted(row["top_k_classes"].items(), key=lambda kv: -kv[1])
    return {**both[0], "class": row["top_k_class"], "share": f"{row['top_k_class_share']:.0f}",
            "second": ranked[1][0], "second_share": f"{ranked[1][1]:.0f}",
            "r_by": r2(row["r_blue_yellow"]), "r_rg": r2(row["r_red_green"]),
            "hue": row["hue_name"],
            "p_learned": p_value(test["questions"]["learned"]["p_holm"]),
            "p_single": p_value(test["questions"]["single_channel"]["p_holm"])}


def architecture_facts(arch: dict) -> dict:
    """The network's shapes as text, from a metrics file's "architecture" (models.ARCHITECTURE)."""
    side, channels = arch["image_size"], arch["image_channels"]

    def square(n: int) -> str:
        return f"{n}×{n}"

    def stage(layer: dict) -> dict:
        return {"name": layer["name"], "channels": str(layer["channels"]),
                "shape": f"{layer['channels']}×{square(layer['size'])}",
                "field": square(layer["receptive_field"]), "stride": str(layer["stride"]),
                "kernel": square(layer["kernel"])}
    parts = []
    for layer in arch["layers"]:
        parts += [f"conv {layer['in_channels']}→{layer['channels']} {square(layer['kernel'])}", "ReLU",
                  f"{square(layer['pool'])} max-pool"]
    net = ", ".join(parts + ["fully connected " + "→".join(map(str, arch["fc"]))])
    first = arch["layers"][0]
    return {"image": f"{channels}×{square(side)}", "side": square(side), "pixels": str(side * side),
            "classes": str(arch["fc"][-1]), "net": net, "depth": str(len(arch["layers"])),
            "layers": [stage(layer) for layer in arch["layers"]],
            "stage": {layer["name"]: stage(layer) for layer in arch["layers"]},
            "first": stage(first), "last": stage(arch["layers"][-1]),
            "refit_layer": f"a transposed convolution from {first['channels']} channels to "
                           f"{first['in_channels']}, {square(first['kernel'])}"}


def data_facts(task1: dict) -> dict:
    """Where the data came from and how much of it was used, from Task 1's metrics (or Task
    2's, which record the same fields, when Task 1 was not run)."""
    data = task1["data"]
    per_class = [sum(row) for row in task1["confusion_matrix"]]
    low, high = min(per_class), max(per_class)
    return {"jpeg": "(folders)" in data["source"],
            "source": "image folders" if "(folders)" in data["source"] else "python batches",
            "subset": f"{task1['config']['subset']:g}", "whole": task1["config"]["subset"] >= 1,
            "n_train": f"{data['train_images']:,}", "n_test": f"{data['test_images']:,}",
            "per_class": f"{low:,}" if low == high else f"{low:,} to {high:,}",
            "seed": str(task1["config"]["seed"])}


# Every figure of the report made by the task scripts: its file under the outputs folder.
# make_report draws the others (architecture, training curves, per-class accuracy, confusion
# matrix, λ sweep) from the metrics files. Captions follow from the facts.
FIGURE_FILES = {
    "t1_samples": "task1/train_samples.png", "t1_predictions": "task1/test_predictions.png",
    "t2_reconstructions": "task2/reconstructions.png",
    "t3_classes": "task3/class_selectivity.svg", "t3_filters": "task3/conv1_filters.png",
    "t3_baseline_pictures": "task3/baseline_pictures.png", "t3_occlusion": "task3/occlusion.png"}
LAYER_FIGURES = ("train", "test", "top9")  # Task 3's figures of every layer: task3/<kind>_<layer>.png


def figure_files(layers: list[str]) -> dict[str, str]:
    """Every figure the task scripts made for a net with these layers: FIGURE_FILES, Task 3's
    figures of each layer ("t3_test_z3"), and as "t3_<kind>_first" / "t3_<kind>_last" those of
    the first and the last layer, which the PDF shows (report.md shows every layer's)."""
    files = dict(FIGURE_FILES)
    for name in layers:
        files.update({f"t3_{kind}_{name}": f"task3/{kind}_{name}.png" for kind in LAYER_FIGURES})
    if layers:
        for kind in LAYER_FIGURES:
            files[f"t3_{kind}_first"] = files[f"t3_{kind}_{layers[0]}"]
            files[f"t3_{kind}_last"] = files[f"t3_{kind}_{layers[-1]}"]
    return files
# Drawn by make_report into its output folder.
REPORT_FIGURES = ("architecture", "training", "per_class", "confusion", "lambda_sweep")


def captions(facts: dict) -> dict[str, str]:
    """The caption of every figure (plain text, for the PDF and report.md alike)."""
    a, s, t3 = facts["arch"] or {}, facts["seeds"], facts["t3"] or {}
    first = (a.get("layers") or [{}])[0]
    last = (a.get("layers") or [{}])[-1]
    shown = t3.get("images", {}).get("test", {}).get("shown", {})
    return {
        "t1_samples": "Top: training images with their labels. Bottom: test images, ground truth "
                      "(below each image) and the prediction of the saved and reloaded network.",
        "t1_predictions": "",
        "training": "Training losses per epoch: Task 1's cross-entropy (left); Task 2's "
                    "cross-entropy and its weighted reconstruction term λ·L_rec (right).",
        "confusion": "Task 1's confusion matrix on the test set: image counts, shaded by the share "
                     "of the true class.",
        "per_class": "Test accuracy per class of Task 1 and Task 2 (seed 0); dotted: chance.",
        "architecture": "The network of Task 2 with tensor shapes (channels × height × width). "
                        "Top: the encoder and head of Task 1; bottom: the mirror decoder; red: "
                        "the max-pool switches passed from each pooling layer to its unpooling layer.",
        "t2_reconstructions": "Three training and three test images (top) and their "
                              "reconstructions (bottom), with each image's PSNR.",
        "lambda_sweep": "Test accuracy and PSNR against λ, all at seed 0 (blue); at the default λ "
                        "also the mean ± sd over the seeds (orange). Grey: Task 1's seed mean, and "
                        "the PSNR of reconstructions that need no network." if s else "",
        "t3_test_first": f"Test image ({t3.get('images', {}).get('test', {}).get('class', '')}), every "
                      f"{first.get('name', '')} channel decoded alone (the others set to zero). "
                      "Row 1: the receptive field of the channel's strongest unit, and the channel's "
                      "share of the activation energy; row 2: its activation map (one colour scale); "
                      "row 3: the image decoded from this channel alone by the refitted decoder; "
                      "row 4: that image minus the empty-latent decode (grey = 0, one scale for all "
                      "channels); row 5: the same channel decoded by Task 2's own layer-1 decoder. "
                      "Left: the original and each decoder's full and empty-latent decodes.",
        "t3_train_first": f"Training image ({t3.get('images', {}).get('train', {}).get('class', '')}), "
                       f"{first.get('name', '')}; rows as in the test image's figure.",
        "t3_test_last": f"{last.get('name', '')} channels decoded alone by the Task 2 decoder, for the "
                      f"test image (top, channels {shown.get(last.get('name', ''), '')}) and the "
                      "training image (bottom), the channels of largest activation energy; rows 1-4 "
                      "as in the first-layer figures.",
        "t3_top9_first": f"For each channel, the nine test images where it is strongest: the "
                      f"receptive-field patches, enlarged ({first.get('field', '')} pixels for "
                      f"{first.get('name', '')}, {last.get('field', '')} for {last.get('name', '')}; "
                      "left of each pair), and the projection of that single activation, i.e. the "
                      "decode of that one unit alone minus the empty decode (right; own symmetric "
                      "scale, grey = 0).",
        "t3_classes": "Left: mean activation per class; rows are classes, columns channels, each "
                      "channel's column divided by its largest class mean. Right: the "
                      f"{first.get('channels', '')} conv1 filters (RGB, min-max scaled).",
        "t3_baseline_pictures": "Top: the test image's single-channel contributions (each at its "
                                "own symmetric scale, grey = 0) of the trained model, of the trained "
                                "encoder with decoders refitted from another seed, and of the first "
                                "model of each baseline; a blank panel is a layer left as trained. "
                                "Bottom: occlusion (a grey square slid over the image): the true "
                                "class's probability at each square position, and for the two "
                                f"{last.get('name', '')} channels the square lowers most, the drop "
                                "of their strongest activation beside the |projection| of that unit.",
    }


def build_facts(metrics: dict) -> dict:
    """All facts of the report (figures are attached by make_report, which reads their files)."""
    task3: Task3Result | None = metrics["task3"]
    environments = [m["environment"] for m in (metrics["task1"], metrics["task2"]) if m
                    and "environment" in m] + ([task3.environment] if task3 else [])
    device = device_words(environments[0]) if environments else "an unrecorded machine"
    seeds = metrics["seeds"] or {}
    total = seeds.get("wall_seconds", 0) + (0 if seeds.get("includes_task3") or not task3
                                            else task3.wall_seconds)
    arch = next((m["architecture"] for m in (metrics["task1"], metrics["task2"])
                 if m and "architecture" in m), task3.architecture.describe() if task3 else None)
    differences = study_differences(metrics)
    return {
        "title": "Visualising a CIFAR-10 CNN with a deconvolutional mirror",
        "prose": not differences,
        "neutral_note": ("This build of the report comes from a run that is not the study's "
                         f"full-data run ({'; '.join(differences)}): its numbers, tables and "
                         "figures are that run's, and the sentences that state verdicts, written "
                         "for the full-data run, are left out." if differences else ""),
        "built": {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
                  "device": device, "torch": environments[0]["torch"].split("+")[0] if environments else "",
                  "total_minutes": f"{total / 60:.1f}"},
        "arch": architecture_facts(arch) if arch else None,
        "t1": task1_facts(metrics["task1"]) if metrics["task1"] else None,
        "t2": task2_facts(metrics["task2"], metrics["task1"]) if metrics["task2"] else None,
        "t3": task3_facts(metrics["task3"]) if metrics["task3"] else None,
        "seeds": seeds_facts(metrics["seeds"]) if metrics["seeds"] else None,
        "agree": convergence_facts(metrics.get("convergence")) if metrics.get("convergence") else None,
        "data": (data_facts(metrics["task1"] or metrics["task2"])
                 if metrics["task1"] or metrics["task2"] else None),
    }
