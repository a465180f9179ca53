"""The report's verdicts (study/reporting/claims.py): every verdict sentence of the template has a
check and every check a sentence; a run that contradicts a sentence stops the build and names
it; the checks themselves on small hand-made metrics with known answers."""
from types import SimpleNamespace

import pytest

from conftest import REPO
from models import ARCHITECTURE, ARCHITECTURES
from study.core.common import UsageError
from study.reporting import claims as report_claims

TEMPLATE = (REPO / "report" / "report.typ").read_text()


def test_every_verdict_has_a_check_and_every_check_a_verdict():
    used = {ident for ident, _ in report_claims.template_verdicts(TEMPLATE)}
    assert used == set(report_claims.CLAIMS)


def test_the_opening_words_of_a_verdict_end_at_its_own_bracket():
    template = 'A #if verdict("x") [holds for #t1.accuracy % [of] images] and then more.'
    assert report_claims.template_verdicts(template) == [("x", "holds for … % of images")]


def mcnemar(p: float) -> dict:
    return {"task2": {"task1_comparison": {"mcnemar": {"p_value": p}}}}


def test_a_run_that_contradicts_a_sentence_stops_naming_it():
    template = 'Then #if verdict("t2-mcnemar") [no evidence of a difference at the 5 % level].'
    claims = {"t2-mcnemar": report_claims.CLAIMS["t2-mcnemar"]}
    report_claims.check_verdicts(mcnemar(0.54), template, claims)  # holds: nothing raised
    with pytest.raises(UsageError) as error:
        report_claims.check_verdicts(mcnemar(0.003), template, claims)
    message = str(error.value)
    assert "no evidence of a difference at the 5 % level" in message and "t2-mcnemar" in message
    assert "\n" not in message


def test_a_verdict_without_a_check_is_refused():
    with pytest.raises(UsageError, match="without a check"):
        report_claims.check_verdicts({}, '#if verdict("made-up") [text]', {})


def task1(confusion_pairs: list[tuple[str, str, int]]) -> dict:
    names = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    matrix = [[100 if i == j else 1 for j in range(10)] for i in range(10)]
    for true, predicted, count in confusion_pairs:
        matrix[names.index(true)][names.index(predicted)] = count
    return {"task1": {"per_class_accuracy": {n: 50.0 for n in names}, "confusion_matrix": matrix}}


def test_the_confusions_check_reads_the_three_largest_off_diagonal_cells():
    check = report_claims.CLAIMS["t1-confusions"].holds
    assert check(task1([("ship", "plane", 30), ("cat", "dog", 20), ("car", "truck", 10)]))
    assert not check(task1([("ship", "plane", 30), ("cat", "dog", 20), ("bird", "plane", 10)]))


def test_per_class_differences_against_the_seed_spread_by_hand():
    """Two seeds' sd of 3 and 4 points over n = 3 seeds: se = sqrt((9 + 16) / 3) = 2.887, so a
    difference of 5.7 lies within two se (5.77) and one of 5.8 does not."""
    def metrics(difference: float) -> dict:
        return {"seeds": {"per_seed": [{}, {}, {}], "per_class_accuracy": {
            "task1": {"cat": {"mean": 50.0, "sd": 3.0}},
            "task2": {"cat": {"mean": 50.0 + difference, "sd": 4.0}}}}}
    check = report_claims.CLAIMS["t2-per-class"].holds
    assert check(metrics(5.7)) and check(metrics(-5.7))
    assert not check(metrics(5.8))


def test_the_full_study_is_told_apart_from_other_runs():
    full = {"task1": {"config": {"subset": 1.0, "epochs": 2, "batch_size": 4, "lr": 0.001,
                                 "momentum": 0.9, "arch": "tutorial"},
                      "data": {"train_images": 50_000, "test_images": 10_000}},
            "task2": {"lambda": 0.01}, "task3": SimpleNamespace(architecture=ARCHITECTURE),
            "seeds": {"per_seed": [{}, {}, {}]}, "convergence": {"layers": {}}}
    assert report_claims.study_differences(full) == []
    small = {**full, "task1": {**full["task1"], "config": {**full["task1"]["config"], "subset": 0.1},
                               "data": {"train_images": 5_000, "test_images": 1_000}}}
    assert report_claims.study_differences(small) == ["5,000 training and 1,000 test images"]
    assert report_claims.study_differences({**full, "task3": None}) == ["no task3 results"]
    deeper = SimpleNamespace(architecture=ARCHITECTURES["small3"])
    assert report_claims.study_differences({**full, "task3": deeper}) == ["another network"]
    assert report_claims.study_differences({**full, "convergence": None}) == ["no convergence results"]


def test_no_semicolon_right_after_an_inserted_fact():
    """In Typst markup a ';' straight after an embedded expression ends the expression and is
    swallowed ('a cat; indices' printed as 'a cat indices'): the template escapes it as '\\;'."""
    import re

    code = "\n".join(line for line in TEMPLATE.splitlines() if not line.lstrip().startswith("//"))
    swallowed = re.findall(r"#[A-Za-z0-9_.]+(?:\([^)\n]*\))?;|\];", code)
    assert not swallowed, swallowed


def _agreement(p_holm: list[float], everywhere: dict[str, list[int]]) -> dict:
    layers = {name: {"channels": channels, "counterpart_in_every_seed": everywhere[name],
                     "pairs": {f"pair{k}": {"p_mean_holm": p} for k, p in enumerate(p_holm)}}
              for name, channels in (("z1", 6), ("z2", 16))}
    return {"convergence": {"layers": layers}}


def test_the_seeds_sentences_hold_only_for_what_their_tests_say():
    """'every layer agrees better than random pairs': every pair's Holm p below 0.05 in every
    layer; 'only a few channels have a counterpart': at least one, fewer than half per layer."""
    holds = {ident: report_claims.CLAIMS[ident].holds for ident in ("agree-layers", "agree-channels")}
    assert holds["agree-layers"](_agreement([0.02, 0.04, 0.01], {"z1": [5], "z2": [4]}))
    assert not holds["agree-layers"](_agreement([0.02, 0.06, 0.01], {"z1": [5], "z2": [4]}))
    assert holds["agree-channels"](_agreement([0.02], {"z1": [5], "z2": [4]}))
    assert not holds["agree-channels"](_agreement([0.02], {"z1": [], "z2": []}))  # none at all
    assert not holds["agree-channels"](_agreement([0.02], {"z1": [0, 1, 2], "z2": [4]}))  # half of z1
