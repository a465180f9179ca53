"""Following the sweep's Slurm jobs once submitted: squeue's states and submitit's result files,
read until every job has ended, each run's outcome printed as it ends (with its log's tail when
it failed), hopeless pending jobs cancelled. study/runs/cluster.py submits the jobs and calls this.
"""
import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from study.core.common import say

ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "SPECIAL_EXIT", "REVOKED"}
LOG_TAIL = 8  # lines of a failed run's log printed with its failure
# Why a job may stay PENDING for ever: what it asks for is more than the partition (or any of its
# nodes) has or allows, or a node it needs is unavailable. Such a job is reported and cancelled.
HOPELESS = {"PartitionConfig": "the partition cannot give what each run asks for",
            "PartitionNodeLimit": "the partition's node limits exclude it",
            "PartitionTimeLimit": "--time is over the partition's time limit",
            "ReqNodeNotAvail": "the nodes it needs are not available",
            "BadConstraints": "no node can meet what each run asks for",
            "InvalidAccount": "the account is not valid here",
            "InvalidQOS": "the QOS is not valid here",
            "DependencyNeverSatisfied": "a run it waits for failed"}


def result_files(job_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Every result file in the job folder now, with its identity (device, inode, mtime)."""
    found = {}
    for path in Path(job_dir).glob("*/*_result.pkl"):
        try:
            info = path.lstat()
        except OSError:
            continue
        found[str(path)] = (info.st_dev, info.st_ino, info.st_mtime_ns)
    return found


def fresh_result(job: Any, stale: dict[str, tuple[int, int, int]]) -> bool:
    """Whether the job's result file exists and was written after the sweep submitted it.

    submitit writes it to a temporary name and renames it, so a new result is a new file: one
    with the identity recorded before submission is an older job's (Slurm reused the id).
    """
    path = job.paths.result_pickle
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    return stale.get(str(path)) != (info.st_dev, info.st_ino, info.st_mtime_ns)


def log_path(log_dir: Path, run: Any) -> Path:
    return log_dir / (run.name.replace(" ", "_") + ".log")


def follow(runs: list, jobs: dict[str, Any], log_dir: Path, options: Any, quiet: bool,
           not_started: int, no_results: int,
           stale: dict[str, tuple[int, int, int]] | None = None) -> dict[str, int]:
    """Poll squeue and submitit's result files until every job has ended; print as runs end.

    A result file counts only if it was not there at submission (`stale`, see fresh_result).
    While squeue fails the result files are still read, and a warning says (at most once per
    options.quiet_controller_seconds) that the controller does not answer. A job pending for a
    reason that cannot resolve (HOPELESS) is cancelled and reported failed with that reason.
    """
    stale = stale or {}
    codes: dict[str, int] = {}
    started: dict[str, float] = {}
    seen: set[str] = set()
    first_start = None
    begun = time.perf_counter()
    warned = None
    while len(codes) < len(runs):
        states, problem = squeue_states()
        if states is None and (warned is None or time.monotonic() - warned
                               >= options.quiet_controller_seconds):
            warned = time.monotonic()
            say(f"warning: squeue failed ({problem}): the Slurm controller does not answer; "
                "still watching the jobs' result files (this warning repeats once a minute "
                "while it lasts)")
        for run in runs:
            if run.name in codes:
                continue
            failed_inputs = [a for a in run.after if codes.get(a, 0) != 0]
            job = jobs[run.name]
            if failed_inputs:  # Slurm cancels it too (kill-on-invalid-dep); make sure of it
                cancel([job])
                codes[run.name] = not_started
                print(f"skipped  {run.name} (Slurm job {job.job_id}): "
                      f"{', '.join(failed_inputs)} failed", flush=True)
                continue
            state, reason = (states or {}).get(job.job_id, (None, ""))
            if state is not None:
                seen.add(run.name)
            if state == "RUNNING" and run.name not in started:
                started[run.name] = time.perf_counter()
                first_start = first_start or started[run.name]
                if not quiet:
                    print(f"started  {run.name} (Slurm job {job.job_id})", flush=True)
            if state == "PENDING" and reason in HOPELESS:
                cancel([job])
                codes[run.name] = 1
                print(f"finished {run.name}: FAILED (Slurm job {job.job_id} was pending for a "
                      f"reason that cannot resolve: {reason}, {HOPELESS[reason]}; cancelled it; "
                      "check --partition, --time, --cpus-per-run, --mem-per-run and "
                      "--gpus-per-run against sinfo)", flush=True)
                continue
            # ended: its new result is written, squeue says so, or squeue has forgotten it
            # (MinJobAge); while squeue fails, only a new result file tells
            ended = (fresh_result(job, stale) or state in ENDED
                     or (states is not None and state is None and run.name in seen))
            if not ended:
                continue
            code, reason = outcome(job, state, no_results, stale)
            codes[run.name] = code
            if code or not quiet:
                if code == 0:
                    if run.name in started:
                        took = f"in {time.perf_counter() - started[run.name]:.0f} s"
                    else:
                        took = (f"{time.perf_counter() - begun:.0f} s after submission (its "
                                "start was not seen)")
                    print(f"finished {run.name} (Slurm job {job.job_id}) {took}: ok",
                          flush=True)
                else:
                    report_failure(run, job, reason, log_path(log_dir, run))
        if len(codes) < len(runs):
            time.sleep(options.poll_seconds)
    if not quiet:
        started_words = (f"the first started {first_start - begun:.0f} s after submission"
                         if first_start else "no start was seen: squeue did not answer")
        print(f"{len(codes)} runs as Slurm jobs in {time.perf_counter() - begun:.0f} s "
              f"({started_words})")
    return codes


def squeue_states() -> tuple[dict[str, tuple[str, str]] | None, str]:
    """(state, reason) of each of this user's jobs that squeue knows, array tasks one by one.

    (None, what went wrong) when squeue fails: no job may then be taken for ended because it
    is not listed.
    """
    try:
        result = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--me",
                                 "--format=%i|%T|%r"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, "no answer in 60 s"
    except OSError as error:
        return None, str(error.strerror or error)
    if result.returncode:
        return None, first_line(result.stderr)
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        states[job_id] = (state, reason.strip())
    return states, ""


def outcome(job: Any, state: str | None, no_results: int,
            stale: dict[str, tuple[int, int, int]] | None = None) -> tuple[int, str]:
    """Exit code and reason of an ended job, from submitit's result file or squeue's state."""
    stale = stale or {}
    for _ in range(20):  # on a network filesystem the file may show up a moment late
        if fresh_result(job, stale) or state not in (None, "COMPLETED", "FAILED"):
            break
        time.sleep(0.5)
    if fresh_result(job, stale):
        error = job.exception()
        if error is None:
            return 0, ""
        found = re.search(r"RunFailed: (exit (-?\d+).*)", str(error))
        if found:
            code = int(found.group(2))
            return (code if code else no_results), found.group(1)
        if "timed-out" in str(error):  # submitit's words when Slurm's time-limit signal came
            return 1, "it reached its time limit (--time), and was stopped"
        return 1, "the job's Python failed: " + str(error).strip().splitlines()[-1]
    if state == "TIMEOUT" or "User defined signal 2" in read_or_empty(job.paths.stderr):
        # (submitit's time-limit signal, when it came before submitit's handler was in place)
        return 1, "it reached its time limit (--time), and was stopped"
    if state == "OUT_OF_MEMORY":
        return 1, "it ran out of memory (--mem-per-run)"
    return 1, f"Slurm state {state or 'unknown'}, no result"


def report_failure(run: Any, job: Any, reason: str, log: Path) -> None:
    """One FAILED line with the job id and where to look, then the tail of the run's log."""
    slurm_log = job.paths.stderr
    source = log if log.is_file() else slurm_log
    print(f"finished {run.name}: FAILED (Slurm job {job.job_id}: {reason}; log {log}, Slurm's "
          f"output {job.paths.stdout})", flush=True)
    try:
        lines = source.read_text(errors="replace").splitlines()[-LOG_TAIL:]
    except OSError:
        lines = [f"(no log: {source} is missing)"]
    for line in lines:
        print(f"    | {line}", flush=True)


def cancel(jobs: Any) -> list[str]:
    """scancel the given jobs (array tasks by their own ids); returns the ids cancelled."""
    ids = [job.job_id for job in jobs]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True)
    return ids


def read_or_empty(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"
