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
import sys
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.patches import FancyBboxPatch

import plots
from common import (ArgumentParser, UsageError, atomic_path, check_output_dir, output_folder,
                    prepare_output_dir, read_json, require_complete, run_cli)
from models import Z1_SHAPE, Z2_SHAPE

MAX_PAGES = 8
TEMPLATE = Path(__file__).resolve().parent / "report" / "report.typ"
SOURCES = {"task1": ("task1/metrics.json", "train_classifier.py"),
           "task2": ("task2/metrics.json", "train_deconv.py"),
           "task3": ("task3/metrics.json", "visualize_latents.py"),
           "seeds": ("runs/summary.json", "sweep.py")}
REQUIRED_KEYS = {
    "task1": ("test_accuracy", "test_accuracy_standard_error", "per_class_accuracy",
              "confusion_matrix", "loss_log", "config", "train_seconds", "data", "environment"),
    "task2": ("test_accuracy", "test_accuracy_standard_error", "test_psnr_db", "test_mse",
              "test_rec_loss", "config", "per_class_accuracy", "per_class_standard_error_max",
              "psnr_baselines_db", "task1_comparison", "train_seconds", "lambda_as_mse_weight"),
    "task3": ("images", "decoders", "controls", "channels", "layer1_refit", "rules", "data",
              "appearance_reference"),
    "seeds": ("per_seed", "lambda_sweep"),
}
FIGURES = {"t1_samples": "task1/train_samples.png", "t1_loss": "task1/loss_curve.svg",
           "t1_predictions": "task1/test_predictions.png",
           "t1_per_class": "task1/per_class_accuracy.svg",
           "t1_confusion": "task1/confusion_matrix.svg",
           "t2_reconstructions": "task2/reconstructions.png", "t2_loss": "task2/loss_curves.svg",
           "t2_per_class": "task2/per_class_accuracy.svg", "lambda_sweep": "runs/lambda_sweep.svg",
           "t3_train_z1": "task3/train_z1.png", "t3_train_z2": "task3/train_z2.png",
           "t3_test_z1": "task3/test_z1.png", "t3_test_z2": "task3/test_z2.png",
           "t3_top9_z1": "task3/top9_z1.png", "t3_top9_z2": "task3/top9_z2.png",
           "t3_classes": "task3/class_selectivity.svg", "t3_filters": "task3/conv1_filters.png"}


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
    model = outputs / "task2" / "deconv_net.pth"
    if task3 and model.is_file():
        made_from = task3.get("layer1_refit", {}).get("checkpoint_sha256")
        if made_from != hashlib.sha256(model.read_bytes()).hexdigest():
            raise UsageError(f"{outputs / 'task3'} was made from another Task 2 model than "
                             f"{model}; rerun visualize_latents.py (or make all)")
    compared = (task2 or {}).get("task1_comparison", {})
    if task1 and "task1_test_accuracy" in compared and \
            compared["task1_test_accuracy"] != task1.get("test_accuracy"):
        raise UsageError(f"{outputs / 'task2'} was compared with another Task 1 run than "
                         f"{outputs / 'task1'} holds; rerun train_deconv.py (or make all)")


def read_metrics(outputs: Path) -> dict[str, dict | None]:
    """Each source's JSON, or None when it has not been run; one-line errors for damaged files."""
    found = {}
    for name, (relative, script) in SOURCES.items():
        path = outputs / relative
        if name != "seeds":
            require_complete(path.parent, "the output folder",
                             f"rerun {script} (or make all) before making the report")
        if not path.is_file():
            found[name] = None
            continue
        metrics = read_json(path, "metrics file", f"rerun {script} or delete the file")
        for key in REQUIRED_KEYS[name]:
            if key not in metrics:
                raise UsageError(f"{path} lacks the key '{key}'; rerun {script} with this "
                                 "version of the code")
        found[name] = metrics
    return found


# --- numbers as text, rounded to what they carry ---

def pct(value: float) -> str:
    return f"{value:.2f}"


def db(value: float) -> str:
    return f"{value:.2f}"


def r2(value: float) -> str:
    return f"{value:+.2f}"


def spread(stat: dict) -> str:
    return f"{stat['mean']:.2f} ± {stat['sd']:.2f}" if stat.get("sd") is not None else f"{stat['mean']:.2f}"


def p_value(value: float) -> str:
    """A p-value with its relation, to the precision it carries: 'p < 0.001', 'p = 0.004'."""
    if value < 0.001:
        return "p < 0.001"
    return f"p = {value:.3f}" if value < 0.01 else f"p = {value:.2f}"


def seconds(value: float) -> str:
    return f"{value:.1f}"


# --- facts per part ---

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
        "epochs": str(c["epochs"]), "batch": str(c["batch_size"]), "lr": f"{c['lr']:g}",
        "momentum": f"{c['momentum']:g}", "seed": str(c["seed"]), "log_every": str(c["log_every"]),
        "train_seconds": seconds(m["train_seconds"]), "device": m["environment"]["device"],
        "losses": [[str(r["epoch"]), str(r["step"]), f"{r['loss']:.3f}"] for r in m["loss_log"]],
        "per_class": [[name, f"{value:.1f}"] for name, value in per_class.items()],
        "best": [best, f"{per_class[best]:.1f}"], "worst": [worst, f"{per_class[worst]:.1f}"],
        "confusions": [[true, predicted, str(count)] for count, true, predicted in off],
        "ground_truth": " ".join(m["sample_predictions"]["ground_truth"]),
        "predicted": " ".join(m["sample_predictions"]["predicted"]),
    }


def task2_facts(m: dict) -> dict:
    c = m["config"]
    comparison = m["task1_comparison"]
    facts = {
        "accuracy": pct(m["test_accuracy"]), "se": pct(m["test_accuracy_standard_error"]),
        "psnr": db(m["test_psnr_db"]), "mse": f"{m['test_mse']:.4f}",
        "rec": f"{m['test_rec_loss']:.1f}", "lambda": f"{m['lambda']:g}",
        "mse_weight": f"{m['lambda_as_mse_weight']:g}",
        "decoder_optimizer": {"adam": "Adam", "sgd": "SGD"}[c["decoder_optimizer"]],
        "decoder_lr": f"{c['decoder_lr']:g}", "train_seconds": seconds(m["train_seconds"]),
        "baselines": [[name, db(value)] for name, value in m["psnr_baselines_db"].items()],
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
    return facts


def seeds_facts(s: dict) -> dict:
    facts = {"seeds": ", ".join(map(str, s["seeds"])), "n": str(len(s["per_seed"])),
             "rows": [[str(r["seed"]), pct(r["task1_accuracy"]), pct(r["task2_accuracy"]),
                       f"{r['difference']:+.2f}", f"{r['mcnemar']['p_value']:.2f}",
                       db(r["task2_psnr_db"])] for r in s["per_seed"]],
             "lambda_rows": [[f"{r['lambda']:g}", ", ".join(map(str, r["seeds"])),
                              spread(r["accuracy"]), spread(r["psnr_db"])]
                             for r in s["lambda_sweep"]],
             "failed": ", ".join(s.get("failed_runs", [])),
             "wall_seconds": seconds(s.get("wall_seconds", 0.0)), "jobs": str(s.get("jobs", ""))}
    for key in ("task1_accuracy", "task2_accuracy", "difference", "task2_psnr_db"):
        if key in s:
            facts[key] = spread(s[key])
    if s["per_seed"]:
        ps = [r["mcnemar"]["p_value"] for r in s["per_seed"]]
        facts["p_range"] = (p_value(min(ps)) if len(ps) == 1 or p_value(min(ps)) == p_value(max(ps))
                            else f"{p_value(min(ps))} to {p_value(max(ps))[4:]}")
        facts["none_significant"] = min(ps) >= 0.05
    if s.get("paired_t_test"):
        facts.update(t_p=p_value(s["paired_t_test"]["p_value"]),
                     t_significant=s["paired_t_test"]["p_value"] < 0.05,
                     lower=str(s["seeds_task2_lower"]),
                     significant_seeds=str(s["seeds_mcnemar_significant"]),
                     any_significant=s["seeds_mcnemar_significant"] > 0)
    ends = [s["lambda_sweep"][0], s["lambda_sweep"][-1]] if len(s["lambda_sweep"]) > 1 else []
    facts["lambda_ends"] = [[f"{r['lambda']:g}", f"{r['accuracy']['mean']:.2f}",
                             f"{r['psnr_db']['mean']:.2f}"] for r in ends]
    return facts


ROLE_KINDS = {"class": "class-dominant", "look": "appearance", "brightness": "brightness",
              "darkness": "darkness", "colour": "colour-opponent", "edge": "edge",
              "selective": "class-selective"}


def has_role(row: dict, kind: str) -> bool:
    """Whether a channel meets a rule of this kind (the part of its tags before the colon)."""
    return any(tag.split(":")[0] == kind for tag in row["roles"])


def role_words(tag: str) -> str:
    """A channel's rule tag (visualize_latents.channel_roles) in a few words."""
    kind, _, detail = tag.partition(":")
    return {"class": f"{detail}-dominant", "look": f"{detail} patches",
            "colour": f"{detail.replace('/', '-over-')} colour", "edge": "edges",
            "selective": f"{detail}-selective"}.get(kind, kind)


def where_in_image(box: dict) -> str:
    """'upper left' etc. for a receptive-field box of a 32x32 image, by the box's centre."""
    cy, cx = box["top"] + box["size"] / 2, box["left"] + box["size"] / 2
    row = "upper" if cy < 32 / 3 else "lower" if cy > 64 / 3 else "middle"
    col = "left" if cx < 32 / 3 else "right" if cx > 64 / 3 else "centre"
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def channel_list(rows: list[dict], layer: str, kinds: tuple[str, ...] | None = None) -> str:
    """'z2:3 bright patches, edges; z2:5 ...' for the named channels of a layer (rules of `kinds`)."""
    def words(row: dict) -> str:
        return ", ".join(role_words(t) for t in row["roles"]
                         if kinds is None or t.split(":")[0] in kinds)
    return "; ".join(f"{layer}:{r['channel']} {words(r)}" for r in rows if words(r)) or "none"


def discussion(m: dict) -> dict:
    """The sentences of 'Are there meaningful patterns?', with examples chosen by the numbers."""
    z1, z2 = m["channels"]["z1"], m["channels"]["z2"]
    rules = m["rules"]
    has = has_role
    filters = m.get("conv1_filters", [])
    colour_filters = sum(f["colour_share"] >= 0.5 for f in filters)
    physical = [r for r in z1 if any(has(r, k) for k in ("brightness", "darkness", "colour", "edge"))]
    layer1 = (f"{len(physical)} of the {len(z1)} z1 channels follow a local physical signal by the "
              f"correlation rules ({channel_list(physical, 'z1')}). Of the {len(filters)} conv1 "
              f"filters, {colour_filters} put at least half of their weight energy into differences "
              f"between R, G and B (colour filters) and {len(filters) - colour_filters} mostly into "
              f"luminance. Zeiler & Fergus's first layer, with 96 filters, holds oriented edges at "
              f"many angles and colour blobs; with six filters this network keeps "
              f"{sum(has(r, 'edge') for r in z1)} edge channel(s) and spends the rest on brightness "
              f"and colour.")
    dominant = sorted((r for r in z2 if has(r, "class")), key=lambda r: -r["top_k_class_share"])
    looks = [r for r in z2 if has(r, "look")]
    both = [r for r in dominant if has(r, "look")]
    k = z2[0]["top_k"]
    examples = ", ".join(f"z2:{r['channel']} {r['top_k_class']} {r['top_k_class_share']:.0f} %"
                         for r in dominant[:4])
    linear_mixed = [r for r in z2 if not any(has(r, kind) for kind in
                                             ("brightness", "darkness", "colour", "edge", "selective"))]
    layer2 = (f"At z2 a unit sees 16×16 pixels. {len(dominant)} of its {len(z2)} channels are "
              f"class-dominant (one class holds ≥ {rules['class_share_pct']:g} % of the channel's "
              f"top-{k} test images, chance 10 %)"
              + (f", the strongest {examples}" if dominant else "") + f"; {len(looks)} have "
              f"strongest patches that differ from random patches by a large effect "
              f"(|d| ≥ {rules['appearance_d']:g}), and {len(both)} are both"
              + (f" ({channel_list(both, 'z2', ('class', 'look'))})" if both else "") + ". "
              f"{len(linear_mixed)} z2 channels pass none of the linear correlation or class-mean "
              f"rules; of those, {sum(bool(r['roles']) for r in linear_mixed)} are named by the "
              f"top-{k} rules: what a z2 channel encodes shows in its extremes (conjunctions of "
              f"colour, brightness and layout that go with a class), not in a linear relation "
              f"with one pixel statistic.")
    images = []
    for split, image in m["images"].items():
        parts = []
        for layer in ("z1", "z2"):
            shown = image[layer]["channels"]
            best = max(shown, key=lambda r: r["energy_share"])
            row = m["channels"][layer][best["channel"]]
            box = best["strongest_box"]
            roles = ", ".join(role_words(t) for t in row["roles"]) or "mixed"
            parts.append(f"{layer}:{best['channel']} carries {100 * best['energy_share']:.0f} % of "
                         f"the {layer} activation energy and fires most strongly in the "
                         f"{where_in_image(box)} (rows {box['top']}–{box['top'] + box['size'] - 1}, "
                         f"columns {box['left']}–{box['left'] + box['size'] - 1}); over the test "
                         f"set it is: {roles}")
        images.append(f"In the {split} image ({image['class']}), " + "; ".join(parts) + ".")
    mixed = sum(not r["roles"] for r in z1 + z2)
    textured = sum(r["d_texture_energy"] >= rules["appearance_d"] for r in z1 + z2)
    dominant_looks = f"{len(both)} of the {len(dominant)}" if dominant else "none of the"
    limits = (f"{mixed} of the {len(z1) + len(z2)} channels remain mixed under every "
              f"rule. 'Class-dominant' describes the top {k} of {m['data']['test_images']} test "
              f"images, not a detector of the object: {dominant_looks} class-dominant channels also "
              f"have a large appearance effect, which may carry the class (a colour, a bright "
              f"background); the mean activation per class (selectivity ≤ "
              f"{max(r['class_selectivity'] for r in z1 + z2):.2f}) separates the classes far "
              f"less. {textured} of the {len(z1) + len(z2)} channels fire most on patches more "
              f"textured than random ones: a strong response needs contrast, so 'textured' alone "
              f"says little. The network is trained for two epochs with 6 and 16 channels, so its "
              f"channels are few and broad; no statement here extends to deeper or longer-trained "
              f"networks.")
    return {"layer1": layer1, "layer2": layer2, "images": images, "limits": limits}


def task3_facts(m: dict) -> dict:
    decoders = m["decoders"]
    literal = decoders["z1, Task 2 deconv1 (literal)"]
    refit = decoders["z1, deconv1 refit on real z1"]
    channel_rows, findings = [], []
    for layer in ("z1", "z2"):
        for row in m["channels"][layer]:
            channel_rows.append([f"{layer}:{row['channel']}", r2(row["r_luminance"]),
                                 r2(row["r_red_green"]), r2(row["r_blue_yellow"]),
                                 r2(row["r_gradient_energy"]), row["top_class"],
                                 f"{row['class_selectivity']:.2f}",
                                 f"{row['top_k_class']} {row['top_k_class_share']:.0f}",
                                 f"{row['d_saturation']:+.1f}", f"{row['d_luminance']:+.1f}",
                                 f"{row['d_centre_surround']:+.1f}", f"{row['d_texture_energy']:+.1f}"])
            findings.append(row["finding"])
    rows = m["channels"]["z1"] + m["channels"]["z2"]
    named = sum(bool(r["roles"]) for r in rows)
    images = {split: {"index": str(v["index"]), "class": v["class"], "chosen_as": v["chosen_as"],
                      "z2_channels": ", ".join(str(r["channel"]) for r in v["z2"]["channels"])}
              for split, v in m["images"].items()}
    rules = m["rules"]
    roles = {}
    for layer in ("z1", "z2"):
        layer_rows = m["channels"][layer]
        counts = {word: sum(has_role(r, kind) for r in layer_rows)
                  for kind, word in ROLE_KINDS.items()}
        counts["mixed"] = sum(not r["roles"] for r in layer_rows)
        roles[layer] = ", ".join(f"{n} {word}" for word, n in counts.items() if n)
    similarity = {layer: sorted(r["projection_similarity"] for r in rows)[len(rows) // 2]
                  for layer, rows in m.get("top9", {}).items()}
    controls_z = m["controls"]
    return {
        "roles": roles, "discussion": discussion(m), "top_k": str(m["channels"]["z2"][0]["top_k"]),
        "random_patches": f"{m['appearance_reference']['random_patches']:,}",
        "projection_similarity": {layer: f"{v:.2f}" for layer, v in similarity.items()},
        "latent_matters": all(
            c["own latent and switches"]["psnr_db"] - c["other image's latent, own switches"]["psnr_db"] >= 3
            for c in controls_z.values()),
        "decoders": [[name, db(v["psnr_db"]), f"{v['correlation']:.2f}"] for name, v in decoders.items()],
        "literal_psnr": db(literal["psnr_db"]), "refit_psnr": db(refit["psnr_db"]),
        "refit_epochs": str(m["layer1_refit"]["epochs"]),
        "refit_seconds": seconds(m["layer1_refit"]["fit_seconds"]),
        "controls": [[layer, case, db(v["psnr_db"]), f"{v['correlation']:.2f}"]
                     for layer, cases in m["controls"].items() for case, v in cases.items()],
        "controls_by": {layer: {case: db(v["psnr_db"]) for case, v in cases.items()}
                        for layer, cases in m["controls"].items()},
        "channel_rows": channel_rows, "findings": findings, "named": str(named),
        "mixed": str(len(findings) - named), "total": str(len(findings)), "images": images,
        "rules": {k: f"{v:g}" for k, v in rules.items()},
        "linearity": f"{m['images']['test']['z1']['sum_of_contributions_minus_full_max_abs']:.0e}"
        if m["images"]["test"]["z1"]["sum_of_contributions_minus_full_max_abs"] is not None else "",
    }


def build_facts(metrics: dict, outputs: Path) -> dict:
    environments = [m["environment"] for m in (metrics["task1"], metrics["task2"], metrics["task3"])
                    if m and "environment" in m]
    device = environments[0].get("gpu", environments[0]["device"]) if environments else "unknown"
    seeds = metrics["seeds"] or {}
    total = seeds.get("wall_seconds", 0) + (0 if seeds.get("includes_task3") else
                                            (metrics["task3"] or {}).get("wall_seconds", 0))
    facts = {
        "title": "Visualising a CIFAR-10 CNN with a deconvolutional mirror",
        "built": {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
                  "device": device, "torch": environments[0]["torch"] if environments else "",
                  "total_minutes": f"{total / 60:.1f}"},
        "shapes": {"z1": "×".join(map(str, Z1_SHAPE)), "z2": "×".join(map(str, Z2_SHAPE))},
        "t1": task1_facts(metrics["task1"]) if metrics["task1"] else None,
        "t2": task2_facts(metrics["task2"]) if metrics["task2"] else None,
        "t3": task3_facts(metrics["task3"]) if metrics["task3"] else None,
        "seeds": seeds_facts(metrics["seeds"]) if metrics["seeds"] else None,
        "data": ({"source": "image folders" if "(folders)" in metrics["task1"]["data"]["source"]
                  else "python batches", "sha": metrics["task1"]["data"]["content_sha256"][:12],
                  "subset": f"{metrics['task1']['config']['subset']:g}"}
                 if metrics["task1"] else None),
        # absolute paths: Typst compiles with the file system root as its root, so figures may
        # come from --outputs (read-only is fine) and the architecture figure from --out
        "figs": {key: [str((outputs / path).resolve()), natural_width_in(outputs / path)]
                 for key, path in FIGURES.items() if (outputs / path).is_file()},
    }
    return facts


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


# --- the architecture figure, drawn from the model's shapes ---

def architecture_figure(path: Path) -> None:
    """Encoder on top, mirror decoder below, dashed lines for the max-pool switches."""
    fig, ax = plots.plt.subplots(figsize=(plots.TEXT_WIDTH_IN, 2.0))
    ax.set_xlim(0, 10.6)
    ax.set_ylim(0, 3.1)
    ax.axis("off")
    top = [("input x\n3×32×32", 0.55), ("conv1 5×5\n+ ReLU\n6×28×28", 2.0),
           (f"max-pool\nz1\n{'×'.join(map(str, Z1_SHAPE))}", 3.45), ("conv2 5×5\n+ ReLU\n16×10×10", 4.9),
           (f"max-pool\nz2\n{'×'.join(map(str, Z2_SHAPE))}", 6.35), ("fc\n400→120\n→84→10", 7.8),
           ("class\nscores\n10", 9.25)]
    bottom = [("recon-\nstruction\n3×32×32", 0.55), ("deconv1\nConvT 6→3\n5×5", 2.0),
              ("unpool\n+ ReLU\n6×28×28", 3.45), ("deconv2\nConvT 16→6\n6×14×14", 4.9),
              ("unpool\n+ ReLU\n16×10×10", 6.35)]

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
    ax.annotate("", (6.35 + 0.3, 1.0), (6.35 + 0.3, 2.1), arrowprops=arrow)
    ax.text(6.72, 1.55, "z2", fontsize=7)
    for x, label in ((3.45, "switches 1"), (6.35, "switches 2")):
        ax.annotate("", (x - 0.25, 1.0), (x - 0.25, 2.1),
                    arrowprops=dict(arrowstyle="->", lw=0.8, linestyle="--", color="tab:red"))
        ax.text(x - 0.32, 1.55, label, fontsize=7, color="tab:red", ha="right")
    ax.text(9.0, 0.55, "loss = CE(scores, y)\n+ λ · L_rec(reconstruction, x)", fontsize=7,
            ha="center", va="center")
    plots.save(fig, path)


# --- writers ---

def typeset(facts: dict, outputs: Path) -> bytes:
    import typst

    try:
        return typst.compile(TEMPLATE.read_bytes(), root="/", format="pdf",
                             sys_inputs={"facts": json.dumps(facts)})
    except Exception as error:  # typst reports template or figure problems as its own errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"typst could not typeset the report ({first}); rerun the task scripts "
                         "so that every figure is complete") from None


def compile_pdf(facts: dict, outputs: Path, path: Path) -> int:
    """Typeset; if the text runs past the page limit, once more with a tighter text setting."""
    pdf = typeset(facts, outputs)
    if page_count(pdf) > MAX_PAGES:
        pdf = typeset({**facts, "compact": True}, outputs)
    pages = page_count(pdf)
    if pages > MAX_PAGES:
        raise UsageError(f"the report has {pages} pages, more than {MAX_PAGES}; show fewer "
                         "channels (visualize_latents.py --z2-channels top3)")
    with atomic_path(path) as tmp:
        tmp.write_bytes(pdf)
    return pages


def page_count(pdf: bytes) -> int:
    """Pages of a PDF: the /Count of its page tree root."""
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf)]
    counts += [int(n) for n in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", pdf)]
    return max(counts, default=0)


def markdown(facts: dict, outputs: Path, out: Path) -> str:
    """A short twin of the PDF: the headline numbers, the tables and the figures."""
    def link(key: str, caption: str) -> list[str]:
        if key not in facts["figs"]:
            return [f"*[missing figure: {caption}]*", ""]
        relative = os.path.relpath(outputs / facts["figs"][key][0], out)
        return [f"![{caption}]({Path(relative).as_posix()})", ""]

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                + ["| " + " | ".join(map(str, row)) + " |" for row in rows] + [""])

    lines = [f"# {facts['title']}", ""]
    t1, t2, t3, seeds = facts["t1"], facts["t2"], facts["t3"], facts["seeds"]
    lines += ["## Task 1: the tutorial classifier", ""]
    if t1:
        lines += [f"Test accuracy {t1['accuracy']} % (standard error {t1['se']} points) on "
                  f"{t1['n_test']} test images after {t1['epochs']} epochs; best class "
                  f"{t1['best'][0]} ({t1['best'][1]} %), worst {t1['worst'][0]} "
                  f"({t1['worst'][1]} %).", ""]
        lines += table(["epoch", "mini-batch", "running loss"], t1["losses"])
        lines += table(["class", "accuracy (%)"], t1["per_class"])
        for key, caption in (("t1_samples", "training images"), ("t1_loss", "training loss"),
                             ("t1_predictions", "GroundTruth vs Predicted"),
                             ("t1_per_class", "accuracy per class"), ("t1_confusion", "confusion matrix")):
            lines += link(key, caption)
    else:
        lines += ["No outputs/task1/metrics.json was found; run train_classifier.py to fill this "
                  "section.", ""]
    lines += ["## Task 2: classifier with a deconvolutional mirror", ""]
    if t2:
        lines += [f"Test accuracy {t2['accuracy']} %, reconstruction PSNR {t2['psnr']} dB "
                  f"(lambda {t2['lambda']}, an MSE weight of {t2['mse_weight']}). "
                  f"{t2['comparison_message']}.", ""]
        lines += table(["reconstruction", "test PSNR (dB)"],
                       [["Task 2 decoder", t2["psnr"]], *t2["baselines"]])
        for key, caption in (("architecture", "architecture"), ("t2_reconstructions", "reconstructions"),
                             ("t2_loss", "training losses"), ("t2_per_class", "accuracy per class")):
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
        lines += table(["decoder, full latent", "test PSNR (dB)", "r"], t3["decoders"])
        lines += table(["layer", "control", "test PSNR (dB)", "r"], t3["controls"])
        lines += table(["channel", "r luminance", "r R-G", "r B-Y", "r gradient",
                        "mean-top class", "selectivity", f"top-{t3['top_k']} class (%)",
                        "d saturation", "d luminance", "d centre-surround", "d texture"],
                       t3["channel_rows"])
        lines += [f"- {finding}" for finding in t3["findings"]] + [""]
        for key, caption in (("t3_train_z1", "train image, z1"), ("t3_train_z2", "train image, z2"),
                             ("t3_test_z1", "test image, z1"), ("t3_test_z2", "test image, z2"),
                             ("t3_top9_z1", "top-9, z1"), ("t3_top9_z2", "top-9, z2"),
                             ("t3_classes", "mean activation per class")):
            lines += link(key, caption)
    else:
        lines += ["No outputs/task3/metrics.json was found; run visualize_latents.py to fill "
                  "this section.", ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    out = getattr(args, "out", args.outputs)
    check_output_dir(out)
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
            print(f"warning: outputs of {name} are missing; the report says so in its place",
                  file=sys.stderr)
    if metrics["seeds"] is None:
        print("note: no runs/summary.json (sweep.py); the report has no seed or lambda tables",
              file=sys.stderr)
    out = prepare_output_dir(out)
    architecture_figure(out / "architecture.svg")
    try:
        facts = build_facts(metrics, args.outputs)
        facts["figs"]["architecture"] = [str((out / "architecture.svg").resolve()),
                                         natural_width_in(out / "architecture.svg")]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise UsageError(f"a metrics file under {args.outputs} lacks or garbles a value "
                         f"({type(error).__name__}: {error}); rerun the task scripts with this "
                         "version of the code (make all)") from None
    pages = compile_pdf(facts, args.outputs, out / "report.pdf")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(facts, args.outputs.resolve(), out.resolve()))
    print(f"wrote {out / 'report.pdf'} ({pages} pages) and {out / 'report.md'}")


if __name__ == "__main__":
    run_cli(main)
