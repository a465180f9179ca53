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
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


MAX_SEED = 2 ** 32 - 2  # seed + 1 seeds the test subset; numpy and torch accept < 2**32
FLOAT32_MAX = 3.4028234663852886e38  # a larger learning rate or weight cannot reach float32


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing data, wrong checkpoint, full disk).

    Scripts print its message as one line and exit with status 2, without a traceback.
    The message is kept on one line with its names escaped (`printable`) from the start, so
    it is harmless wherever it is shown, not only where run_cli prints it.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(printable(message), *args)


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


# Characters that a terminal acts on or that break a line: C0 and C1 controls (ESC, BEL, CR,
# LF, ...), DEL, the Unicode line and paragraph separators, bidirectional overrides and marks,
# and lone surrogates (the bytes of a file name that are not UTF-8).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: Any) -> str:
    """`text` (a str, a Path, anything) as one harmless line for a terminal.

    Control characters become escapes (ESC as \\x1b, a newline as \\n, an undecodable byte
    of a file name as \\udcff), so a file or folder name can neither move the cursor, set the
    window title, overwrite a printed line nor forge an extra `warning:` line. Everything else,
    Cyrillic letters included, is kept as it is. Backslashes are kept too, so the escape of a
    name that held a real backslash reads the same; names are for reading, not for parsing.
    """
    return _UNPRINTABLE.sub(_escape, str(text))


def say(line: str) -> None:
    """One line on stderr, always: every name in it is passed through `printable`.

    run_cli prints errors through it and data.warn warnings, so every message a script gives
    is escaped in one place.
    """
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


_say = say


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
        say(f"error: {message} (see {self.prog} --help)")
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


# Which task's results each script writes (the "task" of its metrics.json): an output folder
# holding another task's metrics.json is refused, so one task never overwrites another's results.
TASK_OF_SCRIPT = {"train_classifier.py": "task1", "train_deconv.py": "task2",
                  "visualize_latents.py": "task3"}
METRICS = "metrics.json"


def check_output_dir(path: Path, task: str | None = None,
                     data_dir: str | Path | None = None) -> None:
    """Fail before any work if `path` cannot be this run's output folder; creates nothing.

    Refused, each with one line: a folder that cannot be created or written; one inside the
    data folder (`data_dir`, default $CIFAR10_DIR or ./data) or inside any CIFAR-10 split or
    batch folder, where figures would be read as images next time; and, with `task` (e.g.
    "task1", "task3", "report"), one whose metrics.json belongs to another task.
    """
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        reason = "is a file" if existing.exists() and not existing.is_dir() else "is not writable"
        raise UsageError(f"cannot write to output folder {path} ({existing} {reason}); "
                         "pass a writable --out")
    _refuse_data_folder(Path(path), data_dir)
    if task is not None:
        _refuse_other_task(Path(path), task)


def _default_data_dir() -> Path:
    from data import default_data_dir  # data imports common: import it only when needed
    return default_data_dir()


def _refuse_data_folder(path: Path, data_dir: str | Path | None) -> None:
    target = path.resolve()
    data = Path(data_dir) if data_dir is not None and str(data_dir).strip() else _default_data_dir()
    data = data.resolve()
    if target == data or data in target.parents:
        raise UsageError(f"output folder {path} is inside the data folder {data}; results "
                         "written there would be read as data next time: pass an --out "
                         "outside it (e.g. outputs/task1)")
    from data import BATCH_FOLDER, CLASSES
    for folder in (target, *target.parents):
        parent = folder.parent
        split = (folder.name in ("train", "test") and (parent / "train").is_dir()
                 and (parent / "test").is_dir()
                 and any((folder / name).is_dir() for name in CLASSES))
        if split or folder.name == BATCH_FOLDER:
            raise UsageError(f"output folder {path} is inside the CIFAR-10 folder {folder}; "
                             "results written there would be read as data next time: pass an "
                             "--out outside it (e.g. outputs/task1)")


def _refuse_other_task(path: Path, task: str) -> None:
    """Refuse a folder whose metrics.json, or whose unfinished run (INCOMPLETE: a run killed
    before its metrics were written), belongs to another task."""
    for name, key in ((METRICS, "task"), (INCOMPLETE, "script")):
        file = path / name
        if not file.is_file():
            continue
        try:
            found = read_json(file, "metrics file", "").get(key)
        except UsageError:  # a damaged file is no other task's result: it is replaced
            continue
        if key == "script":
            found = TASK_OF_SCRIPT.get(found) if isinstance(found, str) else None
        if isinstance(found, str) and found != task:
            what = "results" if name == METRICS else "unfinished run"
            raise UsageError(f"output folder {path} holds the {what} of {found} ({file}); "
                             f"this script writes {task}: pass another --out so they are not "
                             "overwritten")


def _make_folders(path: Path) -> list[Path]:
    """mkdir -p that undoes itself: the folders it created, or OSError with none left behind."""
    missing = []
    folder = Path(path)
    while not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise FileExistsError(errno.EEXIST, "a file is in the way", str(folder))
        missing.append(folder)
        if folder == folder.parent:
            break
        folder = folder.parent
    created = []
    try:
        for folder in reversed(missing):
            os.mkdir(folder)
            created.append(folder)
    except OSError:
        _remove_folders(created)
        raise
    return created


def _remove_folders(created: list[Path]) -> None:
    """Remove folders this run created (deepest first), if they are still empty."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:
            return


def prepare_output_dir(path: Path) -> Path:
    """Create the output folder, or say clearly why it cannot be written (leaving nothing)."""
    _prepare(path)
    return path


def _prepare(path: Path) -> list[Path]:
    created: list[Path] = []
    try:
        created = _make_folders(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        _remove_folders(created)
        raise UsageError(f"cannot write to output folder {path} ({error.strerror or error}); "
                         f"{_disk_hint(error)} or pass a writable --out") from None
    remove_stale_temporaries(path)
    return created


def _disk_hint(error: OSError) -> str:
    return ("free some disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, None)
            else "check the disk")


def open_no_follow(path: Path, mode: str = "w") -> Any:
    """open(path, mode) for writing that never writes through a link; for every file we write.

    mode: "w", "a" or "a+" (add "b" for bytes). A symbolic link at `path` (or a hard link, a
    file with other names) is replaced by a new file of our own: the link is removed, never its
    target, so `OUT/.lock -> ../victim.txt` cannot make a run write into victim.txt. Only the
    last component is checked (the folder itself is the user's choice). A FIFO, device or
    folder at `path` is one UsageError. "w" truncates only after these checks.
    sweep.py should open its logs with it: `open_no_follow(log_dir / name, "w")`.
    """
    if mode.replace("b", "") not in ("w", "a", "a+"):
        raise ValueError(f"open_no_follow: mode {mode!r} is not w, a or a+")
    flags = (os.O_RDWR if "+" in mode else os.O_WRONLY) | os.O_CREAT | os.O_NOFOLLOW | \
        os.O_NONBLOCK | os.O_CLOEXEC | (os.O_APPEND if "a" in mode else 0)
    for attempt in range(3):
        try:
            fd = os.open(path, flags | (os.O_EXCL if attempt else 0), 0o666)
        except OSError as error:
            if error.errno == errno.ELOOP or (error.errno == errno.EEXIST and attempt):
                os.unlink(path)  # a symbolic link (or a new one, in a race): remove the link
                say(f"warning: {path} was a symbolic link; replaced it with a new file "
                    "(the file it pointed to is untouched)")
                continue
            if error.errno == errno.ENXIO:  # a FIFO nobody reads
                raise UsageError(f"{path} is not a regular file (a FIFO); remove it or pass "
                                 "another --out") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise UsageError(f"{path} is not a regular file (a FIFO, device or folder); "
                             "remove it or pass another --out")
        if info.st_nlink > 1:  # a hard link to a file elsewhere: give this name its own file
            os.close(fd)
            os.unlink(path)
            say(f"warning: {path} was a hard link to another file; replaced it with a new "
                "file (the other one is untouched)")
            continue
        os.set_blocking(fd, True)
        if mode.startswith("w"):
            os.ftruncate(fd, 0)
        return os.fdopen(fd, mode.replace("w", "a") if mode.startswith("w") else mode)
    raise UsageError(f"{path} keeps being replaced by a link while this run writes it; "
                     "stop whatever does that, or pass another --out")


INCOMPLETE = ".incomplete"  # in an output folder while a run writes it, and after it failed
LOCK = ".lock"


@contextlib.contextmanager
def run_folder(path: Path, script: str, data_dir: str | Path | None = None) -> Iterator[Path]:
    """Hold the output folder for one run: one writer at a time, marked incomplete until the end.

    The folder is checked first (check_output_dir, with the task `script` writes and the data
    folder `data_dir`). A second run into the same folder is refused while this one lives (an
    flock, released by the kernel however this process ends). The folder carries INCOMPLETE
    from the start until the run succeeds, so results of an earlier run never pass for this
    one's after a failure: Task 3 and the report refuse a folder that carries it. The lock file
    is opened without following links (open_no_follow); if the folder cannot be set up (a full
    disk), the folders this call created are removed again.
    """
    import fcntl

    check_output_dir(path, TASK_OF_SCRIPT.get(script), data_dir)
    created = _prepare(path)
    out = path
    lock = None
    try:
        try:
            lock = open_no_follow(out / LOCK, "a+")
        except OSError as error:
            raise UsageError(f"cannot write to output folder {out} ({error.strerror}); "
                             "pass a writable --out") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read(200).strip() or "another process"
            raise UsageError(f"another run ({holder}) is writing to {out} right now; wait for it "
                             "to finish or pass another --out") from None
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{script}, pid {os.getpid()}")
            lock.flush()
        except OSError as error:
            raise UsageError(f"cannot write to output folder {out} ({error.strerror or error}); "
                             f"{_disk_hint(error)} or pass another --out") from None
        mark_incomplete(out, script)
    except BaseException:
        if lock is not None:
            lock.close()
        if created:  # a folder this run made and could not set up: leave nothing behind
            for name in (LOCK, INCOMPLETE):
                with contextlib.suppress(OSError):
                    (out / name).unlink()
            _remove_folders(created)
        raise
    try:
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
    if marker.exists() or marker.is_symlink():
        try:
            info = read_json(marker, "marker", "")
            started = (f"{require(info.get('script'), str, 1, 200, 'script')} started "
                       f"{require(info.get('started'), str, 1, 40, 'started')}")
        except UsageError:
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
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    # mkstemp makes 0600; results should read like any other file. Through the descriptor,
    # not the name: a link put in the temporary's place cannot redirect the chmod.
    os.fchmod(fd, 0o666 & ~umask)
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)  # the data reaches the disk before the new name does
        os.replace(tmp, path)
        _fsync(path.parent)  # and the rename itself survives a power loss
    except OSError as error:
        raise UsageError(f"could not write {path} ({error.strerror or error}); "
                         f"{_disk_hint(error)} or pass another --out, then run again") from None
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


# --- JSON: read with limits, then checked value by value ---

JSON_MAX_BYTES = 64 * 2 ** 20  # metrics files are under 1 MB; the sweep's summary too
JSON_MAX_DEPTH = 32  # the deepest file this repo writes (Task 3's metrics) nests 7 levels
JSON_MAX_DIGITS = 20  # a whole number of up to 20 digits (any int64 or uint64)
JSON_MAX_NUMBER_TEXT = 64  # characters of a written real number (1e999 is refused anyway)


class _JSONLimit(ValueError):
    """A number or a nesting that read_json refuses; its text says which."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_DIGITS:
        raise _JSONLimit(f"holds a whole number of {len(text.lstrip('-'))} digits "
                         f"(at most {JSON_MAX_DIGITS} are read)")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text) if len(text) <= JSON_MAX_NUMBER_TEXT else math.inf
    if not math.isfinite(value):
        raise _JSONLimit(f"holds the number {text[:20]}{'...' if len(text) > 20 else ''}, "
                         "which is not a finite double")
    return value


def _json_constant(name: str) -> float:
    raise _JSONLimit(f"holds {name}, which is not a number JSON allows")


def _json_depth(data: Any) -> int:
    """How deeply lists and objects nest in `data` (iterative: no recursion limit)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if depth > JSON_MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest


def read_json(path: Path, what: str, fix: str, max_bytes: int = JSON_MAX_BYTES) -> dict:
    """A JSON object from `path`, or one UsageError naming the file, the problem and `fix`.

    Limits, so that a crafted file costs one line and not a traceback or the memory: at most
    `max_bytes` bytes (checked before reading; a FIFO or folder is refused), nesting at most
    JSON_MAX_DEPTH deep, whole numbers of at most JSON_MAX_DIGITS digits, finite real numbers
    only (no NaN, Infinity or 1e999), valid UTF-8, and an object at the top. What the values
    are is checked by the caller, with `require` and `field`.
    """
    path = Path(path)
    problem = None
    try:
        # non-blocking, so that a FIFO is refused instead of waiting for a writer forever
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{what} {path} is not a regular file; {fix}")
            if info.st_size > max_bytes:
                raise UsageError(f"{what} {path} is {info.st_size:,} bytes, more than the "
                                 f"{max_bytes:,} a file of this repo can be; {fix}")
            os.set_blocking(handle.fileno(), True)
            encoded = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder, not a JSON file; {fix}") from None
    except OSError as error:
        raise UsageError(f"{what} {path} is unreadable ({error.strerror}); {fix}") from None
    if len(encoded) > max_bytes:
        raise UsageError(f"{what} {path} grew past {max_bytes:,} bytes while being read; {fix}")
    try:
        data = json.loads(encoded.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_json_constant)
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except json.JSONDecodeError as error:
        problem = f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
    except _JSONLimit as error:
        problem = str(error)
    except RecursionError:
        problem = f"nests lists or objects more than {JSON_MAX_DEPTH} deep"
    except ValueError as error:  # e.g. Python's own limit on the digits of an int
        problem = f"holds a value that cannot be read ({error})"
    if problem is None and _json_depth(data) > JSON_MAX_DEPTH:
        problem = f"nests lists or objects more than {JSON_MAX_DEPTH} deep"
    if problem is None and not isinstance(data, dict):
        problem = f"holds {_describe(data)}, not a JSON object"
    if problem is not None:
        raise UsageError(f"{what} {path} {problem}; {fix}")
    return data


_NUMBERS = {float: "a number", int: "a whole number", bool: "true or false", str: "a text",
            list: "a list", dict: "an object", type(None): "null"}


def _describe(value: Any) -> str:
    """What a JSON value is, in a few words (texts shortened, control characters escaped)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return f"the text {printable(repr(value[:40]))}{'...' if len(value) > 40 else ''}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return f"an object of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, torch.Tensor):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def describe(value: Any) -> str:
    """A value in a few words for a message: "the text 'abc'", "a list of 3 items", "null",
    "a Tensor of shape (3,)"; never a long or multi-line repr."""
    return _describe(value)


def _kind_matches(value: Any, kind: type) -> bool:
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def require(value: Any, kind: type | tuple[type, ...], low: float | None = None,
            high: float | None = None, what: str = "a value",
            fix: str = "rerun the script that wrote it") -> Any:
    """`value` if it is of `kind` (and within [low, high]); else one UsageError "what is X, not Y; fix".

    kind: float (any finite int or float, never a bool or NaN), int (a whole number, never a
    bool), bool, str, list, dict, type(None), or a tuple of these (any of them). low and high
    (inclusive, each optional) bound a number's value and a str's, list's or dict's length.
    `what` names the value for the user, e.g. "outputs/task1/metrics.json: test_accuracy";
    `fix` says what to do. Examples:

        accuracy = require(metrics.get("test_accuracy"), float, 0, 100, f"{path}: test_accuracy")
        seeds = require(summary["seeds"], list, 1, None, f"{path}: seeds", "rerun sweep.py")

    See `field` (a key of an object) and `require_items` (every element of a list or object).
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    matched = next((k for k in kinds if _kind_matches(value, k)), None)
    if matched is not None:
        size = (value if matched in (float, int) else len(value)
                if matched in (str, list, dict) else None)
        if size is None or ((low is None or size >= low) and (high is None or size <= high)):
            return value
    expected = " or ".join(_NUMBERS.get(k, k.__name__) for k in kinds)
    if low is not None or high is not None:
        counted = all(k in (str, list, dict) for k in kinds)
        show = "{:g}".format
        bounds = (f"in [{show(low)}, {show(high)}]" if low is not None and high is not None
                  else f">= {show(low)}" if low is not None else f"<= {show(high)}")
        expected += f" with a length {bounds}" if counted else f" {bounds}"
    raise UsageError(f"{what} is {_describe(value)}, not {expected}; {fix}")


def field(data: Any, key: str, kind: type | tuple[type, ...], low: float | None = None,
          high: float | None = None, what: str = "the file",
          fix: str = "rerun the script that wrote it") -> Any:
    """data[key], checked by `require` (what: "WHAT: key"); a missing key or a `data` that is
    not an object is one UsageError too. E.g. field(metrics, "test_accuracy", float, 0, 100,
    str(path), "rerun train_classifier.py")."""
    require(data, dict, what=what, fix=fix)
    if key not in data:
        raise UsageError(f"{what} lacks {key!r}; {fix}")
    return require(data[key], kind, low, high, f"{what}: {key}", fix)


def require_items(values: Any, kind: type | tuple[type, ...], low: float | None = None,
                  high: float | None = None, what: str = "a list",
                  fix: str = "rerun the script that wrote it") -> Any:
    """`values` (a list or an object) if every element (or every value) passes
    require(element, kind, low, high); the error names the element: "WHAT[3]" or "WHAT: key"."""
    require(values, (list, dict), what=what, fix=fix)
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for key, value in items:
        require(value, kind, low, high,
                f"{what}: {key}" if isinstance(values, dict) else f"{what}[{key}]", fix)
    return values


def load_torch_file(path: Path, what: str, data: bytes | None = None) -> Any:
    """torch.load with weights_only=True, or one UsageError for a missing or damaged file.

    With `data`, the file's bytes as read once by the caller (who hashed them) are loaded, so
    the weights are those of the hash even if the file is rewritten meanwhile.
    """
    path = Path(path)
    if data is not None:
        import io
        source: Any = io.BytesIO(data)
    elif path.is_dir():
        raise UsageError(f"{what} {path} is a folder; pass the checkpoint file inside it "
                         "(e.g. cifar_net.pth or deconv_net.pth)")
    elif not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    else:
        source = path
    import pickle
    import warnings
    try:
        with warnings.catch_warnings():  # torch warns in many lines before some refusals
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise UsageError(f"{what} {path} is not a readable PyTorch checkpoint (damaged "
                             "pickle data); it may be truncated, write it again") from None
        raise UsageError(f"{what} {path} holds Python objects other than tensors, numbers and "
                         "containers, which are not loaded (they could run code); pass a "
                         "checkpoint written by this repo") from None
    except RecursionError:
        raise UsageError(f"{what} {path} nests its contents too deeply to be a checkpoint of "
                         "this repo; pass one written by it") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise UsageError(f"{what} {path} is not a readable PyTorch checkpoint "
                         f"({type(error).__name__}); it may be truncated, write it again") from None
