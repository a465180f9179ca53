"""Depth is a setting: a three-stage network (--arch small3) goes through Task 2, Task 3, the
report and the explorer page on tiny data, with every layer analysed and shown."""
import json
import re
from pathlib import Path

import pytest

from conftest import run_script
from models import ARCHITECTURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_stage_study(tmp_path_factory, tiny_cifar) -> Path:
    root = tmp_path_factory.mktemp("small3")
    env = {"CIFAR10_CACHE": str(root / "cache")}
    import os
    env = dict(os.environ, **env)
    common = ["--data-dir", tiny_cifar, "--epochs", "1", "--log-every", "10", "--quiet",
              "--arch", "small3"]
    outputs = root / "outputs"
    for script, folder in (("train_classifier.py", "task1"), ("train_deconv.py", "task2")):
        extra = ["--task1-metrics", outputs / "task1" / "metrics.json"] if folder == "task2" else []
        result = run_script(script, *common, *extra, "--out", outputs / folder, env=env)
        assert result.returncode == 0, result.stderr
    task3 = run_script("visualize_latents.py", "--checkpoint", outputs / "task2" / "deconv_net.pth",
                       "--data-dir", tiny_cifar, "--quiet", "--out", outputs / "task3", env=env,
                       timeout=900)
    assert task3.returncode == 0, task3.stderr[-3000:]
    report = run_script("make_report.py", "--outputs", outputs, env=env, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    page = run_script("build_explorer.py", outputs / "task2" / "deconv_net.pth",
                      "--task3", outputs / "task3" / "metrics.json",
                      "--out", outputs / "task3" / "explorer.html", "--quiet", env=env)
    assert page.returncode == 0, page.stderr[-3000:]
    return outputs


def test_every_run_records_the_three_stage_architecture(three_stage_study):
    expected = ARCHITECTURES["small3"].describe()
    for task in ("task1", "task2", "task3"):
        metrics = json.loads((three_stage_study / task / "metrics.json").read_text())
        assert metrics["architecture"] == expected, task
    assert len(expected["layers"]) == 3


def test_task3_analyses_every_channel_of_every_layer(three_stage_study):
    metrics = json.loads((three_stage_study / "task3" / "metrics.json").read_text())
    widths = {f"z{k}": c for k, c in enumerate(ARCHITECTURES["small3"].channels, start=1)}
    assert {name: len(rows) for name, rows in metrics["channels"].items()} == widths
    assert {name: len(rows) for name, rows in metrics["top9"].items()} == widths
    # a decoder per layer, and each layer's pictures of the two images
    assert {d["layer"] for d in metrics["decoders"].values()} == {1, 2, 3}
    for split in ("train", "test"):
        assert {"z1", "z2", "z3"} <= set(metrics["images"][split])
        assert (three_stage_study / "task3" / f"{split}_z3.png").is_file()


def test_the_report_and_the_page_show_the_third_layer(three_stage_study):
    assert (three_stage_study / "report.pdf").is_file()
    markdown = (three_stage_study / "report.md").read_text()
    assert "z3" in markdown
    page = (three_stage_study / "task3" / "explorer.html").read_text()
    data = re.search(r'id="explorer-data"[^>]*>(.*?)</script>', page, re.S)
    assert data is not None
    embedded = json.loads(data.group(1))
    assert [layer["channels"] for layer in embedded["architecture"]["layers"]] == [8, 16, 32]
    assert set(embedded["cards"]) == {"z1", "z2", "z3"}
