"""Depth is a setting: a three-stage network (--arch small3) goes through Task 2, Task 3, the
report, the explorer page, the linear probes and the depth report on tiny data, with every layer
analysed and shown (laid out as make depth lays it out: OUTPUTS/depth/...)."""
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

import make_beyond_report
from conftest import run_script
from models import ARCHITECTURES

pytestmark = pytest.mark.slow


DEPTH_FLAGS = ["--arch", "small3", "--epochs", "1", "--null-draws", "19", "--occlusion-images", "8",
               "--baseline-seeds", "1", "--probe-train-images", "60", "--quiet"]


@pytest.fixture(scope="module")
def three_stage_study(tmp_path_factory, tiny_cifar) -> Path:
    """make depth's plan (depth.py) with a three-stage net on tiny data, beside a tutorial Task 2
    model; then the deep study's own report and its page with Task 3's cards. Returns
    OUTPUTS/depth; the plan's output is in OUTPUTS/depth_plan.log."""
    root = tmp_path_factory.mktemp("small3")
    env = dict(os.environ, CIFAR10_CACHE=str(root / "cache"))
    study = root / "outputs"
    tutorial = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1",
                          "--log-every", "10", "--quiet", "--out", study / "task2", env=env, cwd=root)
    assert tutorial.returncode == 0, tutorial.stderr
    plan = run_script("depth.py", "--data-dir", tiny_cifar, "--outputs", study, *DEPTH_FLAGS,
                      env=env, timeout=1200)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-3000:]
    (study / "depth_plan.log").write_text(plan.stdout + plan.stderr)
    outputs = study / "depth"
    report = run_script("make_report.py", "--outputs", outputs, env=env, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    page = run_script("build_explorer.py", outputs / "task2" / "deconv_net.pth",
                      "--task3", outputs / "task3" / "metrics.json",
                      "--out", outputs / "task3" / "explorer.html", "--quiet", env=env)
    assert page.returncode == 0, page.stderr[-3000:]
    return outputs


def test_the_three_stage_task3_reads_back_as_three_layers(three_stage_study):
    """Task 3's typed result of the deeper net: a LayerResult for every stage (the middle one
    read by its literal decoder), written back key for key."""
    from study.analysis.task3_result import read_task3
    from study.core.ids import DecoderId

    path = three_stage_study / "task3" / "metrics.json"
    result = read_task3(path)
    assert [layer.name for layer in result.layers] == ["z1", "z2", "z3"]
    assert [len(layer.channels) for layer in result.layers] == [8, 16, 32]  # small3's widths
    assert result.picture_decoder(result.layer("z2")) == DecoderId(2, "literal")
    assert result.to_json() == json.loads(path.read_text())


def test_the_plan_wrote_every_part_of_the_depth_study(three_stage_study):
    for part in ("task1", "task2", "task3", "probes", "probes_tutorial",
                 "runs/task2_permuted_seed0", "runs/task2_seed1", "seeds", "formation",
                 "invariance"):
        assert (three_stage_study / part / "metrics.json").is_file(), part
    # make depth's own page carries Task 3's cards: its layer overview is the way into the channels
    page = (three_stage_study / "explorer.html").read_text()
    embedded = json.loads(re.search(r'id="explorer-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert set(embedded["cards"]) == {"z1", "z2", "z3"} and embedded["card_images"]
    # z3's 22-pixel fields are cut by the page from whole images: each patch names its test
    # image (by its place in the embedded list) and its box's corner, as Task 3 recorded them
    task3 = json.loads((three_stage_study / "task3" / "metrics.json").read_text())
    wide = sorted({i for top in task3["top9"]["z3"] for i in top["test_indices"]})
    assert len(embedded["card_images"]) == 4 * math.ceil(len(wide) * 3 * 32 * 32 / 3)  # base64
    for card, top in zip(embedded["cards"]["z3"], task3["top9"]["z3"]):
        assert card["patches"] == [[wide.index(i), t, left] for i, (t, left, _)
                                   in zip(top["test_indices"], top["boxes"])]
        assert card["patch_size"] == 22
    assert all(isinstance(p, str) for card in embedded["cards"]["z1"] for p in card["patches"])
    assert not (three_stage_study / "runs" / "task1_seed1").exists()  # seed 1: Task 2 alone
    snapshots = json.loads((three_stage_study / "task2" / "metrics.json").read_text())["snapshots"]
    assert [s["epoch"] for s in snapshots] == [0.0, 1.0]  # the initialisation, every epoch
    assert (three_stage_study.parent / "beyond.pdf").is_file()
    assert (three_stage_study.parent / "report.pdf").is_file()  # the tutorial's, pointing there


def test_the_plan_again_redoes_nothing_but_the_pages(three_stage_study, tiny_cifar, tmp_path):
    results = {p: p.read_bytes() for p in three_stage_study.rglob("metrics.json")}
    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"))
    again = run_script("depth.py", "--data-dir", tiny_cifar, "--outputs", three_stage_study.parent,
                       *DEPTH_FLAGS, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    for part in ("probes_tutorial", "task3", "probes", "seeds", "formation", "invariance"):
        assert f"up to date  {three_stage_study / part}" in said, part
    assert "nothing to train: all 4 runs are up to date" in said
    assert {p: p.read_bytes() for p in three_stage_study.rglob("metrics.json")} == results


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


def test_every_layer_is_in_every_table_figure_and_page_section(three_stage_study):
    """The middle layer (z2) and the last (z3) of a three-stage net, wherever the tutorial's two
    layers appear: the report's tables and figures (report.md shows every layer's figures), the
    class heatmap's panels, the page's cards and decoder notes."""
    layers = ["z1", "z2", "z3"]
    markdown = (three_stage_study / "report.md").read_text()
    assert not re.search(r"missing figure: (train image|test image|top-9)", markdown)
    for name in layers:
        for kind in ("train", "test", "top9"):
            assert f"](task3/{kind}_{name}.png)" in markdown, (kind, name)
        assert f"| {name}:0 |" in markdown  # the channel table
        assert f"| {name}, tied (encoder filters transposed) |" in markdown  # the decoders
        assert f"| {name}, own latent, other image's switches |" in markdown  # the controls
        assert f"| {name} colour opposition |" in markdown  # the counts against their nulls
    heatmap = (three_stage_study / "task3" / "class_selectivity.svg").read_text()
    assert [f"{name} channel" in heatmap for name in layers] == [True] * 3
    page = (three_stage_study / "task3" / "explorer.html").read_text()
    embedded = json.loads(re.search(r'id="explorer-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert set(embedded["cards"]) == set(layers)
    for model in embedded["models"]:
        assert set(model["decoders"]) == set(layers), model["id"]


def test_the_report_shows_the_last_layers_figures_as_the_last_layers():
    """The PDF shows the first and the last layer's figures: for a three-stage net the last is
    z3's (its caption names z3), never z2's."""
    from study.reporting.facts import figure_files

    files = figure_files(["z1", "z2", "z3"])
    assert files["t3_test_last"] == "task3/test_z3.png" and files["t3_top9_last"] == "task3/top9_z3.png"
    assert files["t3_train_first"] == "task3/train_z1.png" and files["t3_test_z2"] == "task3/test_z2.png"


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


def test_the_probes_read_every_layer_against_the_baselines_that_reach_it(three_stage_study):
    metrics = json.loads((three_stage_study / "probes" / "metrics.json").read_text())
    # a cascade from the top re-initialises conv3, then conv2 too, then conv1: layer k is changed
    # by the cascades whose first re-initialised convolution is at or below k
    # (and the permuted-labels twin, which depth.py trains, reaches every layer)
    expected = {"z1": {"trained", "conv1_conv2_conv3", "permuted_labels"},
                "z2": {"trained", "conv2_conv3", "conv1_conv2_conv3", "permuted_labels"},
                "z3": {"trained", "conv3", "conv2_conv3", "conv1_conv2_conv3", "permuted_labels"}}
    assert {name: set(layer["accuracy"]) for name, layer in metrics["layers"].items()} == expected
    test_images = metrics["data"]["test_images"]
    for name, layer in metrics["layers"].items():
        assert set(layer["mcnemar"]) == expected[name] - {"trained"} | {"pixels"}
        for baseline, test in layer["mcnemar"].items():
            # the discordant counts agree with the two accuracies: a - b = (only a - only b) / n
            other = layer["accuracy"].get(baseline, metrics["pixels"])
            assert layer["accuracy"]["trained"] - other == pytest.approx(
                (test["only_first_correct"] - test["only_second_correct"]) / test_images, abs=1e-3)
            assert test["p_value"] <= test["p_holm"] <= 1


def test_the_depth_report_has_a_sentence_per_layer(three_stage_study):
    pdf = three_stage_study.parent / "beyond.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True).stdout
    for layer in ("z1:", "z2:", "z3:"):
        assert layer in text
    assert "learning" in text and "Does learning show with depth?" in text
    assert "Beyond the assignment" in text and "has not been run" not in text.split(
        "Does learning show with depth?")[1]  # the deeper network's part is there


def test_a_second_probe_run_reads_the_pixel_floor_of_the_first(three_stage_study, tiny_cifar, tmp_path):
    first = json.loads((three_stage_study / "probes" / "metrics.json").read_text())
    labels = first["data"]["test_images"]
    # the floor's predictions are kept, one class per test image, and agree with its accuracy
    predicted = first["pixel_predictions"]
    assert len(predicted) == labels and all(0 <= p <= 9 for p in predicted)
    common = ["--checkpoint", three_stage_study / "task2" / "deconv_net.pth", "--permuted-checkpoint",
              three_stage_study / "runs" / "task2_permuted_seed0" / "deconv_net.pth",
              "--data-dir", tiny_cifar, "--quiet", "--train-images", "60"]
    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"))
    again = run_script("probe_layers.py", *common, "--pixels-from", three_stage_study / "probes",
                       "--out", tmp_path / "again", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert second["pixel_predictions"] == predicted and second["pixels"] == first["pixels"]
    assert second["layers"] == first["layers"]  # the same McNemar tables against the same floor
    assert second["pixels_from"] == str(three_stage_study / "probes")

    # another protocol (fewer training images), or a tampered file: one line, nothing written
    other = run_script("probe_layers.py", *common[:-1], "40", "--pixels-from",
                       three_stage_study / "probes", "--out", tmp_path / "other", env=env)
    assert other.returncode == 2 and "protocol" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and not (tmp_path / "other").exists()
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "metrics.json").write_text(json.dumps({**first, "pixel_predictions": predicted[:-1]}))
    short = run_script("probe_layers.py", *common, "--pixels-from", tampered, "--out", tmp_path / "short",
                       env=env)
    assert short.returncode == 2 and "pixel_predictions" in short.stderr
    assert len(short.stderr.strip().splitlines()) == 1 and not (tmp_path / "short").exists()


def test_the_probes_refuse_a_permuted_baseline_that_is_not_one(three_stage_study, tiny_cifar,
                                                               tmp_path):
    """Round six, case 1: probe_layers.py took any model as its permuted-labels baseline (a copy
    whose metrics say it was trained on the true labels was called "permuted labels")."""
    import shutil

    fake = tmp_path / "not_permuted"
    shutil.copytree(three_stage_study / "runs" / "task2_permuted_seed0", fake)
    metrics = json.loads((fake / "metrics.json").read_text())
    metrics["config"]["permute_labels"] = False
    (fake / "metrics.json").write_text(json.dumps(metrics))
    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"))
    for baseline, reason in ((fake / "deconv_net.pth", "was not trained on permuted labels"),
                             (three_stage_study / "task2" / "deconv_net.pth",
                              "is the trained checkpoint itself")):
        result = run_script("probe_layers.py", "--checkpoint", three_stage_study / "task2" / "deconv_net.pth",
                            "--permuted-checkpoint", baseline, "--data-dir", tiny_cifar, "--quiet",
                            "--out", tmp_path / "probes", env=env)
        assert result.returncode == 2 and reason in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "probes").exists()
    # the probes the plan wrote record both networks by hash
    probes = json.loads((three_stage_study / "probes" / "metrics.json").read_text())
    assert len(probes["checkpoint_sha256"]) == 64
    assert probes["permuted_checkpoint"]["checkpoint"].endswith("task2_permuted_seed0/deconv_net.pth")


def _set(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    if value is KeyError:
        del data[last]
    else:
        data[last] = value


@pytest.mark.parametrize("part, path, value, words", [
    ("task2", "test_accuracy", "high", "test_accuracy"),
    ("probes", "pixels", "x", "pixels"),
    ("probes", "layers", [], "layers"),
    ("task3", "baselines.rules", [], "rules"),
    ("task2", "config", None, "config"),
    ("task3", "baselines.rules.z2.counts.class.trained", "7", "trained"),
    ("task3", "decoders.z1_x", {"psnr_db": 10.0}, "z1_x"),
    ("task3", "architecture", KeyError, "architecture"),
    ("probes", "layers.zz", {"accuracy": {"trained": 0.5}, "mcnemar": {}}, "layers are"),
    ("task1", "test_accuracy", 1e308, "test_accuracy")])
def test_crafted_depth_metrics_are_one_line(three_stage_study, tmp_path, part, path, value, words):
    """Round six, case 8: fields of the depth study's metrics files that are not what the runs
    write gave tracebacks (or "reads inf %"); each is now one line naming the file and field."""
    import shutil

    from study.core.common import UsageError

    copy = tmp_path / "outputs"
    shutil.copytree(three_stage_study.parent, copy,
                    ignore=shutil.ignore_patterns("*.png", "*.svg", "*.html", "*.pdf", "cache"))
    file = copy / "depth" / part / "metrics.json"
    metrics = json.loads(file.read_text())
    _set(metrics, path, value)
    file.write_text(json.dumps(metrics))
    with pytest.raises(UsageError, match=re.escape(words)) as error:
        make_beyond_report.build_facts(copy)
    assert "\n" not in str(error.value) and str(file) in str(error.value)


ODD = [None, True, -1, 0, 1e308, float("nan"), "x", "", [], {}, [1, 2], {"a": 1}, 10 ** 12, -0.5]


def _paths(data, prefix=()):
    """Every (path, value) of a JSON tree, lists included (by index)."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield prefix + (key,), value
        yield from _paths(value, prefix + (key,))


def test_the_depth_reports_reader_survives_a_fuzz_of_its_metrics(three_stage_study, tmp_path):
    """Round six: a fuzz over every metrics file the depth report reads (a random value of a
    random type at a random place, 150 times): each build is facts or one line, never another
    exception. Seeded, so a failure is repeatable."""
    import random
    import shutil

    from study.core.common import UsageError

    copy = tmp_path / "outputs"
    shutil.copytree(three_stage_study.parent, copy,
                    ignore=shutil.ignore_patterns("*.png", "*.svg", "*.html", "*.pdf", "cache"))
    files = [copy / "depth" / part / "metrics.json"
             for part in ("task1", "task2", "task3", "probes", "seeds", "formation", "invariance")]
    originals = {f: f.read_text() for f in files}
    rng, outcomes = random.Random(0), {"facts": 0, "one line": 0}
    for _ in range(150):
        file = rng.choice(files)
        data = json.loads(originals[file])
        paths = [p for p, _ in _paths(data) if len(p) <= 6]
        path = rng.choice(paths)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = rng.choice(ODD)
        file.write_text(json.dumps(data, allow_nan=True))
        try:
            make_beyond_report.build_facts(copy)
            outcomes["facts"] += 1
        except UsageError as error:
            assert "\n" not in str(error)
            outcomes["one line"] += 1
        file.write_text(originals[file])
    assert outcomes["one line"] > 0 and sum(outcomes.values()) == 150
