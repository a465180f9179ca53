"""Do seeds learn the same channels? The matching and its null, against answers computed by hand
(a planted permutation, a brute-force search over every one-to-one matching, numpy's corrcoef)."""
from itertools import permutations

import numpy as np
import pytest
import torch

from models import DeconvNet
from study.analysis.convergence import (channel_responses, correlation_matrix, match_channels,
                                        rank_p, seeds_agree)


def test_correlations_are_numpys_and_a_dead_channel_correlates_zero():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    b[:, 2] = 1.5  # a channel that never changes
    r = correlation_matrix(a, b)
    expected = np.corrcoef(a.T, b[:, :2].T)[:4, 4:]
    assert np.allclose(r[:, :2], expected) and np.all(r[:, 2] == 0)


def test_a_planted_permutation_is_found_with_correlation_one():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 6))
    order = np.array([3, 0, 5, 1, 4, 2])
    b = np.empty_like(a)
    b[:, order] = 2 * a + 1  # channel c of a is channel order[c] of b, rescaled
    partner, r = match_channels(a, b)
    assert partner.tolist() == order.tolist() and np.allclose(r, 1)


def test_the_matching_maximises_the_summed_correlation_as_brute_force_does():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    r = np.corrcoef(a.T, b.T)[:5, 5:]
    best = max(permutations(range(5)), key=lambda p: sum(r[c, p[c]] for c in range(5)))
    partner, matched = match_channels(a, b)
    assert partner.tolist() == list(best)
    assert np.allclose(matched, [r[c, best[c]] for c in range(5)])


def test_rank_p_counts_the_null_at_or_above():
    null = np.array([0.1, 0.2, 0.3, 0.5])
    assert rank_p(0.3, null) == (1 + 2) / 5 and rank_p(0.9, null) == 1 / 5 and rank_p(0.0, null) == 1


def test_responses_are_each_channels_largest_pooled_value():
    torch.manual_seed(0)
    net = DeconvNet().eval()
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    found = channel_responses(net, images, batch_size=3)
    from data import normalize
    with torch.no_grad():
        z = net.encode(normalize(images))
    for stage in net.arch.layers:  # one image, one channel at a time
        expected = [[float(z.at(stage.index)[n, c].max()) for c in range(stage.channels)] for n in range(7)]
        assert np.allclose(found[stage.index], expected, atol=1e-6)


def test_identical_seeds_agree_everywhere_and_unrelated_ones_nowhere():
    rng = np.random.default_rng(3)
    base = {1: rng.normal(size=(300, 6))}
    shuffled = {1: base[1][:, [2, 0, 1, 5, 4, 3]] + 0.01 * rng.normal(size=(300, 6))}
    nulls = [({1: rng.normal(size=(300, 6))}, {1: rng.normal(size=(300, 6))}) for _ in range(80)]
    same = seeds_agree([base, shuffled, base], nulls, [0, 1, 2])["z1"]
    assert same["counterpart_in_every_seed"] == list(range(6))
    # the layer as a whole: above every null pair's mean, Holm over the 3 pairs (3 / 81 < 0.05)
    assert all(v["p_mean"] == pytest.approx(1 / 81) for v in same["pairs"].values())
    assert all(v["p_mean_holm"] == pytest.approx(3 / 81, abs=1e-5) for v in same["pairs"].values())
    # Holm over 3 pairs x 6 channels: 18 x 1/481 < 0.05 (40 draws, 1/241, would not pass)
    assert same["null"]["values"] == 480 and same["null"]["smallest_p"] == pytest.approx(1 / 481, abs=1e-6)
    unrelated = seeds_agree([base, {1: rng.normal(size=(300, 6))}], nulls, [0, 1])["z1"]
    assert unrelated["counterpart_in_every_seed"] == []


@pytest.mark.slow
def test_compare_seeds_matches_the_studys_seeds_as_brute_force_does(study_outputs, tiny_cifar,
                                                                     tmp_path):
    """compare_seeds.py on the tiny study's two Task 2 seeds: z1's matching is the best of all
    720 one-to-one matchings of the six channels' responses, computed here with numpy from the
    checkpoints; the figure and metrics are written."""
    import json
    import os

    from conftest import run_script
    from data import load_cifar10, normalize
    from study.analysis.nulls import rule_images
    from study.training.checkpoints import load_model

    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "seeds"
    result = run_script("compare_seeds.py", "--outputs", study_outputs, "--seeds", "0,1",
                        "--null-draws", "19", "--data-dir", tiny_cifar, "--quiet", "--out", out,
                        env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "seeds_agree.png").is_file() and metrics["layers"]["z1"]["null"]["draws"] == 19
    data = load_cifar10(tiny_cifar, cache_dir=tmp_path / "cache", quiet=True)
    images = data.test_images[rule_images(len(data.test_labels), seed=0)]
    responses = []
    for path in (study_outputs / "task2" / "deconv_net.pth",
                 study_outputs / "runs" / "task2_seed1" / "deconv_net.pth"):
        net = load_model(path, "DeconvNet", "checkpoint").eval()
        with torch.no_grad():
            z1 = net.encode(normalize(images)).at(1)
        responses.append(z1.flatten(2).max(dim=2).values.double().numpy())
    r = np.nan_to_num(np.corrcoef(responses[0].T, responses[1].T)[:6, 6:])
    best = max(permutations(range(6)), key=lambda p: sum(r[c, p[c]] for c in range(6)))
    found = metrics["layers"]["z1"]["pairs"]["0-1"]
    assert found["partner"] == list(best)
    assert np.allclose(found["r"], [r[c, best[c]] for c in range(6)], atol=1e-4)
    # the same comparison again is reused, not made again (make all's second run)
    again = run_script("compare_seeds.py", "--outputs", study_outputs, "--seeds", "0,1",
                       "--null-draws", "19", "--data-dir", tiny_cifar, "--quiet", "--out", out,
                       env=env)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert json.loads((out / "metrics.json").read_text()) == metrics
