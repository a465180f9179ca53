"""End-to-end runs of the scripts on tiny synthetic data, as subprocesses."""
import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, TutorialsOwnNet, run_script, write_image_folders
from models import DeconvNet

TASK1_FILES = ["train_samples.png", "loss_curve.svg", "cifar_net.pth", "test_predictions.png",
               "per_class_accuracy.svg", "confusion_matrix.svg", "metrics.json",
               "training_state.pth"]
TASK2_FILES = ["deconv_net.pth", "reconstructions.png", "loss_curves.svg",
               "per_class_accuracy.svg", "metrics.json"]
TASK3_FILES = ["train_z1.png", "train_z2.png", "test_z1.png", "test_z2.png", "conv1_filters.png",
               "top9_z1.png", "top9_z2.png", "class_selectivity.svg", "metrics.json"]


def test_task1_writes_every_output(trained_outputs):
    out = trained_outputs / "task1"
    for name in TASK1_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 100 and metrics["test_images"] == 40
    assert set(metrics["per_class_accuracy"]) == {"plane", "car", "bird", "cat", "deer", "dog",
                                                  "frog", "horse", "ship", "truck"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 40
    assert [r["step"] for r in metrics["loss_log"]] == [10, 20, 30] * 2
    assert [r["epoch"] for r in metrics["epoch_loss"]] == [1, 2]
    assert metrics["config"]["batch_size"] == 4 and metrics["config"]["lr"] == 0.001
    assert len(metrics["test_predictions"]) == 40
    assert metrics["environment"]["torch"] == torch.__version__
    assert len(metrics["data"]["content_sha256"]) == 64
    assert not list(out.glob("*.tmp"))


def test_task1_prints_the_tutorial_lines(tiny_cifar, tmp_path, script_env):
    result = run_script("train_classifier.py", "--data-dir", tiny_cifar, "--epochs", "1",
                        "--log-every", "10", "--out", tmp_path / "o", "--quiet", env=script_env)
    assert result.returncode == 0, result.stderr
    assert "[1,    10] loss: " in result.stdout
    assert "Finished Training" in result.stdout
    assert "GroundTruth: " in result.stdout and "Predicted: " in result.stdout
    assert "Accuracy of the network on the 40 test images:" in result.stdout
    assert result.stdout.count("Accuracy for class:") == 10


def test_the_tutorial_reloads_cifar_net_pth_with_its_own_two_lines(trained_outputs):
    PATH = trained_outputs / "task1" / "cifar_net.pth"
    net = TutorialsOwnNet()
    net.load_state_dict(torch.load(PATH, weights_only=True))
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_task2_writes_every_output(trained_outputs):
    out = trained_outputs / "task2"
    for name in TASK2_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    task1 = json.loads((trained_outputs / "task1" / "metrics.json").read_text())
    comparison = metrics["task1_comparison"]
    assert comparison["task1_test_accuracy"] == task1["test_accuracy"]
    assert comparison["accuracy_change"] == round(metrics["test_accuracy"] - task1["test_accuracy"], 2)
    assert 0 <= comparison["mcnemar"]["p_value"] <= 1
    assert metrics["test_psnr_db"] == pytest.approx(10 * math.log10(1 / metrics["test_mse"]), abs=0.01)
    assert set(metrics["psnr_baselines_db"]) == {"global mean colour", "image mean colour",
                                                 "4x4 thumbnail", "8x8 thumbnail"}
    assert {"ce", "rec"} <= set(metrics["loss_log"][0])
    state = torch.load(out / "deconv_net.pth", weights_only=True)  # a plain state dict
    assert set(DeconvNet().state_dict()) == set(state)
    assert metrics["config"]["lambda"] == 0.01


def test_task2_compares_only_with_a_task1_run_of_the_same_protocol(trained_outputs, tiny_cifar,
                                                                  tmp_path, script_env):
    result = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1", "--quiet",
                        "--task1-metrics", trained_outputs / "task1" / "metrics.json",
                        "--out", tmp_path / "o", env=script_env)
    assert result.returncode == 0, result.stderr
    assert "no comparison with Task 1" in result.stdout and "epochs" in result.stdout
    comparison = json.loads((tmp_path / "o" / "metrics.json").read_text())["task1_comparison"]
    assert set(comparison) == {"message"}


def test_task2_init_from_task1_checkpoint(trained_outputs, tiny_cifar, tmp_path, script_env):
    result = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1", "--quiet",
                        "--init-from", trained_outputs / "task1" / "cifar_net.pth",
                        "--out", tmp_path / "o", env=script_env)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "o" / "metrics.json").read_text())["config"]
    assert config["init_from"].endswith("cifar_net.pth")
    with torch.no_grad():  # the encoder started from Task 1's weights: it moved away from them
        task1 = torch.load(trained_outputs / "task1" / "cifar_net.pth", weights_only=True)
        task2 = torch.load(tmp_path / "o" / "deconv_net.pth", weights_only=True)
        assert (task2["conv1.weight"] - task1["conv1.weight"]).abs().max() < 0.5


def test_task3_writes_every_figure_and_metrics(trained_outputs, tiny_cifar, tmp_path, script_env):
    out = tmp_path / "task3"
    result = run_script("visualize_latents.py", "--data-dir", tiny_cifar, "--quiet", "--null-draws", "19",
                        "--occlusion-images", "8",
                        "--checkpoint", trained_outputs / "task2" / "deconv_net.pth",
                        "--train-index", "5", "--out", out, env=script_env)
    assert result.returncode == 0, result.stderr
    for name in TASK3_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    train, test = metrics["images"]["train"], metrics["images"]["test"]
    assert train["index"] == 5 and train["chosen_as"] == "--train-index 5"
    assert test["class"] == "cat" and "first test image of class cat" in test["chosen_as"]
    assert [r["channel"] for r in train["z1"]["channels"]] == list(range(6))
    assert len(train["z2"]["channels"]) == 6  # top6 by default
    assert train["z1"]["sum_of_contributions_minus_full_max_abs"] < 1e-4
    assert len(metrics["channels"]["z1"]) == 6 and len(metrics["channels"]["z2"]) == 16
    assert all(row["finding"].startswith(f"z2 channel {row['channel']} is ")
               for row in metrics["channels"]["z2"])
    assert set(metrics["decoders"]) == {"z1_literal", "z1_refit", "z1_tied", "z2_learned",
                                        "z2_tied"}
    assert metrics["decoders"]["z2_learned"]["psnr_db"] == pytest.approx(
        json.loads((trained_outputs / "task2" / "metrics.json").read_text())["test_psnr_db"], abs=0.02)
    assert len(metrics["top9"]["z2"]) == 16 and len(metrics["top9"]["z1"][0]["test_indices"]) == 9
    assert metrics["layer1_refit"]["fitted_now"] is True
    again = run_script("visualize_latents.py", "--data-dir", tiny_cifar, "--quiet", "--null-draws", "19",
                       "--occlusion-images", "8", "--baseline-seeds", "1",
                       "--checkpoint", trained_outputs / "task2" / "deconv_net.pth",
                       "--out", tmp_path / "again", env=script_env)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["layer1_refit"]["fitted_now"] is False


def test_task3_all_z2_channels_in_row_blocks(trained_outputs, tiny_cifar, tmp_path, script_env):
    out = tmp_path / "all"
    result = run_script("visualize_latents.py", "--data-dir", tiny_cifar, "--quiet", "--null-draws", "19",
                        "--occlusion-images", "8", "--baseline-seeds", "1",
                        "--checkpoint", trained_outputs / "task2" / "deconv_net.pth",
                        "--z2-channels", "all", "--out", out, env=script_env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["channel"] for r in metrics["images"]["test"]["z2"]["channels"]] == list(range(16))


def _metrics_without_timing(path):
    metrics = json.loads(path.read_text())
    for key in ("wall_seconds", "train_seconds", "environment"):
        metrics.pop(key, None)
    return metrics


def test_same_seed_gives_identical_metrics(tiny_cifar, tmp_path, script_env):
    runs = []
    for name in ("a", "b"):
        result = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1",
                            "--quiet", "--log-every", "10", "--out", tmp_path / name, env=script_env)
        assert result.returncode == 0, result.stderr
        runs.append(_metrics_without_timing(tmp_path / name / "metrics.json"))
    assert runs[0] == runs[1]


def test_killed_run_resumes_to_the_same_result(tmp_path, script_env):
    data = write_image_folders(tmp_path / "data", 200, 4)  # 500 steps per epoch: time to kill
    common = ["--data-dir", data, "--epochs", "2", "--quiet", "--log-every", "100"]
    whole = run_script("train_classifier.py", *common, "--out", tmp_path / "whole", env=script_env)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(REPO / "train_classifier.py"), *map(str, common),
                                "--out", str(out)], env=script_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "training_state.pth"
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert torch.load(state, weights_only=True)["epoch"] == 1, "the run ended before the kill"
    assert not (out / "metrics.json").exists()

    resumed = run_script("train_classifier.py", *common, "--out", out, "--resume", env=script_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after epoch 1" in resumed.stdout
    assert _metrics_without_timing(out / "metrics.json") == \
        _metrics_without_timing(tmp_path / "whole" / "metrics.json")
