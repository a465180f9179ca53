"""On the real CIFAR-10 copy beside the repo, when there is one."""
import json

import pytest

from conftest import SHARED_CIFAR10, run_script

pytestmark = pytest.mark.skipif(not (SHARED_CIFAR10 / "train").is_dir(),
                                reason="../shared/cifar10 is not here")


def test_tutorial_protocol_on_a_tenth_learns_well_above_chance(tmp_path, script_env):
    # Uses the repo's usual cache location so repeated runs decode the 60,000 images once.
    script_env.pop("CIFAR10_CACHE")
    result = run_script("train_classifier.py", "--data-dir", SHARED_CIFAR10, "--subset", "0.1",
                        "--quiet", "--out", tmp_path / "task1", env=script_env, timeout=600)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "task1" / "metrics.json").read_text())
    assert metrics["test_images"] == 1000 and metrics["data"]["train_images"] == 5000
    assert metrics["test_accuracy"] > 25  # chance is 10 %; a tenth of the data reaches ~32 %
