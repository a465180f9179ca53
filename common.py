"""Command line and files, shared by every script: one-line errors, flags, devices, safe writes.

Nothing here knows about the experiment; it keeps each script's `main()` about the task.
"""
import argparse
import contextlib
import errno
import json
import math
import os
import platform
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


MAX_SEED = 2 ** 32 - 2  # seed + 1 seeds the test subset; numpy and torch accept < 2**32


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing data, wrong checkpoint, full disk).

    Scripts print its message as one line and exit with status 2, without a traceback.
    """


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, with what the user can do next (e.g. rerun with --resume)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_cli(main: Callable[[], None]) -> None:
    """Run a script's main(); turn UsageError into `error: ...` on stderr and exit code 2.

    SIGTERM is handled like Ctrl-C, so `kill` and a closed terminal leave the same clean state.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except UsageError as error:
        _say(f"error: {error}")
        sys.exit(2)
    except Interrupted as stop:
        _say(f"interrupted: {stop}")
        sys.exit(130)
    except KeyboardInterrupt:
        _say("interrupted: every file written is whole; the run did not finish")
        sys.exit(130)


def _say(line: str) -> None:
    """One line on stderr, whatever bytes a file name holds (undecodable ones are escaped)."""
    line = " ".join(line.split("\n"))
    sys.stderr.write(line.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
    sys.stderr.flush()


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" unless the help text already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and a one-line error for bad flags.

    Abbreviations are off: `--se 7` would otherwise mean `--seed 7`, which no check that looks
    for `--seed` (sweep.py's) would see.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShown)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)
        self._raise_errors = False

    def error(self, message: str) -> None:  # argparse's own prints the whole usage first
        if self._raise_errors:
            raise UsageError(message)
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def check(self, argv: list[str]) -> argparse.Namespace:
        """Parse `argv` as the script would, raising UsageError instead of exiting.

        For a caller that passes flags on to this script (sweep.py): a bad flag is found before
        any run starts, and reported by the caller in its own words.
        """
        self._raise_errors = True
        try:
            return self.parse_args(argv)
        finally:
            self._raise_errors = False


def number(kind: type = float, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], Any]:
    """argparse type: a finite int or float in [low, high] ((low, high] with low_open).

    Each bound may be None. The error says the allowed range, e.g. "must be in (0, 1]".
    """
    left = "(" if low_open else "["
    show = (lambda v: str(v)) if kind is int else (lambda v: f"{v:g}")
    allowed = (f"in {left}{show(low)}, {show(high)}]" if low is not None and high is not None
               else f"> {show(low)}" if low_open else f">= {show(low)}" if low is not None
               else f"<= {show(high)}" if high is not None else "a number")
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text.strip()) if text.strip().isascii() else kind("not a number")
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if ((low is not None and (value < low or (low_open and value == low)))
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"{text} must be {allowed}")
        return value
    parse.__name__ = noun  # argparse names the type in its messages
    return parse


def output_folder(text: str) -> Path:
    """argparse type for --out: a non-empty path (an empty one would silently mean '.')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder such as outputs/task1")
    return Path(text)


def add_data_arguments(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    """Where CIFAR-10 is, which part of it, the seed and how chatty: the same in every script."""
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 location: image folders (train/<class>/*, test/<class>/*) "
                             "or cifar-10-batches-py; default $CIFAR10_DIR, else ./data in the "
                             "current folder (downloaded there when empty)")
    parser.add_argument("--subset", type=number(float, 0, 1, low_open=True), default=1.0,
                        help="use this stratified fraction of CIFAR-10's train and test sets, "
                             "in (0, 1]")
    if seed:
        parser.add_argument("--seed", type=number(int, 0, MAX_SEED), default=0,
                            help="seed of initialisation, shuffling and --subset")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (warnings and results are still printed)")


def add_output_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """Where results go and which device computes them."""
    parser.add_argument("--out", type=output_folder, default=Path(out),
                        help="output folder, relative to the current folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when a GPU is present, else CPU")


# --- device ---

def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        # Measured on a 2-core machine (benchmarks/bench_task1.py): at batch 4 every step is
        # overhead, and one thread with PyTorch's native convolutions beats oneDNN and more threads.
        # One thread also makes CPU runs bit-for-bit repeatable.
        torch.set_num_threads(1)
        torch.backends.mkldnn.enabled = False
    return torch.device(name)


def environment_info(device: torch.device) -> dict:
    import numpy
    import torchvision

    info = {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --- files: written to a temporary name and renamed, so no file is ever half-written ---

TEMP_PATTERN = re.compile(r"^\..+\.pid(\d+)-[^.]+\.tmp$")


def check_output_dir(path: Path) -> None:
    """Fail before any work if `path` cannot be created as a folder; creates nothing."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        reason = "is a file" if existing.exists() and not existing.is_dir() else "is not writable"
        raise UsageError(f"cannot write to output folder {path} ({existing} {reason}); "
                         "pass a writable --out")


def prepare_output_dir(path: Path) -> Path:
    """Create the output folder, or say clearly why it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to output folder {path} ({error.strerror or error}); "
                         "pass a writable --out") from None
    remove_stale_temporaries(path)
    return path


INCOMPLETE = ".incomplete"  # in an output folder while a run writes it, and after it failed
LOCK = ".lock"


@contextlib.contextmanager
def run_folder(path: Path, script: str) -> Iterator[Path]:
    """Hold the output folder for one run: one writer at a time, marked incomplete until the end.

    A second run into the same folder is refused while this one lives (an flock, released by
    the kernel however this process ends). The folder carries INCOMPLETE from the start until
    the run succeeds, so results of an earlier run never pass for this one's after a failure:
    Task 3 and the report refuse a folder that carries it.
    """
    import fcntl

    out = prepare_output_dir(path)
    try:
        lock = open(out / LOCK, "a+")
    except OSError as error:
        raise UsageError(f"cannot write to output folder {out} ({error.strerror}); "
                         "pass a writable --out") from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UsageError(f"another run ({holder}) is writing to {out} right now; wait for it "
                             "to finish or pass another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{script}, pid {os.getpid()}")
        lock.flush()
        mark_incomplete(out, script)
        try:
            yield out
        except (KeyboardInterrupt, Interrupted) as stop:
            detail = str(stop) + "; " if isinstance(stop, Interrupted) else ""
            raise Interrupted(f"{detail}{out} is marked incomplete ({INCOMPLETE}) until the run "
                              "is repeated; every file in it is whole, but they are not one "
                              "run's results") from None
        (out / INCOMPLETE).unlink(missing_ok=True)
    finally:
        lock.close()


def mark_incomplete(folder: Path, script: str) -> None:
    """Mark `folder` as holding an unfinished run of `script` (read by require_complete)."""
    save_json({"script": script, "pid": os.getpid(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S")}, Path(folder) / INCOMPLETE)


def require_complete(folder: Path, what: str, fix: str) -> None:
    """Refuse results from a folder whose last run did not finish (see run_folder)."""
    marker = Path(folder) / INCOMPLETE
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            started = f"{info['script']} started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            started = "a run"
        raise UsageError(f"{what} {folder} holds an unfinished run ({started}; {INCOMPLETE} "
                         f"is there), so its files may be older than that run; {fix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete this repo's temporary files left by killed processes (never a live writer's)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        match = TEMP_PATTERN.match(path.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class DiskWriteError(OSError):
    """A write the disk refused, reported by a library as something other than OSError."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds.

    A full or failing disk becomes one UsageError naming the file; the temporary is removed.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}-",
                                        suffix=".tmp")
    except OSError as error:
        raise UsageError(f"cannot write {path} ({error.strerror or error}); "
                         "check the folder or pass another --out") from None
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; results should read like any other file
    try:
        yield tmp
        _fsync(tmp)  # the data reaches the disk before the new name does
        os.replace(tmp, path)
        _fsync(path.parent)  # and the rename itself survives a power loss
    except OSError as error:
        hint = ("free some disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, None)
                else "check the disk")
        raise UsageError(f"could not write {path} ({error.strerror or error}); {hint} or pass "
                         "another --out, then run again") from None
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_json(data: dict, path: Path) -> None:
    """Write JSON atomically; a NaN or infinite result is refused rather than written."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise UsageError(f"refusing to write {path}: a result is NaN or infinite (non-finite "
                         "weights or inputs?); check the checkpoint and the data") from None
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(figure: Any, path: Path, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
    finally:
        plt.close(figure)


def save_torch(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError:  # how torch.save reports a full disk or a file-size limit
            raise DiskWriteError("the disk refused the write: full, over quota or over a "
                                 "file-size limit") from None


def read_json(path: Path, what: str, fix: str) -> dict:
    """A JSON object from `path`, or one UsageError naming the file, the problem and `fix`."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{what} {path} is not valid JSON; {fix}") from None
    except OSError as error:
        raise UsageError(f"{what} {path} is unreadable ({error.strerror}); {fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} does not hold a JSON object; {fix}")
    return data


def load_torch_file(path: Path, what: str) -> Any:
    """torch.load with weights_only=True, or one UsageError for a missing or damaged file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder; pass the checkpoint file inside it "
                         "(e.g. cifar_net.pth or deconv_net.pth)")
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise UsageError(f"{what} {path} is not a readable PyTorch checkpoint "
                         f"({type(error).__name__}); it may be truncated, write it again") from None
