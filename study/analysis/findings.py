"""The written rules that turn a channel's measured numbers into words, for Task 3, the report
and the explorer's channel cards alike.

A rule that holds is returned as data, a role: {"kind": "class", "detail": "horse",
"words": "horse-dominant"}. `kind` is a stable identifier (one of ROLE_KINDS) that programs
count and look up; `words` and the clause of `describe_channel` are for people and may be
reworded freely. No sentence here contains a number that is not in the row it describes.
"""

# Thresholds of the rules (also printed in the report).
RULES = {"luminance_r": 0.6, "colour_r": 0.4, "edge_r": 0.4, "orientation_spread": 0.1,
         "class_selectivity": 0.3,
         # class make-up of the top-K images: share (%), factor over chance, corrected p
         "class_share_pct": 30, "class_over_chance": 3, "significance": 0.05,
         # appearance of the top-K patches against random patches: Cohen's d ("large")
         "appearance_d": 0.8, "hue_consistency": 0.5}

# Every kind of role, with the name the report counts it under.
ROLE_KINDS = {"class": "class-dominant", "look": "appearance", "brightness": "brightness",
              "darkness": "darkness", "colour": "colour-opponent", "edge": "edge",
              "selective": "class-selective"}

EDGE_NAMES = {0: "horizontal", 45: "rising diagonal (/)", 90: "vertical",
              135: "falling diagonal (\\)"}
HUE_NAMES = ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"),
             (255, "blue"), (290, "purple"), (345, "magenta"), (360, "red"))


def hue_name(degrees: float) -> str:
    return next(name for limit, name in HUE_NAMES if degrees % 360 < limit)


def nearest_edge_name(degrees: float) -> str:
    angle = min(EDGE_NAMES, key=lambda a: min(abs(degrees - a), 180 - abs(degrees - a)))
    return EDGE_NAMES[angle]


def role(kind: str, detail: str, words: str) -> dict:
    return {"kind": kind, "detail": detail, "words": words}


def channel_roles(row: dict) -> list[tuple[dict, str]]:
    """Every rule of RULES that holds for a channel: (role, clause quoting its numbers)."""
    roles = []
    if "top_k_classes" in row and row["top_k_class_share"] >= RULES["class_share_pct"]:
        # Named for its class whenever one class holds >= 30 % of its strongest images; the
        # factor over chance and the corrected p-value are quoted so the reader can weigh it.
        significant = (row["top_k_class_p_bonferroni"] < RULES["significance"]
                       and row["top_k_class_share"] >= RULES["class_over_chance"]
                       * row["top_k_class_base_rate"])
        name = row["top_k_class"]
        roles.append((role("class", name, f"{name}-skewed"),
                      f"class-dominant for {name} ({row['top_k_class_share']:.0f} % "
                      f"of its top-{row['top_k']} test images, chance "
                      f"{row['top_k_class_base_rate']:.0f} %, corrected p = "
                      f"{row['top_k_class_p_bonferroni']:.1g}"
                      + ("" if significant else ", not significant") + ")"))
    if abs(row["r_luminance"]) >= RULES["luminance_r"]:
        kind = "brightness" if row["r_luminance"] > 0 else "darkness"
        roles.append((role(kind, "", kind),
                      f"a {kind} detector (r = {row['r_luminance']:+.2f} with local luminance)"))
    for key, positive, negative, signal in (("r_red_green", "red", "green", "R-G"),
                                            ("r_blue_yellow", "blue", "yellow", "B-(R+G)/2")):
        if abs(row[key]) >= RULES["colour_r"]:
            first, second = (positive, negative) if row[key] > 0 else (negative, positive)
            roles.append((role("colour", f"{first}/{second}", f"{first}-over-{second} colour"),
                          f"colour-opponent, {first} over {second} "
                          f"(r = {row[key]:+.2f} with {signal})"))
    if row["r_gradient_energy"] >= RULES["edge_r"]:
        text = f"an edge detector (r = {row['r_gradient_energy']:+.2f} with local gradient energy"
        if row["orientation_spread"] >= RULES["orientation_spread"]:
            angle = row["preferred_edge_deg"]
            text += (f"; prefers {EDGE_NAMES[angle]} edges, r = "
                     f"{row['r_edge_by_angle'][str(angle)]:+.2f} vs a spread of "
                     f"{row['orientation_spread']:.2f} over orientations")
        roles.append((role("edge", "", "edges"), text + ")"))
    if row["class_selectivity"] >= RULES["class_selectivity"]:
        name = row["top_class"]
        roles.append((role("selective", name, f"{name}-selective"),
                      f"class-selective for {name} (selectivity {row['class_selectivity']:.2f})"))
    looks = appearance(row)
    if looks:
        detail = ", ".join(short for short, _ in looks)
        roles.append((role("look", detail, f"{detail} patches"),
                      "tuned to patches that are " + ", ".join(text for _, text in looks)
                      + " against random patches"))
    return roles


def appearance(row: dict) -> list[tuple[str, str]]:
    """How the strongest patches differ from random ones, where the effect size is large."""
    if "d_saturation" not in row:
        return []
    large, looks = RULES["appearance_d"], []
    if row["d_saturation"] >= large:
        consistent = row["hue_consistency"] >= RULES["hue_consistency"]
        hue = row["hue_name"] if consistent else "of varied hue"
        looks.append((f"saturated {hue}", f"saturated {hue} ("
                      + (f"hue {row['hue_deg']}°, " if consistent else "")
                      + f"d = {row['d_saturation']:+.1f})"))
    elif row["d_saturation"] <= -large:
        looks.append(("grey", f"grey (d saturation = {row['d_saturation']:+.1f})"))
    if abs(row["d_luminance"]) >= large:
        word = "bright" if row["d_luminance"] > 0 else "dark"
        looks.append((word, f"{word} (d = {row['d_luminance']:+.1f})"))
    if abs(row["d_centre_surround"]) >= large:
        word = "light on dark" if row["d_centre_surround"] > 0 else "dark on light"
        looks.append((word, f"{word} (centre vs surround, d = {row['d_centre_surround']:+.1f})"))
    if row["d_orientation"] >= large:
        word = f"{nearest_edge_name(row['orientation_deg'])} structure"
        looks.append((word, f"of {word} ({row['orientation_deg']}°, d = {row['d_orientation']:+.1f})"))
    if abs(row["d_texture_energy"]) >= large:
        word = "textured" if row["d_texture_energy"] > 0 else "smooth"
        looks.append((word, f"{word} (d = {row['d_texture_energy']:+.1f})"))
    return looks


def describe_channel(layer: int, row: dict) -> str:
    """One sentence naming the channel by every rule that holds, quoting the numbers behind it."""
    roles = channel_roles(row)
    name = f"z{layer} channel {row['channel']}"
    if not roles:
        return (f"{name} is mixed: no rule fits (|r| luminance {abs(row['r_luminance']):.2f}, "
                f"R-G {abs(row['r_red_green']):.2f}, B-Y {abs(row['r_blue_yellow']):.2f}, "
                f"edges {row['r_gradient_energy']:+.2f}; class selectivity "
                f"{row['class_selectivity']:.2f}"
                + (f"; top class {row['top_k_class']} {row['top_k_class_share']:.0f} %"
                   if "top_k_classes" in row else "")
                + f"; zero on {100 * row['zero_share']:.0f} % of positions).")
    return f"{name} is " + "; ".join(text for _, text in roles) + "."


# --- claims against their null distributions (baselines.null_distributions measures them) ---

def surviving_roles(row: dict, judgement: dict) -> list[dict]:
    """The roles of a channel that hold against their null: the class name only where the
    channel's top-class share survives (Holm), any other word only where its claim survives."""
    survived = {claim["rule"] for claim in judgement["claims"] if claim["survives"]}
    if judgement["class_share"]["survives"]:
        survived.add("class")
    return [r for r in row["roles"] if r["kind"] in survived]


def p_text(p: float) -> str:
    """A p-value as text, to the precision it carries: 'p < 0.001', 'p = 0.004', 'p = 0.31'."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def against_baselines(row: dict, judgement: dict, protocol: dict) -> str:
    """The sentence that follows a channel's finding: each of its claims against the null of
    untrained networks and random rotations, with its Holm-corrected rank p-value."""
    parts = []
    share = judgement["class_share"]
    if "class" in (r["kind"] for r in row["roles"]):
        parts.append(f"its top-class share ({p_text(share['p_holm'])})"
                     + ("" if share["survives"] else ", no higher than untrained channels reach"))
    for claim in judgement["claims"]:
        parts.append(f"{ROLE_KINDS[claim['rule']]} ({p_text(claim['p_holm'])})"
                     + ("" if claim["survives"] else ", no higher than untrained channels reach"))
    if not parts:
        return ""
    return (f"Against {protocol['draws']} draws of each null (random networks, random rotations), "
            "Holm-corrected: " + "; ".join(parts) + ".")


def projections_alike(diversity: dict) -> str:
    """The flag of a channel whose top-9 projections are more alike than its top-9 patches."""
    if not diversity["flagged"]:
        return ""
    return (f"Its top-9 projections are more alike (mean r {diversity['projection_similarity']:.2f}) "
            f"than its top-9 patches ({diversity['patch_similarity']:.2f}): its pictures show the "
            "decoder more than the images.")
