"""Where a run may write: an output folder is checked against the data and other tasks' results,
then held with a lock and marked incomplete (INCOMPLETE) until the run ends well.
"""
import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from data import BATCH_FOLDER, CLASSES, default_data_dir
from study.core.common import Interrupted, UsageError, printable
from study.core.files import disk_hint, make_output_folders, remove_folders, save_json, take_lock
from study.core.layout import DECONV_CHECKPOINT, INCOMPLETE, METRICS, Outputs
from study.core.readers import read_json, require_complete

# Which task's results each script writes (the "task" of its metrics.json): an output folder
# holding another task's metrics.json is refused, so one task never overwrites another's results.
TASK_OF_SCRIPT = {"train_classifier.py": "task1", "train_deconv.py": "task2",
                  "visualize_latents.py": "task3", "probe_layers.py": "probes",
                  "compare_seeds.py": "seeds", "invariance.py": "invariance"}


NAME_MAX, PATH_MAX = 255, 4000  # bytes of one name and of a whole path (Linux: 255 and 4096)


def check_output_dir(path: Path, task: str | None = None,
                     data_dir: str | Path | None = None) -> None:
    """Fail before any work if `path` cannot be this run's output folder; creates nothing.

    Refused, each with one line: a folder that cannot be created or written; one inside the
    data folder (`data_dir`, default $CIFAR10_DIR or ./data) or inside any CIFAR-10 split or
    batch folder, where figures would be read as images next time; and, with `task` (e.g.
    "task1", "task3", "report"), one whose metrics.json belongs to another task.
    """
    for part in Path(path).parts:  # the file system's limit, before any call that would hit it
        if len(os.fsencode(part)) > NAME_MAX:
            raise UsageError(f"output folder {printable(str(path)[:80])}...: a name in it is "
                             f"{len(os.fsencode(part)):,} bytes long, more than a file system "
                             f"allows ({NAME_MAX}); pass a shorter --out")
    if len(os.fsencode(str(Path(path).absolute()))) > PATH_MAX:
        raise UsageError(f"output folder {printable(str(path)[:80])}... is longer than a path "
                         f"may be ({PATH_MAX} bytes); pass a shorter --out")
    if Path(path).resolve() == Path(path).resolve().parent:
        raise UsageError(f"output folder {path} is the root of the file system; pass a folder "
                         "of its own (e.g. outputs/task1)")
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




def _refuse_data_folder(path: Path, data_dir: str | Path | None) -> None:
    target = path.resolve()
    data = Path(data_dir) if data_dir is not None and str(data_dir).strip() else default_data_dir()
    data = data.resolve()
    if target == data or data in target.parents:
        raise UsageError(f"output folder {path} is inside the data folder {data}; results "
                         "written there would be read as data next time: pass an --out "
                         "outside it (e.g. outputs/task1)")
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


LOCK = ".lock"


@contextlib.contextmanager
def run_folder(path: Path, script: str, data_dir: str | Path | None = None) -> Iterator[Path]:
    """Hold the output folder for one run: one writer at a time, marked incomplete until the end.

    The folder is checked first (check_output_dir, with the task `script` writes and the data
    folder `data_dir`). A second run into the same folder is refused while this one lives (an
    flock, released by the kernel however this process ends). The folder carries INCOMPLETE
    from the start until the run succeeds, so results of an earlier run never pass for this
    one's after a failure: Task 3 and the report refuse a folder that carries it. The lock file
    is opened without following links (files.take_lock); if the folder cannot be set up (a full
    disk), the folders this call created are removed again.
    """
    check_output_dir(path, TASK_OF_SCRIPT.get(script), data_dir)
    created = make_output_folders(path)
    out = path
    lock = None
    try:
        lock, taken = take_lock(out / LOCK, f"cannot write to output folder {out} ({{reason}}); "
                                            "pass a writable --out")
        if not taken:
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
                             f"{disk_hint(error)} or pass another --out") from None
        mark_incomplete(out, script)
    except BaseException:
        if lock is not None:  # closing flushes what could not be written: never a 2nd error
            with contextlib.suppress(OSError):
                lock.close()
        if created:  # a folder this run made and could not set up: leave nothing behind
            for name in (LOCK, INCOMPLETE):
                with contextlib.suppress(OSError):
                    (out / name).unlink()
            remove_folders(created)
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
        with contextlib.suppress(OSError):  # the lock's text is a courtesy; its flock is gone
            lock.close()


def remove_tree(folder: Path) -> None:
    """Remove a folder of an earlier run and everything in it; a link there is removed itself,
    never what it points to (shutil.rmtree never follows links inside)."""
    import shutil

    folder = Path(folder)
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        try:
            shutil.rmtree(folder)
        except OSError as error:
            reason = error.strerror or error
            raise UsageError(f"cannot clear {folder} of an earlier run ({reason}); remove it "
                             "by hand") from None


def mark_incomplete(folder: Path, script: str) -> None:
    """Mark `folder` as holding an unfinished run of `script` (read by require_complete)."""
    save_json({"script": script, "pid": os.getpid(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S")}, Path(folder) / INCOMPLETE)


def task2_checkpoints(tree: Outputs, seeds: list[int]) -> list[Path]:
    """Task 2's checkpoint of every seed, where the sweep put it, each from a finished run (the
    first seed's in task2/, the others' in runs/); one line for a missing or unfinished one."""
    found = []
    for seed in seeds:
        path = tree.run("task2", seed, first_seed=seeds[0]) / DECONV_CHECKPOINT
        if not path.is_file():
            raise UsageError(f"no Task 2 model of seed {seed} at {path}; run make all (or "
                             f"sweep.py --seeds {','.join(map(str, seeds))}) first")
        require_complete(path.parent, "the Task 2 folder", "rerun make all")
        found.append(path)
    return found
