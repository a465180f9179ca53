"""Bad input, for every script it applies to: one line on stderr, exit code 2, nothing written.

The scripts run in-process here (as `python script.py` would run them, through run_cli) so the
whole matrix stays fast; test_pipeline.py runs them as real subprocesses.
"""
import json
import re
import shutil
import sys

import pytest
import torch

import make_report
import train_classifier
import train_deconv
import visualize_latents
from conftest import run_script, write_image_folders
from models import DeconvNet, TutorialNet
from study.core.common import UsageError, run_cli
from study.core.files import atomic_path, save_torch

TRAINING_SCRIPTS = {"train_classifier": train_classifier, "train_deconv": train_deconv}
DATA_SCRIPTS = {**TRAINING_SCRIPTS, "visualize_latents": visualize_latents}


@pytest.fixture(scope="module")
def good_data(tmp_path_factory):
    return write_image_folders(tmp_path_factory.mktemp("good"), 1, 1)


@pytest.fixture(scope="module")
def deconv_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "deconv_net.pth"
    save_torch(DeconvNet().state_dict(), path)
    return path


def run_in_process(module, args, monkeypatch, capsys, tmp_path):
    """Run module.main() through run_cli with argv; return (exit code, stderr lines)."""
    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", [module.__name__ + ".py", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(module.main)
    err = capsys.readouterr().err
    return exit_info.value.code, [line for line in err.splitlines() if line.strip()]


def assert_one_line_error(code, lines, *fragments):
    assert code == 2
    errors = [line for line in lines if not line.startswith(("warning:", "note:"))]
    assert len(errors) == 1, lines
    assert errors[0].startswith("error: ")
    assert "Traceback" not in errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def script_args(name, data_dir, out, checkpoint):
    args = ["--data-dir", data_dir, "--out", out, "--quiet"]
    if name == "visualize_latents":
        args += ["--checkpoint", checkpoint]
    else:
        args += ["--epochs", "1"]
    return args


# --- broken data: every case is checked once in test_data.py; here one smoke per script ---

@pytest.mark.parametrize("script", DATA_SCRIPTS)
def test_broken_data_stops_every_script_before_it_writes(script, tmp_path, monkeypatch, capsys,
                                                         deconv_checkpoint):
    root = write_image_folders(tmp_path / "data", 1, 1)
    shutil.rmtree(root / "train" / "cat")
    out = tmp_path / "out"
    code, lines = run_in_process(DATA_SCRIPTS[script],
                                 script_args(script, root, out, deconv_checkpoint),
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "lacks class folder cat")
    assert not out.exists()


# --- bad numbers ---

BAD_FLAGS = [
    ("--subset", "0"), ("--subset", "1.5"), ("--subset", "nan"),
    ("--lr", "-0.1"), ("--lr", "inf"), ("--lr", "abc"),
    ("--epochs", "0"), ("--epochs", "-1"), ("--epochs", "1.5"),
    ("--batch-size", "0"), ("--batch-size", "-4"),
]


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
@pytest.mark.parametrize("flag,value", BAD_FLAGS)
def test_bad_training_flags(script, flag, value, good_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    code, lines = run_in_process(TRAINING_SCRIPTS[script],
                                 ["--data-dir", good_data, "--out", out, flag, value],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, flag)
    assert not out.exists()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "ten"])
def test_bad_lambda(value, good_data, tmp_path, monkeypatch, capsys):
    code, lines = run_in_process(train_deconv, ["--data-dir", good_data, "--out",
                                                tmp_path / "out", "--lambda", value],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "--lambda")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", DATA_SCRIPTS)
def test_subset_on_every_script(script, good_data, tmp_path, monkeypatch, capsys, deconv_checkpoint):
    args = script_args(script, good_data, tmp_path / "out", deconv_checkpoint) + ["--subset", "0"]
    code, lines = run_in_process(DATA_SCRIPTS[script], args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "--subset", "(0, 1]")


# --- channels and indices (Task 3) ---

@pytest.mark.parametrize("flag,value,fragment", [
    ("--z2-channels", "16", "channel 16 does not exist; z2 has channels 0..15"),
    ("--z2-channels", "-1", "channel -1 does not exist"),
    ("--z2-channels", "a,b", "give 'all', 'topK' or channel numbers"),
    ("--z2-channels", "top17", "K in 1..16"),
    ("--z2-channels", "top0", "K in 1..16"),
    ("--z1-channels", "6", "z1 has channels 0..5"),
    ("--z1-channels", "top3", "z1 has only 6 channels"),
    ("--test-class", "unicorn", "--test-class"),
    ("--train-index", "10", "past the end of the train set (10 images)"),
    ("--test-index", "99", "past the end of the test set"),
    ("--test-index", "-3", "--test-index"),
])
def test_bad_channels_and_indices(flag, value, fragment, good_data, tmp_path, monkeypatch,
                                  capsys, deconv_checkpoint):
    args = script_args("visualize_latents", good_data, tmp_path / "out", deconv_checkpoint)
    code, lines = run_in_process(visualize_latents, args + [flag, value], monkeypatch, capsys,
                                 tmp_path)
    assert_one_line_error(code, lines, fragment)
    assert not (tmp_path / "out").exists()


# --- checkpoints ---

def _other_model(path):
    save_torch(TutorialNet().state_dict(), path)


def _other_architecture(path):
    state = DeconvNet().state_dict()
    state["conv1.weight"] = torch.zeros(8, 3, 5, 5)
    save_torch(state, path)


def _truncated(path):
    save_torch(DeconvNet().state_dict(), path)
    path.write_bytes(path.read_bytes()[:300])


def _foreign(path):
    torch.save({"weights": [1, 2, 3]}, path)  # readable, but no model state dict


def _unrelated_state_dict(path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)


BAD_CHECKPOINTS = {"other model": (_other_model, "holds a TutorialNet, not a DeconvNet"),
                   "other architecture": (_other_architecture, "does not fit"),
                   "truncated": (_truncated, "not a readable PyTorch checkpoint"),
                   "foreign": (_foreign, "is not a model state dict"),
                   "unrelated state dict": (_unrelated_state_dict,
                                            "neither the tutorial net nor the DeconvNet")}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_bad_task3_checkpoint(case, good_data, tmp_path, monkeypatch, capsys):
    make, fragment = BAD_CHECKPOINTS[case]
    checkpoint = tmp_path / "ckpt.pth"
    make(checkpoint)
    args = script_args("visualize_latents", good_data, tmp_path / "out", checkpoint)
    code, lines = run_in_process(visualize_latents, args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, fragment)
    assert not (tmp_path / "out").exists()


def test_missing_task3_checkpoint_says_run_task2_first(good_data, tmp_path, monkeypatch, capsys):
    args = script_args("visualize_latents", good_data, tmp_path / "out", tmp_path / "none.pth")
    code, lines = run_in_process(visualize_latents, args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "run train_deconv.py first")


@pytest.mark.parametrize("case", ["truncated", "foreign", "other architecture"])
def test_bad_init_from(case, good_data, tmp_path, monkeypatch, capsys):
    make, _ = BAD_CHECKPOINTS[case]
    checkpoint = tmp_path / "ckpt.pth"
    make(checkpoint)
    if case == "other architecture":  # a classifier whose conv1 has 8 filters
        state = TutorialNet().state_dict()
        state["conv1.weight"] = torch.zeros(8, 3, 5, 5)
        save_torch(state, checkpoint)
    args = script_args("train_deconv", good_data, tmp_path / "out", None)
    code, lines = run_in_process(train_deconv, args + ["--init-from", checkpoint], monkeypatch,
                                 capsys, tmp_path)
    assert_one_line_error(code, lines, "--init-from")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_resume_without_state(script, good_data, tmp_path, monkeypatch, capsys):
    args = script_args(script, good_data, tmp_path / "out", None) + ["--resume"]
    code, lines = run_in_process(TRAINING_SCRIPTS[script], args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "--resume", "run once without --resume")


# --- output folder and device ---

@pytest.mark.parametrize("script", [*DATA_SCRIPTS, "make_report"])
def test_unwritable_output_folder(script, good_data, tmp_path, monkeypatch, capsys,
                                  deconv_checkpoint):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "out"  # cannot be created, even by root
    if script == "make_report":
        module, args = make_report, ["--outputs", tmp_path / "nothing", "--out", out]
    else:
        module, args = DATA_SCRIPTS[script], script_args(script, good_data, out, deconv_checkpoint)
    code, lines = run_in_process(module, args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "cannot write to output folder", "--out")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("script", DATA_SCRIPTS)
def test_cuda_without_gpu(script, good_data, tmp_path, monkeypatch, capsys, deconv_checkpoint):
    args = script_args(script, good_data, tmp_path / "out", deconv_checkpoint)
    code, lines = run_in_process(DATA_SCRIPTS[script], args + ["--device", "cuda"], monkeypatch,
                                 capsys, tmp_path)
    assert_one_line_error(code, lines, "no CUDA GPU is available", "--device cpu")


# --- make_report's own inputs ---

def test_report_rejects_invalid_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "task1").mkdir()
    (tmp_path / "task1" / "metrics.json").write_text("{not json")
    code, lines = run_in_process(make_report, ["--outputs", tmp_path], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "task1/metrics.json is not valid JSON")
    assert not (tmp_path / "report.md").exists()


def test_report_names_a_missing_key(tmp_path, monkeypatch, capsys):
    (tmp_path / "task2").mkdir()
    (tmp_path / "task2" / "metrics.json").write_text(json.dumps({"test_accuracy": 50}))
    code, lines = run_in_process(make_report, ["--outputs", tmp_path], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "task2/metrics.json lacks 'test_accuracy_standard_error'; rerun train_deconv.py")


# --- bad flags through a real process: exit code, one line, no traceback ---

@pytest.mark.slow
def test_real_process_gets_one_line_and_exit_2(tmp_path):
    result = run_script("train_classifier.py", "--data-dir", tmp_path / "nope", "--out",
                        tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    result = run_script("train_deconv.py", "--lambda", "-1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1


@pytest.mark.parametrize("script", ["train_classifier.py", "train_deconv.py",
                                    "visualize_latents.py", "make_report.py"])
@pytest.mark.slow
def test_help(script):
    result = run_script(script, "--help")
    assert result.returncode == 0 and "--out" in result.stdout and "default" in result.stdout


# --- atomic writes ---

def test_a_failed_save_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    save_torch({"version": 1}, path)

    def dies_half_way(obj, file):
        open(file, "wb").write(b"half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(UsageError, match="could not write .*model.pth .No space left on device."):
        save_torch({"version": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.json") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert not (tmp_path / "new.json").exists()


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os
    with atomic_path(tmp_path / "f.json") as tmp:
        tmp.write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_diverging_loss_stops_with_the_step_and_writes_no_results(script, good_data, tmp_path,
                                                                  monkeypatch, capsys):
    out = tmp_path / "out"
    args = script_args(script, good_data, out, None) + ["--lr", "1e30", "--log-every", "1"]
    code, lines = run_in_process(TRAINING_SCRIPTS[script], args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "at epoch 1, mini-batch ", "lower --lr")
    assert re.search(r"mini-batch \d+; lower --lr", lines[-1])
    assert "state" not in lines[-1]  # none was written, so none is said to be kept
    for name in ("metrics.json", "cifar_net.pth", "deconv_net.pth", "training_state.pth"):
        assert not (out / name).exists()


@pytest.mark.parametrize("script,flag,value,bound", [
    ("train_classifier", "--threads", "100000", "must be in [1, {cores}]"),
    ("train_deconv", "--threads", "1000", "must be in [1, {cores}]"),
    ("visualize_latents", "--threads", "100000", "must be in [1, {cores}]"),
    ("visualize_latents", "--null-draws", "100000000", "must be in [19, 99999]"),
    ("visualize_latents", "--baseline-seeds", "100000", "must be in [1, 20]"),
    ("visualize_latents", "--occlusion-images", "100000000", "must be in [1, 10000]"),
    ("train_classifier", "--momentum", "1.5", "must be in [0, 1]"),
])
def test_numbers_past_their_bound_are_refused_before_anything_runs(script, flag, value, bound):
    """Round six, cases 11, 12 and 17: a thread count past the cores this process may use (it
    segfaulted at 100,000), null draws, seeds and images past their stated limits (a list of 1e8
    seeds was a hang), a momentum above 1: one argparse line naming the range, exit 2."""
    import os

    module = {**DATA_SCRIPTS, "train_classifier": train_classifier}[script]
    with pytest.raises(SystemExit) as stop:
        module.parse_args([flag, value])
    assert stop.value.code == 2
    cores = len(os.sched_getaffinity(0))
    message = _last_error(module, flag, value)
    assert bound.format(cores=cores) in message and flag in message


def _last_error(module, flag, value) -> str:
    """The argparse message of parse_args([flag, value]), as the user reads it."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        module.parse_args([flag, value])
    return err.getvalue()


@pytest.mark.slow
def test_make_depth_checks_its_variables_before_training(tmp_path):
    """Round six, case 13: make depth with DEPTH_NULL_DRAWS=5 stops with Task 3's own one-line
    range error before the sweep starts (it used to train three networks first), so nothing is
    trained or written."""
    import subprocess

    from conftest import REPO

    result = subprocess.run(["make", "-s", "-C", str(REPO), "depth", "DEPTH_NULL_DRAWS=5",
                             f"PYTHON={sys.executable}"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert "argument --null-draws: 5 must be in [19, 99999]" in result.stderr
    assert "training runs" not in result.stdout + result.stderr  # the sweep never started


def test_finite_but_huge_weights_are_one_line_before_the_probes_touch_their_folder(
        trained_outputs, tiny_cifar, tmp_path, monkeypatch, capsys):
    """Round six, case 10: weights of 3e38 pass the finiteness check but overflow in the forward
    pass; scikit-learn then failed with "Input X contains NaN". Now: one line, nothing written."""
    import probe_layers

    huge = tmp_path / "huge"
    huge.mkdir()
    state = torch.load(trained_outputs / "task2" / "deconv_net.pth", weights_only=True)
    state = {k: (torch.full_like(v, 3e38) if k.startswith("conv") else v) for k, v in state.items()}
    torch.save(state, huge / "deconv_net.pth")
    shutil.copy(trained_outputs / "task2" / "metrics.json", huge / "metrics.json")
    code, lines = run_in_process(probe_layers, ["--checkpoint", huge / "deconv_net.pth",
                                                "--data-dir", tiny_cifar, "--quiet",
                                                "--out", tmp_path / "probes"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "features are not all finite")
    assert not (tmp_path / "probes").exists()


@pytest.mark.parametrize("module", [make_report, visualize_latents, train_classifier])
def test_an_out_with_a_name_longer_than_the_file_system_allows_is_one_line(module, tmp_path,
                                                                           monkeypatch, capsys):
    """Round six, case 18: a path component of 300 bytes gave an OSError traceback (Task 3, the
    report); now one line, before anything is read or written."""
    out = tmp_path / ("x" * 300) / "inner"
    code, lines = run_in_process(module, ["--out", out], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "more than a file system allows")
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "cache"])


def test_init_from_a_checkpoint_of_another_architecture_says_so(good_data, tmp_path, monkeypatch,
                                                               capsys):
    """Round six, case 17: a deep4 checkpoint given to a tutorial run's --init-from was said to
    hold "neither the tutorial net nor the DeconvNet"."""
    from models import ARCHITECTURES
    checkpoint = tmp_path / "deep.pth"
    save_torch(TutorialNet(ARCHITECTURES["small3"]).state_dict(), checkpoint)
    args = script_args("train_deconv", good_data, tmp_path / "out", None)
    code, lines = run_in_process(train_deconv, args + ["--init-from", checkpoint], monkeypatch,
                                 capsys, tmp_path)
    assert_one_line_error(code, lines, "of another architecture", "8, 16, 32", "--arch")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, words", [(["--z2-channels", "3,3"], "channel 3 is given twice"),
                                         (["--z1-channels", "0,1,0"], "channel 0 is given twice"),
                                         (["--out", "/"], "the root of the file system")])
def test_task3_refuses_a_repeated_channel_and_the_root_folder(args, words, tmp_path, monkeypatch,
                                                             capsys):
    """Round six, case 17: --z2-channels 3,3 and --out / were accepted."""
    code, lines = run_in_process(visualize_latents, args, monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, words)


def test_the_sweep_counts_failed_and_skipped_runs_apart(tmp_path, monkeypatch, capsys):
    """Round six, case 17: "2 run(s) failed" counted a run that was only skipped because the
    run it waits for failed."""
    import sweep
    from study.runs.plan import NOT_STARTED

    monkeypatch.setattr(sweep, "run_parallel",
                        lambda runs, jobs, logs, quiet=False: {"task1 seed 0": 1,
                                                               "task2 seed 0": NOT_STARTED})
    monkeypatch.setattr(sweep, "load_cifar10", lambda *a, **k: type("D", (), {"content_hash": "h"})())
    code, lines = run_in_process(sweep, ["--seeds", "0", "--lambdas", "0.01", "--outputs",
                                         tmp_path / "outputs"], monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "1 run failed (task1 seed 0)",
                          "1 run waiting for them not started (task2 seed 0)")
