"""Shared fixtures: tiny synthetic CIFAR-10 copies and helpers to run the scripts."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

from data import CLASSES

SHARED_CIFAR10 = REPO.parent / "shared" / "cifar10"


def write_image_folders(root: Path, train_per_class: int, test_per_class: int,
                        seed: int = 0, fmt: str = "png") -> Path:
    """A CIFAR-10-shaped image-folder dataset whose classes differ in colour and stripes."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(label * 25) % 256, (label * 70) % 256, 255 - label * 20])
            for i in range(count):
                image = rng.normal(base, 40, size=(32, 32, 3))
                image[:, :: (label % 4) + 2] += 60  # class-dependent stripes
                pixels = np.clip(image, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.{fmt}")
    return root


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> Path:
    """10 classes x (12 train, 4 test) PNG images."""
    return write_image_folders(tmp_path_factory.mktemp("tiny_cifar"), 12, 4)


@pytest.fixture
def script_env(tmp_path) -> dict:
    env = dict(os.environ)
    env["CIFAR10_CACHE"] = str(tmp_path / "cache")
    env.pop("CIFAR10_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_script(script: str, *args: str, env: dict | None = None, cwd: Path | None = None,
               timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def trained_outputs(tmp_path_factory, tiny_cifar) -> Path:
    """Task 1 and Task 2 run once on the tiny data; outputs under <root>/task1, <root>/task2."""
    root = tmp_path_factory.mktemp("outputs")
    env = dict(os.environ, CIFAR10_CACHE=str(root / "cache"))
    common = ["--data-dir", tiny_cifar, "--epochs", "2", "--log-every", "10", "--quiet"]
    task1 = run_script("train_classifier.py", *common, "--out", root / "task1", env=env)
    assert task1.returncode == 0, task1.stderr
    task2 = run_script("train_deconv.py", *common, "--out", root / "task2",
                       "--task1-metrics", root / "task1" / "metrics.json", env=env)
    assert task2.returncode == 0, task2.stderr
    return root


@pytest.fixture(scope="session")
def study_outputs(tmp_path_factory, tiny_cifar) -> Path:
    """The whole study on the tiny data: sweep.py --task3 (2 seeds, 2 lambdas, 1 epoch, seed 0's
    Task 2 with snapshots), then the seeds' comparison, the snapshots' (formation), the
    invariance curves, the companion report and the explorer page, as make all makes them.

    STUDY_OUTPUTS=<outputs of make all> reads an existing study instead, e.g. to run the page's
    tests against the full-data page (the tests that compare with the tiny data itself do not
    apply then: -k "not gallery and not embedded and not task3 and not extra_models")."""
    if os.environ.get("STUDY_OUTPUTS"):
        return Path(os.environ["STUDY_OUTPUTS"]).resolve()
    root = tmp_path_factory.mktemp("study")
    env = dict(os.environ, CIFAR10_CACHE=str(root / "cache"))
    sweep = run_script("sweep.py", "--data-dir", tiny_cifar, "--outputs", root / "outputs",
                       "--seeds", "0,1", "--lambdas", "0,1e-2", "--quiet", "--task3", "--null-draws", "19",
                       "--occlusion-images", "8", "--snapshots", "0.5,1", "--",
                       "--epochs", "1", "--log-every", "10", env=env)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    outputs = root / "outputs"
    assert (outputs / "task3" / "metrics.json").is_file()
    # the seeds' comparison, as make all makes it after the runs
    seeds = run_script("compare_seeds.py", "--outputs", outputs, "--seeds", "0,1", "--null-draws",
                       "19", "--data-dir", tiny_cifar, "--quiet", env=env)
    assert seeds.returncode == 0, seeds.stdout + seeds.stderr
    # when do channels form, and what is each layer invariant to (make all, after the seeds)
    formation = run_script("formation.py", "--outputs", outputs, "--seeds", "0,1", "--null-draws",
                           "19", "--data-dir", tiny_cifar, "--quiet", env=env)
    assert formation.returncode == 0, formation.stdout + formation.stderr
    invariance = run_script("invariance.py", "--checkpoint", outputs / "task2" / "deconv_net.pth",
                            "--out", outputs / "invariance", "--images", "10", "--random-draws",
                            "19", "--data-dir", tiny_cifar, "--quiet", env=env)
    assert invariance.returncode == 0, invariance.stdout + invariance.stderr
    beyond = run_script("make_beyond_report.py", "--outputs", outputs, env=env)  # make beyond
    assert beyond.returncode == 0, beyond.stdout + beyond.stderr
    # the explorer page, as make all builds it once the runs exist
    page = run_script("build_explorer.py", "--study", outputs, "--quiet", env=env)  # make explorer
    assert page.returncode == 0, page.stdout + page.stderr
    return outputs


# Fast unit tests first, so that a slip fails within seconds; the tests that train, run scripts
# or open a browser come last. Within a file the written order is kept.
RUN_ORDER = ("test_models.py", "test_statistics.py", "test_latents.py", "test_baselines.py",
             "test_data.py", "test_training.py", "test_reliability.py", "test_untrusted_input.py",
             "test_bad_input.py", "test_sweep_and_outputs.py", "test_pipeline.py", "test_report.py",
             "test_explorer.py", "test_fuzz.py", "test_slurm.py", "test_real_data.py")


# The tiers of pytest.ini, by the fixtures a test uses: a test that needs scripts run (the
# trained or study outputs, a script environment) is slow; one that needs a browser or the
# Slurm cluster is marked so too. Tests that start processes without these fixtures carry
# @pytest.mark.slow themselves; a test of the fast tier that starts a process fails
# (no_process_in_the_fast_tier), so the tier stays fast.
MARKS_OF_FIXTURES = {"trained_outputs": ("slow",), "study_outputs": ("slow",),
                     "script_env": ("slow",), "browser": ("slow", "browser"),
                     "slurm_cluster": ("slow", "cluster")}


# Tests that share one resource and must run in one process when the suite runs in parallel
# (make test: pytest-xdist, --dist loadgroup): the one-node Slurm cluster; and the tests whose
# fixture trains a study or builds a page (10 to 90 s each), which split over two workers was
# built twice: by file, and every user of the session's tiny study (the report's and the
# explorer's tests) by fixture.
ONE_WORKER = {"test_slurm.py": "slurm", "test_slurm_safety.py": "slurm",
              "test_depth_end_to_end.py": "depth_end_to_end", "test_explorer_depth.py": "deep_page"}
ONE_WORKER_FIXTURES = {"study_outputs": "study"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (loadgroup): else they are ignored
def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = Path(str(item.fspath)).name
        return RUN_ORDER.index(name) if name in RUN_ORDER else len(RUN_ORDER)
    items.sort(key=rank)  # stable: the order inside each file is kept
    for item in items:
        group = ONE_WORKER.get(Path(str(item.fspath)).name)
        for fixture in ONE_WORKER_FIXTURES.keys() & set(item.fixturenames):
            group = ONE_WORKER_FIXTURES[fixture]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        for fixture in MARKS_OF_FIXTURES.keys() & set(item.fixturenames):
            for mark in MARKS_OF_FIXTURES[fixture]:
                item.add_marker(mark)


@pytest.fixture(autouse=True)
def no_process_in_the_fast_tier(request, monkeypatch):
    """A test not marked slow may not start a process (the fast tier's promise)."""
    if request.node.get_closest_marker("slow") is None:
        def refuse(*args, **kwargs):
            raise AssertionError(f"{request.node.nodeid} starts a process: mark it "
                                 "@pytest.mark.slow")
        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


class TutorialsOwnNet(nn.Module):
    """The tutorial's own class, as the tutorial writes it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
