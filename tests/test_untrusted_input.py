"""Input that must not be trusted: links in output folders, names that act on the
terminal, output folders that belong to others, a cache that must not be trusted blindly, huge
files, crafted JSON, crafted checkpoints and training states, full disks, misleading messages.

Fast unit tests: the scripts run in-process (run_in_process), nothing trains."""
import errno
import json
import os
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_input import assert_one_line_error, run_in_process

import data
import train_classifier
import train_deconv
from conftest import write_image_folders
from models import DeconvNet, TutorialNet
from study.core import data_cache, files, image_files
from study.core.common import UsageError, printable
from study.core.files import open_no_follow, save_json
from study.core.layout import INCOMPLETE
from study.core.readers import field, read_json, require, require_complete, require_items
from study.runs.folders import LOCK, check_output_dir, run_folder
from study.training.checkpoints import read_state_dict
from study.training.state import check_training_state, save_training_state


@pytest.fixture
def small_data(tmp_path):
    return write_image_folders(tmp_path / "data", 1, 1)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and "\r" not in text, text
    return text


# --- 1: links are never written through ---

def test_a_lock_that_links_elsewhere_is_replaced_not_written_through(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / LOCK).symlink_to("../victim.txt")
    with run_folder(out, "x.py"):
        pass
    assert victim.read_text() == "precious"
    assert (out / LOCK).is_file() and not (out / LOCK).is_symlink()
    assert "was a symbolic link; replaced it" in capsys.readouterr().err
    # a hard link is the same danger: the lock's name gets a file of its own
    (out / LOCK).unlink()
    os.link(victim, out / LOCK)
    with run_folder(out, "x.py"):
        pass
    assert victim.read_text() == "precious" and os.stat(out / LOCK).st_nlink == 1


def test_open_no_follow_replaces_a_link_and_refuses_a_fifo(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    log = tmp_path / "run.log"
    log.symlink_to(victim)
    with open_no_follow(log, "w") as handle:  # what sweep.py's logs need
        handle.write("log line\n")
    assert victim.read_text() == "precious" and log.read_text() == "log line\n"
    with open_no_follow(log, "a") as handle:
        handle.write("more\n")
    assert log.read_text() == "log line\nmore\n"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="not a regular file"):
        open_no_follow(tmp_path / "fifo", "w")


def test_results_written_over_a_link_replace_the_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "metrics.json").symlink_to(victim)
    save_json({"a": 1}, tmp_path / "metrics.json")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "metrics.json").is_symlink()


# --- 3: names reach the terminal escaped, on one line ---

def test_printable_escapes_what_a_terminal_acts_on():
    assert printable("a\x1b]0;title\x07b\rc\nd\x9b\u202e\udcff") == \
        "a\\x1b]0;title\\x07b\\rc\\nd\\x9b\\u202e\\udcff"
    assert printable("cаt ünï/ok") == "cаt ünï/ok"  # letters of any script stay readable


def test_a_class_folder_named_with_escapes_is_shown_escaped(small_data, tmp_path, monkeypatch,
                                                            capsys):
    (small_data / "train" / "ca\x1b[2J\x1b]0;owned\x07t").mkdir()
    code, lines = run_in_process(train_classifier, ["--data-dir", small_data, "--out",
                                                    tmp_path / "o", "--quiet"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "unexpected folder", "\\x1b[2J\\x1b]0;owned\\x07t")
    assert not any(c in "".join(lines) for c in "\x1b\x07\r")


def test_a_newline_in_a_file_name_cannot_forge_a_warning_line(small_data, tmp_path, capsys):
    (small_data / "train" / "cat" / "notes\nwarning: all is fine\r.txt").write_text("x")
    data.load_cifar10(small_data, cache_dir=tmp_path / "cache", quiet=True)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "notes\\nwarning: all is fine\\r.txt" in warnings[0], err


# --- 10: an output folder that is data, or another task's ---

def test_an_output_folder_inside_the_data_is_refused(small_data, tmp_path, monkeypatch, capsys):
    before = sorted(p.name for p in (small_data / "train" / "cat").iterdir())
    code, lines = run_in_process(train_classifier, [
        "--data-dir", small_data, "--out", small_data / "train" / "cat", "--quiet"],
        monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "inside the data folder")
    assert sorted(p.name for p in (small_data / "train" / "cat").iterdir()) == before
    # a CIFAR-10 split folder is refused even when the data folder is not named
    with pytest.raises(UsageError, match="inside the CIFAR-10 folder"):
        check_output_dir(small_data / "test" / "dog" / "figures")
    check_output_dir(tmp_path / "outputs" / "task1", "task1", small_data)  # beside it is fine


def test_an_output_folder_of_another_task_is_refused(small_data, tmp_path, monkeypatch, capsys):
    task2 = tmp_path / "outputs" / "task2"
    task2.mkdir(parents=True)
    (task2 / "metrics.json").write_text(json.dumps({"task": "task2", "test_accuracy": 50}))
    code, lines = run_in_process(train_classifier, ["--data-dir", small_data, "--out", task2,
                                                    "--quiet"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "holds the results of task2", "this script writes task1")
    assert json.loads((task2 / "metrics.json").read_text())["task"] == "task2"
    assert sorted(p.name for p in task2.iterdir()) == ["metrics.json"]
    # run_folder knows the task of each script, so Task 3 gets the refusal too
    with pytest.raises(UsageError, match="holds the results of task2"):
        with run_folder(task2, "visualize_latents.py"):
            pass
    check_output_dir(task2, "task2")  # its own task's folder is fine
    # a Task 2 run killed before it wrote metrics.json leaves its marker: also Task 2's
    (task2 / "metrics.json").unlink()
    save_json({"script": "train_deconv.py", "pid": 1, "started": "x"}, task2 / INCOMPLETE)
    with pytest.raises(UsageError, match="holds the unfinished run of task2"):
        check_output_dir(task2, "task1")
    save_json({"script": "sweep.py (not yet run)", "pid": 1, "started": "x"}, task2 / INCOMPLETE)
    check_output_dir(task2, "task1")  # a folder the sweep only planned is anybody's


# --- 11: the decoded-data cache ---

def _cache_file(cache: Path) -> Path:
    [found] = cache.glob("cifar10-*.pt")
    return found


def _tamper(cache_file: Path, change) -> None:
    saved = torch.load(cache_file, weights_only=True)
    change(saved)
    torch.save(saved, cache_file)


@pytest.mark.parametrize("damage", ["pixel", "label", "label_10", "64x64"])
def test_a_tampered_cache_is_decoded_again_not_served(damage, small_data, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = data.load_cifar10(small_data, cache_dir=cache, quiet=True)

    def change(saved):
        if damage == "pixel":
            saved["train_images"][0, 0, :5, :5] ^= 0x5A  # content_hash kept: a flipped byte
        elif damage == "label":
            saved["train_labels"][0] = (saved["train_labels"][0] + 1) % 10
        elif damage == "label_10":
            saved["train_labels"][0] = 10
        else:
            saved["train_images"] = torch.zeros(10, 3, 64, 64, dtype=torch.uint8)
    _tamper(_cache_file(cache), change)
    capsys.readouterr()
    again = data.load_cifar10(small_data, cache_dir=cache, quiet=True)
    assert "decoded-data cache" in capsys.readouterr().err
    assert torch.equal(again.train_images, first.train_images)
    assert torch.equal(again.train_labels, first.train_labels)
    assert again.content_hash == first.content_hash
    assert data.load_cifar10(small_data, cache_dir=cache, quiet=True).content_hash == first.content_hash


def test_two_same_size_images_swapped_with_their_times_kept_are_decoded_again(tmp_path):
    root = write_image_folders(tmp_path / "data", 2, 1)
    folder = root / "train" / "cat"
    a, b = folder / "0000.png", folder / "0001.png"
    for path, value in ((a, 10), (b, 200)):  # uncompressed: the same size, other pixels
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path, compress_level=0)
    assert a.stat().st_size == b.stat().st_size
    first = data.load_cifar10(root, cache_dir=tmp_path / "cache", quiet=True)
    times = {p: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (a, b)}
    a.rename(folder / "swap")
    b.rename(a)
    (folder / "swap").rename(b)
    os.utime(a, ns=times[a])
    os.utime(b, ns=times[b])
    again = data.load_cifar10(root, cache_dir=tmp_path / "cache", quiet=True)
    cat = data.CLASSES.index("cat") * 2
    assert torch.equal(again.train_images[cat], first.train_images[cat + 1])
    assert torch.equal(again.train_images[cat + 1], first.train_images[cat])


def test_two_processes_building_the_first_cache_decode_once(small_data, tmp_path, monkeypatch):
    calls, real_decode = [], data._decode

    def slow_decode(files, split, quiet):
        calls.append(split)
        time.sleep(0.3)  # long enough for the other thread to arrive
        return real_decode(files, split, quiet)
    monkeypatch.setattr(data, "_decode", slow_decode)
    results, errors = [], []

    def load():
        try:
            results.append(data.load_cifar10(small_data, cache_dir=tmp_path / "cache", quiet=True))
        except Exception as error:  # pragma: no cover - what the test is for
            errors.append(error)
    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2
    assert results[0].content_hash == results[1].content_hash
    assert calls == ["train", "test"]  # decoded once; the second process read the cache
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def test_a_cache_taken_away_by_another_process_while_written_costs_nothing(small_data, tmp_path,
                                                                           monkeypatch, capsys):
    real_save = data_cache.save_torch

    def save_then_lose(obj, path):
        real_save(obj, path)
        path.unlink()  # another process removed it (an older version's clean-up)
    monkeypatch.setattr(data_cache, "save_torch", save_then_lose)
    loaded = data.load_cifar10(small_data, cache_dir=tmp_path / "cache", quiet=True)
    assert len(loaded.train_labels) == 10
    assert "could not cache" in capsys.readouterr().err


# --- 12: a huge file is refused before it is read ---

def test_a_huge_sparse_png_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:  # sparse: no disk used. The was 100 GB; 1 GiB
        handle.truncate(2 ** 30)  # takes the same path and cannot exhaust a shared machine
    started = time.monotonic()
    with pytest.raises(UsageError, match="far more than a 32x32 image needs") as error:
        image_files.read_image(path)
    assert time.monotonic() - started < 5 and "1,073,741,824 bytes" in one_line(error)


# --- 13: crafted JSON ---

@pytest.mark.parametrize("text,fragment", [
    ("[" * 100_000 + "]" * 100_000, "nests lists or objects more than"),
    ('{"a": ' + "[" * 40 + "]" * 40 + "}", "nests lists or objects more than"),
    ('{"n": ' + "9" * 5000 + "}", "whole number of 5000 digits"),
    ('{"n": 1e999}', "not a finite double"),
    ('{"n": NaN}', "NaN, which is not a number JSON allows"),
    ("[1, 2]", "a list of 2 items, not a JSON object"),
    ('{"a": 1', "not valid JSON (Expecting"),
    (b'{"a": "\xff"}', "not UTF-8"),
])
def test_crafted_json_is_one_line(text, fragment, tmp_path):
    path = tmp_path / "m.json"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with pytest.raises(UsageError, match="rerun it") as error:
        read_json(path, "metrics file", "rerun it")
    assert fragment in one_line(error)


def test_read_json_checks_the_size_before_reading(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as handle:
        handle.truncate(2 ** 30)  # sparse
    with pytest.raises(UsageError, match="1,073,741,824 bytes, more than"):
        read_json(path, "metrics file", "rerun it")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(UsageError, match="not a regular file"):
        read_json(tmp_path / "fifo.json", "metrics file", "rerun it")


def test_require_field_and_require_items():
    assert require(54.2, float, 0, 100, "test_accuracy") == 54.2
    assert require(3, float, 0, 100, "test_accuracy") == 3  # a whole number is a number
    for value, fragment in ((True, "is true, not a number in [0, 100]"),
                            ("54", "is the text '54', not a number"),
                            (101, "is 101, not a number in [0, 100]"),
                            (float("nan"), "is nan, not a number")):
        with pytest.raises(UsageError, match="test_accuracy") as error:
            require(value, float, 0, 100, "test_accuracy", "rerun train_classifier.py")
        assert fragment in one_line(error) and "rerun train_classifier.py" in str(error.value)
    with pytest.raises(UsageError, match="seeds is a list of 0 items, not a list with a length >= 1"):
        require([], list, 1, None, "seeds")
    with pytest.raises(UsageError, match="m.json lacks 'config'"):
        field({}, "config", dict, what="m.json")
    with pytest.raises(UsageError, match="m.json: config is a list of 0 items, not an object"):
        field({"config": []}, "config", dict, what="m.json")
    with pytest.raises(UsageError, match=r"per_class: cat is the text 'x', not a number"):
        require_items({"dog": 5, "cat": "x"}, float, 0, 100, "per_class")
    with pytest.raises(UsageError, match=r"losses\[1\] is null"):
        require_items([1.0, None], float, what="losses")
    assert require(None, (str, type(None)), what="init_from") is None


def test_task1_metrics_with_lists_where_objects_belong_are_no_comparison(tmp_path):
    path = tmp_path / "task1" / "metrics.json"
    path.parent.mkdir()
    for metrics in ({"task": "task1", "config": [], "test_predictions": "0", "test_labels": "0",
                     "test_accuracy": 1.0},
                    {"task": ["task1"]},
                    {"task": "task1", "config": {}, "test_predictions": "0", "test_labels": "0",
                     "test_accuracy": 10 ** 30}):
        path.write_text(json.dumps(metrics))
        found = train_deconv.task1_for_comparison(path, {"seed": 0}, torch.tensor([0]))
        assert found["message"].startswith("no comparison with Task 1"), found
    path.write_text('{"task": "task1", "config": ' + "[" * 5000 + "]" * 5000 + "}")
    found = train_deconv.task1_for_comparison(path, {"seed": 0}, torch.tensor([0]))
    assert "nests lists or objects more than" in found["message"]


def test_a_crafted_incomplete_marker_still_gives_the_refusal(tmp_path):
    (tmp_path / INCOMPLETE).write_text("[" * 100_000)
    with pytest.raises(UsageError, match="holds an unfinished run"):
        require_complete(tmp_path, "the Task 2 folder", "rerun it")


# --- 14: crafted checkpoints and training states ---

def _state_with(change) -> dict:
    state = TutorialNet().state_dict()
    change(state)
    return state


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s.update({5: torch.zeros(1)}), "key that is not a parameter name (int 5)"),
    (lambda s: s.update({"fc3.bias": torch.zeros(10).to_sparse()}), "sparse_coo tensor"),
    (lambda s: s.update({"fc3.bias": torch.zeros(10, device="meta")}), "meta tensor"),
    (lambda s: s.update({"fc3.bias": torch.zeros(10, dtype=torch.int64)}), "holds int64 values"),
    (lambda s: s.update({"fc3.bias": torch.zeros(10, dtype=torch.complex64)}), "complex64"),
    (lambda s: s.update({"fc3.bias": torch.zeros(12)}), "does not fit this architecture: "
                                                       "fc3.bias has shape (12,), it needs (10,)"),
    (lambda s: s.update({"fc3.bias": torch.full((10,), float("inf"))}), "non-finite weights"),
    (lambda s: s.clear(), "is an empty state dict (no weights at all)"),
])
def test_crafted_checkpoints_are_one_line(change, fragment, tmp_path):
    path = tmp_path / "cifar_net.pth"
    torch.save(_state_with(change), path)
    with pytest.raises(UsageError) as error:
        read_state_dict(path, "checkpoint")
    assert fragment in one_line(error)


class NotATensor:  # an object a checkpoint must not be able to bring in
    pass


def test_an_unsafe_pickle_is_one_line_without_torchs_warnings(tmp_path, capfd):
    path = tmp_path / "cifar_net.pth"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": NotATensor()}, handle, protocol=4)
    with pytest.raises(UsageError, match="holds Python objects other than tensors") as error:
        read_state_dict(path, "checkpoint")
    one_line(error)
    assert capfd.readouterr().err == ""


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """A training state after one (fake) epoch of a TutorialNet, with real momentum buffers."""
    net = TutorialNet()
    optimizer = train_classifier.sgd(net, _args())
    net(torch.zeros(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    path = tmp_path_factory.mktemp("state") / "training_state.pth"
    history = {"loss_log": [{"epoch": 1, "step": 2, "loss": 2.3}],
               "epoch_loss": [{"epoch": 1, "loss": 2.29}], "train_seconds": 1.5}
    save_training_state(path, {"model": "TutorialNet", "lr": 0.001}, 1, net, [optimizer],
                        torch.Generator().manual_seed(0), history)
    return torch.load(path, weights_only=True)


def _args():
    import argparse
    return argparse.Namespace(lr=0.001, momentum=0.9)


def _check(state, tmp_path, epochs=3):
    path = tmp_path / "training_state.pth"
    torch.save(state, path)
    net = TutorialNet()
    return check_training_state(path, {"model": "TutorialNet", "lr": 0.001}, epochs,
                                [train_classifier.sgd(net, _args())], net, ("loss",))


def _changed(saved_state, change):
    state = pickle.loads(pickle.dumps(saved_state))
    change(state)
    return state


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s.update(epoch=-3), "epoch is -3, not a whole number >= 0"),
    (lambda s: s.update(epoch=True), "epoch is true"),
    (lambda s: s.update(epoch=2), "epoch_loss (one entry per epoch, 2 here) is a list of 1 item"),
    (lambda s: s.update(history=[1, 2]), "history is a list of 2 items, not an object"),
    (lambda s: s["history"].update(train_seconds="fast"), "train_seconds is the text 'fast'"),
    (lambda s: s["history"]["loss_log"][0].update(loss=[1]), "loss_log[0]: loss is a list"),
    (lambda s: s["history"]["epoch_loss"][0].update(ce=1.0), "logs epoch, loss, ce, this run "
                                                            "logs epoch, loss"),
    (lambda s: s["settings"].update(lr=torch.ones(3)), "settings lr is a Tensor"),
    (lambda s: s["settings"].update({7: 1}), "a settings key is 7, not a text"),
    (lambda s: s["model_state"].update({"fc1.weight": torch.zeros(3)}), "fc1.weight has shape (3,)"),
    (lambda s: s["model_state"].update({"fc1.bias": torch.zeros(120, dtype=torch.int32)}),
     "holds int32 values"),
    (lambda s: s["optimizer_states"][0]["state"][0].update(momentum_buffer=torch.zeros(1)),
     "momentum_buffer has shape (1,), the parameter needs (6, 3, 5, 5)"),
    (lambda s: s["optimizer_states"][0]["state"][0].update(
        momentum_buffer=torch.full((6, 3, 5, 5), float("nan"))), "holds NaN, inf"),
    (lambda s: s["optimizer_states"][0]["param_groups"][0].update(lr=10.0),
     "made with another lr (10, this run 0.001)"),
    (lambda s: s["optimizer_states"][0]["state"].update({99: {}}), "an entry for no parameter"),
    (lambda s: s["optimizer_states"][0].update(state=[]), "state is a list of 0 items"),
    (lambda s: s.update(shuffle_rng=torch.zeros(5)), "shuffle_rng is not a random generator"),
])
def test_crafted_training_states_are_one_line(change, fragment, saved_state, tmp_path):
    with pytest.raises(UsageError) as error:
        _check(_changed(saved_state, change), tmp_path)
    assert fragment in one_line(error)


def test_a_genuine_training_state_passes(saved_state, tmp_path):
    assert _check(saved_state, tmp_path)["epoch"] == 1


# --- 15: full disks, dangling links, numbers float32 cannot hold ---

def test_a_full_disk_while_creating_the_output_folder_leaves_no_half_folder(tmp_path,
                                                                            monkeypatch):
    real_mkdir, calls = os.mkdir, []

    def mkdir(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(files.os, "mkdir", mkdir)
    with pytest.raises(UsageError, match="No space left on device.*free some disk space") as error:
        with run_folder(tmp_path / "new" / "task1", "train_classifier.py"):
            pass
    one_line(error)
    assert list(tmp_path.iterdir()) == []


class _FullDisk:
    """A lock file on a full disk: writes stay buffered, every flush fails (and, with
    `close_fails`, so does the flush that closing makes)."""

    def __init__(self, handle, close_fails: bool = False):
        self.handle, self.close_fails = handle, close_fails

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self.handle.close()
        if self.close_fails:
            raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("close_fails", [False, True])
def test_a_full_disk_while_writing_the_lock_is_one_line_and_leaves_nothing(close_fails, tmp_path,
                                                                          monkeypatch):
    """With close_fails, round six, case 14: closing the lock flushes what could not be written
    and raises again; the cleanup used to let that second OSError out as a traceback and leave a
    half-made folder."""
    real_open = files.open_no_follow
    monkeypatch.setattr(files, "open_no_follow",
                        lambda path, mode: _FullDisk(real_open(path, mode), close_fails))
    with pytest.raises(UsageError, match="No space left on device") as error:
        with run_folder(tmp_path / "new", "train_classifier.py"):
            pass
    one_line(error)
    assert list(tmp_path.iterdir()) == []


def test_a_dangling_link_among_the_python_batches_is_one_line(tmp_path):
    batches = tmp_path / "data" / data.BATCH_FOLDER
    batches.mkdir(parents=True)
    (batches / "data_batch_1").symlink_to(tmp_path / "gone")
    with pytest.raises(UsageError, match="data_batch_1 cannot be read .*symbolic link to a "
                                         "missing file") as error:
        data.load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", quiet=True)
    one_line(error)


@pytest.mark.parametrize("script,flag", [(train_classifier, "--lr"), (train_deconv, "--lambda"),
                                         (train_deconv, "--decoder-lr")])  # --momentum: at most 1
                                         # (test_bad_input.py)
def test_numbers_float32_cannot_hold_are_refused_as_flags(script, flag, tmp_path, monkeypatch,
                                                          capsys):
    code, lines = run_in_process(script, [flag, "1e39", "--out", tmp_path / "o", "--data-dir",
                                          tmp_path / "none"], monkeypatch,
                                 capsys, tmp_path)
    assert_one_line_error(code, lines, flag, "3.40282e+38")


# --- 16: messages that say what is wrong ---

@pytest.mark.parametrize("name,note", [("cat ", "'cat ' (leading or trailing space)"),
                                       ("c\u0430t", "'c\u0430t' (non-ASCII U+0430)")])
def test_a_class_folder_that_only_looks_right_is_named(name, note, small_data):
    (small_data / "train" / "cat").rename(small_data / "train" / name)
    with pytest.raises(UsageError) as error:
        data.load_cifar10(small_data, cache_dir=small_data.parent / "cache", quiet=True)
    text = one_line(error)
    assert "lacks class folder cat and has unexpected folder " + note in text


def test_task3_hashes_the_same_bytes_it_loads_the_weights_from(tmp_path, monkeypatch):
    """Issue 26, item 5: Task 2 rewriting its checkpoint while Task 3 starts must not give
    weights of one file and the hash of another."""
    import hashlib

    import torch

    import visualize_latents

    torch.manual_seed(0)
    first, second = DeconvNet(), DeconvNet()
    (tmp_path / "task2").mkdir()
    checkpoint = tmp_path / "task2" / "deconv_net.pth"
    torch.save(first.state_dict(), checkpoint)
    original = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    real_load = torch.load

    def load_then_rewrite(*args, **kwargs):  # Task 2 writes a new model right after the load
        result = real_load(*args, **kwargs)
        torch.save(second.state_dict(), checkpoint)
        return result
    monkeypatch.setattr(torch, "load", load_then_rewrite)
    net, sha256 = visualize_latents.load_task2_model(checkpoint, torch.device("cpu"))
    assert sha256 == original
    assert torch.equal(net.conv1.weight, first.conv1.weight)
