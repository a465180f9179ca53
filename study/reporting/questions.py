"""The companion report's three questions beyond the assignment, read from their metrics.

Per network (the tutorial's, in OUTPUTS; the deeper one, in OUTPUTS/depth), each question's
metrics.json is checked once where it is read (study.core.readers.check_metrics) and turned into
the few numbers the report prints:

* do the seeds learn the same channels? (compare_seeds.py) per layer, the mean matched
  correlation over the seed pairs against the random pairs' 95th percentile, the largest Holm p
  of the pairs, and the channels with a counterpart in every other seed;
* when do channels form? (formation.py) per layer and snapshot, the channels settled against
  their finished selves, and the match with the other seeds against random networks;
* what is each layer invariant to? (invariance.py) per layer and transformation at its largest
  amount, the trained distance against the random networks', and which survive Holm.

A question that has not been run is None: the report says so.
"""
from pathlib import Path

from study.analysis.invariance import largest
from study.core.common import UsageError
from study.core.layout import METRICS, Outputs
from study.core.readers import check_metrics, read_json, require_complete, require_items

ALPHA = 0.05
UNIT, ANY, POSITIVE = (0, 1), (None, None), (0, None)
FULL_DATA = {"train_images": 50_000, "test_images": 10_000}  # what the prose was written for

SEEDS = [("seeds", list, (2, None)), ("layers", dict, (1, None)), ("layers.*", dict, ANY),
         ("layers.*.channels", int, (1, None)), ("layers.*.counterpart_in_every_seed", list, ANY),
         ("layers.*.null", dict, ANY), ("layers.*.null.q95_r", float, (-1, 1)),
         ("layers.*.null.mean_r", float, (-1, 1)),
         ("layers.*.null.draws", int, (1, None)), ("layers.*.pairs", dict, (1, None)),
         ("layers.*.pairs.*", dict, ANY), ("layers.*.pairs.*.mean_r", float, (-1, 1)),
         ("layers.*.pairs.*.p_mean_holm", float, UNIT), ("protocol", dict, ANY),
         ("protocol.images", int, (1, None)), ("data", dict, ANY)]
FORMATION = [("snapshots", list, (2, None)), ("snapshots[].epoch", (int, float), POSITIVE),
             ("snapshots[].same_units", dict, (1, None)), ("snapshots[].same_units.*", dict, ANY),
             ("snapshots[].same_units.*.r", list, (1, None)),
             ("snapshots[].same_units.*.settled", int, (0, None)),
             ("snapshots[].same_units.*.mean_r", float, (-1, 1)),
             ("snapshots[].other_seeds", dict, (1, None)),
             ("snapshots[].other_seeds.*", dict, ANY),
             ("snapshots[].other_seeds.*.mean_r", float, (-1, 1)),
             ("snapshots[].other_seeds.*.null_q95_r", float, (-1, 1)),
             ("snapshots[].other_seeds.*.p_holm", float, UNIT), ("seeds", list, (2, None)),
             ("protocol", dict, ANY), ("protocol.null_draws", int, (1, None)),
             ("protocol.images", int, (1, None)), ("data", dict, ANY)]
INVARIANCE = [("tests", dict, ANY), ("tests.tests", list, (1, None)),
              ("tests.tests[].transform", str, (1, 20)), ("tests.tests[].layer", str, (1, 8)),
              ("tests.tests[].amount", (int, float), ANY),
              ("tests.tests[].trained", (int, float), POSITIVE),
              ("tests.tests[].random", list, (1, None)),
              ("tests.tests[].p_more_holm", float, UNIT), ("tests.tests[].p_less_holm", float, UNIT),
              ("tests.draws", int, (1, None)), ("tests.smallest_p", float, UNIT),
              ("tests.first_step", float, UNIT), ("images", int, (1, None)), ("data", dict, ANY),
              ("trained", dict, (1, None)), ("trained.*", dict, ANY),
              ("trained.*.amounts", list, (2, None)), ("trained.*.true_class", list, (2, None))]


FIX = "rerun make all (or make depth for the deeper network)"


def _read(folder: Path, expected: list, what: str) -> dict | None:
    """A question's metrics, checked, or None where it has not been run."""
    path = folder / METRICS
    require_complete(folder, "the folder", FIX)
    if not path.is_file():
        return None
    metrics = read_json(path, what, FIX)
    check_metrics(metrics, expected, str(path), FIX)
    return metrics


def full_data(metrics: dict) -> bool:
    """Whether a run read the whole CIFAR-10 (the runs the prose was written for)."""
    return all((metrics.get("data") or {}).get(k) == v for k, v in FULL_DATA.items())


def seeds_facts(metrics: dict, where: str = "seeds metrics") -> dict:
    layers = []
    for name, block in metrics["layers"].items():
        pairs = block["pairs"].values()
        layers.append({"name": name, "channels": block["channels"],
                       "mean_r": round(sum(p["mean_r"] for p in pairs) / len(pairs), 2),
                       "q95": round(block["null"]["q95_r"], 2),
                       "null_mean": round(block["null"]["mean_r"], 2),
                       "p_max": max(p["p_mean_holm"] for p in pairs),
                       "agree": all(p["p_mean_holm"] < ALPHA for p in pairs),
                       "everywhere": len(block["counterpart_in_every_seed"])})
    first = next(iter(metrics["layers"].values()))
    return {"seeds": metrics["seeds"], "pairs": len(first["pairs"]),
            "draws": first["null"]["draws"], "images": metrics["protocol"]["images"],
            "layers": layers, "full_data": full_data(metrics)}


def formation_facts(metrics: dict, where: str = "formation metrics") -> dict:
    rows = metrics["snapshots"]
    names = list(rows[0]["same_units"])
    for k, row in enumerate(rows):
        if list(row["same_units"]) != names or list(row["other_seeds"]) != names:
            raise UsageError(f"{where}: snapshots[{k}] names the layers {list(row['same_units'])} "
                             f"and {list(row['other_seeds'])}, not the first snapshot's {names}; "
                             f"{FIX}")
    layers = []
    for name in names:
        matched = [row["other_seeds"][name]["p_holm"] < ALPHA for row in rows]
        # the first snapshot from which the match with the other seeds survives to the end
        since = next((rows[k]["epoch"] for k in range(len(rows)) if all(matched[k:])), None)
        layers.append({"name": name, "channels": len(rows[0]["same_units"][name]["r"]),
                       "settled": [row["same_units"][name]["settled"] for row in rows],
                       "match_r": [round(row["other_seeds"][name]["mean_r"], 2) for row in rows],
                       "null_q95": [round(row["other_seeds"][name]["null_q95_r"], 2) for row in rows],
                       "p_holm": [row["other_seeds"][name]["p_holm"] for row in rows],
                       "matched_since": since})
    return {"epochs": [row["epoch"] for row in rows], "layers": layers,
            "seeds": metrics["seeds"], "draws": metrics["protocol"]["null_draws"],
            "images": metrics["protocol"]["images"], "full_data": full_data(metrics)}


def invariance_facts(metrics: dict, where: str = "invariance metrics") -> dict:
    tests = []
    for k, test in enumerate(metrics["tests"]["tests"]):
        require_items(test["random"], (int, float), 0, None, f"{where}: tests[{k}].random", FIX)
        tests.append({"transform": test["transform"], "layer": test["layer"],
                      "amount": test["amount"], "trained": round(test["trained"], 2),
                      "random_low": round(min(test["random"]), 2),
                      "random_high": round(max(test["random"]), 2),
                      "p_more_holm": test["p_more_holm"], "p_less_holm": test["p_less_holm"],
                      "more": test["p_more_holm"] < ALPHA, "less": test["p_less_holm"] < ALPHA})
    true_class = {}  # per transformation: the true class's probability unchanged, and at the
    for kind, curve in metrics["trained"].items():  # largest change (the tests' amount)
        amounts = require_items(curve["amounts"], (int, float), what=f"{where}: trained: {kind}",
                                fix=FIX)
        values = require_items(curve["true_class"], (int, float), 0, 1,
                               f"{where}: trained: {kind}", FIX)
        if len(values) != len(amounts):
            raise UsageError(f"{where}: trained: {kind} has {len(values)} probabilities for "
                             f"{len(amounts)} amounts; {FIX}")
        far = largest(amounts)
        true_class[kind] = {"unchanged": round(values[0], 2),
                            "changed": round(values[amounts.index(far)], 2), "amount": far}
    block = metrics["tests"]
    return {"tests": tests, "true_class": true_class, "draws": block["draws"], "smallest_p": block["smallest_p"],
            "first_step": block["first_step"], "images": metrics["images"],
            "family": 2 * len(tests), "layers": sorted({t["layer"] for t in tests}),
            "less": [f"{t['layer']} {t['transform']}" for t in tests if t["less"]],
            "more": [f"{t['layer']} {t['transform']}" for t in tests if t["more"]],
            "full_data": full_data(metrics)}


def question_facts(tree: Outputs) -> dict:
    """{"seeds", "formation", "invariance"}: each question's facts of this tree's network, or
    None where it has not been run."""
    found = {}
    for key, folder, expected, facts in (
            ("seeds", tree.seeds, SEEDS, seeds_facts),
            ("formation", tree.formation, FORMATION, formation_facts),
            ("invariance", tree.invariance, INVARIANCE, invariance_facts)):
        metrics = _read(folder, expected, f"{key} metrics")
        found[key] = None if metrics is None else facts(metrics, str(folder / METRICS))
    return found
