"""What breaks in real use: full disks, kills, stalled downloads, stale files, --resume edges."""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import data
from conftest import REPO, run_script, write_image_folders
from study.core.common import UsageError
from study.core.files import remove_stale_temporaries


def run_with_file_size_limit(script, *args, limit, env):
    """A script whose files may not grow beyond `limit` bytes: what a full disk looks like."""
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], env=env,
                          capture_output=True, text=True, preexec_fn=set_limit, timeout=240)


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no file-size limits here")
def test_a_full_disk_costs_a_warning_for_the_cache_and_one_error_for_results(tiny_cifar, tmp_path,
                                                                            script_env):
    out = tmp_path / "out"
    result = run_with_file_size_limit("train_classifier.py", "--data-dir", tiny_cifar, "--out", out,
                                      "--epochs", "1", "--quiet", limit=150_000, env=script_env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert any(line.startswith("warning: could not cache decoded CIFAR-10") for line in lines)
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "could not write" in errors[0] and "free some disk space" in errors[0]
    assert not list(out.glob(".*.tmp")) and not list((tmp_path / "cache").glob(".*.tmp"))
    assert not (out / "training_state.pth").exists()


@pytest.mark.slow
def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".cifar10-ab-cd.pt.pid{dead}-x1y2.tmp"
    live = tmp_path / f".cifar10-ab-cd.pt.pid{os.getppid()}-z3w4.tmp"
    foreign = tmp_path / ".someone-elses.tmp"
    for path in (stale, live, foreign):
        path.write_bytes(b"half a cache")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and foreign.exists()


@pytest.mark.slow
def test_loading_data_cleans_the_cache_folder_of_a_killed_run(tmp_path):
    root = write_image_folders(tmp_path / "data", 1, 1)
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (cache / f".cifar10-0-1.pt.pid{dead}-abc.tmp").write_bytes(b"x" * 1000)
    data.load_cifar10(root, cache_dir=cache, quiet=True)
    assert not list(cache.glob(".*.tmp")) and len(list(cache.glob("*.pt"))) == 1


def test_sigterm_during_training_stops_cleanly_and_says_how_to_resume(tmp_path, script_env):
    root = write_image_folders(tmp_path / "data", 300, 4)  # 750 steps per epoch: time to stop
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(REPO / "train_deconv.py"), "--data-dir",
                                str(root), "--out", str(out), "--epochs", "3", "--quiet"],
                               env=script_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not (out / "training_state.pth").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: the training state after epoch")
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not list(out.glob(".*.tmp"))


class StalledServer:
    """Accepts connections on 127.0.0.1 and never answers."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.connections.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self):
        for connection in self.connections:
            connection.close()
        self.socket.close()


@pytest.mark.slow
def test_a_stalled_download_gives_up_with_the_fix_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import torchvision
    server = StalledServer()
    try:
        monkeypatch.setattr(torchvision.datasets.CIFAR10, "url",
                            f"http://127.0.0.1:{server.port}/cifar-10-python.tar.gz")
        monkeypatch.setenv("CIFAR10_DOWNLOAD_TIMEOUT", "1")
        monkeypatch.delenv("CIFAR10_DIR", raising=False)
        monkeypatch.chdir(tmp_path)  # the default ./data
        started = time.monotonic()
        with pytest.raises(UsageError) as error:
            data.load_cifar10(None, cache_dir=tmp_path / "cache", quiet=True)
        assert time.monotonic() - started < 30
    finally:
        server.close()
    assert "could not download CIFAR-10" in str(error.value) and "--data-dir" in str(error.value)
    assert "no answer for 1 s" in str(error.value)
    assert "downloading CIFAR-10 (163 MB)" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # no half-downloaded archive, no empty folder


def test_quiet_hides_progress_but_not_warnings(tmp_path, capsys):
    root = write_image_folders(tmp_path / "src", 1, 1)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    data.load_cifar10(root, cache_dir=tmp_path / "cache", quiet=True)
    err = capsys.readouterr().err
    assert "warning: skipped 1 non-image file in" in err
    assert "note: cached the decoded images in" in err and "whatever --subset is" in err


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_classifier.py", "visualize_latents.py", "make_report.py"])
def test_an_empty_out_is_an_error_not_the_current_folder(script, tmp_path):
    result = run_script(script, "--out", "", cwd=tmp_path)
    assert result.returncode == 2 and "--out" in result.stderr and "empty" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- --resume edges ---

def _train(script, data_dir, out, env, *extra, cwd=None):
    return run_script(script, "--data-dir", data_dir, "--out", out, "--quiet", "--log-every", "10",
                      *extra, env=env, cwd=cwd)


@pytest.fixture
def two_epoch_states(trained_outputs):
    """A finished 2-epoch run of each training script, to resume from (tests use copies): the
    session's (conftest.trained_outputs), not trained again."""
    return trained_outputs


def _copy_of(states, script, tmp_path):
    import shutil
    folder = {"train_classifier.py": "task1", "train_deconv.py": "task2"}[script]
    return Path(shutil.copytree(states / folder, tmp_path / "out"))


def test_resume_refuses_fewer_epochs_than_trained(two_epoch_states, tiny_cifar, tmp_path,
                                                  script_env):
    out = _copy_of(two_epoch_states, "train_classifier.py", tmp_path)
    result = _train("train_classifier.py", tiny_cifar, out, script_env, "--epochs", "1", "--resume")
    assert result.returncode == 2
    assert "already trained 2 epochs, more than --epochs 1" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["config"]["epochs"] == 2


def test_resume_accepts_the_same_data_by_a_relative_path(two_epoch_states, tiny_cifar, tmp_path,
                                                         script_env):
    out = _copy_of(two_epoch_states, "train_deconv.py", tmp_path)
    relative = os.path.relpath(tiny_cifar, tmp_path)
    result = _train("train_deconv.py", relative, out, script_env, "--epochs", "3", "--resume",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed after epoch 2" in result.stdout


@pytest.mark.parametrize("script", ["train_classifier.py", "train_deconv.py"])
def test_resume_with_another_log_every_is_refused_by_both_tasks(script, two_epoch_states,
                                                               tiny_cifar, tmp_path, script_env):
    out = _copy_of(two_epoch_states, script, tmp_path)
    result = run_script(script, "--data-dir", tiny_cifar, "--out", out, "--quiet", "--epochs", "3",
                        "--log-every", "7", "--resume", env=script_env)
    assert result.returncode == 2 and "other settings (log_every)" in result.stderr


def test_resume_into_a_fresh_folder_leaves_nothing(tiny_cifar, tmp_path, script_env):
    out = tmp_path / "fresh"
    result = _train("train_classifier.py", tiny_cifar, out, script_env, "--resume")
    assert result.returncode == 2 and "run once without --resume" in result.stderr
    assert not out.exists()


def test_a_damaged_training_state_is_one_line(tiny_cifar, tmp_path, script_env):
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"something": "else"}, out / "training_state.pth")
    result = _train("train_deconv.py", tiny_cifar, out, script_env, "--resume")
    assert result.returncode == 2 and result.stderr.count("error:") == 1
    assert "is not a complete training state of this repo" in result.stderr


def test_a_loss_plot_without_running_means_has_no_empty_legend_entry(tmp_path):
    from study.reporting import plots
    history = {"loss_log": [], "epoch_loss": [{"epoch": 1, "loss": 2.3}]}  # epoch < --log-every
    plots.loss_curves(history, {"loss": "cross-entropy"}, 10, 2000, tmp_path / "loss.svg", "t")
    svg = (tmp_path / "loss.svg").read_text()
    assert "epoch mean" in svg and "mean of 2000 mini-batches" not in svg


def test_atomic_writes_reach_the_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """After a power loss a renamed file must not be empty: fsync the data, rename, fsync the folder."""
    from study.core import files
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)
    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    target = tmp_path / "result.json"
    files.save_json({"a": 1}, target)
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    temporary = events[1][1]
    assert events[0][1] == temporary and events[1][2] == str(target)
    assert events[2][1] == str(tmp_path)
    assert json.loads(target.read_text()) == {"a": 1}


@pytest.mark.parametrize("damage", ["no state", "wrong shape", "not finite", "no time"])
def test_a_layer1_cache_with_the_right_key_but_damaged_content_is_fitted_again(damage, tmp_path):
    """Round six, case 9: a cache whose key matches but whose content is damaged gave a KeyError
    or RuntimeError traceback; the docstring promises it is fitted again."""
    import torch

    from models import DeconvNet
    from study.analysis.decoders import layer1_refit

    torch.manual_seed(0)
    net = DeconvNet().eval()
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    checkpoint = tmp_path / "deconv_net.pth"
    key = {"checkpoint_sha256": "a" * 64, "data_sha256": "b" * 64, "epochs": 1, "seed": 0}
    good = torch.nn.ConvTranspose2d(6, 3, 5).state_dict()
    cached = {"key": key, "state": good, "fit_seconds": 1.0}
    if damage == "no state":
        del cached["state"]
    elif damage == "wrong shape":
        cached["state"] = torch.nn.ConvTranspose2d(6, 3, 3).state_dict()
    elif damage == "not finite":
        cached["state"] = {k: torch.full_like(v, float("nan")) for k, v in good.items()}
    else:
        del cached["fit_seconds"]
    torch.save(cached, checkpoint.with_name("layer1_decoder.pth"))
    refit, info = layer1_refit(net, checkpoint, key["checkpoint_sha256"], images,
                               key["data_sha256"], 1, 0, quiet=True)
    assert info["fitted_now"] is True
    assert all(torch.isfinite(v).all() for v in refit.deconv1.state_dict().values())
    # and the cache it wrote back is read as it is
    _, again = layer1_refit(net, checkpoint, key["checkpoint_sha256"], images, key["data_sha256"],
                            1, 0, quiet=True)
    assert again["fitted_now"] is False
