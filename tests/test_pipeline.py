"""End-to-end runs of the four scripts on tiny synthetic data, as subprocesses."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, run_script, write_image_folders

TASK1_FILES = ["train_samples.png", "loss_curve.png", "cifar_net.pth", "test_predictions.png",
               "per_class_accuracy.png", "confusion_matrix.png", "metrics.json",
               "training_state.pth"]
TASK2_FILES = ["deconv_net.pth", "reconstructions.png", "loss_curves.png", "lambda_sweep.png",
               "per_class_accuracy.png", "metrics.json"]
TASK3_FILES = ["train_z1.png", "train_z2.png", "test_z1.png", "test_z2.png", "conv1_filters.png",
               "top9_z1.png", "top9_z2.png", "metrics.json"]


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
    assert metrics["config"]["batch_size"] == 4 and metrics["config"]["lr"] == 0.001
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


def test_task2_writes_every_output(trained_outputs):
    out = trained_outputs / "task2"
    for name in TASK2_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    task1 = json.loads((trained_outputs / "task1" / "metrics.json").read_text())
    assert metrics["task1_test_accuracy"] == task1["test_accuracy"]
    assert metrics["test_psnr_db"] == pytest.approx(10 * __import__("math").log10(1 / metrics["test_mse"]), abs=0.01)
    assert [row["lambda"] for row in metrics["lambda_sweep"]] == [0.0, 0.01]
    assert {"ce", "rec"} <= set(metrics["loss_log"][0])
    checkpoint = torch.load(out / "deconv_net.pth", weights_only=True)
    assert checkpoint["model"] == "DeconvNet" and checkpoint["config"]["lambda"] == 0.01


def test_task2_init_from_task1_checkpoint(trained_outputs, tiny_cifar, tmp_path, script_env):
    result = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1", "--quiet",
                        "--init-from", trained_outputs / "task1" / "cifar_net.pth",
                        "--out", tmp_path / "o", env=script_env)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "o" / "metrics.json").read_text())["config"]
    assert config["init_from"].endswith("cifar_net.pth")


def test_task3_writes_every_figure_and_metrics(trained_outputs, tiny_cifar, tmp_path, script_env):
    out = tmp_path / "task3"
    result = run_script("visualize_latents.py", "--data-dir", tiny_cifar, "--quiet",
                        "--checkpoint", trained_outputs / "task2" / "deconv_net.pth",
                        "--train-index", "5", "--test-index", "7", "--out", out, env=script_env)
    assert result.returncode == 0, result.stderr
    for name in TASK3_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["images"]["train"]
    assert train["index"] == 5
    assert [r["channel"] for r in train["z1"]["channels"]] == list(range(6))
    assert len(train["z2"]["channels"]) == 3
    shares = [r["energy_share"] for r in train["z2"]["channels"]]
    assert shares == sorted(shares, reverse=True)  # the top-3 by activation energy
    assert train["z1"]["linearity"]["max_abs_gap"] < 1e-4
    assert len(metrics["top9"]["z2"]) == 16 and len(metrics["top9"]["z1"][0]["test_indices"]) == 9
    for key in ("activation_energy", "reconstruction_energy", "mean_rgb", "colour_share",
                "edge_orientation_deg", "orientation_coherence"):
        assert key in train["z1"]["channels"][0]


def test_task3_chosen_and_all_channels(trained_outputs, tiny_cifar, tmp_path, script_env):
    checkpoint = trained_outputs / "task2" / "deconv_net.pth"
    for choice, expected in (("0,5,11", [0, 5, 11]), ("all", list(range(16)))):
        out = tmp_path / choice.replace(",", "_")
        result = run_script("visualize_latents.py", "--data-dir", tiny_cifar, "--quiet",
                            "--checkpoint", checkpoint, "--z2-channels", choice, "--out", out,
                            env=script_env)
        assert result.returncode == 0, result.stderr
        metrics = json.loads((out / "metrics.json").read_text())
        assert [r["channel"] for r in metrics["images"]["test"]["z2"]["channels"]] == expected


def test_report_from_a_real_tiny_run(trained_outputs, tiny_cifar, tmp_path, script_env):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for task in ("task1", "task2"):
        (outputs / task).symlink_to(trained_outputs / task)
    result = run_script("visualize_latents.py", "--data-dir", tiny_cifar, "--quiet",
                        "--checkpoint", trained_outputs / "task2" / "deconv_net.pth",
                        "--out", outputs / "task3", env=script_env)
    assert result.returncode == 0, result.stderr
    result = run_script("make_report.py", "--outputs", outputs, env=script_env)
    assert result.returncode == 0, result.stderr
    report = (outputs / "report.md").read_text()
    for heading in ("Task 1", "Task 2", "Task 3"):
        assert f"## {heading}" in report
    assert (outputs / "report.pdf").read_bytes().startswith(b"%PDF")


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
    data = write_image_folders(tmp_path / "data", 300, 4)  # 750 steps per epoch: time to kill
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
