"""The report's verdicts, each paired with a check on the run's metrics.

report/report.typ is prose written for the study's full-data run. Every sentence in it that
states a verdict or a comparison ("no count survives", "larger than the seed spread") is wrapped
as `#if verdict("id") [...]`, and CLAIMS holds, under the same id, what the sentence says and a
check on the metrics. make_report.py runs every check before it typesets: a run that disagrees
stops the build with one line that names the sentence, so the prose can never silently lie.
A run that is not the full-data study (a subset, tiny data, another protocol) gets the same
numbers, tables and figures, with a neutral note in place of the verdicts (`study_differences`).
"""
import re
from dataclasses import dataclass
from typing import Callable

from study.analysis.task3_result import LayerResult, Task3Result
from study.core.common import UsageError
from study.core.ids import ModelId
from study.core.settings import DEFAULT_LAMBDA
from study.reporting.numbers import r2

TEMPLATE_VERDICT = re.compile(r'#if verdict\("([a-z0-9-]+)"\) \[')
TUTORIAL_ACCURACY = 54  # the tutorial's "about 54 %" for this protocol
ALPHA = 0.05


@dataclass(frozen=True)
class Claim:
    """One verdict of the prose: what it says (for the error message) and its check."""
    says: str
    holds: Callable[[dict], bool]


# --- reading the metrics the checks need ---

def _counts(m: dict) -> list[tuple[str, str, dict]]:
    """(layer, rule, count test) of Task 3's count family, the rules the trained net meets."""
    return [(layer.name, rule, entry) for layer in m["task3"].layers
            for rule, entry in layer.nulls["counts"].items() if entry["trained"]]


def _surviving_counts(m: dict, question: str) -> list[tuple[str, str]]:
    return [(layer, rule) for layer, rule, entry in _counts(m)
            if entry["questions"][question]["survives"]]


def channel_claims(task3: Task3Result) -> list[tuple[str, int, str, dict]]:
    """(layer, channel, rule, test) of every single-channel claim of Task 3's result: the
    top-class share of every channel, and every other rule a channel meets."""
    found = []
    for layer in task3.layers:
        for judged in layer.nulls["channels"]:
            found.append((layer.name, judged["channel"], "class", judged["class_share"]))
            found += [(layer.name, judged["channel"], claim["rule"], claim)
                      for claim in judged["claims"]]
    return found


def survives(test: dict, question: str | None) -> bool:
    """Whether a test survives `question` ("learned", "single_channel"; None: both at once)."""
    return test["survives"] if question is None else test["questions"][question]["survives"]


def surviving_channel_claims(m: dict, question: str | None = None) -> list[tuple[str, int, str]]:
    """(layer, channel, rule) of the single-channel claims that survive `question` (None: both
    questions at once, the combined test)."""
    return [(layer, channel, rule) for layer, channel, rule, test in channel_claims(m["task3"])
            if survives(test, question)]


def named_channel(m: dict) -> tuple[str, int, str] | None:
    """The single-channel claim the prose names: the one that survives both questions, if
    exactly one does."""
    both = surviving_channel_claims(m)
    return both[0] if len(both) == 1 else None


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the values and its 95 % t confidence interval (two or
    more values)."""
    import statistics

    from scipy import stats

    mean, sd = statistics.mean(values), statistics.stdev(values)
    half = stats.t.ppf(0.975, len(values) - 1) * sd / len(values) ** 0.5
    return mean, mean - half, mean + half


def _per_class_within_spread(m: dict) -> bool:
    """Every class's Task 2 - Task 1 difference of the seed means lies within two standard
    errors of that difference over the seeds (sd_1² + sd_2²)/n."""
    spread = m["seeds"]["per_class_accuracy"]
    n = len(m["seeds"]["per_seed"])
    for name, first in spread["task1"].items():
        second = spread["task2"][name]
        se = ((first["sd"] ** 2 + second["sd"] ** 2) / n) ** 0.5
        if abs(second["mean"] - first["mean"]) > 2 * se:
            return False
    return True


def _baselines(m: dict) -> dict[str, float]:
    return m["task2"]["psnr_baselines_db"]


def _picture_sanity(m: dict) -> bool:
    """Adebayo et al.'s check per layer: every randomised model's pictures are less like the
    trained ones than those of the trained encoder with its decoders refitted from another seed."""
    task3: Task3Result = m["task3"]
    verdicts = []
    for layer in task3.layers:
        found = task3.summary("similarity", layer)
        floor = found.get(ModelId("refit_seed"), {}).get("spearman_mean")
        randomised = [v["spearman_mean"] for g, v in found.items() if g.kind == "random"]
        if floor is None or not randomised:
            return False
        verdicts.append(max(randomised) < floor)
    return all(verdicts)


def _last(m: dict) -> LayerResult:
    return m["task3"].layers[-1]


def _occlusion_beats_random(m: dict) -> bool:
    summary = m["task3"].summary("occlusion", _last(m))
    trained = summary.get(ModelId("trained"), {}).get("mean")
    randomised = [v["mean"] for g, v in summary.items() if g.kind == "random"]
    return trained is not None and bool(randomised) and trained > max(randomised)


def _lambda_trade(m: dict) -> bool:
    rows = m["seeds"]["lambda_sweep"]
    return (len(rows) > 1 and rows[-1]["psnr_db"]["mean"] > rows[0]["psnr_db"]["mean"]
            and rows[-1]["accuracy"]["mean"] < rows[0]["accuracy"]["mean"])


def _pick(rows: list[dict], key, largest: bool = True) -> dict:
    """The row of a layer with the largest (or smallest) value of key(row)."""
    return (max if largest else min)(rows, key=key)


def first_layer_channels(rows: list[dict]) -> dict[str, dict]:
    """The first-layer channels the prose describes, each chosen by the measure it is named for:
    the most blue-over-yellow, the most red-over-green, the darkest and brightest (luminance
    r), the one with the most vertical and the most horizontal edge preference. Each entry:
    its name and the measure, as text."""
    vertical = [r for r in rows if r["preferred_edge_deg"] == 90] or rows
    horizontal = [r for r in rows if r["preferred_edge_deg"] == 0] or rows
    chosen = {
        "blue": (_pick(rows, lambda r: r["r_blue_yellow"]), "r_blue_yellow"),
        "red": (_pick(rows, lambda r: r["r_red_green"]), "r_red_green"),
        "dark": (_pick(rows, lambda r: r["r_luminance"], largest=False), "r_luminance"),
        "bright": (_pick(rows, lambda r: r["r_luminance"]), "r_luminance"),
        "vertical": (_pick(vertical, lambda r: r["r_edge_by_angle"]["90"]), None),
        "horizontal": (_pick(horizontal, lambda r: r["r_edge_by_angle"]["0"]), None)}
    return {key: {"channel": row["channel"], "grad": r2(row["r_gradient_energy"]),
                  "r": r2(row[measure]) if measure else
                  r2(row["r_edge_by_angle"]["90" if key == "vertical" else "0"])}
            for key, (row, measure) in chosen.items()}



CLAIMS: dict[str, Claim] = {}  # filled below, in the order the prose states them


def claim(ident: str, says: str) -> Callable[[Callable[[dict], bool]], Callable[[dict], bool]]:
    def register(check: Callable[[dict], bool]) -> Callable[[dict], bool]:
        CLAIMS[ident] = Claim(says, check)
        return check
    return register


VEHICLES = {"plane", "car", "ship", "truck"}


@claim("t1-tutorial", "Task 1 reproduces the tutorial's about 54 %")
def _(m: dict) -> bool:
    return (abs(m["task1"]["test_accuracy"] - TUTORIAL_ACCURACY) <= 3
            and abs(m["seeds"]["task1_accuracy"]["mean"] - TUTORIAL_ACCURACY) <= 3)


@claim("t1-confusions", "the three largest confusions pair vehicles with vehicles or animals "
                        "with animals")
def _(m: dict) -> bool:
    names = list(m["task1"]["per_class_accuracy"])
    matrix = m["task1"]["confusion_matrix"]
    largest = sorted(((matrix[i][j], names[i], names[j]) for i in range(len(names))
                      for j in range(len(names)) if i != j), reverse=True)[:3]
    return all((a in VEHICLES) == (b in VEHICLES) for _, a, b in largest)


@claim("t2-mcnemar", "McNemar finds no difference between Task 1 and Task 2 at seed 0")
def _(m: dict) -> bool:
    return m["task2"]["task1_comparison"]["mcnemar"]["p_value"] >= ALPHA


@claim("t2-seeds-ci", "Task 2 is lower on every seed, but the seeds' 95 % interval includes no "
                      "change")
def _(m: dict) -> bool:
    seeds = m["seeds"]
    _, low, high = mean_interval([r["difference"] for r in seeds["per_seed"]])
    return (seeds["seeds_task2_lower"] == len(seeds["per_seed"]) and low < 0 < high
            and seeds["paired_t_test"]["p_value"] >= ALPHA)


@claim("t2-per-class", "no per-class difference exceeds two standard errors of the seed spread")
def _(m: dict) -> bool:
    return _per_class_within_spread(m)


@claim("t2-psnr", "Task 2's PSNR lies between two block thumbnails")
def _(m: dict) -> bool:
    psnr = m["task2"]["test_psnr_db"]
    thumbs = [v for k, v in _baselines(m).items() if "thumbnail" in k]
    return any(v <= psnr for v in thumbs) and any(v > psnr for v in thumbs)


@claim("t2-lambda", "the largest λ buys PSNR with accuracy; at the default λ the cost is within "
                    "the seed spread")
def _(m: dict) -> bool:
    first, second = m["seeds"]["task1_accuracy"], m["seeds"]["task2_accuracy"]
    return (_lambda_trade(m) and abs(second["mean"] - first["mean"])
            <= max(first["sd"] or 0, second["sd"] or 0))


@claim("t3-literal", "Task 2's own layer-1 decoder fails on the real z1 (below an image's mean "
                     "colour); the refit does far better")
def _(m: dict) -> bool:
    literal = m["task3"].decoder(1, "literal").psnr_db
    refit = m["task3"].decoder(1, "refit").psnr_db
    return literal < _baselines(m)["image mean colour"] and refit >= literal + 3


def _first_layer(m: dict) -> dict:
    return first_layer_channels(m["task3"].layers[0].channels)


@claim("t3-z1-words", "the six first-layer channels are blue, red, dark, bright, vertical and "
                      "horizontal, each by its own measure")
def _(m: dict) -> bool:
    rows = m["task3"].layers[0].channels
    rules = m["task3"].rules
    chosen = {k: rows[v["channel"]] for k, v in _first_layer(m).items()}
    return (len({row["channel"] for row in chosen.values()}) == 6
            and chosen["blue"]["r_blue_yellow"] >= rules["colour_r"]
            and chosen["red"]["r_red_green"] >= rules["colour_r"]
            and chosen["dark"]["r_luminance"] <= -rules["luminance_r"]
            and chosen["bright"]["r_luminance"] >= rules["luminance_r"]
            and chosen["vertical"]["preferred_edge_deg"] == 90
            and chosen["vertical"]["r_edge_by_angle"]["90"] >= rules["edge_r"]
            and chosen["horizontal"]["preferred_edge_deg"] == 0
            and chosen["horizontal"]["r_edge_by_angle"]["0"] >= rules["edge_r"])


def control_cost(layer: LayerResult, case: str) -> float:
    """How many dB a control costs the decoder of `layer`'s pictures."""
    return layer.controls["own"].psnr_db - layer.controls[case].psnr_db


@claim("t3-z2-alike", "another image's switches cost more at the last layer than at the first, "
                      "and less than another image's latent at both")
def _(m: dict) -> bool:
    first, last = m["task3"].layers[0], _last(m)
    return (control_cost(last, "other_switches") > control_cost(first, "other_switches")
            and all(control_cost(layer, "other_latent") > control_cost(layer, "other_switches")
                    for layer in (first, last)))


def _named_row(m: dict) -> tuple[dict, dict] | None:
    named = named_channel(m)
    if named is None or named[2] != "colour":
        return None
    name, channel, _ = named
    layer = m["task3"].layer(name)
    judged = next(j for j in layer.nulls["channels"] if j["channel"] == channel)
    return layer.channels[channel], judged


@claim("t3-named-picture", "the named channel is a last-layer channel shown for the test image")
def _(m: dict) -> bool:
    found = _named_row(m)
    if found is None:
        return False
    row, _ = found
    last = _last(m)
    shown = [r["channel"] for r in m["task3"].images["test"][last.name]["channels"]]
    return row in last.channels and row["channel"] in shown


@claim("t3-counts", "no count of channels survives either question, and every trained count is "
                    "below the count that would have passed")
def _(m: dict) -> bool:
    return (not _surviving_counts(m, "learned") and not _surviving_counts(m, "single_channel")
            and all(entry["questions"]["learned"]["detectable_count"] is None
                    or entry["trained"] < entry["questions"]["learned"]["detectable_count"]
                    for _, _, entry in _counts(m)))


@claim("t3-learned", "no count beats random networks, but single-channel descriptions do, the "
                     "named channel's blue colour opposition among them")
def _(m: dict) -> bool:
    found = _named_row(m)
    learned = surviving_channel_claims(m, "learned")
    return (found is not None and not _surviving_counts(m, "learned")
            and named_channel(m) in learned and found[0]["r_blue_yellow"] > 0)


@claim("t3-single", "against rotations some descriptions survive, and only the named channel's "
                    "colour opposition survives both questions")
def _(m: dict) -> bool:
    return (bool(surviving_channel_claims(m, "single_channel"))
            and surviving_channel_claims(m) == [named_channel(m)] and _named_row(m) is not None)


@claim("t3-named", "the one survivor of both is blue over yellow, its strongest patches blue, its "
                   "top images mostly planes and ships")
def _(m: dict) -> bool:
    found = _named_row(m)
    if found is None:
        return False
    row, _ = found
    top_two = sorted(row["top_k_classes"], key=row["top_k_classes"].get, reverse=True)[:2]
    return (row["r_blue_yellow"] >= m["task3"].rules["colour_r"] and row["hue_name"] == "blue"
            and set(top_two) == {"plane", "ship"})


@claim("t3-z1-not-single", "the first layer's blue channel beats random networks but not "
                           "rotations")
def _(m: dict) -> bool:
    first = m["task3"].layers[0].name
    channel = _first_layer(m)["blue"]["channel"]
    return ((first, channel, "colour") in surviving_channel_claims(m, "learned")
            and (first, channel, "colour") not in surviving_channel_claims(m, "single_channel"))


@claim("agree-layers", "every layer's channels match the other seeds' better than random pairs "
                       "of networks do (every seed pair, Holm over layers and pairs)")
def _(m: dict) -> bool:
    layers = m["convergence"]["layers"]
    return all(v["p_mean_holm"] < ALPHA for block in layers.values() for v in block["pairs"].values())


@claim("agree-channels", "only a few channels of each layer (fewer than half) have a counterpart "
                         "in every other seed beyond the null, and at least one does")
def _(m: dict) -> bool:
    layers = m["convergence"]["layers"]
    found = [len(block["counterpart_in_every_seed"]) for block in layers.values()]
    return sum(found) >= 1 and all(2 * n < block["channels"]
                                   for n, block in zip(found, layers.values()))


@claim("t3-every-pair", "no description would survive either question over every channel x "
                        "description pair; the named channel's top-class share (a complete "
                        "family) survives random networks")
def _(m: dict) -> bool:
    found = _named_row(m)
    if found is None:
        return False
    _, judged = found
    claims = [test for layer, channel, rule, test in channel_claims(m["task3"]) if rule != "class"]
    return (all(t["questions"][q]["p_every_pair"] >= ALPHA for t in claims
                for q in ("learned", "single_channel"))
            and judged["class_share"]["questions"]["learned"]["survives"])


@claim("t3-sanity", "the pictures pass Adebayo et al.'s sanity check")
def _(m: dict) -> bool:
    return _picture_sanity(m)


@claim("t3-occlusion", "occlusion agrees with the projections more for the trained network than "
                       "for random ones, but not more than for the permuted-labels one")
def _(m: dict) -> bool:
    summary = m["task3"].summary("occlusion", _last(m))
    return (_occlusion_beats_random(m)
            and summary[ModelId("permuted")]["mean"] >= summary[ModelId("trained")]["mean"])


@claim("t3-permuted", "the permuted-labels network decodes the last layer at least as well as "
                      "the trained one")
def _(m: dict) -> bool:
    psnr = m["task3"].summary("psnr", _last(m))
    return psnr[ModelId("permuted")]["mean"] >= psnr[ModelId("trained")]["mean"]


@claim("t3-top9", "for most last-layer channels the top-9 projections are more alike than the "
                  "patches")
def _(m: dict) -> bool:
    rows = _last(m).channels
    return sum(r["projection_diversity"]["flagged"] for r in rows) > len(rows) / 2


# --- checking the template against the run ---

def study_differences(m: dict) -> list[str]:
    """How a run differs from the full-data study the prose was written for ([] for that run):
    a missing part, a subset, another protocol, data set size or network."""
    missing = [name for name in ("task1", "task2", "task3", "seeds", "convergence") if not m.get(name)]
    if missing:
        return [f"no {', '.join(missing)} results"]
    t1, t2 = m["task1"], m["task2"]
    config = t1["config"]
    found = []
    if config.get("subset") != 1.0 or t1["data"]["test_images"] != 10_000 \
            or t1["data"]["train_images"] != 50_000:
        found.append(f"{t1['data']['train_images']:,} training and {t1['data']['test_images']:,} "
                     "test images")
    protocol = {"epochs": 2, "batch_size": 4, "lr": 0.001, "momentum": 0.9}
    if any(config.get(k) != v for k, v in protocol.items()) or t2["lambda"] != DEFAULT_LAMBDA:
        found.append("another training protocol")
    if m["task3"].architecture.depth != 2 or config.get("arch", "tutorial") != "tutorial":
        found.append("another network")
    if len(m["seeds"]["per_seed"]) < 3:
        found.append(f"{len(m['seeds']['per_seed'])} seeds")
    return found


def template_verdicts(template: str) -> list[tuple[str, str]]:
    """(id, the sentence's opening words) of every verdict in the template, in order."""
    found = []
    for match in TEMPLATE_VERDICT.finditer(template):
        depth, end = 1, match.end()
        while depth and end < len(template):  # the sentence ends at its matching bracket
            depth += {"[": 1, "]": -1}.get(template[end], 0)
            end += 1
        body = template[match.end():end - 1]
        words = re.sub(r"#\(?[A-Za-z0-9_.]+(\([^)]*\))?\)?", "…", body)
        words = re.sub(r"[\[\]*_$\\]", "", words)
        found.append((match.group(1), " ".join(words.split())[:70]))
    return found


def check_verdicts(metrics: dict, template: str, claims: dict[str, Claim] | None = None,
                   template_name: str = "report/report.typ",
                   claims_name: str = "study/reporting/claims.py") -> None:
    """Every verdict of the template against this run: one UsageError naming the first sentence
    the run contradicts (or a verdict without a check, or a check without a sentence).
    `claims`: the checks (default: CLAIMS), written in `claims_name` for `template_name`."""
    CLAIMS = claims if claims is not None else globals()["CLAIMS"]
    used = template_verdicts(template)
    ids = [ident for ident, _ in used]
    unknown = [ident for ident in ids if ident not in CLAIMS]
    unused = [ident for ident in CLAIMS if ident not in ids]
    if unknown or unused:
        raise UsageError(f"{template_name} and {claims_name} disagree: verdicts "
                         f"without a check {unknown}, checks without a sentence {unused}")
    for ident, opening in used:
        try:
            holds = CLAIMS[ident].holds(metrics)
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as error:
            raise UsageError(f"the report's verdict '{ident}' ({CLAIMS[ident].says}) cannot be "
                             f"checked: the metrics lack {error}; rerun make all") from None
        if not holds:
            raise UsageError(f"this run contradicts the report's sentence \"{opening}...\" "
                             f"(verdict '{ident}': {CLAIMS[ident].says}); the prose was written "
                             f"for another result: rewrite that sentence in {template_name}")
