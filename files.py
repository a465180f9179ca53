"""Output folders and files: checks before a run, a lock and an .incomplete marker while it
runs, and writes to a temporary name renamed into place, never through a link.
"""
import contextlib
import errno
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from common import Interrupted, UsageError, say
from readers import read_json, require


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
