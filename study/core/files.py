"""Files written safely: to a temporary name renamed into place, never through a link, with the
folders made (and removed again on failure) and the temporaries of killed runs cleaned up.
"""
import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from study.core.common import UsageError, say

# --- files: written to a temporary name and renamed, so no file is ever half-written ---

TEMP_PATTERN = re.compile(r"^\..+\.pid(\d+)-[^.]+\.tmp$")



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
        remove_folders(created)
        raise
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove folders this run created (deepest first), if they are still empty."""
    for folder in reversed(created):
        try:
            os.rmdir(folder)
        except OSError:
            return


def prepare_output_dir(path: Path) -> Path:
    """Create the output folder, or say clearly why it cannot be written (leaving nothing)."""
    make_output_folders(path)
    return path


def make_output_folders(path: Path) -> list[Path]:
    created: list[Path] = []
    try:
        created = _make_folders(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        remove_folders(created)
        raise UsageError(f"cannot write to output folder {path} ({error.strerror or error}); "
                         f"{disk_hint(error)} or pass a writable --out") from None
    remove_stale_temporaries(path)
    return created


def disk_hint(error: OSError) -> str:
    return ("free some disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, None)
            else "check the disk")


def take_lock(path: Path, unwritable: str) -> tuple[Any, bool]:
    """Open the lock file `path` (never through a link) and try an exclusive flock, without
    waiting: (the open file, True) when taken, (the open file, False) when another process holds
    it (the caller closes it). A file that cannot be opened is one UsageError: `unwritable`,
    with the system's reason. The kernel releases the lock however the process ends."""
    import fcntl

    try:
        lock = open_no_follow(path, "a+")
    except OSError as error:
        raise UsageError(unwritable.format(reason=error.strerror or error)) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return lock, False
    return lock, True


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


def open_log(path: Path) -> Any:
    """A run's log, opened for writing as every run's log is, by both of sweep.py's executors
    (the local one and each Slurm job): never through a link planted at its name
    (open_no_follow), emptied first."""
    return open_no_follow(Path(path), "w")


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
                         f"{disk_hint(error)} or pass another --out, then run again") from None
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
