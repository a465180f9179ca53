"""The generated discussion of Task 3 ("Are there meaningful patterns?", the abstract's answer):
the verdicts of the null tests turned into sentences, examples chosen by the numbers."""
from study.findings import has_role, role_words
from study.report_text import and_list, p_cell, p_value, plural


def where_in_image(box: dict) -> str:
    """'upper left' etc. for a receptive-field box of a 32x32 image, by the box's centre."""
    cy, cx = box["top"] + box["size"] / 2, box["left"] + box["size"] / 2
    row = "upper" if cy < 32 / 3 else "lower" if cy > 64 / 3 else "middle"
    col = "left" if cx < 32 / 3 else "right" if cx > 64 / 3 else "centre"
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


# Patterns as a reader names them (kinds of findings.ROLE_KINDS), in the order they are listed.
PATTERN_WORDS = {"colour": "colour-opponent", "brightness": "brightness", "darkness": "darkness",
                 "edge": "edge", "look": "distinctive-patch", "class": "class-skewed",
                 "selective": "class-selective"}


def layer_names(m: dict) -> list[str]:
    """The latent layers the run recorded ("z1", "z2", ...), in order."""
    return [layer["name"] for layer in m["architecture"]["layers"]]


def layer_patterns(rows: list[dict], most: int | None = None,
                   counts: dict[str, int] | None = None) -> str:
    """'colour-opponent (3), brightness (2) and edge (1)': the kinds the rules name, by count
    (the `most` most frequent only, when given). `counts`: the counts the null test read (the
    same rules on the null images), so the text quotes the numbers that were tested."""
    if counts is None:
        counts = {kind: sum(has_role(r, kind) for r in rows) for kind in PATTERN_WORDS}
    counts = {kind: counts.get(kind, 0) for kind in PATTERN_WORDS}
    named = [f"{PATTERN_WORDS[k]} ({n})" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n]
    named = named[:most] if most else named
    return and_list(named) if named else "no pattern the rules name"


def verdicts(m: dict) -> list[dict]:
    """Per layer and rule that the trained model or a null meets: the count test's verdict."""
    rules = m["baselines"]["rules"]
    out = []
    for name in layer_names(m):
        for rule, entry in rules[name]["counts"].items():
            nulls = {g: v for g, v in entry["baselines"].items() if g != "permuted_labels"}
            if not entry["trained"] and not any(v.get("max") for v in nulls.values()):
                continue
            permuted = entry["baselines"].get("permuted_labels", {}).get("mean")
            out.append({"layer": name, "rule": rule, "words": PATTERN_WORDS[rule],
                        "trained": entry["trained"], "channels": entry["channels"],
                        "p_holm": entry["p_holm"], "survives": entry["survives"],
                        "permuted": permuted, "mean_p_holm": entry["mean_statistic"]["p_holm"],
                        "mean_survives": entry["mean_statistic"]["survives"]})
    return out


def verdict_sentence(found: list[dict]) -> str:
    """The abstract's and the discussion's answer to 'which patterns need a trained network?',
    written from the verdicts (a changed verdict changes the sentence)."""
    shown = [v for v in found if v["trained"]]
    survivors = [v for v in shown if v["survives"]]
    others = [v for v in shown if not v["survives"]]

    def named(items: list[dict]) -> str:
        return and_list([f"{v['words']} channels in {v['layer']} ({p_value(v['p_holm'])})" for v in items])
    if not shown:
        return "The rules name no channel, so no pattern is claimed."
    if not survivors:
        best = min(shown, key=lambda v: v["p_holm"])
        return ("None of these patterns needs a trained network: random networks and random "
                "rotations of the trained channels show each of them as often ("
                + ("every Holm-corrected p-value is 1.00)." if best["p_holm"] >= 0.995 else
                   f"every Holm-corrected p-value ≥ {p_cell(best['p_holm'])})."))
    sentence = f"Only {named(survivors)} are more frequent than in untrained networks"
    if others:
        sentence += ("; " + and_list([f"{v['words']} ({v['layer']})" for v in others])
                     + " appear as often without training")
    return sentence + "."


def permuted_sentence(found: list[dict]) -> str:
    """What the one network trained on permuted labels shows of the surviving patterns."""
    survivors = [v for v in found if v["trained"] and v["survives"] and v["permuted"] is not None]
    as_many = [v for v in survivors if v["permuted"] >= v["trained"]]
    if not survivors:
        return ""
    if as_many:
        return ("The network trained on permuted labels shows as many "
                + and_list([f"{v['words']} channels in {v['layer']} ({v['permuted']:g})" for v in as_many])
                + ", so these patterns need training, not the labels.")
    return ("The network trained on permuted labels shows fewer of them ("
            + and_list([f"{v['permuted']:g} {v['words']} in {v['layer']}" for v in survivors])
            + "), but it is one run, so this is not a test.")


def pictures_sanity(m: dict) -> bool:
    """Adebayo et al.'s check, per layer: the pictures of every randomised model are less like
    the trained ones than those of the trained encoder with decoders refitted from another seed."""
    summary = m["baselines"]["picture_similarity"]["summary"]
    verdict = []
    for i, name in enumerate(layer_names(m)):
        found = summary.get(f"{name}_refit" if i == 0 else f"{name}_learned", {})
        floor = found.get("refit_seed", {}).get("spearman_mean")
        randomised = [v["spearman_mean"] for g, v in found.items() if g.startswith("conv")]
        if floor is not None and randomised:
            verdict.append(max(randomised) < floor)
    return bool(verdict) and all(verdict)


def patch_words(patch: dict) -> str:
    """'a saturated blue, dark patch' from the measures of one receptive-field patch."""
    words = []
    if patch["saturation"] >= 0.35:
        words.append(f"saturated {patch['hue_name']}")
    elif patch["saturation"] < 0.15:
        words.append("grey")
    words.append("bright" if patch["luminance"] >= 0.6 else "dark" if patch["luminance"] < 0.3
                 else "mid-bright")
    return "a " + ", ".join(words) + " patch"


def surviving_words(row: dict) -> str:
    """A channel's description that holds against its null, '' when none does."""
    return ", ".join(r["words"] for r in row.get("surviving_roles", []))


def discussion(m: dict) -> dict:
    """The sentences of 'Are there meaningful patterns?', with examples chosen by the numbers."""
    names = layer_names(m)
    rows = {name: m["channels"][name] for name in names}
    found = verdicts(m)
    rules = m["rules"]
    epochs = (m.get("task2_config") or {}).get("epochs")
    first = names[0]
    k = rows[first][0]["top_k"]
    tested = {name: {rule: e["trained"] for rule, e in m["baselines"]["rules"][name]["counts"].items()}
              for name in names}  # the counts Table 4 and the verdicts use
    answer = ("In plain words: " + "; ".join(
        f"{name} has {layer_patterns(rows[name], counts=tested[name])} channels of {len(rows[name])}"
        for name in names)
        + ". " + verdict_sentence(found) + " " + permuted_sentence(found)).strip()
    sanity = pictures_sanity(m)
    abstract = ("By fixed rules, " + "; ".join(
        f"{name} holds mostly {layer_patterns(rows[name], 3, tested[name])} channels (of {len(rows[name])})"
        for name in names) + ". " + verdict_sentence(found)
        + (" Pictures decoded from one channel change when the network is randomised but hardly "
           "when the decoder is refitted, so they show the trained weights." if sanity else
           " Pictures decoded from one channel change about as much when the decoder is only "
           "refitted as when the network is randomised, so they are weak evidence."))
    kept = {name: [r for r in rows[name] if r.get("surviving_roles")] for name in names}
    layer_text = {}
    for name, stage in zip(names, m["architecture"]["layers"]):
        field = stage["receptive_field"]
        survive = kept[name]
        example = next((r for r in rows[name] if r not in survive and role_words(r)), None)
        text = (f"A {name} unit sees {field}×{field} pixels. "
                + (f"Against their nulls, {plural(len(survive), 'channel')} keep a description: "
                   + "; ".join(f"{name}:{r['channel']} {surviving_words(r)}" for r in survive) + ". "
                   if survive else "No channel's description survives its null. ")
                + (f"The thresholds' words for the {'other ' if survive else ''}channels (for "
                   f"example {name}:{example['channel']}: {role_words(example)}) are reached as "
                   "often by random channels." if example else ""))
        layer_text[name] = text
    images, unexplained = [], 0
    for split, image in m["images"].items():
        parts = []
        for name in names:
            shown = image[name]["channels"]
            best = max(shown, key=lambda r: r["energy_share"])
            row = rows[name][best["channel"]]
            survive = surviving_words(row)
            text = (f"{name}:{best['channel']} carries {100 * best['energy_share']:.0f} % of the "
                    f"{name} activation energy and fires most in the {where_in_image(best['strongest_box'])}"
                    + (f", on {patch_words(best['patch'])}" if "patch" in best else ""))
            words = survive or role_words(row)
            shared = (set(patch_words(best["patch"]).replace(",", "").split()) & set(
                words.replace(",", "").replace("-", " ").split()) - {"a", "patch", "patches"}
                if "patch" in best and words else set())
            if survive:
                text += f"; over the test set it is {survive}"
            elif words:
                unexplained += 1
                text += f"; its test-set words ({words}) do not survive the null"
            if shared:
                text += f", and here it does what they say ({and_list(sorted(shared))})"
            parts.append(text)
        images.append(f"In the {'training' if split == 'train' else split} image "
                      f"({image['class']}), " + "; ".join(parts) + ".")
    if unexplained:
        images.append("Where no description survives, a channel's picture shows where this image "
                      "drives it, as an untrained channel of the same kind would; it is not "
                      "evidence of a learned detector.")
    total = sum(len(r) for r in rows.values())
    textured = sum(r["d_texture_energy"] >= rules["appearance_d"] for name in names for r in rows[name])
    limits = (f"'Class-skewed' describes the top {k} of {m['data']['test_images']} test images, not a "
              "detector of the object; the binomial test of each channel's top class against its "
              "base rate is only a description (any colour-tuned random unit fails it), the verdicts "
              f"are the rank tests against the nulls. {textured} of all {total} channels fire "
              "most on patches more textured than random ones: a strong response needs contrast, so "
              "'textured' alone says little. The network is trained for "
              + (f"{plural(epochs, 'epoch')} " if epochs is not None else "")
              + f"with {and_list([str(st['channels']) for st in m['architecture']['layers']])} channels, "
              "so its channels are few and broad; nothing here extends to deeper or longer-trained "
              "networks.")
    return {"answer": answer, "abstract": abstract, "sanity": sanity, "layers": [layer_text[n] for n in names], "images": images,
            "limits": limits, "verdict": verdict_sentence(found)}
