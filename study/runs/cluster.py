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
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.core.common import Interrupted, UsageError, say
from study.core.files import open_log
from study.core.layout import INCOMPLETE
from study.runs.plan import NO_RESULTS, NOT_STARTED
from study.runs.slurm_watch import cancel, first_line, follow, log_path, result_files

REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = "pip install -r requirements-cluster.txt (or pip install submitit)"
# squeue states of a job that has ended (anything else is still waiting or running)
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
    quiet_controller_seconds: float = 60.0  # warn at most this often while squeue fails


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
    with open_log(Path(log)) as stream:  # never through a link planted in the log folder
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
    check_slurm_path(job_dir, "the job folder")
    log_dir.mkdir(parents=True, exist_ok=True)
    job_dir.mkdir(parents=True, exist_ok=True)
    remove_links(job_dir)
    # Slurm reuses job ids when its controller's state is lost: a result file already in the
    # job folder then belongs to an older job. Only result files that were not here before
    # submission are read (see fresh_result).
    stale = result_files(job_dir)
    jobs: dict[str, Any] = {}
    try:
        try:
            submit_all(submitit, runs, log_dir, job_dir, options, jobs)
        except Exception as error:  # all or nothing: no job runs with no sweep watching it
            ids = cancel(jobs.values())
            done = (f"cancelled the {len(ids)} job(s) already submitted ({', '.join(ids)}), so "
                    "none runs unwatched" if ids else "no job had been submitted")
            if isinstance(error, SubmissionRefused):
                raise UsageError(f"sbatch refused the sweep's jobs ({error}); {done}; check "
                                 "--partition, --time, --cpus-per-run, --mem-per-run and "
                                 "--gpus-per-run against sinfo") from None
            if isinstance(error, UsageError):
                raise UsageError(f"{error}; {done}") from None
            raise UsageError(f"submitting the sweep's jobs failed ({type(error).__name__}: "
                             f"{first_line(str(error))}); {done}") from None
        if not quiet:
            print(f"submitted {len(jobs)} Slurm jobs: "
                  + ", ".join(f"{name} {job.job_id}" for name, job in jobs.items()), flush=True)
        codes = follow(runs, jobs, log_dir, options, quiet, NOT_STARTED, NO_RESULTS, stale)
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
            with _stderr_kept() as said, executor.batch():
                submitted = [executor.submit(run_job, run.command, str(log_path(log_dir, run)),
                                             str(run.out),
                                             str(run.results) if run.results else None)
                             for run in group]
        except (submitit.core.utils.FailedJobError,
                submitit.core.utils.FailedSubmissionError) as error:  # sbatch said no
            raise SubmissionRefused(first_line(said.get("text") or str(error))) from None
        for run, job in zip(group, submitted):
            jobs[run.name] = job


@contextlib.contextmanager
def _stderr_kept() -> Any:
    """Keep what child processes (sbatch, run by submitit) write to stderr, instead of letting
    it through: a refusal is then one line of ours, which quotes sbatch's last line. Yields a
    dict whose "text" is set on the way out."""
    sys.stderr.flush()
    kept = tempfile.TemporaryFile()
    saved = os.dup(2)
    os.dup2(kept.fileno(), 2)
    said: dict[str, str] = {}
    try:
        yield said
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        kept.seek(0)
        said["text"] = kept.read(65536).decode(errors="replace")
        kept.close()


class SubmissionRefused(Exception):
    """sbatch refused a submission; the text is its last line."""


def check_slurm_path(path: Path, what: str = "--outputs") -> None:
    """Refuse a folder whose path Slurm would rewrite: it expands %j, %u, %x, ... in the
    names of its output files, so with a '%' in the path each job writes elsewhere."""
    if "%" in str(Path(path).absolute()):
        raise UsageError(f"{what} {path} holds a '%', which Slurm expands in the names of the "
                         "files its jobs write (%j, %u, ...), so every job would write elsewhere; "
                         "pass a folder without '%' (the local sweep takes it)")


def remove_links(job_dir: Path) -> list[Path]:
    """Remove every symbolic link in the job folder and its subfolders (never their targets).

    Slurm and submitit write the jobs' files there by name, following links: a link planted
    where a job's folder or output file will be would have them write over its target.
    """
    removed = []
    folders = [Path(job_dir)]
    with os.scandir(job_dir) as entries:
        for entry in entries:
            if entry.is_symlink():
                removed.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
    for folder in folders[1:]:
        try:
            with os.scandir(folder) as entries:
                removed += [Path(e.path) for e in entries if e.is_symlink()]
        except OSError:
            continue
    for link in removed:
        os.unlink(link)
        say(f"warning: {link} was a symbolic link; removed it (the file it pointed to is "
            "untouched), so that no job writes through it")
    return removed


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
        raise UsageError(f"sinfo failed ({first_line(result.stderr)}); is the Slurm "
                         "controller up, and SLURM_CONF right?")



def check_resources(options: SlurmOptions) -> None:
    """Refuse, before anything is submitted, what no node of the partition can give.

    A job asking for more CPUs or memory than the partition's largest node has is accepted by
    some Slurm versions and then pends for ever (reason PartitionConfig); one line instead.
    Nothing is refused when sinfo says nothing usable (sbatch and the watcher judge then).
    """
    command = ["sinfo", "--noheader", "--Node", "--format=%P|%c|%m"]
    if options.partition:
        command += ["--partition", options.partition]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return
    if result.returncode:
        return
    nodes = []
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        name, cpus, memory = parts
        if options.partition is None and not name.endswith("*"):
            continue  # the default partition is the one sinfo marks with *
        try:
            nodes.append((name.rstrip("*"), int(cpus.rstrip("+")), int(memory.rstrip("+"))))
        except ValueError:
            continue
    if not nodes:
        if options.partition:
            raise UsageError(f"--partition {options.partition} has no nodes sinfo knows of; "
                             "pass a partition sinfo lists")
        return
    partition = nodes[0][0]
    most_cpus = max(cpus for _, cpus, _ in nodes)
    most_memory = max(memory for _, _, memory in nodes)
    if options.cpus > most_cpus:
        raise UsageError(f"--cpus-per-run {options.cpus} is more than any node of partition "
                         f"{partition} has ({most_cpus} CPUs), so every job would wait for "
                         f"ever; pass --cpus-per-run {most_cpus} or less, or another --partition")
    if round(options.mem_gb * 1024) > most_memory:
        raise UsageError(f"--mem-per-run {options.mem_gb:g} GB is more than any node of "
                         f"partition {partition} has ({most_memory / 1024:.1f} GB), so no job "
                         "could start; pass less, or another --partition")


if __name__ == "__main__":
    sys.exit("cluster.py is used by sweep.py --executor slurm; run that instead")
