"""The report's number words: the median, p-values, plurals and lists."""
import copy

import pytest

from study.core import text
from study.reporting import numbers as rt


def test_the_median_of_an_even_count_is_the_mean_of_the_two_middle_values():
    # the old `sorted(values)[n // 2]` gave the upper middle value, 0.64 here
    assert rt.median([0.2, 0.64, 0.515, 0.9]) == pytest.approx((0.515 + 0.64) / 2)
    assert rt.median([3.0, 1.0, 2.0]) == 2.0


def test_p_values_never_print_as_zero():
    assert rt.p_cell(4e-8) == "< 0.001" and rt.p_cell(0.0015) == "0.002"
    assert rt.p_value(0.0015) == "p = 0.002" and rt.p_cell(0.31) == "0.31"


def test_generated_words_read_as_written_by_a_person():
    assert text.plural(1, "channel") == "1 channel" and text.plural(3, "channel") == "3 channels"
    assert text.seeds_words([0]) == "seed 0" and text.seeds_words([0, 1, 2]) == "seeds 0, 1 and 2"
    assert text.and_list(["a"]) == "a" and text.and_list(["a", "b", "c"]) == "a, b and c"
