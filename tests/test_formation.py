"""When do channels form? (train_deconv.py --snapshots, formation.py): snapshots that change
nothing about the training, and comparisons with known answers on synthetic responses."""
import json
import math
import os

import numpy as np
import pytest
import torch

import formation
from conftest import run_script
from data import load_cifar10, normalize
from models import DeconvNet
from study.core.common import snapshot_epochs
from train_deconv import snapshot_steps


def test_snapshots_land_on_the_nearest_step_after_the_initialisation():
    # 120 images in batches of 4: 30 steps an epoch; 1/8 epoch is step 3.75 -> 4
    assert snapshot_steps((0.125, 1.0, 2.0), 120, 4) == {0: 0.0, 4: 0.125, 30: 1.0, 60: 2.0}
    assert snapshot_steps((0.001,), 120, 4) == {0: 0.0, 1: 0.001}  # at least one step
    assert snapshot_steps((), 120, 4) == {}
    assert snapshot_epochs("0.5,0.125,0.5") == (0.125, 0.5)
    for bad in ("0", "-1", "x", ",".join(["1"] * 2 + [str(k) for k in range(2, 70)])):
        with pytest.raises(Exception):
            snapshot_epochs(bad)


def test_a_snapshot_equal_to_the_finished_network_has_r_1_against_a_hand_computed_null():
    rng = np.random.default_rng(0)
    final = {1: rng.normal(size=(50, 4))}
    null = [{1: rng.normal(size=(50, 4))} for _ in range(9)]
    found = formation.same_units(final, final, formation.units_null(final, null))["z1"]
    assert found["r"] == [1.0] * 4 and found["mean_r"] == 1.0
    # the rank p of r = 1 among 9 x 4 pooled null values, none of them reaching 1
    assert found["p"] == [pytest.approx(1 / 37)] * 4
    # and a snapshot of independent noise sits inside the null: its mean r is near 0
    noise = formation.same_units({1: rng.normal(size=(50, 4))}, final,
                                 formation.units_null(final, null))["z1"]
    assert abs(noise["mean_r"]) < 0.3


def test_another_seed_with_its_channels_shuffled_is_matched_back_one_to_one():
    rng = np.random.default_rng(1)
    other = rng.normal(size=(60, 5))
    order = [3, 0, 4, 1, 2]
    snapshot = {1: other[:, order] * 2 + 1}  # the same channels, in another order and scale
    null = [{1: rng.normal(size=(60, 5))} for _ in range(19)]
    found = formation.other_seeds(snapshot, [{1: other}],
                                  formation.seeds_null([{1: other}], null))["z1"]
    assert found["mean_r"] == pytest.approx(1.0)
    assert found["p"] == pytest.approx(1 / 20)  # above every null draw's mean


def test_holm_over_snapshots_decides_which_channels_settled():
    rows = [{"same_units": {"z1": {"p": [0.001, 0.2]}}, "other_seeds": {"z1": {"p": 0.01}}},
            {"same_units": {"z1": {"p": [0.03, 0.001]}}, "other_seeds": {"z1": {"p": 0.04}}}]
    formation.corrected(rows)
    # Holm by hand over 0.001, 0.2, 0.03, 0.001: sorted 0.001, 0.001, 0.03, 0.2 ->
    # 4 x 0.001, max(that, 3 x 0.001), max(that, 2 x 0.03), max(that, 0.2)
    assert rows[0]["same_units"]["z1"]["p_holm"] == pytest.approx([0.004, 0.2])
    assert rows[1]["same_units"]["z1"]["p_holm"] == pytest.approx([0.06, 0.004])
    # settled: Holm p < 0.05 (0.03 alone would pass, not after the correction)
    assert [row["same_units"]["z1"]["settled"] for row in rows] == [1, 1]
    assert [row["other_seeds"]["z1"]["p_holm"] for row in rows] == pytest.approx([0.02, 0.04])


@pytest.mark.slow
def test_snapshots_change_nothing_and_formation_reads_them(study_outputs, tiny_cifar, tmp_path):
    """The study's seed 0 Task 2 kept snapshots (make all's sweep); trained again without them it
    ends in the same weights, bit for bit. formation.py (run as make all runs it) then finds the
    last snapshot identical to the finished network, and its match with seed 1 is
    compare_seeds.py's."""
    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"))
    run = study_outputs / "task2"
    again = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1",
                       "--log-every", "10", "--quiet", "--out", tmp_path / "task2", env=env)
    assert again.returncode == 0, again.stderr
    plain = torch.load(tmp_path / "task2" / "deconv_net.pth", weights_only=True)
    ours = torch.load(run / "deconv_net.pth", weights_only=True)
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)
    assert not (tmp_path / "task2" / "snapshots").exists()
    assert not (study_outputs / "runs" / "task2_seed1" / "snapshots").exists()  # seed 0's only
    metrics = json.loads((run / "metrics.json").read_text())
    steps = math.ceil(metrics["data"]["train_images"] / 4)
    assert [s["step"] for s in metrics["snapshots"]] == [0, round(steps / 2), steps]
    last = torch.load(run / "snapshots" / f"step_{steps:07d}.pth", weights_only=True)
    assert all(torch.equal(last[k], ours[k]) for k in ours)
    first = torch.load(run / "snapshots" / "step_0000000.pth", weights_only=True)
    torch.manual_seed(0)  # the initialisation train_deconv.py starts from (seed 0)
    assert all(torch.equal(first[k], v) for k, v in DeconvNet().state_dict().items())

    out = study_outputs / "formation"
    found = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in found["snapshots"]] == [0.0, 0.5, 1.0]
    end = found["snapshots"][-1]
    seeds = json.loads((study_outputs / "seeds" / "metrics.json").read_text())
    net = DeconvNet()
    net.load_state_dict(ours)
    test_images = load_cifar10(tiny_cifar, cache_dir=tmp_path / "cache", quiet=True).test_images
    with torch.no_grad():  # the tiny test split is smaller than the 2,000 rule images: all of it
        latents = net.eval().encode(normalize(test_images))
    for k, layer in ((1, "z1"), (2, "z2")):
        # r = 1 for every channel, 0 for one that never fires (its responses are constant)
        dead = (latents.at(k).amax(dim=(0, 2, 3)) <= 0).tolist()
        assert end["same_units"][layer]["r"] == [0.0 if d else 1.0 for d in dead]
        assert end["other_seeds"][layer]["mean_r"] == pytest.approx(
            seeds["layers"][layer]["pairs"]["0-1"]["mean_r"], abs=1e-4)
    # a second formation.py with nothing changed compares nothing again
    second = run_script("formation.py", "--outputs", study_outputs, "--seeds", "0,1",
                        "--null-draws", "19", "--data-dir", tiny_cifar, "--quiet",
                        "--out", out, env=env)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stderr
    assert (out / "formation.png").is_file() and (out / "formation_units.png").is_file()
