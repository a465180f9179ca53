"""The sweep's runs as Slurm jobs, through submitit: `sweep.py --executor slurm`.

Runs that wait for nothing go in one job array; runs that wait for others are submitted with
a Slurm dependency on those runs' jobs (`afterok`; runs waiting for the same runs share one
array), so that no run starts before its inputs exist, and one whose inputs failed never starts
(`--kill-on-invalid-dep=yes`; the sweep also cancels it). Each job runs the same command line a
local sweep runs, its output into the same OUTPUTS/runs/logs/<run>.log, headed by the job's id;
submitit's and Slurm's own files go to OUTPUTS/runs/slurm/<job id>/. The sweep follows the jobs
with squeue and the result files submitit writes, so no accounting database (sacct) is needed.

Only this module imports submitit, and only when called: the local sweep never imports it.
"""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.common import Interrupted, UsageError
from study.plan import NO_RESULTS, NOT_STARTED
from study.run_folders import INCOMPLETE

REPO = Path(__file__).resolve().parent.parent
INSTALL_HINT = "pip install -r requirements-cluster.txt (or pip install submitit)"
# squeue states of a job that has ended (anything else is still waiting or running)
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "SPECIAL_EXIT", "REVOKED"}
LOG_TAIL = 8  # lines of a failed run's log printed with its failure


@dataclass
class SlurmOptions:
    """What each run asks Slurm for (sweep.py's --partition, --time, ... flags)."""

    partition: str | None = None
    time_minutes: int = 60
    cpus: int = 1
    mem_gb: float = 4.0
    gpus: int = 0
    max_parallel: int | None = None  # array tasks at once (None: as many as Slurm starts)
    poll_seconds: float = 2.0


def import_submitit() -> Any:
    """submitit, or one UsageError saying how to install it (it is an optional dependency)."""
    try:
        import submitit
    except ImportError:
        raise UsageError(f"--executor slurm needs submitit, which is not installed; "
                         f"{INSTALL_HINT}") from None
    return submitit


class RunFailed(Exception):
    """Raised in a job whose run failed, so that Slurm marks the job failed (afterok holds)."""


def run_job(command: list[str], log: str, out: str, results: str | None) -> str:
    """In the Slurm job: run one command of the sweep, its output to its log, as locally.

    The log starts with the Slurm job id and the node, so every run's log says where it ran.
    Raises RunFailed when the command fails, or exits 0 without leaving `results` (e.g. it
    printed help), so that Slurm records the job as failed and no `afterok` job starts on it.
    Returns the job id.
    """
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = (f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array
              else os.environ.get("SLURM_JOB_ID", "?"))
    with open(log, "w") as stream:
        stream.write(f"slurm job {job_id} on {socket.gethostname()}: {shlex.join(command)}\n")
        stream.flush()
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                   preexec_fn=_end_with_parent)
        try:
            code = process.wait()
        except BaseException:  # submitit's handler of Slurm's time-limit signal raises here
            process.terminate()  # the run stops as after Ctrl-C: its log says where it was
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    if code:
        raise RunFailed(f"exit {code}")
    if results is not None:
        if (Path(out) / INCOMPLETE).exists():
            raise RunFailed(f"exit 0, but {out} is still marked incomplete ({INCOMPLETE})")
        if not Path(results).is_file():
            raise RunFailed(f"exit 0, but it wrote no {Path(results).name} in {out}")
    return job_id


def _end_with_parent() -> None:
    """In the child: be sent SIGTERM when the job's Python dies (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_on_slurm(runs: list, log_dir: Path, job_dir: Path, options: SlurmOptions,
                 quiet: bool = False) -> tuple[dict[str, int], dict[str, str]]:
    """Submit every run as a Slurm job and follow them to the end, as run_parallel does locally.

    Returns the exit code of every run (sweep.NOT_STARTED for a run whose inputs failed) and
    the Slurm job id of every submitted run. Ctrl-C or SIGTERM cancels every job it submitted
    (scancel) and raises Interrupted saying so.
    """

    submitit = import_submitit()
    log_dir.mkdir(parents=True, exist_ok=True)
    job_dir.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, Any] = {}
    try:
        submit_all(submitit, runs, log_dir, job_dir, options, jobs)
        if not quiet:
            print(f"submitted {len(jobs)} Slurm jobs: "
                  + ", ".join(f"{name} {job.job_id}" for name, job in jobs.items()), flush=True)
        codes = follow(runs, jobs, log_dir, options, quiet, NOT_STARTED, NO_RESULTS)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the scancel
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ids = cancel(jobs.values())
        raise Interrupted(f"cancelled the sweep's Slurm jobs with scancel "
                          f"({', '.join(ids) or 'none submitted yet'}); the runs that had not "
                          "finished stay marked incomplete") from None
    return codes, {name: job.job_id for name, job in jobs.items()}


def submit_all(submitit: Any, runs: list, log_dir: Path, job_dir: Path, options: SlurmOptions,
               jobs: dict[str, Any]) -> None:
    """Submit the runs in dependency order, one job array per set of runs waited for.

    `jobs` is filled as they are submitted, so that an interrupted submission can be cancelled.
    """
    executor = submitit.SlurmExecutor(folder=str(job_dir / "%j"), max_num_timeout=0)
    parameters: dict[str, Any] = {
        "job_name": "sweep", "time": options.time_minutes, "cpus_per_task": options.cpus,
        "mem": f"{round(options.mem_gb * 1024)}M", "ntasks_per_node": 1,
        # the job's Python imports this module (cluster.run_job) from the repository
        "setup": [f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}"],
        "additional_parameters": {"kill-on-invalid-dep": "yes"}}
    if options.partition:
        parameters["partition"] = options.partition
    if options.gpus:
        parameters["gpus_per_node"] = options.gpus
    if options.max_parallel:
        parameters["array_parallelism"] = options.max_parallel
    for after, group in submission_groups(runs):
        missing = [name for name in after if name not in jobs]
        if missing:
            raise UsageError(f"the run plan has {group[0].name} wait for {', '.join(missing)}, "
                             "planned after it or not at all")
        dependency = ("afterok:" + ":".join(jobs[name].job_id for name in after)
                      if after else None)
        executor.update_parameters(**parameters, dependency=dependency)
        try:
            with executor.batch():
                submitted = [executor.submit(run_job, run.command, str(log_path(log_dir, run)),
                                             str(run.out),
                                             str(run.results) if run.results else None)
                             for run in group]
        except (submitit.core.utils.FailedJobError,
                submitit.core.utils.FailedSubmissionError) as error:  # sbatch said no
            raise UsageError(f"sbatch refused the sweep's jobs: {_first_line(str(error))}; "
                             "check --partition, --time, --cpus-per-run, --mem-per-run and "
                             "--gpus-per-run against sinfo") from None
        for run, job in zip(group, submitted):
            jobs[run.name] = job


def submission_groups(runs: list) -> list[tuple[tuple[str, ...], list]]:
    """The runs as (runs waited for, runs) in submission order, each group one job array.

    The runs that wait for nothing form the first array. The others keep the plan's order, and
    runs next to each other in it that wait for the same runs share an array: Slurm's default
    priority follows the submission order, so where CPUs are short the runs start in the order
    a local sweep starts them (Task 3 right after seed 0's Task 2, the extra lambdas last).
    """
    groups: list[tuple[tuple[str, ...], list]] = [((), [run for run in runs if not run.after])]
    for run in runs:
        if run.after:
            if groups[-1][0] == tuple(run.after):
                groups[-1][1].append(run)
            else:
                groups.append((tuple(run.after), [run]))
    return [group for group in groups if group[1]]


def log_path(log_dir: Path, run: Any) -> Path:
    return log_dir / (run.name.replace(" ", "_") + ".log")


def follow(runs: list, jobs: dict[str, Any], log_dir: Path, options: SlurmOptions, quiet: bool,
           not_started: int, no_results: int) -> dict[str, int]:
    """Poll squeue and submitit's result files until every job has ended; print as runs end."""
    codes: dict[str, int] = {}
    started: dict[str, float] = {}
    seen: set[str] = set()
    first_start = None
    begun = time.perf_counter()
    while len(codes) < len(runs):
        states = squeue_states()
        if states is None:  # the controller is briefly unreachable: ask again at the next poll
            time.sleep(options.poll_seconds)
            continue
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
            state = states.get(job.job_id)
            if state is not None:
                seen.add(run.name)
            if state == "RUNNING" and run.name not in started:
                started[run.name] = time.perf_counter()
                first_start = first_start or started[run.name]
                if not quiet:
                    print(f"started  {run.name} (Slurm job {job.job_id})", flush=True)
            # ended: its result is written, squeue says so, or squeue has forgotten it (MinJobAge)
            ended = (job.paths.result_pickle.exists() or state in ENDED
                     or (state is None and run.name in seen))
            if not ended:
                continue
            code, reason = outcome(job, state, no_results)
            codes[run.name] = code
            seconds = time.perf_counter() - started.get(run.name, time.perf_counter())
            if code or not quiet:
                if code == 0:
                    print(f"finished {run.name} (Slurm job {job.job_id}) in {seconds:.0f} s: ok",
                          flush=True)
                else:
                    report_failure(run, job, reason, log_path(log_dir, run))
        if len(codes) < len(runs):
            time.sleep(options.poll_seconds)
    if not quiet:
        queued = (first_start - begun) if first_start else 0.0
        print(f"{len(codes)} runs as Slurm jobs in {time.perf_counter() - begun:.0f} s "
              f"(the first started {queued:.0f} s after submission)")
    return codes


def squeue_states() -> dict[str, str] | None:
    """The state of each of this user's jobs that squeue knows, array tasks one by one.

    None when squeue fails: no job may then be taken for ended because it is not listed.
    """
    try:
        result = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--me",
                                 "--format=%i|%T"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode:
        return None
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        states[job_id] = state
    return states


def outcome(job: Any, state: str | None, no_results: int) -> tuple[int, str]:
    """Exit code and reason of an ended job, from submitit's result file or squeue's state."""
    path = job.paths.result_pickle
    for _ in range(20):  # on a network filesystem the file may show up a moment late
        if path.exists() or state not in (None, "COMPLETED", "FAILED"):
            break
        time.sleep(0.5)
    if path.exists():
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
    if state == "TIMEOUT" or "User defined signal 2" in _read(job.paths.stderr):
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


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def check_cluster() -> None:
    """Fail with one line before anything is written when no Slurm controller answers."""
    try:
        result = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True,
                                text=True, timeout=30)
    except FileNotFoundError:
        raise UsageError("--executor slurm needs Slurm's commands (sinfo, sbatch), which are "
                         "not on PATH; run the sweep on a machine of the cluster") from None
    except subprocess.TimeoutExpired:
        raise UsageError("sinfo did not answer in 30 s; is the Slurm controller up?") from None
    if result.returncode:
        raise UsageError(f"sinfo failed ({_first_line(result.stderr)}); is the Slurm "
                         "controller up, and SLURM_CONF right?")


if __name__ == "__main__":
    sys.exit("cluster.py is used by sweep.py --executor slurm; run that instead")
