"""The null distributions of Task 3's rules: rank p-values, Holm, and the vectorised rows."""
import pytest
import torch

from models import ARCHITECTURE, DeconvNet
from study.analysis import baselines, evidence, nulls
from study.analysis.findings import ROLE_KINDS


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06 (monotone)
    assert nulls.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert nulls.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert nulls.holm([]) == []


def test_rank_p_value_of_a_uniform_null_is_known_by_hand():
    null = list(range(99))  # 99 draws, 0..98
    assert nulls.rank_p_value(95, null) == pytest.approx(5 / 100)  # 95, 96, 97, 98 and itself
    assert nulls.rank_p_value(1000, null) == pytest.approx(1 / 100)  # above every draw
    assert nulls.rank_p_value(-1, null) == 1.0
    assert nulls.rank_p_value(3, [3, 3, 3]) == 1.0  # ties count against the claim


def test_enough_draws_for_a_value_above_all_to_pass_holm():
    tests = len(ROLE_KINDS) * len(ARCHITECTURE.layers)
    assert nulls.smallest_draws(14) == 279
    assert nulls.NULL_DRAWS >= nulls.smallest_draws(tests)
    assert nulls.holm([1 / (nulls.NULL_DRAWS + 1)] + [1.0] * (tests - 1))[0] < nulls.ALPHA


def _row(channel: int, rules: list[str]) -> dict:
    """A channel row with every rule value at 0 except those of `rules`, which hold."""
    row = {"channel": channel, "r_luminance": 0.0, "r_red_green": 0.0, "r_blue_yellow": 0.0,
           "r_gradient_energy": 0.0, "class_selectivity": 0.0, "top_k_class_share": 10.0,
           "d_saturation": 0.0, "d_luminance": 0.0, "d_centre_surround": 0.0,
           "d_texture_energy": 0.0, "d_orientation": 0.0, "rules": rules, "undefined": []}
    return row


@pytest.mark.parametrize("rule", list(ROLE_KINDS))
def test_each_rules_count_and_p_value_against_a_known_null(rule):
    """7 of 10 channels meet the rule; the null's counts are 0..9, ten draws each (100 draws):
    30 draws reach 7 or more, so p = (1 + 30) / (1 + 100)."""
    rows = [_row(c, [rule] if c < 7 else []) for c in range(10)]
    summary = nulls.layer_summary(rows)
    assert summary[rule]["count"] == 7
    assert all(summary[other]["count"] == 0 for other in ROLE_KINDS if other != rule)
    null = [k for k in range(10) for _ in range(10)]
    tested = nulls._test(summary[rule]["count"], {"a": null, "b": [0] * 100})
    assert tested["p"]["a"] == pytest.approx(31 / 101, abs=1e-5)
    assert tested["p"]["b"] == pytest.approx(1 / 101, abs=1e-5)
    assert tested["p_value"] == pytest.approx(31 / 101, abs=1e-5)  # the largest: above every null


def test_fast_rows_give_task3s_statistics_and_rules():
    torch.manual_seed(0)
    net = DeconvNet().eval()
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (400, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(10).repeat(40)
    z = baselines._latents(net, images)
    named = baselines.name_channels(z, images, labels, seed=0)
    signals = {s.index: evidence.local_signals(images, s.index) for s in ARCHITECTURE.layers}
    ref = nulls.Reference(images, labels, signals, ARCHITECTURE.layers, 0, 100)
    for stage in ARCHITECTURE.layers:
        fast = nulls.fast_rows(z[stage.index], stage.index, ref)
        for slow, quick in zip(named[stage.index], fast):
            assert quick["rules"] == slow["rules"]
            for key, value in quick.items():
                if key in slow and isinstance(value, float):
                    assert value == pytest.approx(slow[key], abs=1.01e-3), key
                elif key in slow:
                    assert value == slow[key], key


@pytest.mark.parametrize("arch_name", ["tutorial", "deep4"])
def test_each_patch_is_measured_once_and_gives_what_measuring_it_alone_gives(arch_name):
    """Reference.top_patch_measures caches by (image, unit): asked twice, with repeats and with
    keys met before, it must give patch_measures of evidence's own crop of each field (zeros
    past the border of a padded network), and measure no patch twice."""
    from models import ARCHITECTURES
    arch = ARCHITECTURES[arch_name]
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (30, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(10).repeat(3)
    signals = {s.index: evidence.local_signals(images, s.index, arch) for s in arch.layers}
    ref = nulls.Reference(images, labels, signals, arch.layers, 0, 5, arch)
    for stage in arch.layers:
        measured, distinct = [], set()
        real = evidence.patch_measures
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(nulls, "patch_measures",
                          lambda p: measured.append(len(p)) or real(p))
            for draw in range(2):
                which = torch.randint(0, 30, (40,), generator=g)
                where = torch.randint(0, stage.size * stage.size, (40,), generator=g)
                which, where = torch.cat([which, which[:5]]), torch.cat([where, where[:5]])
                distinct |= set(zip(which.tolist(), where.tolist()))
                got = ref.top_patch_measures(stage.index, which, where)
                expected = real(evidence.patches_at(images, which, where, stage.index,
                                                    stage.size, arch))
                for name, value in expected.items():
                    assert torch.allclose(got[name], value, atol=1e-6), (stage.name, name)
        assert sum(measured) == len(distinct)  # each (image, unit) measured once, repeats never


@pytest.mark.parametrize("arch_name", ["tutorial", "small3"])
def test_a_cascade_draw_started_above_the_trained_stages_gives_the_whole_encoders_maps(arch_name):
    """The nulls compute a cascade draw from its first re-initialised stage up, on the trained
    map below it: every map must equal what the draw's whole encoder (encode, with switches)
    gives, and the stages below must not be computed at all."""
    from models import ARCHITECTURES
    from study.analysis.random_models import cascades, changed_layers, reinitialised
    arch = ARCHITECTURES[arch_name]
    torch.manual_seed(0)
    net = DeconvNet(arch).eval()
    x = torch.randn(12, 3, 32, 32)
    trained = net.encode(x)
    for cascade in cascades(arch):
        first = min(changed_layers(cascade, arch))
        model = reinitialised(net, cascade, 11, 0)
        whole = model.encode(x)
        below = trained.at(first - 1) if first > 1 else None
        got = nulls._null_latents(model, x, below, first)
        assert sorted(got) == list(range(first, arch.depth + 1)), cascade
        for layer, z in got.items():
            assert torch.equal(z, whole.at(layer)), (cascade, layer)


def test_the_two_questions_read_their_own_nulls_and_are_corrected_apart():
    """'learned' takes the largest p over the random-network groups, 'single_channel' the
    rotations' p; Holm runs over the family for each question on its own (by hand)."""
    family = [{"p": {"conv2": 0.001, "conv1_conv2": 0.004, "rotation": 0.5}},
              {"p": {"conv2": 0.02, "conv1_conv2": 0.01, "rotation": 0.001}},
              {"p": {"conv1_conv2": 0.3, "rotation": 0.002}}]
    nulls.answer_questions(family)
    learned = [t["questions"]["learned"] for t in family]
    single = [t["questions"]["single_channel"] for t in family]
    assert [q["p_value"] for q in learned] == [0.004, 0.02, 0.3]
    # Holm by hand: 0.004 x 3 = 0.012; 0.02 x 2 = 0.04; 0.3 x 1 = 0.3
    assert [q["p_holm"] for q in learned] == pytest.approx([0.012, 0.04, 0.3])
    assert [q["survives"] for q in learned] == [True, True, False]
    assert [q["p_value"] for q in single] == [0.5, 0.001, 0.002]
    # 0.001 x 3 = 0.003; 0.002 x 2 = 0.004; 0.5 x 1 = 0.5
    assert [q["p_holm"] for q in single] == pytest.approx([0.5, 0.003, 0.004])
    assert [q["survives"] for q in single] == [False, True, True]


def test_the_detectable_count_is_the_smallest_that_would_pass():
    """999 draws of 0..9 (each value about 100 times): alpha 0.05/14 lets 2 draws reach the
    value (p = 3/1000 <= 0.00357), so the count must be above the third largest draw."""
    draws = [k % 10 for k in range(999)]
    assert nulls.detectable(draws, 0.05 / 14) == 10
    assert nulls.rank_p_value(10, draws) <= 0.05 / 14 < nulls.rank_p_value(9, draws)
    outlier = sorted(draws)[:-3] + [40, 30, 20]
    assert nulls.detectable(outlier, 0.05 / 14) == 21  # above all but the two largest
    assert nulls.rank_p_value(21, outlier) <= 0.05 / 14 < nulls.rank_p_value(20, outlier)
    assert nulls.detectable([1, 2, 3], 0.05 / 14) is None  # 3 draws: p never below 1/4


def test_bonferroni_over_every_pair_by_hand():
    """22 channels x 6 descriptions = 132 possible claims: 0.00044 x 132 = 0.05808 (not below
    0.05), 0.0003 x 132 = 0.0396; never above 1."""
    assert nulls.bonferroni(0.00044, 132) == pytest.approx(0.05808)
    assert nulls.bonferroni(0.0003, 132) == pytest.approx(0.0396)
    assert nulls.bonferroni(0.2, 132) == 1.0
