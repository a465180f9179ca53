"""Cache keys and "same run?" checks cover what changes the result (items 7, 10, 11).

The data hash is that of the data actually used (after --subset, with its seed), so the
layer-1 decoder cache tells subsets apart; a permuted-labels baseline must be one; Task 3
starts by emptying its baseline_models/.
"""
import hashlib
import json

import numpy as np
import pytest
import torch
from test_bad_input import assert_one_line_error, run_in_process

import visualize_latents
from data import load_cifar10
from models import DeconvNet
from study.analysis.decoders import layer1_refit


def independent_hash(data) -> str:
    digest = hashlib.sha256()
    for tensor in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(np.ascontiguousarray(tensor.numpy()).tobytes())
    return digest.hexdigest()


def test_the_data_hash_is_the_hash_of_the_subset_actually_used(tiny_cifar, tmp_path):
    full = load_cifar10(tiny_cifar, cache_dir=tmp_path, quiet=True)
    half = load_cifar10(tiny_cifar, subset=0.5, seed=0, cache_dir=tmp_path, quiet=True)
    other = load_cifar10(tiny_cifar, subset=0.5, seed=1, cache_dir=tmp_path, quiet=True)
    again = load_cifar10(tiny_cifar, subset=0.5, seed=0, cache_dir=tmp_path, quiet=True)
    assert len(half.train_labels) == len(full.train_labels) // 2
    assert half.content_hash == independent_hash(half) != full.content_hash
    assert full.content_hash == independent_hash(full)
    assert other.content_hash == independent_hash(other) != half.content_hash  # another draw
    assert again.content_hash == half.content_hash
    assert half.describe()["content_sha256"] == half.content_hash


@pytest.mark.slow
def test_the_layer1_decoder_cache_is_refitted_when_the_subset_changes(tiny_cifar, tmp_path):
    """Item 7: --subset 0.3 then --subset 1.0 on one checkpoint: the second run fits again."""
    torch.manual_seed(0)
    net = DeconvNet().eval()
    checkpoint = tmp_path / "task2" / "deconv_net.pth"
    checkpoint.parent.mkdir()
    torch.save(net.state_dict(), checkpoint)
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    infos = []
    for subset in (0.3, 1.0, 1.0, 0.3):
        data = load_cifar10(tiny_cifar, subset=subset, seed=0, cache_dir=tmp_path, quiet=True)
        _, info = layer1_refit(net, checkpoint, sha, data.train_images, data.content_hash, 1, 0,
                               True)
        infos.append(info)
    assert [info["fitted_now"] for info in infos] == [True, True, False, True]
    assert infos[0]["data_sha256"] != infos[1]["data_sha256"] == infos[2]["data_sha256"]
    cached = torch.load(checkpoint.with_name("layer1_decoder.pth"), weights_only=True)
    assert cached["key"]["data_sha256"] == infos[3]["data_sha256"]


@pytest.fixture
def task2_runs(tmp_path):
    """A trained Task 2 checkpoint and a permuted-labels one, each with its metrics.json."""
    def run(name: str, seed: int, **config):
        folder = tmp_path / name
        folder.mkdir()
        torch.manual_seed(seed)
        torch.save(DeconvNet().state_dict(), folder / "deconv_net.pth")
        settings = {"model": "DeconvNet", "lambda": 0.01, "seed": 0, "subset": 1.0,
                    "data_sha256": "a" * 64, **config}
        (folder / "metrics.json").write_text(json.dumps({"task": "task2", "config": settings}))
        return folder / "deconv_net.pth"
    return run


@pytest.mark.parametrize("case, words", [
    ("itself", ["is the trained checkpoint itself"]),
    ("not permuted", ["not trained on permuted labels", "permute_labels"]),
    ("other data", ["other data", "data_sha256"]),
    ("other subset", ["other data", "subset"]),
    ("no metrics", ["no metrics.json"]),
])
def test_a_permuted_checkpoint_that_is_not_one_is_refused(task2_runs, tmp_path, monkeypatch,
                                                          capsys, case, words):
    """Item 10: the trained checkpoint itself, or any run without permute_labels (or on other
    data) is refused before Task 3 does anything."""
    trained = task2_runs("trained", 1)
    permuted = {"itself": lambda: trained,
                "not permuted": lambda: task2_runs("plain", 2),
                "other data": lambda: task2_runs("p", 2, permute_labels=True,
                                                 data_sha256="b" * 64),
                "other subset": lambda: task2_runs("p", 2, permute_labels=True, subset=0.5),
                "no metrics": lambda: task2_runs("p", 2, permute_labels=True)}[case]()
    if case == "no metrics":
        permuted.with_name("metrics.json").unlink()
    out = tmp_path / "task3"
    code, lines = run_in_process(visualize_latents, [
        "--checkpoint", trained, "--permuted-checkpoint", permuted, "--out", out,
        "--data-dir", tmp_path / "nowhere", "--quiet"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "--permuted-checkpoint", *words)
    assert not out.exists()


def test_a_real_permuted_checkpoint_is_accepted_and_its_hash_recorded(task2_runs):
    from study.runs.identity import check_permuted
    trained = task2_runs("trained", 1)
    permuted = task2_runs("p", 2, permute_labels=True)
    sha = hashlib.sha256(permuted.read_bytes()).hexdigest()
    info = check_permuted(permuted, sha, hashlib.sha256(trained.read_bytes()).hexdigest(),
                          json.loads(trained.with_name("metrics.json").read_text()))
    assert info == {"checkpoint": str(permuted), "checkpoint_sha256": sha, "seed": 0}


@pytest.mark.slow
def test_task3_empties_its_baseline_models_when_it_starts(tiny_cifar, task2_runs, tmp_path,
                                                         monkeypatch, capsys):
    """Item 11: an earlier run's "trained on permuted labels" model is gone as soon as Task 3
    starts, even when this run stops right after (here: at the decoder refit)."""
    trained = task2_runs("trained", 1)
    out = tmp_path / "task3"
    stale = out / "baseline_models" / "permuted_labels_1"
    stale.mkdir(parents=True)
    (stale / "model.json").write_text('{"label": "trained on permuted labels"}')
    victim = tmp_path / "keep.txt"
    victim.write_text("kept")
    (out / "baseline_models" / "link").symlink_to(victim)

    def stop(*args, **kwargs):
        assert not (out / "baseline_models").exists()  # already emptied
        raise KeyboardInterrupt
    monkeypatch.setattr(visualize_latents, "layer1_refit", stop)
    code, lines = run_in_process(visualize_latents, [
        "--checkpoint", trained, "--out", out, "--data-dir", tiny_cifar, "--quiet"],
        monkeypatch, capsys, tmp_path)
    assert code == 130, lines
    assert not (out / "baseline_models").exists()
    assert victim.read_text() == "kept"
    assert (out / ".incomplete").is_file()
