"""The report's generated words: the median, p-values, plurals, and the verdict sentence that
follows the verdicts."""
import copy

import pytest

from conftest import REPO  # noqa: F401 (puts the repository on the path)
from study import report_discussion as rd, report_text as rt


def test_the_median_of_an_even_count_is_the_mean_of_the_two_middle_values():
    # the old `sorted(values)[n // 2]` gave the upper middle value, 0.64 here
    assert rt.median([0.2, 0.64, 0.515, 0.9]) == pytest.approx((0.515 + 0.64) / 2)
    assert rt.median([3.0, 1.0, 2.0]) == 2.0


def test_p_values_never_print_as_zero():
    assert rt.p_cell(4e-8) == "< 0.001" and rt.p_cell(0.0015) == "0.002"
    assert rt.p_value(0.0015) == "p = 0.002" and rt.p_cell(0.31) == "0.31"


def test_generated_words_read_as_written_by_a_person():
    assert rt.plural(1, "channel") == "1 channel" and rt.plural(3, "channel") == "3 channels"
    assert rt.seeds_words([0]) == "seed 0" and rt.seeds_words([0, 1, 2]) == "seeds 0, 1 and 2"
    assert rt.and_list(["a"]) == "a" and rt.and_list(["a", "b", "c"]) == "a, b and c"


VERDICTS = [
    {"layer": "z1", "rule": "colour", "words": "colour-opponent", "trained": 3, "channels": 6,
     "p_holm": 0.02, "survives": True, "permuted": 2},
    {"layer": "z2", "rule": "class", "words": "class-skewed", "trained": 6, "channels": 16,
     "p_holm": 0.6, "survives": False, "permuted": 6},
]


def test_the_verdict_sentence_is_written_from_the_verdicts():
    sentence = rd.verdict_sentence(VERDICTS)
    assert sentence.startswith("Only colour-opponent channels in z1 (p = 0.02)")
    assert "class-skewed (z2) appear as often without training" in sentence
    flipped = copy.deepcopy(VERDICTS)
    flipped[0]["survives"] = False  # a verdict flips: the sentence follows
    changed = rd.verdict_sentence(flipped)
    assert changed != sentence and changed.startswith("None of these patterns needs a trained network")
    flipped[1]["survives"] = True
    assert "class-skewed channels in z2" in rd.verdict_sentence(flipped)


def test_the_permuted_labels_sentence_says_when_labels_are_not_needed():
    both = copy.deepcopy(VERDICTS)
    both[0]["permuted"] = 3
    assert "shows as many colour-opponent channels in z1 (3)" in rd.permuted_sentence(both)
    assert "one run" in rd.permuted_sentence(VERDICTS)
