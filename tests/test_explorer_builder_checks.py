"""build_explorer.py checks what it embeds and where it writes (items 8, 9, 12, 13, 16, 17, 20).

Every page here is built in-process from a random DeconvNet and a synthetic Task 3 metrics file
that is valid for the tiny data set; each test then garbles one thing.
"""
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from test_bad_input import assert_one_line_error, run_in_process

import build_explorer
from data import load_cifar10
from models import ARCHITECTURE, DeconvNet
from study.core.ids import DecoderId, ModelId
from study.reporting import explorer_page

pytestmark = pytest.mark.slow  # each builds or loads a data set and a page (~1 s)


def save(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(obj))
    else:
        torch.save(obj, path)
    return path


@pytest.fixture
def inputs(tiny_cifar, tmp_path):
    """A checkpoint with its refitted decoder cache, and Task 3 metrics that describe both."""
    data = load_cifar10(tiny_cifar, cache_dir=tmp_path / "cache", quiet=True)
    torch.manual_seed(0)
    checkpoint = save(DeconvNet().state_dict(), tmp_path / "task2" / "deconv_net.pth")
    key = {"checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
           "data_sha256": data.content_hash, "epochs": 2, "seed": 0}
    save({"key": key, "state": torch.nn.ConvTranspose2d(6, 3, 5).state_dict(),
          "fit_seconds": 1.0}, checkpoint.with_name("layer1_decoder.pth"))
    task3 = task3_metrics(ARCHITECTURE, data, {**key, "fitted_now": True, "fit_seconds": 1.0},
                          {"data_dir": str(tiny_cifar), "subset": 1.0, "seed": 0})
    metrics = save(task3, tmp_path / "task3" / "metrics.json")
    return {"checkpoint": checkpoint, "metrics": metrics, "task3": task3, "data": data,
            "out": tmp_path / "task3" / "explorer.html"}


def task3_metrics(arch, data, layer1_refit: dict, config: dict) -> dict:
    """Task 3 metrics as Task 3 writes them, every field its reader checks, for `arch` on
    `data`: channel c's finding is "channel c", its top-9 the first nine test images."""
    def reading(label: str) -> dict:
        return {"label": label, "psnr_db": 12.0, "correlation": 0.5}

    decoders = {}
    for stage in arch.layers:
        for decoder in {DecoderId.own(stage.index, arch.depth), DecoderId(stage.index, "tied"),
                        *([DecoderId(1, "refit")] if stage.index == 1 else [])}:
            decoders[str(decoder)] = {**reading(decoder.label), "layer": stage.index}
    per_layer = {stage.name: stage for stage in arch.layers}
    return {
        "task": "task3", "checkpoint": "deconv_net.pth", "permuted_checkpoint": None,
        "task2_config": None, "architecture": arch.describe(), "layer1_refit": layer1_refit,
        "decoders": decoders,
        "controls": {name: {"own": reading("own")} for name in per_layer}, "rules": {},
        "channels": {name: [
            {"channel": c, "finding": f"channel {c}", "roles": [], "top_k": 9,
             "top_k_classes": {"cat": 50.0, "dog": 50.0}, "top_k_class": "cat",
             "top_k_class_share": 50.0, "r_luminance": 0.5, "r_red_green": -0.1,
             "r_blue_yellow": 0.0, "r_gradient_energy": 0.2} for c in range(stage.channels)]
            for name, stage in per_layer.items()},
        "baselines": {
            "models": {"trained": {}}, "psnr_summary": {}, "projection_diversity": {},
            "protocol": {"seeds": [], "refit": {"steps": 1},
                         "occluder": {"size": 8, "stride": 4}},
            "picture_similarity": {"summary": {}}, "occlusion": {"images": 1, "summary": {}},
            "rules": {"protocol": {"draws": 19, "alpha": 0.05, "smallest_p": 0.05,
                                   "groups": {}, "families": {}},
                      "seconds": {"total": 1.0},
                      **{name: {"channels": [{"channel": c, "claims": [], "class_share": {}}
                                             for c in range(stage.channels)], "counts": {}}
                         for name, stage in per_layer.items()}}},
        "appearance_reference": {"random_patches": 100, "top_k": 9, "seed": 0},
        "rule_images": {"count": 9, "of": len(data.test_labels), "seed": 0},
        "class_means": {name: [[0.0] * 10] * stage.channels for name, stage in per_layer.items()},
        "images": {"test": {"index": 3, "class": "cat",
                            **{name: {"channels": []} for name in per_layer}}},
        "top9": {name: [{"channel": c, "test_indices": list(range(9)),
                         "boxes": [[-stage.offset, -stage.offset, stage.receptive_field]] * 9,
                         "classes": ["cat"] * 9, "projection_similarity": 0.1}
                        for c in range(stage.channels)] for name, stage in per_layer.items()},
        "conv1_filters": [], "config": config, "wall_seconds": 1.0, "data": data.describe(),
        "environment": {}}


def build(inputs, monkeypatch, capsys, tmp_path, *extra, checkpoints=None, out=None):
    """(exit code, stderr lines) of build_explorer.py; 0 when it returned normally."""
    args = [*(checkpoints or [inputs["checkpoint"]]), "--task3", inputs["metrics"],
            "--out", out or inputs["out"], "--quiet", *extra]
    monkeypatch.setattr(build_explorer, "main", _exits(build_explorer.main))
    return run_in_process(build_explorer, args, monkeypatch, capsys, tmp_path)


def _exits(main):
    """main, ending with sys.exit(0) when it returns (run_in_process waits for an exit)."""
    if getattr(main, "exits", False):
        return main

    def wrapped():
        main()
        raise SystemExit(0)
    wrapped.exits = True
    return wrapped


def payload(page: Path) -> tuple[str, dict]:
    text = page.read_text()
    raw = text.split('id="explorer-data" type="application/json">')[1].split("</script>")[0]
    return raw, json.loads(raw)


def test_a_valid_build_works_and_a_page_can_be_rebuilt_in_place(inputs, monkeypatch, capsys,
                                                                tmp_path):
    code, lines = build(inputs, monkeypatch, capsys, tmp_path)
    assert code == 0, lines
    assert inputs["out"].is_file()
    code, lines = build(inputs, monkeypatch, capsys, tmp_path)  # its own page is replaced
    assert code == 0, lines
    _, data = payload(inputs["out"])
    assert "deconv1_refit" in data["models"][0]["weights"]
    assert [card["finding"] for card in data["cards"]["z1"]] == [f"channel {c}" for c in range(6)]


def test_no_embedded_text_can_open_a_tag_or_comment_in_the_page(inputs, monkeypatch, capsys,
                                                                 tmp_path):
    """Item 16: `<!--<script>` in a label (and a card) leaves the page's script intact."""
    hostile = "<!--<script>x</script> & -->"
    extra = save(DeconvNet().state_dict(), tmp_path / "baseline_models" / "b" / "deconv_net.pth")
    save({"label": hostile, "model": ModelId("permuted").to_json()}, extra.with_name("model.json"))
    inputs["task3"]["channels"]["z1"][0]["finding"] = hostile
    save(inputs["task3"], inputs["metrics"])
    code, lines = build(inputs, monkeypatch, capsys, tmp_path,
                        checkpoints=[inputs["checkpoint"], extra])
    assert code == 0, lines
    raw, data = payload(inputs["out"])
    assert "<" not in raw and ">" not in raw  # no tag, no comment, nothing for the parser
    assert data["models"][1]["label"] == hostile  # the same text, read back
    assert data["cards"]["z1"][0]["finding"] == hostile
    text = inputs["out"].read_text()
    assert text.count("<script") == 2 and text.count("</script>") == 2
    assert "<!--" not in text.split("<body", 1)[1]


def test_a_page_for_other_data_than_task3_measured_is_refused(inputs, monkeypatch, capsys,
                                                              tmp_path):
    """Item 8: metrics computed on the full test set, page asked for --subset 0.5."""
    code, lines = build(inputs, monkeypatch, capsys, tmp_path, "--subset", "0.5")
    assert_one_line_error(code, lines, "not the data", "--subset")
    assert not inputs["out"].exists()
    # the right hash but an index beyond the test set (a hand-edited file): one line too
    inputs["task3"]["top9"]["z2"][4]["test_indices"][2] = len(inputs["data"].test_labels)
    save(inputs["task3"], inputs["metrics"])
    code, lines = build(inputs, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "top9: z2[4]: test_indices[2]")
    assert not inputs["out"].exists()


@pytest.mark.parametrize("differs", ["data_sha256", "epochs", "seed"])
def test_a_cached_decoder_other_than_the_one_task3_measured_is_refused(inputs, monkeypatch,
                                                                       capsys, tmp_path, differs):
    """Item 9: the cache beside the checkpoint was refitted with other data, epochs or seed."""
    cache = inputs["checkpoint"].with_name("layer1_decoder.pth")
    cached = torch.load(cache, weights_only=True)
    cached["key"][differs] = "0" * 64 if differs == "data_sha256" else 7
    save(cached, cache)
    code, lines = build(inputs, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "not the one the Task 3 metrics measured", differs)
    assert not inputs["out"].exists()


@pytest.mark.parametrize("where", ["checkpoint", "task3", "baseline"])
def test_folders_marked_incomplete_are_refused(inputs, monkeypatch, capsys, tmp_path, where):
    """Item 12: an interrupted run's checkpoint (or Task 3 folder) never reaches a page."""
    extra = save(DeconvNet().state_dict(),
                 tmp_path / "task3" / "baseline_models" / "conv2_1" / "deconv_net.pth")
    folder = {"checkpoint": inputs["checkpoint"].parent, "task3": inputs["metrics"].parent,
              "baseline": extra.parent.parent.parent}[where]
    (folder / ".incomplete").write_text('{"script": "train_deconv.py", "started": "now"}')
    code, lines = build(inputs, monkeypatch, capsys, tmp_path,
                        checkpoints=[inputs["checkpoint"], extra] if where == "baseline" else None)
    assert_one_line_error(code, lines, "unfinished run", str(folder))
    assert not inputs["out"].exists()


def test_out_never_replaces_a_result_nor_writes_into_the_data(inputs, monkeypatch, capsys,
                                                             tmp_path, tiny_cifar):
    """Item 13: the checkpoint, Task 2's metrics and a non-page .html are kept; the data
    folder is refused."""
    folder = inputs["checkpoint"].parent
    metrics = save({"task": "task2", "config": {"lambda": 0.01, "seed": 0}},
                   folder / "metrics.json")
    other = folder / "notes.html"
    other.write_text("<html>my notes</html>")
    before = {p: p.read_bytes() for p in (inputs["checkpoint"], metrics, other)}
    for out, words in ((inputs["checkpoint"], [".html"]), (metrics, [".html"]),
                       (other, ["not an explorer page"]),
                       (Path(tiny_cifar) / "page.html", ["inside the data folder"]),
                       (Path(tiny_cifar) / "test" / "cat" / "page.html", ["data folder"])):
        code, lines = build(inputs, monkeypatch, capsys, tmp_path, "--data-dir", tiny_cifar,
                            out=out)
        assert_one_line_error(code, lines, str(out if out.parent == folder else out.parent),
                              *words)
    assert {p: p.read_bytes() for p in before} == before
    assert not list(Path(tiny_cifar).rglob("*.html"))


@pytest.mark.parametrize("file, text, words", [
    ("model.json", "null", ["not a JSON object"]),
    ("model.json", "[1, 2]", ["not a JSON object"]),
    ("model.json", "[" * 5000 + "]" * 5000, ["nests"]),
    ("model.json", '{"label": 5}', ["label", "not a text"]),
    ("metrics.json", '{"config": {"lambda": "x", "seed": 0}}', ["lambda", "not a number"]),
    ("metrics.json", '{"config": null}', ["config", "not an object"]),
])
def test_json_beside_a_checkpoint_goes_through_the_limited_readers(inputs, monkeypatch, capsys,
                                                                   tmp_path, file, text, words):
    """Item 17: model.json and metrics.json beside an extra checkpoint: one line each."""
    extra = save(DeconvNet().state_dict(), tmp_path / "runs" / "x" / "deconv_net.pth")
    extra.with_name(file).write_text(text)
    code, lines = build(inputs, monkeypatch, capsys, tmp_path,
                        checkpoints=[inputs["checkpoint"], extra])
    assert_one_line_error(code, lines, str(extra.with_name(file)), *words)
    assert not inputs["out"].exists()


@pytest.mark.parametrize("key, value, words", [
    ("finding", 5, ["finding", "not a text"]),
    ("roles", "x", ["roles", "not a list"]),
    ("top_k_classes", None, ["top_k_classes", "not an object"]),
    ("r_luminance", "high", ["r_luminance"]),
])
def test_garbled_card_fields_are_refused(inputs, monkeypatch, capsys, tmp_path, key, value,
                                         words):
    """Item 17: a card field of the wrong type gives one line, not a page that throws."""
    inputs["task3"]["channels"]["z2"][3][key] = value
    save(inputs["task3"], inputs["metrics"])
    code, lines = build(inputs, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "channels: z2[3]", *words)
    assert not inputs["out"].exists()


def test_duplicate_long_folder_names_get_ids_within_the_limit(inputs, monkeypatch, capsys,
                                                               tmp_path):
    """Item 20: three models Task 3 describes alike, whose id is longer than the page allows: the
    first keeps it cut to 64 characters, the others are numbered within the limit."""
    model = ModelId.cascade(1, 12, seed=1001)  # "conv1_..._conv12_seed1001", 83 characters
    name = str(model)[:64]
    extras = []
    for parent in ("a", "b", "c"):
        extra = save(DeconvNet().state_dict(), tmp_path / parent / "m" / "deconv_net.pth")
        save({"label": f"model {parent}", "model": model.to_json()}, extra.with_name("model.json"))
        extras.append(extra)
    code, lines = build(inputs, monkeypatch, capsys, tmp_path,
                        checkpoints=[inputs["checkpoint"], *extras])
    assert code == 0, lines
    ids = [m["id"] for m in payload(inputs["out"])[1]["models"]]
    assert len(set(ids)) == 4 and all(len(i) <= 64 for i in ids)
    assert ids[1] == name and ids[2] != name and ids[3] not in (name, ids[2])
    with pytest.raises(ValueError, match=r"is 65 characters long, over the limit of 64"):
        explorer_page._extra_model({"id": "x" * 65, "label": "l", "net": DeconvNet()})
    assert re.fullmatch(explorer_page.ID_PATTERN, "x" * 64)


@pytest.mark.parametrize("name", ["tutorial", "deep4"])
def test_every_receptive_field_of_a_layer_is_a_valid_box(name):
    """Round six, case 15: deep4's z4 fields are 46 pixels, larger than the 32-pixel image, and
    start 15 pixels before it (offset); the last unit's box starts at (size - 1) * stride -
    offset. Such boxes are accepted (by Task 3's reader, which the page builder reads it with);
    a box of another side, or one off the units' grid, is not."""
    from models import ARCHITECTURES
    from study.analysis.task3_result import check_boxes

    def top(box: list[int]) -> dict:
        return {"test_indices": list(range(9)), "boxes": [box] * 9, "classes": ["cat"] * 9}

    arch = ARCHITECTURES[name]
    for stage in arch.layers:
        last = (stage.size - 1) * stage.stride - stage.offset
        check_boxes(top([-stage.offset, last, stage.receptive_field]), stage, "m.json", "fix")
    deepest = arch.layers[-1]
    for bad in ([-deepest.offset, 0, deepest.receptive_field - 1],  # another side
                [-deepest.offset + 1, -deepest.offset, deepest.receptive_field]):  # off the grid
        with pytest.raises(build_explorer.UsageError, match="is not the receptive field of a"):
            check_boxes(top(bad), deepest, "m.json", "fix")


def test_an_unfolded_batchnorm_checkpoint_is_run_folded_not_without_its_batchnorm(
        tiny_cifar, tmp_path, monkeypatch, capsys):
    """Round six, case 5: a deep4-style checkpoint with its BatchNorm layers (not folded) gave a
    page that ran the convolutions without them: another network. The page now runs each
    BatchNorm folded into its convolution: conv1's weights are the folded ones, w * gamma /
    sqrt(running_var + eps), computed here by hand."""
    import base64
    from dataclasses import replace

    import numpy as np

    from models import ARCHITECTURES

    arch = replace(ARCHITECTURES["small3"], batchnorm=True)
    torch.manual_seed(0)
    net = DeconvNet(arch).eval()
    with torch.no_grad():  # BatchNorm statistics that change the network
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
    checkpoint = save(net.state_dict(), tmp_path / "bn" / "deconv_net.pth")
    save({"architecture": arch.describe()}, tmp_path / "bn" / "metrics.json")
    out = tmp_path / "page.html"
    monkeypatch.setattr(build_explorer, "main", _exits(build_explorer.main))
    code, lines = run_in_process(build_explorer, [checkpoint, "--out", out, "--data-dir",
                                                  tiny_cifar, "--quiet"], monkeypatch, capsys,
                                 tmp_path)
    assert code == 0, lines
    assert any("BatchNorm" in line for line in lines)
    _, data = payload(out)
    conv1 = data["models"][0]["weights"]["conv1"]["weight"]
    page = np.frombuffer(base64.b64decode(conv1["data"]), "<f4").reshape(conv1["shape"])
    scale = net.bn1.weight / torch.sqrt(net.bn1.running_var + net.bn1.eps)
    expected = (net.conv1.weight * scale[:, None, None, None]).detach().numpy()
    np.testing.assert_allclose(page, expected, rtol=1e-6, atol=1e-7)
