"""The report's facts: every number of the metrics files as text, rounded to what it carries,
and the sentences of the generated discussion, for report/report.typ and report.md alike.

Nothing here is measured and no result is typed: each value is read from a metrics file (the
architecture and the settings too, so a 1-epoch run's report says one epoch). The channel words
come from findings.py, the module that wrote them in Task 3.
"""
from datetime import datetime, timezone

from study.findings import PHYSICAL_KINDS, ROLE_KINDS, channel_list, has_role, role_counts, role_words

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
        "epochs": str(c["epochs"]), "epochs_words": f"{c['epochs']} epoch{'s' * (c['epochs'] != 1)}",
        "batch": str(c["batch_size"]), "lr": f"{c['lr']:g}",
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


def where_in_image(box: dict) -> str:
    """'upper left' etc. for a receptive-field box of a 32x32 image, by the box's centre."""
    cy, cx = box["top"] + box["size"] / 2, box["left"] + box["size"] / 2
    row = "upper" if cy < 32 / 3 else "lower" if cy > 64 / 3 else "middle"
    col = "left" if cx < 32 / 3 else "right" if cx > 64 / 3 else "centre"
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def discussion(m: dict) -> dict:
    """The sentences of 'Are there meaningful patterns?', with examples chosen by the numbers."""
    z1, z2 = m["channels"]["z1"], m["channels"]["z2"]
    rules = m["rules"]
    has = has_role
    first, second = m["architecture"]["layers"]
    epochs = (m.get("task2_config") or {}).get("epochs")
    filters = m.get("conv1_filters", [])
    colour_filters = sum(f["colour_share"] >= 0.5 for f in filters)
    physical = [r for r in z1 if any(has(r, k) for k in PHYSICAL_KINDS)]
    layer1 = (f"{len(physical)} of the {len(z1)} z1 channels follow a local physical signal by the "
              f"correlation rules ({channel_list(physical, 'z1')}). Of the {len(filters)} conv1 "
              f"filters, {colour_filters} put at least half of their weight energy into differences "
              f"between R, G and B (colour filters) and {len(filters) - colour_filters} mostly into "
              f"luminance. Zeiler & Fergus's first layer, with 96 filters, holds oriented edges at "
              f"many angles and colour blobs; with {len(filters)} filters this network keeps "
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
    field = second["receptive_field"]
    chance = sorted({f"{r['top_k_class_base_rate']:g}" for r in z2})
    layer2 = (f"At z2 a unit sees {field}×{field} pixels. {len(dominant)} of its {len(z2)} channels "
              f"are class-dominant (one class holds ≥ {rules['class_share_pct']:g} % of the "
              f"channel's top-{k} test images, chance {' to '.join(chance[::max(1, len(chance) - 1)])} %)"
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
            roles = role_words(row) or "mixed"
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
              f"says little. The network is trained for "
              + (f"{epochs} epoch{'s' if epochs != 1 else ''} " if epochs is not None else "")
              + f"with {first['channels']} and {second['channels']} channels, so its channels are "
              f"few and broad; no statement here extends to deeper or longer-trained networks.")
    return {"layer1": layer1, "layer2": layer2, "images": images, "limits": limits}


def task3_facts(m: dict) -> dict:
    decoders = m["decoders"]
    literal, refit = decoders["z1_literal"], decoders["z1_refit"]
    channel_rows, findings, rule_sentences = [], [], []
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
            rule_sentences.append(row["rule_sentence"])
    rows = m["channels"]["z1"] + m["channels"]["z2"]
    named = sum(bool(r["roles"]) for r in rows)
    images = {split: {"index": str(v["index"]), "class": v["class"], "chosen_as": v["chosen_as"],
                      "z2_channels": ", ".join(str(r["channel"]) for r in v["z2"]["channels"]),
                      "z1_shown": str(len(v["z1"]["channels"])), "z2_shown": ", ".join(
                          str(r["channel"]) for r in v["z2"]["channels"])}
              for split, v in m["images"].items()}
    rules = m["rules"]
    roles = {}
    for layer in ("z1", "z2"):
        counts = role_counts(m["channels"][layer])
        roles[layer] = ", ".join(f"{n} {ROLE_KINDS.get(kind, kind)}" for kind, n in counts.items() if n)
    similarity = {layer: sorted(r["projection_similarity"] for r in rows)[len(rows) // 2]
                  for layer, rows in m.get("top9", {}).items()}
    controls_z = m["controls"]
    return {
        "baselines": baseline_facts(m),
        "roles": roles, "discussion": discussion(m), "top_k": str(m["channels"]["z2"][0]["top_k"]),
        "random_patches": f"{m['appearance_reference']['random_patches']:,}",
        "projection_similarity": {layer: f"{v:.2f}" for layer, v in similarity.items()},
        "latent_matters": all(
            c["own"]["psnr_db"] - c["other_latent"]["psnr_db"] >= 3
            for c in controls_z.values()),
        "decoders": [[v["label"], db(v["psnr_db"]), f"{v['correlation']:.2f}"] for v in decoders.values()],
        "literal_psnr": db(literal["psnr_db"]), "refit_psnr": db(refit["psnr_db"]),
        "refit_epochs": str(m["layer1_refit"]["epochs"]),
        "refit_seconds": seconds(m["layer1_refit"]["fit_seconds"]),
        "controls": [[layer, v["label"], db(v["psnr_db"]), f"{v['correlation']:.2f}"]
                     for layer, cases in m["controls"].items() for case, v in cases.items()],
        "controls_by": {layer: {case: db(v["psnr_db"]) for case, v in cases.items()}
                        for layer, cases in m["controls"].items()},
        "channel_rows": channel_rows, "findings": findings, "rule_sentences": rule_sentences,
        "named": str(named),
        "mixed": str(len(findings) - named), "total": str(len(findings)), "images": images,
        "rules": {k: f"{v:g}" for k, v in rules.items()},
        "linearity": f"{m['images']['test']['z1']['sum_of_contributions_minus_full_max_abs']:.0e}"
        if m["images"]["test"]["z1"]["sum_of_contributions_minus_full_max_abs"] is not None else "",
    }


def architecture_facts(arch: dict) -> dict:
    """The network's shapes as text, from a metrics file's "architecture" (models.ARCHITECTURE)."""
    first, second = arch["layers"]
    side, channels = arch["image_size"], arch["image_channels"]

    def square(n: int) -> str:
        return f"{n}×{n}"

    def stage(layer: dict) -> dict:
        return {"channels": str(layer["channels"]), "shape": f"{layer['channels']}×{square(layer['size'])}",
                "field": square(layer["receptive_field"]), "stride": str(layer["stride"]),
                "kernel": square(layer["kernel"])}
    net = ", ".join(
        [f"conv {first['in_channels']}→{first['channels']} {square(first['kernel'])}", "ReLU",
         f"{square(first['pool'])} max-pool",
         f"conv {second['in_channels']}→{second['channels']} {square(second['kernel'])}", "ReLU",
         "max-pool", "fully connected " + "→".join(map(str, arch["fc"]))])
    return {"image": f"{channels}×{square(side)}", "side": square(side), "pixels": str(side * side),
            "classes": str(arch["fc"][-1]), "net": net, "z1": stage(first), "z2": stage(second),
            "refit_layer": f"ConvTranspose2d({first['channels']}, {first['in_channels']}, "
                           f"{first['kernel']})"}


def data_facts(task1: dict) -> dict:
    """Where the data came from and how much of it was used, from Task 1's metrics."""
    data = task1["data"]
    per_class = [sum(row) for row in task1["confusion_matrix"]]
    low, high = min(per_class), max(per_class)
    return {"jpeg": "(folders)" in data["source"],
            "source": "image folders" if "(folders)" in data["source"] else "python batches",
            "sha": data["content_sha256"][:12], "subset": f"{task1['config']['subset']:g}",
            "n_train": f"{data['train_images']:,}", "n_test": f"{data['test_images']:,}",
            "per_class": f"{low:,}" if low == high else f"{low:,} to {high:,}",
            "seed": str(task1["config"]["seed"])}


# Every figure of the report: its file under the outputs folder. Captions follow from the facts.
FIGURE_FILES = {
    "t1_samples": "task1/train_samples.png", "t1_loss": "task1/loss_curve.svg",
    "t1_predictions": "task1/test_predictions.png", "t1_per_class": "task1/per_class_accuracy.svg",
    "t1_confusion": "task1/confusion_matrix.svg", "t2_reconstructions": "task2/reconstructions.png",
    "t2_loss": "task2/loss_curves.svg", "t2_per_class": "task2/per_class_accuracy.svg",
    "lambda_sweep": "runs/lambda_sweep.svg", "t3_train_z1": "task3/train_z1.png",
    "t3_train_z2": "task3/train_z2.png", "t3_test_z1": "task3/test_z1.png",
    "t3_test_z2": "task3/test_z2.png", "t3_top9_z1": "task3/top9_z1.png",
    "t3_top9_z2": "task3/top9_z2.png", "t3_classes": "task3/class_selectivity.svg",
    "t3_filters": "task3/conv1_filters.png", "t3_baseline_pictures": "task3/baseline_pictures.png",
    "t3_occlusion": "task3/occlusion.png"}


def captions(facts: dict) -> dict[str, str]:
    """The caption of every figure (plain text, for the PDF and report.md alike)."""
    a, t2, s = facts["arch"] or {}, facts["t2"] or {}, facts["seeds"]
    z1, z2 = a.get("z1", {}), a.get("z2", {})
    lam = t2.get("lambda", "")
    shown = (facts["t3"] or {}).get("images", {}).get("test", {}).get("z2_shown", "")
    return {
        "t1_samples": "Training images with their labels.",
        "t1_predictions": "Test images: ground truth and the reloaded network's prediction.",
        "t1_confusion": "Confusion matrix (test set); numbers are image counts.",
        "t1_loss": "Training loss: running means and epoch means.",
        "t1_per_class": "Test accuracy per class.",
        "architecture": "The network of Task 2 with tensor shapes (channels × height × width). "
                        "Top: the encoder and head of Task 1; bottom: the mirror decoder; red: "
                        "the max-pool switches passed from each pooling layer to its unpooling layer.",
        "t2_reconstructions": "Three training and three test images (top) and their "
                              "reconstructions (bottom), with each image's PSNR.",
        "lambda_sweep": f"Test accuracy and PSNR against λ (seed 0; at λ = {lam} the mean and sd of "
                        "the seeds). Grey: Task 1's seed mean ± sd, and the PSNR baselines."
                        if s else "",
        "t2_loss": "Training losses: cross-entropy and λ·L_rec.",
        "t2_per_class": "Task 2 test accuracy per class.",
        "t3_test_z1": "Test image, z1. Row 1: the original with the receptive field of the "
                      "channel's strongest unit (box) and the channel's share of the activation "
                      "energy; row 2: the activation map (own colour scale, the peak circled); row "
                      "3: the channel's contribution at one scale common to all channels; row 4: "
                      "the tied deconvnet's projection (min-max scaled). Left column: the original, "
                      "the full and the empty-latent decode.",
        "t3_train_z1": "Training image, z1; rows as in the test image's z1 figure.",
        "t3_test_z2": f"Test image, z2 channels {shown} (largest activation energy); rows as in "
                      "the z1 figure, decoded by the Task 2 decoder.",
        "t3_train_z2": "Training image, z2; rows as in the test image's z2 figure.",
        "t3_top9_z1": f"z1: for each channel the nine test images with its strongest activation: "
                      f"the {z1.get('field', '')}-pixel patch under that unit (enlarged) and the "
                      "projection of that single activation (contribution, own symmetric scale, "
                      "grey = 0).",
        "t3_top9_z2": f"z2: as for z1, with the {z2.get('field', '')}-pixel receptive fields.",
        "t3_classes": "Left: mean activation per class, each channel's row divided by its largest "
                      f"class mean. Right: the {z1.get('channels', '')} conv1 filters (RGB, min-max "
                      "scaled).",
        "t3_filters": "",
        "t3_baseline_pictures": "The test image's single-channel pictures (z1 through the refitted "
                                "decoder, z2 through the learned one) of the trained model and of "
                                "the first model of each randomisation baseline, each at its own "
                                "symmetric scale (grey = 0).",
        "t3_occlusion": "Occlusion: the true class's probability with the grey square at each "
                        "position, and for the z2 channels the square lowers most, the drop of "
                        "their strongest activation beside the |projection| of that unit.",
    }


BASELINE_COLUMNS = (("conv2", "random conv2"), ("conv1_conv2", "random conv1+conv2"),
                    ("permuted_labels", "permuted labels"), ("rotation", "rotated"))
# The rules the PDF's table shows (report.md and metrics.json have every rule)
RULE_ROWS = (("any", "any rule"), ("class", "class-dominant"), ("look", "appearance"),
             ("colour", "colour-opponent"))


def baseline_facts(m: dict) -> dict:
    """The table 'Which findings need a trained network?': each test against the trained model,
    the randomised models, the model trained on permuted labels and rotated channels."""
    b = m["baselines"]
    groups = [g for g, _ in BASELINE_COLUMNS]

    def cell(summary: dict | None, digits: int) -> str:
        """A group's mean ± sd as the metrics file has it (sd only where several models ran)."""
        if not summary:
            return "–"
        several = len(summary.get("values", summary.get("counts", []))) > 1
        return f"{summary['mean']:.{digits}f}" + (f" ± {summary['sd']:.{digits}f}" if several else "")

    rows, survived, failed = [], [], []
    for decoder, label in (("z1_refit", "PSNR z1 refit (dB)"), ("z2_learned", "PSNR z2 learned (dB)")):
        by = b["psnr_summary"][decoder]
        rows.append([label, *(cell(by.get(g), 2) for g in ["trained", *groups])])
    for layer in ("z1", "z2"):
        counts = b["rules"][layer]["counts"]
        for rule, entry in counts.items():  # the verdicts cover every rule, shown or not
            if entry["trained"] and rule != "any":
                (survived if entry["evidence_of_learning"] else failed).append(
                    f"{layer} {ROLE_KINDS.get(rule, rule)}")
        for rule, label in RULE_ROWS:
            entry = counts[rule]
            if not entry["trained"] and not any(g["max"] for g in entry["baselines"].values()):
                continue  # no model names a channel by this rule (metrics.json still has it)
            rows.append([f"{layer} channels: {label}", f"{entry['trained']} of {entry['channels']}",
                         *(cell(entry["baselines"].get(g), 1) for g in groups)])
    for decoder, label in (("z1_refit", "z1 refit"), ("z2_learned", "z2 learned")):
        summary = b["picture_similarity"]["summary"].get(decoder, {})
        rows.append([f"pictures like trained, {label} (ρ)", "–",
                     *(f"{summary[g]['spearman_mean']:.2f}" if g in summary else "–" for g in groups)])
    for decoder, label in (("z2_learned", "learned"),):  # the tied decoder's: in metrics.json
        summary = b["occlusion"]["summary"][decoder]
        rows.append([f"occlusion vs projection, z2 {label} (ρ)",
                     *(cell(summary.get(g), 2) for g in ["trained", *groups])])
    flagged = b["projection_diversity"]["summary"]["z2_learned"]
    rows.append(["z2 projections more alike than patches",
                 *(cell(flagged.get(g), 1) for g in ["trained", *groups])])
    protocol = b["protocol"]
    return {"rows": rows, "header": ["test", "trained", *(label for _, label in BASELINE_COLUMNS)],
            "seeds": ", ".join(map(str, protocol["seeds"])), "refit_steps": str(protocol["refit"]["steps"]),
            "rotations": str(len(protocol["rotation_seeds"])), "occlusion_images": str(b["occlusion"]["images"]),
            "occluder": f"{protocol['occluder']['size']}×{protocol['occluder']['size']}",
            "occluder_stride": str(protocol["occluder"]["stride"]),
            "survived": ", ".join(survived) or "none", "failed": ", ".join(failed) or "none",
            "permuted": "permuted_labels" in {v["group"] for v in b["models"].values()}}


def build_facts(metrics: dict) -> dict:
    """All facts of the report (figures are attached by make_report, which reads their files)."""
    environments = [m["environment"] for m in (metrics["task1"], metrics["task2"], metrics["task3"])
                    if m and "environment" in m]
    device = environments[0].get("gpu", environments[0]["device"]) if environments else "unknown"
    seeds = metrics["seeds"] or {}
    total = seeds.get("wall_seconds", 0) + (0 if seeds.get("includes_task3") else
                                            (metrics["task3"] or {}).get("wall_seconds", 0))
    arch = next((m["architecture"] for m in (metrics["task1"], metrics["task2"], metrics["task3"])
                 if m and "architecture" in m), None)
    return {
        "title": "Visualising a CIFAR-10 CNN with a deconvolutional mirror",
        "built": {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
                  "device": device, "torch": environments[0]["torch"] if environments else "",
                  "total_minutes": f"{total / 60:.1f}"},
        "arch": architecture_facts(arch) if arch else None,
        "t1": task1_facts(metrics["task1"]) if metrics["task1"] else None,
        "t2": task2_facts(metrics["task2"]) if metrics["task2"] else None,
        "t3": task3_facts(metrics["task3"]) if metrics["task3"] else None,
        "seeds": seeds_facts(metrics["seeds"]) if metrics["seeds"] else None,
        "data": data_facts(metrics["task1"]) if metrics["task1"] else None,
    }
