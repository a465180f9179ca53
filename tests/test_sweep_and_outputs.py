"""Misuse of the scripts and the sweep: malformed image files, outputs that must belong to one
run, a sweep that cannot mix or mislabel runs, and no traceback anywhere."""
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bad_input import assert_one_line_error, run_in_process

import data
import make_report
import sweep
import train_classifier
import train_deconv
import visualize_latents
from conftest import REPO, run_script, write_image_folders
from models import DeconvNet
from study.core import image_files
from study.core.common import UsageError
from study.core.files import save_json, save_torch
from study.core.layout import INCOMPLETE, TRAINING_STATE
from study.runs.folders import run_folder
from study.runs.summary import summarize


def png_bytes(pixels: np.ndarray, bit_depth: int = 8, colour_type: int = 2,
              width: int | None = None, height: int | None = None) -> bytes:
    """A PNG written by hand (so the header can claim any size and any bit depth)."""
    h, w = pixels.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + pixels[y].astype(dtype).tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width or w, height or h, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.fixture
def small_data(tmp_path):
    return write_image_folders(tmp_path / "data", 1, 1)


# --- 1, 2: image files ---

def test_a_png_with_a_flipped_data_byte_is_one_line_naming_the_file(small_data, tmp_path,
                                                                   monkeypatch, capsys):
    path = small_data / "train" / "cat" / "0000.png"
    encoded = bytearray(path.read_bytes())
    start = encoded.index(b"IDAT") + 8
    encoded[start + 5] ^= 0xFF
    path.write_bytes(bytes(encoded))
    code, lines = run_in_process(train_classifier, ["--data-dir", small_data, "--out",
                                                    tmp_path / "o", "--quiet"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "0000.png", "not a readable image")
    assert not (tmp_path / "o").exists()


def test_a_png_header_claiming_20000x20000_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(np.zeros((2, 2, 3)), width=20000, height=20000))
    with pytest.raises(UsageError, match="not 32x32"):
        image_files.read_image(path)
    path.write_bytes(png_bytes(np.zeros((2, 2, 3)), width=2000, height=2000))
    with pytest.raises(UsageError, match="2000x2000, not 32x32"):
        image_files.read_image(path)


def test_16_bit_pngs_keep_their_high_byte(tmp_path):
    values = np.arange(32 * 32).reshape(32, 32) % 256
    grey = tmp_path / "grey16.png"
    grey.write_bytes(png_bytes(values * 256, bit_depth=16, colour_type=0))
    decoded = image_files.read_image(grey)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded[..., 1], values)
    rgb = np.stack([values, 255 - values, values // 2], axis=2)
    colour = tmp_path / "rgb16.png"
    colour.write_bytes(png_bytes(rgb * 257, bit_depth=16, colour_type=2))
    assert np.array_equal(image_files.read_image(colour), rgb)


def test_hidden_files_such_as_appledouble_are_skipped(small_data):
    (small_data / "train" / "cat" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    loaded = data.load_cifar10(small_data, cache_dir=small_data.parent / "cache", quiet=True)
    assert len(loaded.train_labels) == 10


def test_an_unreadable_image_is_called_unreadable_not_damaged(small_data, tmp_path):
    path = small_data / "train" / "cat" / "0000.png"
    with pytest.raises(UsageError, match="cannot be read .*permissions"):
        image_files.read_image(path.with_name("missing.png"))
    assert image_files.read_image(path).shape == (32, 32, 3)


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_prints_as_one_line(small_data, tmp_path):
    folder = small_data / "train" / "cat"
    name = os.fsencode(folder) + b"/\xff\xfe-bad.png"
    with open(name, "wb") as handle:
        handle.write(b"not an image")
    result = run_script("train_classifier.py", "--data-dir", small_data, "--out", tmp_path / "o",
                        "--quiet", env=dict(os.environ, CIFAR10_CACHE=str(tmp_path / "c")))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "not a readable image" in result.stderr and "\\udcff" in result.stderr


# --- 3, 5: one run's results per folder ---

def test_a_folder_whose_run_did_not_finish_is_refused_by_task3_and_the_report(
        trained_outputs, tmp_path, monkeypatch, capsys):
    task2 = trained_outputs / "task2"
    (task2 / INCOMPLETE).write_text(json.dumps({"script": "train_deconv.py",
                                                "started": "2026-01-01 00:00:00", "pid": 1}))
    try:
        code, lines = run_in_process(visualize_latents, [
            "--checkpoint", task2 / "deconv_net.pth", "--out", tmp_path / "t3", "--quiet"],
            monkeypatch, capsys, tmp_path)
        assert_one_line_error(code, lines, "unfinished run", "train_deconv.py")
        assert not (tmp_path / "t3").exists()
        code, lines = run_in_process(make_report, ["--outputs", trained_outputs, "--out",
                                                   tmp_path / "r"], monkeypatch, capsys, tmp_path)
        assert_one_line_error(code, lines, "unfinished run")
        assert not (tmp_path / "r" / "report.pdf").exists()
    finally:
        (task2 / INCOMPLETE).unlink()


def test_an_interrupted_run_leaves_its_folder_marked_and_says_so(tmp_path):
    from study.core.common import Interrupted
    with pytest.raises(Interrupted, match="marked incomplete"):
        with run_folder(tmp_path / "out", "x.py"):
            raise KeyboardInterrupt
    assert (tmp_path / "out" / INCOMPLETE).exists()
    with run_folder(tmp_path / "out", "x.py"):
        pass
    assert not (tmp_path / "out" / INCOMPLETE).exists()


@pytest.mark.slow
def test_a_second_writer_into_the_same_folder_is_refused(tiny_cifar, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from study.runs.folders import run_folder\n"
        "with run_folder(__import__('pathlib').Path(%r), 'holder.py'):\n"
        "    print('held', flush=True); time.sleep(60)") % (str(REPO), str(tmp_path / "o"))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_script("train_classifier.py", "--data-dir", tiny_cifar, "--out",
                            tmp_path / "o", "--quiet", "--epochs", "1",
                            env=dict(os.environ, CIFAR10_CACHE=str(tmp_path / "c")))
        errors = [l for l in result.stderr.splitlines() if not l.startswith(("note:", "warning:"))]
        assert result.returncode == 2 and len(errors) == 1, result.stderr
        assert "another run (holder.py, pid" in errors[0]
    finally:
        holder.kill()
        holder.wait()


def test_a_refused_resume_writes_nothing(trained_outputs, tiny_cifar, tmp_path, monkeypatch,
                                         capsys):
    import shutil
    out = Path(shutil.copytree(trained_outputs / "task1", tmp_path / "task1"))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, lines = run_in_process(train_classifier, [
        "--data-dir", tiny_cifar, "--out", out, "--quiet", "--epochs", "2", "--log-every", "10",
        "--resume", "--lr", "0.01"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "other settings", "lr")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_training_state_without_optimizer_states_is_one_line(trained_outputs, tiny_cifar,
                                                               tmp_path, monkeypatch, capsys):
    import shutil
    out = Path(shutil.copytree(trained_outputs / "task1", tmp_path / "task1"))
    state = torch.load(out / TRAINING_STATE, weights_only=False)
    del state["optimizer_states"]
    torch.save(state, out / TRAINING_STATE)
    code, lines = run_in_process(train_classifier, [
        "--data-dir", tiny_cifar, "--out", out, "--quiet", "--epochs", "3", "--log-every", "10",
        "--resume"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "optimizer_states")


# --- 4, 6: the sweep ---

@pytest.mark.slow
def test_a_run_waiting_for_a_failed_run_is_not_started(tmp_path):
    runs = [sweep.Run("first", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "a"),
            sweep.Run("second", [sys.executable, "-c", "open(%r, 'w')" % str(tmp_path / "ran")],
                      tmp_path / "b", after=("first",))]
    codes = sweep.run_parallel(runs, 2, tmp_path / "logs", quiet=True)
    assert codes == {"first": 3, "second": sweep.NOT_STARTED}
    assert not (tmp_path / "ran").exists()


@pytest.mark.slow
def test_two_quick_interrupts_leave_no_child_of_the_sweep_alive(tmp_path):
    script = tmp_path / "parent.py"
    pids = tmp_path / "pids"
    script.write_text(
        f"import sys, os, signal\nsys.path.insert(0, {str(REPO)!r})\n"
        "import sweep\nfrom pathlib import Path\nfrom study.core.common import run_cli\n"
        "child = 'import os, time; open(%r, \"a\").write(str(os.getpid()) + chr(10)); "
        "time.sleep(120)'\n"
        f"runs = [sweep.Run(f'r{{i}}', [sys.executable, '-c', child % {str(pids)!r}], Path('.')) "
        "for i in range(2)]\n"
        f"run_cli(lambda: sweep.run_parallel(runs, 2, Path({str(tmp_path / 'logs')!r}), quiet=True))\n")
    parent = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.1)
    children = [int(p) for p in pids.read_text().split()]
    parent.send_signal(signal.SIGINT)
    parent.send_signal(signal.SIGTERM)
    parent.send_signal(signal.SIGINT)
    _, err = parent.communicate(timeout=30)
    assert parent.returncode == 130, err
    time.sleep(0.5)
    for pid in children:
        assert not alive(pid), pid


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a container's init to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("flag", ["--seed", "--lambda=0.5", "--out", "--task1-metrics", "--data-dir"])
def test_flags_the_sweep_sets_itself_are_refused_after_the_separator(flag, tmp_path, monkeypatch,
                                                                    capsys):
    code, lines = run_in_process(sweep, ["--outputs", tmp_path / "o", "--", flag, "5"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, flag.split("=")[0], "would override")


def test_lambdas_that_print_alike_get_their_own_folders(tmp_path):
    runs = sweep.plan([0], [1e-4, 1.000001e-4, 0.0], tmp_path, [])
    folders = [r.out for r in runs]
    names = [r.name for r in runs]
    assert len(set(folders)) == len(folders) and len(set(names)) == len(names)
    assert tmp_path / "runs" / "task2_lambda0_seed0" in folders


def test_an_empty_seed_list_gets_a_grammatical_message(tmp_path, monkeypatch, capsys):
    code, lines = run_in_process(sweep, ["--seeds", "", "--outputs", tmp_path], monkeypatch,
                                 capsys, tmp_path)
    assert code == 2 and "is empty; give at least one value" in lines[-1]


# --- reliability issue 26, items 6 and 7: flags after -- are read as the runs read them ---

@pytest.mark.parametrize("module,argv", [
    (train_classifier, ["--se", "7"]), (train_deconv, ["--lam", "0.5"]),
    (visualize_latents, ["--check", "x.pth"]), (sweep, ["--seed", "3"]),
    (make_report, ["--outp", "o"])])
def test_no_script_takes_an_abbreviated_flag(module, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_an_abbreviated_seed_after_the_separator_is_refused_before_any_run(small_data, tmp_path,
                                                                          monkeypatch, capsys):
    """`--se 7` was argparse's prefix of --seed: every run trained seed 7, labelled 0 and 1."""
    out = tmp_path / "o"
    code, lines = run_in_process(sweep, ["--data-dir", small_data, "--outputs", out, "--seeds",
                                         "0,1", "--lambdas", "1e-2", "--quiet", "--", "--epochs",
                                         "1", "--se", "7"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "--se", "unrecognized arguments", "train_classifier.py")
    assert not out.exists()


def test_a_flag_only_task2_takes_is_refused_since_task1_runs_get_it_too(small_data, tmp_path,
                                                                       monkeypatch, capsys):
    code, lines = run_in_process(sweep, ["--data-dir", small_data, "--outputs", tmp_path / "o",
                                         "--", "--decoder-lr", "0.1"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "--decoder-lr", "train_classifier.py")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_after_the_separator_is_refused(flag, small_data, tmp_path, monkeypatch, capsys):
    """Every child printed its help and exited 0; the sweep summarised the previous runs."""
    out = tmp_path / "o"
    code, lines = run_in_process(sweep, ["--data-dir", small_data, "--outputs", out, "--seeds", "0",
                                         "--lambdas", "1e-2", "--quiet", "--", flag],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, flag, "print and exit")
    assert not out.exists()


@pytest.mark.slow
def test_a_run_that_exits_0_without_its_results_failed_and_is_not_summarised(tmp_path):
    """A previous sweep's metrics.json in a folder this sweep marked incomplete is not its result."""
    runs = sweep.plan([0], [1e-2], tmp_path, [])
    for run in runs:
        run.out.mkdir(parents=True)
        (run.out / "metrics.json").write_text(json.dumps({"test_accuracy": 99.0}))
        (run.out / INCOMPLETE).write_text("{}")  # what the sweep does before it starts a run
        run.command = [sys.executable, "-c", "pass"]  # exits 0, trains nothing (like --help)
    codes = sweep.run_parallel(runs, 2, tmp_path / "logs", quiet=True)
    assert codes == {"task1 seed 0": sweep.NO_RESULTS, "task2 seed 0": sweep.NOT_STARTED}
    summary = summarize(runs, codes, [0], [1e-2])
    assert summary["per_seed"] == [] and summary["lambda_sweep"] == []
    assert summary["failed_runs"] == ["task1 seed 0", "task2 seed 0"]


@pytest.mark.slow
def test_a_run_that_exits_0_with_its_results_is_a_success(tmp_path):
    out = tmp_path / "a"
    write = f"import os; open({str(out / 'metrics.json')!r}, 'w').write('{{}}'); os.remove({str(out / INCOMPLETE)!r})"
    out.mkdir()
    (out / INCOMPLETE).write_text("{}")
    runs = [sweep.Run("writes", [sys.executable, "-c", write], out, results=out / "metrics.json"),
            sweep.Run("forgets", [sys.executable, "-c", "pass"], tmp_path / "b",
                      results=tmp_path / "b" / "metrics.json")]
    assert sweep.run_parallel(runs, 2, tmp_path / "logs", quiet=True) == {
        "writes": 0, "forgets": sweep.NO_RESULTS}


# --- 7, 8: comparisons and non-finite results ---

def _task1_metrics(tmp_path, **changes):
    labels = torch.tensor([0, 1, 2, 3])
    metrics = {"task": "task1", "test_accuracy": 50.0, "test_predictions": "0100",
               "test_labels": "0123", "config": {"seed": 0}, **changes}
    path = tmp_path / "task1" / "metrics.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics))
    return path, labels


@pytest.mark.parametrize("changes,reason", [
    ({"test_predictions": "01"}, "has 2 test predictions, this run 4"),
    ({"task": "task2"}, "holds the metrics of task2, not of Task 1"),
    ({"test_accuracy": "fifty"}, "not a Task 1 metrics file"),
])
def test_task1_results_that_cannot_be_compared_say_why(changes, reason, tmp_path):
    path, labels = _task1_metrics(tmp_path, **changes)
    found = train_deconv.task1_for_comparison(path, {"seed": 0}, labels)
    assert reason in found["message"]


def test_a_task2_started_from_task1s_weights_is_not_called_independent(tmp_path):
    path, labels = _task1_metrics(tmp_path)
    (path.parent / "cifar_net.pth").write_bytes(b"x")
    found = train_deconv.task1_for_comparison(
        path, {"seed": 0, "init_from": str(path.parent / "cifar_net.pth")}, labels)
    comparison = train_deconv.compare_with_task1(found, torch.tensor([0, 1, 2, 0]), labels)
    assert comparison["independent"] is False and "NOT independent" in comparison["message"]
    # expected McNemar here: Task 1 right on 0,1 (2 images); Task 2 right on 0,1,2: b=0, c=1
    assert comparison["mcnemar"]["only_second_correct"] == 1
    assert comparison["mcnemar"]["p_value"] == 1.0


def test_a_task2_started_from_a_copy_of_task1s_weights_is_not_called_independent(tmp_path):
    """Round six, case 4: the comparison compared paths, so a copy of Task 1's cifar_net.pth
    passed as --init-from made the same numbers 'independent'; it compares the weights now."""
    path, labels = _task1_metrics(tmp_path)
    (path.parent / "cifar_net.pth").write_bytes(b"task 1's weights")
    copy, other = tmp_path / "copy.pth", tmp_path / "other.pth"
    copy.write_bytes(b"task 1's weights")
    other.write_bytes(b"another run's weights")
    found = train_deconv.task1_for_comparison(path, {"seed": 0, "init_from": str(copy)}, labels)
    assert found["independent"] is False
    found = train_deconv.task1_for_comparison(path, {"seed": 0, "init_from": str(other)}, labels)
    assert found["independent"] is True


def test_nan_weights_are_refused_not_reported_as_infinite_psnr(tmp_path, small_data, monkeypatch,
                                                               capsys):
    net = DeconvNet()
    net.deconv1.bias.data[0] = float("nan")
    (tmp_path / "task2").mkdir()
    save_torch(net.state_dict(), tmp_path / "task2" / "deconv_net.pth")
    code, lines = run_in_process(visualize_latents, [
        "--checkpoint", tmp_path / "task2" / "deconv_net.pth", "--data-dir", small_data,
        "--out", tmp_path / "t3", "--quiet"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "non-finite weights", "deconv1.bias")
    with pytest.raises(UsageError, match="NaN or infinite"):
        save_json({"psnr": float("nan")}, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


# --- the tracebacks that became one line ---

@pytest.mark.parametrize("args,fragment", [
    (["--z2-channels", "top²"], "give topK"),
    (["--z2-channels", "1,²"], "channel numbers"),
    (["--seed", "18446744073709551615", "--subset", "0.5"], "must be in [0, 4294967294]"),
    (["--seed", "18446744073709551616"], "must be in [0, 4294967294]"),
    (["--test-index", "1", "--test-class", "dog"], "give one of them"),
    (["--checkpoint", "."], "is a folder"),
])
def test_visualize_latents_flags_are_one_line(args, fragment, small_data, tmp_path, monkeypatch,
                                              capsys):
    (tmp_path / "ck").mkdir()
    checkpoint = tmp_path / "ck" / "deconv_net.pth"
    save_torch(DeconvNet().state_dict(), checkpoint)
    base = ["--data-dir", small_data, "--out", tmp_path / "t3", "--quiet"]
    if "--checkpoint" not in args:
        base += ["--checkpoint", checkpoint]
    code, lines = run_in_process(visualize_latents, [*base, *args], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, fragment)


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf"])
def test_a_bad_download_timeout_is_named(value, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DOWNLOAD_TIMEOUT", value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="CIFAR10_DOWNLOAD_TIMEOUT=.*positive number of seconds"):
        data.load_cifar10(tmp_path / "empty", cache_dir=tmp_path / "c")


def test_empty_environment_variables_mean_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", "")
    monkeypatch.setenv("CIFAR10_CACHE", " ")
    assert data.default_data_dir() == Path("data")
    assert data.default_cache_dir() == Path("data") / "cache"


def test_a_split_folder_given_as_data_dir_points_at_its_parent(small_data):
    with pytest.raises(UsageError, match="looks like a train/ or test/ folder; pass its parent"):
        data.load_cifar10(small_data / "train", cache_dir=small_data.parent / "c")


def test_init_from_a_folder_says_it_is_a_folder(tmp_path, small_data, monkeypatch, capsys):
    code, lines = run_in_process(train_deconv, ["--data-dir", small_data, "--out", tmp_path / "o",
                                                "--init-from", tmp_path, "--quiet"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "is a folder")


@pytest.mark.slow
def test_a_huge_batch_size_allocates_nothing_up_front(tiny_cifar, tmp_path):
    result = run_script("train_classifier.py", "--data-dir", tiny_cifar, "--out", tmp_path / "o",
                        "--quiet", "--epochs", "1", "--batch-size", "1000000000",
                        env=dict(os.environ, CIFAR10_CACHE=str(tmp_path / "c")))
    assert result.returncode == 0, result.stderr


def test_make_report_on_a_missing_folder_refuses(tmp_path, monkeypatch, capsys):
    code, lines = run_in_process(make_report, ["--outputs", tmp_path / "nothing"], monkeypatch,
                                 capsys, tmp_path)
    assert_one_line_error(code, lines, "nothing to report")
    assert not (tmp_path / "nothing").exists()


def test_a_figure_linked_to_a_file_outside_the_outputs_is_not_embedded(trained_outputs, tmp_path,
                                                                       monkeypatch, capsys):
    """Round six, case 16: task1/train_samples.png -> /elsewhere/secret.png used to appear in
    report.pdf, against make_report's docstring; now one line, no report."""
    import shutil
    outputs = Path(shutil.copytree(trained_outputs, tmp_path / "outputs"))
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    shutil.copy(outputs / "task1" / "train_samples.png", secret)
    (outputs / "task1" / "train_samples.png").unlink()
    (outputs / "task1" / "train_samples.png").symlink_to(secret)
    code, lines = run_in_process(make_report, ["--outputs", outputs], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "train_samples.png is a link")
    assert not (outputs / "report.pdf").exists()


@pytest.mark.parametrize("damage", ["per_class_list", "accuracy_text", "huge_figure"])
def test_make_report_garbled_inputs_are_one_line(damage, trained_outputs, tmp_path, monkeypatch,
                                                 capsys):
    import shutil
    outputs = Path(shutil.copytree(trained_outputs, tmp_path / "outputs"))
    metrics_path = outputs / "task1" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    if damage == "per_class_list":
        metrics["per_class_accuracy"] = list(metrics["per_class_accuracy"].values())
    elif damage == "accuracy_text":
        metrics["test_accuracy"] = "high"
    else:
        (outputs / "task1" / "train_samples.png").write_bytes(
            png_bytes(np.zeros((2, 2, 3)), width=20000, height=20000))
    metrics_path.write_text(json.dumps(metrics))
    code, lines = run_in_process(make_report, ["--outputs", outputs], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines)
    assert not (outputs / "report.pdf").exists()


def test_make_report_reads_outputs_without_writing_there(trained_outputs, tmp_path):
    import shutil
    outputs = Path(shutil.copytree(trained_outputs, tmp_path / "outputs"))
    before = sorted(p.relative_to(outputs) for p in outputs.rglob("*"))
    result = run_script("make_report.py", "--outputs", outputs, "--out", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(outputs) for p in outputs.rglob("*")) == before
    assert (tmp_path / "report" / "architecture.svg").is_file()


def _others_can_run_python() -> bool:
    path = Path(sys.executable).resolve()
    return all(p.stat().st_mode & 0o001 for p in path.parents) and path.stat().st_mode & 0o001


@pytest.mark.skipif(os.geteuid() != 0 or not _others_can_run_python(),
                    reason="needs root to drop to another user, who must be able to run Python")
def test_folders_another_user_cannot_read_are_one_line(tmp_path):
    """As a non-root user (nobody): an unreadable cache folder and an unreadable class folder."""
    root = write_image_folders(tmp_path / "data", 1, 1)
    tmp_path.chmod(0o755)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    locked_cache = tmp_path / "cache"
    locked_cache.mkdir(mode=0o700)
    (root / "test" / "dog").chmod(0o700)
    out = tmp_path / "out"
    out.mkdir(mode=0o777)

    def as_nobody():
        os.setgid(65534)
        os.setuid(65534)
    for cache, fragment in ((locked_cache, "dog"), (tmp_path / "c2", "dog")):
        result = subprocess.run([sys.executable, str(REPO / "train_classifier.py"), "--data-dir",
                                 str(root), "--out", str(out / "o"), "--quiet"],
                                env=dict(os.environ, CIFAR10_CACHE=str(cache), HOME=str(out)),
                                capture_output=True, text=True, preexec_fn=as_nobody, cwd=out,
                                timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0] and "cannot be read" in errors[0]


@pytest.mark.slow
def test_makefile_passes_paths_with_quotes_dollars_and_backticks_unharmed(tmp_path):
    show = tmp_path / "show.sh"
    show.write_text('#!/bin/sh\nprintf "%s|" "$CIFAR10_DIR" "$@"\n')
    show.chmod(0o755)
    weird = str(tmp_path / 'a"b$c`touch pwned`d e')
    result = subprocess.run(["make", "-s", "-C", str(REPO), "task1", f"PYTHON={show}",
                             f"CIFAR10_DIR={weird}", "SUBSET=0.5; touch pwned2"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fields = result.stdout.split("|")
    assert fields[0] == weird
    assert "0.5; touch pwned2" in fields
    assert not list(tmp_path.glob("pwned*")) and not list(REPO.glob("pwned*"))


def test_permission_errors_are_one_line_even_as_root(small_data, tmp_path, monkeypatch):
    """What an unreadable class or cache folder looks like (root reads everything, so the
    operating system's refusal is simulated)."""
    real_iterdir, real_is_file = Path.iterdir, Path.is_file
    locked = {small_data / "test" / "dog", tmp_path / "cache"}

    def iterdir(self):
        if self in locked:
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    def is_file(self):
        if self.parent in locked:
            raise PermissionError(13, "Permission denied")
        return real_is_file(self)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(Path, "is_file", is_file)
    with pytest.raises(UsageError, match=r"test/dog cannot be read \(Permission denied\)"):
        data.load_cifar10(small_data, cache_dir=tmp_path / "cache", quiet=True)
    locked.discard(small_data / "test" / "dog")
    loaded = data.load_cifar10(small_data, cache_dir=tmp_path / "cache", quiet=True)
    assert len(loaded.test_labels) == 10
