""""Same run?" A checkpoint passed as a baseline must be the run it is said to be, trained on the
same data as the model it is compared with; and a sweep run whose folder holds finished results
of the same identity (settings, input files, data) is reused rather than trained again.
"""
import hashlib
from pathlib import Path

from study.core.common import UsageError
from study.core.files import save_json
from study.core.layout import INCOMPLETE, METRICS, OUTPUTS_FORMAT, RUN_IDENTITY, TRAINING_STATE
from study.core.readers import field, read_json, require

PERMUTED_FIX = ("pass the deconv_net.pth of a train_deconv.py --permute-labels run on the same "
                "data and --subset (sweep.py --task3 makes one), or leave --permuted-checkpoint out")


def check_permuted(path: Path, sha256: str, trained_sha256: str, trained_metrics: dict) -> dict:
    """What Task 3 records of its permuted-labels baseline, once it is shown to be one.

    Its folder's metrics.json must say `permute_labels` in its settings, and its data (the
    hash of the data actually used, after --subset with its seed) and --subset must be the
    trained model's (when the trained model's metrics are there to compare). The trained
    checkpoint itself (same hash) is refused.
    Returns {"checkpoint", "checkpoint_sha256", "seed"}.
    """
    if sha256 == trained_sha256:
        raise UsageError(f"--permuted-checkpoint {path} is the trained checkpoint itself (same "
                         f"SHA-256); {PERMUTED_FIX}")
    metrics_path = path.with_name(METRICS)
    if not metrics_path.is_file():
        raise UsageError(f"--permuted-checkpoint {path} has no metrics.json beside it, so "
                         f"nothing shows it was trained on permuted labels; {PERMUTED_FIX}")
    metrics = read_json(metrics_path, "metrics of the permuted-labels model", PERMUTED_FIX)
    config = field(metrics, "config", dict, what=str(metrics_path), fix=PERMUTED_FIX)
    if config.get("permute_labels") is not True:
        raise UsageError(f"--permuted-checkpoint {path} was not trained on permuted labels "
                         f"({metrics_path} has no permute_labels in its settings); "
                         f"{PERMUTED_FIX}")
    trained = trained_metrics.get("config") if isinstance(trained_metrics, dict) else None
    if isinstance(trained, dict):
        for key, kind in (("data_sha256", str), ("subset", float)):
            if key not in trained:
                continue
            ours = field(config, key, kind, what=f"{metrics_path}: config", fix=PERMUTED_FIX)
            if ours != require(trained[key], kind, what=f"the trained model's {key}"):
                raise UsageError(f"--permuted-checkpoint {path} was trained on other data than "
                                 f"the trained model ({key} differs); {PERMUTED_FIX}")
    seed = config.get("seed")
    return {"checkpoint": str(path), "checkpoint_sha256": sha256,
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None}


# --- a sweep run's identity: what decides whether its finished results can be reused ---

# Flags that name a file the run reads: its identity holds the file's SHA-256, not its path, so a
# copied outputs tree is still up to date and a retrained input is noticed.
INPUT_FLAGS = ("--task1-metrics", "--checkpoint", "--permuted-checkpoint", "--init-from")
# Flags that change nothing a run computes (where it writes, how much it prints, where the data
# lives: the data's own hash stands for it).
IGNORED_FLAGS = ("--out", "--quiet", "--data-dir")
RESUMABLE_TASKS = ("task1", "task2")  # the training scripts take --resume


def file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def run_identity(script: str, flags: list[str], data_sha256: str,
                 made_by: dict[Path, str] | None = None) -> dict:
    """What a run is: its script, every flag that changes its results (input files by their
    SHA-256) and the hash of the data it reads. Two runs with equal identities compute the same
    results (the same numbers on one CPU type).

    `made_by` maps the folders of other planned runs to their names: an input in one of them is
    recorded as that run's ({"run": name}), since it may not exist yet when this is decided;
    whether that run changed is decided for it (and its results' hash checked).
    """
    kept, inputs, rest = [], {}, iter(flags)
    for flag in rest:
        name = flag.split("=", 1)[0]
        value = flag.split("=", 1)[1] if "=" in flag else None
        takes_value = name in INPUT_FLAGS or name in ("--out", "--data-dir")
        if takes_value and value is None:
            value = next(rest, None)
        if name in INPUT_FLAGS:
            folder = Path(value).resolve().parent if value is not None else None
            if made_by and folder in made_by:
                inputs[name] = {"run": made_by[folder]}
            else:
                inputs[name] = file_sha256(Path(value)) if value is not None else None
        elif name not in IGNORED_FLAGS:
            kept.append(flag)
    return {"script": script, "flags": kept, "inputs": inputs, "data_sha256": data_sha256,
            "format": OUTPUTS_FORMAT}


def read_identity(folder: Path) -> dict | None:
    """The identity a run's folder records (None when there is none or it is damaged: the run is
    then redone)."""
    path = Path(folder) / RUN_IDENTITY
    if not path.is_file():
        return None
    try:
        found = read_json(path, "run identity", "")
    except UsageError:
        return None
    return found if isinstance(found, dict) else None


UP_TO_DATE, RESUME, RUN = "up to date", "resume", "run"
RESULTS_KEY = "results_sha256"  # recorded once the run has finished well


def record_finished(identity: dict, results: Path | None) -> dict:
    """The identity a finished run's folder records: with its results' hash."""
    return {**identity, RESULTS_KEY: file_sha256(results) if results is not None else None}


def reuse(folder: Path, task: str | None, identity: dict, results: Path | None) -> str:
    """What to do with a planned run whose folder may hold an earlier one, as make decides:

    UP_TO_DATE: the folder holds the finished results of a run with this identity;
    RESUME: a run with this identity was interrupted after saving its training state
    (Task 1 and Task 2 continue from their last epoch with --resume, to the same numbers);
    RUN: anything else (another identity, none recorded, results missing or damaged).
    """
    folder = Path(folder)
    recorded = read_identity(folder)
    if recorded is None or {k: v for k, v in recorded.items() if k != RESULTS_KEY} != identity:
        return RUN
    unfinished = (folder / INCOMPLETE).exists()
    if not unfinished and results is not None and results.is_file():
        # a run made in this folder since (by hand, outside the sweep) is not the recorded one
        if RESULTS_KEY in recorded and recorded[RESULTS_KEY] != file_sha256(results):
            return RUN
        return UP_TO_DATE
    if unfinished and task in RESUMABLE_TASKS and (folder / TRAINING_STATE).is_file():
        return RESUME
    return RUN


def done_before(out: Path, identity: dict, force: bool, same: str) -> bool:
    """For a script that is not a sweep run (the seeds', snapshots' and invariance comparisons):
    whether `out` holds the finished results (its metrics.json) of this very `identity`, said in
    one line ("up to date  OUT (SAME; --force ...)"); never with `force`."""
    if force or reuse(out, None, identity, out / METRICS) != UP_TO_DATE:
        return False
    print(f"up to date  {out} ({same}; --force does it again)")
    return True


def record_done(out: Path, identity: dict) -> None:
    """What done_before reads: `identity` with the hash of the results just written to `out`."""
    save_json(record_finished(identity, out / METRICS), out / RUN_IDENTITY)


def decide_reuse(runs: list, data_sha256: str, force: bool = False) -> dict[str, tuple[str, dict]]:
    """Each planned run's (decision, identity), runs in the order they wait for each other.

    A run is redone whenever a run it waits for is (re)trained or resumed here, as make redoes a
    target whose prerequisite changed; `force` redoes every run.
    """
    decided: dict[str, tuple[str, dict]] = {}
    made_by = {Path(run.out).resolve(): run.name for run in runs}
    pending = list(runs)
    while pending:
        ready = [run for run in pending if all(a in decided for a in run.after)]
        if not ready:  # a plan never waits in a circle; refuse rather than loop
            raise ValueError(f"runs wait for each other in a circle: {[r.name for r in pending]}")
        for run in ready:
            pending.remove(run)
            identity = run_identity(Path(run.command[1]).name, run.command[2:], data_sha256,
                                    {f: n for f, n in made_by.items() if n != run.name})
            upstream_changed = any(decided[a][0] != UP_TO_DATE for a in run.after)
            decision = RUN if force or upstream_changed else reuse(run.out, run.task, identity,
                                                                     run.results)
            decided[run.name] = (decision, identity)
    return decided
