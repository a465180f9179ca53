"""The companion report's verdicts (report/beyond.typ), each paired with a check on the facts
make_beyond_report.py built from the runs, as study/reporting/claims.py pairs the report's.

A sentence about a part that has not been run is not printed (the template asks first), so its
check holds vacuously there; where the part has been run, a run that contradicts the sentence
stops the build with one line naming it.
"""
from study.reporting.claims import Claim

ALPHA = 0.05
CLAIMS: dict[str, Claim] = {}


def claim(ident: str, says: str, network: str, question: str):
    """Register `check` (it reads one question's facts of one network) under `ident`; where
    that question has not been asked of that network the sentence is not printed, and the
    claim holds vacuously."""
    def register(check):
        def holds(f: dict) -> bool:
            found = f["networks"].get(network, {}).get(question)
            return found is None or bool(check(found))
        CLAIMS[ident] = Claim(says, holds)
        return check
    return register


# --- do the seeds learn the same channels? ---

@claim("seeds-layers", "in the tutorial's net every layer's channels match the other seeds' "
                       "better than random pairs of networks do (every seed pair, Holm)",
       "tutorial", "seeds")
def _(found: dict) -> bool:
    return all(layer["agree"] for layer in found["layers"])


@claim("seeds-few", "in the tutorial's net at least one and fewer than half of each layer's "
                    "channels have a counterpart in every other seed beyond the null",
       "tutorial", "seeds")
def _(found: dict) -> bool:
    return all(1 <= layer["everywhere"] < layer["channels"] / 2 for layer in found["layers"])


# --- when do channels form? ---

@claim("formation-order", "the tutorial's last layer matches the other seeds beyond random "
                          "networks from the first snapshot after the initialisation on, the "
                          "first layer only from a later one",
       "tutorial", "formation")
def _(found: dict) -> bool:
    first, last = found["layers"][0], found["layers"][-1]
    return (last["matched_since"] == found["epochs"][1] and first["matched_since"] is not None
            and first["matched_since"] > last["matched_since"])


@claim("formation-late", "halfway through the first epoch fewer than half of each layer's "
                         "channels of the tutorial's net have settled",
       "tutorial", "formation")
def _(found: dict) -> bool:
    at = found["epochs"].index(0.5)
    return all(2 * layer["settled"][at] < layer["channels"] for layer in found["layers"])


@claim("formation-reverse", "after one epoch a larger share of the tutorial's last layer has "
                            "settled than of its first, and the first layer's null (random "
                            "networks matched with the other seeds) is the higher",
       "tutorial", "formation")
def _(found: dict) -> bool:
    one = found["epochs"].index(1.0)
    first, last = found["layers"][0], found["layers"][-1]
    return (last["settled"][one] / last["channels"] > first["settled"][one] / first["channels"]
            and first["null_q95"][1] > last["null_q95"][1])


# --- what is each layer invariant to? ---

@claim("invariance-less", "in the tutorial's net the last layer is less invariant than random "
                          "networks to translation, rotation and mirroring (Holm), not to "
                          "scaling; the first layer differs in nothing; no layer is more "
                          "invariant than random networks",
       "tutorial", "invariance")
def _(found: dict) -> bool:
    last = found["layers"][-1]
    less = {t["transform"] for t in found["tests"] if t["less"] and t["layer"] == last}
    beyond_every_draw = all(t["trained"] > t["random_high"] for t in found["tests"]
                            if t["layer"] == last and t["transform"] in less)
    return (less == {"translation", "rotation", "flip"} and not found["more"] and beyond_every_draw
            and all(t["layer"] == last for t in found["tests"] if t["less"]))


@claim("invariance-class", "mirroring leaves the tutorial net's true-class probability within "
                           "0.01, and the largest shift lowers it more than any other change",
       "tutorial", "invariance")
def _(found: dict) -> bool:
    p = found["true_class"]
    return (abs(p["flip"]["changed"] - p["flip"]["unchanged"]) <= 0.01
            and all(p["translation"]["changed"] < p[k]["changed"] for k in p if k != "translation"))


# --- the deeper network (vacuous before make depth) ---

@claim("deep-seeds-none", "no layer of the deeper network agrees across its seeds beyond random "
                          "pairs, whose channels match about as well (mean matched r within 0.05 "
                          "of the seeds')",
       "deep", "seeds")
def _(found: dict) -> bool:
    return not any(layer["agree"] for layer in found["layers"]) and all(
        abs(layer["mean_r"] - layer["null_mean"]) <= 0.05 for layer in found["layers"])


@claim("deep-formation", "every layer of the deeper network matches the other seed beyond random "
                         "networks from the first epoch on, and its layers settle in order, the "
                         "lowest first (a smaller share settled in each deeper layer after the "
                         "first and second epochs)",
       "deep", "formation")
def _(found: dict) -> bool:
    first = found["epochs"][1]
    shares = [[layer["settled"][k] / layer["channels"] for layer in found["layers"]]
              for k in (1, 2)]
    return (all(layer["matched_since"] == first for layer in found["layers"])
            and all(a > b for row in shares for a, b in zip(row, row[1:])))


@claim("deep-invariance", "every layer of the deeper network is less invariant than every random "
                          "network to every change (Holm), and none more",
       "deep", "invariance")
def _(found: dict) -> bool:
    return (not found["more"] and all(
        t["less"] and t["trained"] > t["random_high"] for t in found["tests"]))
