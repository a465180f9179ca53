"""Independent training runs in parallel: the study's seeds and lambda values, then their summary.

Task 1 and Task 2 are trained once per seed, and Task 2 once more per extra lambda (seed 0),
each run its own process writing its own folder and metrics.json: seed 0 goes to
OUTPUTS/task1 and OUTPUTS/task2 (the runs the figures come from), the others to OUTPUTS/runs/.
As many runs go at once as there are CPU cores on the CPU (every run uses one thread), one after
another on a GPU. A failed run is reported; the others still finish. Then OUTPUTS/runs/
summary.json gets mean and standard deviation over seeds, a paired McNemar test per seed, and
the lambda trade-off, drawn in OUTPUTS/runs/lambda_sweep.svg.

    python sweep.py --data-dir ../shared/cifar10 --task3         # what make all runs
    python sweep.py --seeds 0,1 --lambdas 0,1e-2 -- --epochs 1   # flags after -- go to every
                                                                 # training run
    python sweep.py --task3 --executor slurm --partition cpu     # every run a Slurm job

With --executor slurm (cluster.py) every run is a Slurm job submitted through submitit, with
the same folders, logs and summary; see --help for what each run asks for.
"""
import argparse
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from data import load_cifar10
from study.core.common import (MAX_SEED, ArgumentParser, UsageError, add_data_arguments, number,
                               number_list, run_cli, snapshot_epochs)
from study.core.files import open_log, prepare_output_dir, save_json, take_lock
from study.core.layout import RUN_IDENTITY, SUMMARY, Outputs
from study.core.settings import MAX_NULL_DRAWS, MAX_OCCLUSION_IMAGES, SWEEP_LAMBDAS, SWEEP_SEEDS
from study.core.text import plural
from study.runs.folders import check_output_dir, mark_incomplete
from study.runs.identity import RESUME, UP_TO_DATE, decide_reuse, record_finished
from study.runs.plan import NO_RESULTS, NOT_STARTED, Run, missing_results, plan
from study.runs.summary import summarize, sweep_figure

REPO = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=number_list(int, 0, MAX_SEED), default=list(SWEEP_SEEDS),
                        help="seeds of Task 1 and of Task 2 at the default lambda")
    parser.add_argument("--lambdas", type=number_list(float, 0),
                        default=list(SWEEP_LAMBDAS),
                        help="lambda values of Task 2 (seed 0; the default lambda with every seed)")
    parser.add_argument("--no-lambda-sweep", action="store_true",
                        help="Task 2 at the default lambda only (one run per seed; make depth)")
    parser.add_argument("--task1-seeds", type=number_list(int, 0, MAX_SEED), default=None,
                        help="the seeds of --seeds that also get a Task 1 run (default: all; make "
                             "depth trains a second Task 2 seed alone)")
    parser.add_argument("--snapshots", type=snapshot_epochs, default=(), metavar="EPOCHS",
                        help="the first seed's Task 2 keeps its weights at these points of "
                             "training (train_deconv.py --snapshots; make formation reads them)")
    parser.add_argument("--jobs", type=number(int, 1), default=None,
                        help="runs at once (default: CPU cores on the CPU, 1 with a GPU)")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="folder for task1/, task2/ and runs/, relative to the current folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="passed to every run")
    parser.add_argument("--task3", action="store_true",
                        help="also run Task 3 (visualize_latents.py) on seed 0's Task 2 model, as "
                             "soon as that exists, beside the remaining training runs")
    parser.add_argument("--null-draws", type=number(int, 19, MAX_NULL_DRAWS), default=None,
                        help="with --task3: models Task 3 draws per null group, 19 to "
                             f"{MAX_NULL_DRAWS:,} (default: its own)")
    parser.add_argument("--occlusion-images", type=number(int, 1, MAX_OCCLUSION_IMAGES), default=None,
                        help="with --task3: test images of Task 3's occlusion test, 1 to "
                             f"{MAX_OCCLUSION_IMAGES:,} (default: its own)")
    parser.add_argument("--force", action="store_true",
                        help="train every run again, even those whose folder holds the finished "
                             "results of the same run (same settings, inputs and data)")
    parser.add_argument("--permuted", action="store_true",
                        help="also train seed 0's Task 2 on permuted labels (the baseline Task 3 "
                             "and probe_layers.py read; implied by --task3)")
    add_data_arguments(parser, seed=False)
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="local: processes on this machine; slurm: every run a Slurm job "
                             "through submitit (pip install -r requirements-cluster.txt)")
    cluster = parser.add_argument_group(
        "with --executor slurm",
        "Every run becomes a Slurm job. The output folder (--outputs), the repository, the "
        "data and the data cache ($CIFAR10_CACHE) must be visible to every node at the same "
        "path (a shared filesystem): a folder under /tmp is refused unless "
        "--allow-node-local-outputs is given (fine on a one-node cluster).")
    cluster.add_argument("--partition", default=None,
                         help="Slurm partition (default: the cluster's default partition)")
    cluster.add_argument("--time", dest="time_minutes", type=number(int, 5), default=60,
                         help="time limit per run, minutes; give 3 more than a run takes: "
                              "submitit has Slurm signal the end 90 s early, and Slurm may send "
                              "it up to 60 s earlier still")
    cluster.add_argument("--cpus-per-run", type=number(int, 1), default=1,
                         help="CPUs per run (every run trains with one thread on the CPU)")
    cluster.add_argument("--mem-per-run", type=number(float, 0, low_open=True), default=4.0,
                         help="memory per run, GB")
    cluster.add_argument("--gpus-per-run", type=number(int, 0), default=0,
                         help="GPUs per run (0: none asked for; the runs use --device)")
    cluster.add_argument("--max-parallel", type=number(int, 1), default=None,
                         help="at most this many tasks of a job array run at once "
                              "(default: as many as Slurm starts)")
    cluster.add_argument("--allow-node-local-outputs", action="store_true",
                         help="accept --outputs under /tmp (each node has its own /tmp: only "
                              "right on a one-node cluster)")
    parser.add_argument("extra", nargs="*", metavar="-- FLAGS", default=[],
                        help="further flags for every training run, after -- (default: none)")
    return parser.parse_args(argv)


NODE_LOCAL = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


def check_shared_outputs(outputs: Path) -> None:
    """Refuse an output folder every node has its own of (the runs' results would be scattered)."""
    resolved = outputs.resolve()
    for local in NODE_LOCAL:
        if resolved.is_relative_to(local.resolve()):
            raise UsageError(f"--outputs {outputs} is under {local}, which every Slurm node has "
                             "its own of; pass a folder on a filesystem the nodes share, or "
                             "--allow-node-local-outputs on a one-node cluster")


# Flags every run gets from the sweep itself; given again after -- they would relabel the runs.
SET_BY_SWEEP = ("--seed", "--lambda", "--out", "--task1-metrics", "--data-dir", "--subset",
                "--device", "--resume", "--init-from")


def training_parsers() -> dict[str, argparse.ArgumentParser]:
    """The parsers of the scripts that get the flags after --, by script name."""
    import train_classifier
    import train_deconv
    return {"train_classifier.py": train_classifier.build_parser(),
            "train_deconv.py": train_deconv.build_parser()}


def check_extra_flags(extra: list[str]) -> None:
    """Refuse flags after -- that would mislabel the runs, stop them, or that a run rejects.

    Each flag is read by the training scripts' own parsers (abbreviations off), so `--se 7` is
    an unknown flag here as it is there, never a `--seed` that slipped past; a flag that prints
    and exits (--help) would leave every folder without results, so it is refused too.
    """
    for flag in extra:
        name = flag.split("=", 1)[0]
        if name in SET_BY_SWEEP:
            raise UsageError(f"{name} after -- would override what sweep.py sets for each run "
                             "(seeds, lambdas, folders, data); use --seeds, --lambdas, --outputs "
                             "and the sweep's own data flags instead")
    for script, parser in training_parsers().items():
        for flag in extra:
            action = parser._option_string_actions.get(flag.split("=", 1)[0])
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                raise UsageError(f"{flag} after -- would make every run print and exit without "
                                 f"training; see python {script} --help for the flags they take")
        try:
            parser.check(extra)
        except UsageError as error:
            raise UsageError(f"the flags after -- go to every training run, and {script} says: "
                             f"{error} (see python {script} --help)") from None


def run_parallel(runs: list[Run], jobs: int, log_dir: Path, quiet: bool = False) -> dict[str, int]:
    """Run every command, at most `jobs` at once, each after the runs it waits for.

    Each run's output goes to log_dir/<name>.log. Returns the exit code of every run; a failed
    run does not stop the others.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    waiting, running, codes = list(runs), {}, {}
    by_name = {run.name: run for run in runs}
    started_at = time.perf_counter()
    try:
        while waiting or running:
            for run in [r for r in waiting if any(codes.get(a, 0) != 0 for a in r.after)]:
                waiting.remove(run)  # what it waits for failed: it would read stale results
                codes[run.name] = NOT_STARTED
                print(f"skipped  {run.name}: {', '.join(a for a in run.after if codes.get(a, 0))} "
                      "failed", flush=True)
            for run in [r for r in waiting if all(a in codes for a in r.after)]:
                if len(running) >= jobs:
                    break
                waiting.remove(run)
                # never through a link planted in the log folder (the Slurm jobs do the same)
                path = log_dir / (run.name.replace(" ", "_") + ".log")
                log = open_log(path)
                env = dict(os.environ, PYTHONUNBUFFERED="1")
                running[run.name] = (subprocess.Popen(run.command, stdout=log,
                                                      stderr=subprocess.STDOUT, env=env,
                                                      preexec_fn=_end_with_parent),
                                     log, time.perf_counter(), path)
                if not quiet:
                    print(f"started  {run.name}", flush=True)
            for name, (process, log, started, path) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    codes[name] = process.returncode
                    del running[name]
                    missing = None if process.returncode else missing_results(by_name[name])
                    if missing:
                        codes[name] = NO_RESULTS
                    if codes[name] or not quiet:
                        state = ("ok" if codes[name] == 0
                                 else f"FAILED (exit 0, but {missing}; see {path})" if missing
                                 else f"FAILED (exit {process.returncode}, see {path})")
                        print(f"finished {name} in {time.perf_counter() - started:.0f} s: {state}",
                              flush=True)
            time.sleep(0.05)
    except KeyboardInterrupt:
        while True:  # a second Ctrl-C or SIGTERM must not cut the clean-up short
            try:
                _stop_all(running)
                break
            except KeyboardInterrupt:
                continue
        raise
    if not quiet:
        print(f"{len(codes)} runs in {time.perf_counter() - started_at:.0f} s with {jobs} at once")
    return codes


def _stop_all(running: dict) -> None:
    """End every running child (SIGTERM, then SIGKILL after 10 s); safe to call again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for process, *_ in running.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 10
    for process, log, *_ in running.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _end_with_parent() -> None:
    """In the child: be sent SIGTERM when the sweep dies, however it dies (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


SWEEP_LOCK = ".sweep.lock"


def hold_sweep_lock(runs_dir: Path) -> Any:
    """One sweep at a time into one outputs folder: an flock on runs/.sweep.lock, held while the
    returned file is open (the kernel releases it however the sweep ends). A second sweep is
    refused with one line before it marks a folder, opens a log or writes a summary."""
    lock, taken = take_lock(runs_dir / SWEEP_LOCK, f"cannot write to {runs_dir} ({{reason}}); "
                                                   "pass a writable --outputs")
    if not taken:
        lock.close()
        raise UsageError(f"another sweep is running into {runs_dir.parent} (it holds "
                         f"{runs_dir / SWEEP_LOCK}); wait for it to finish, or pass another "
                         "--outputs") from None
    return lock


def default_jobs(device: str) -> int:
    import torch
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return 1  # one GPU: runs one after another, each replaying its CUDA graph
    return len(os.sched_getaffinity(0))


def main() -> None:
    args = parse_args()
    check_extra_flags(args.extra)
    # before planning: an --outputs inside the data folder would fail every run one by one
    check_output_dir(args.outputs, data_dir=args.data_dir)
    if args.executor == "slurm":
        if not args.allow_node_local_outputs:
            check_shared_outputs(args.outputs)
        from study.runs import cluster  # imports submitit; the local sweep never does
        cluster.check_slurm_path(args.outputs)
        cluster.import_submitit()
        cluster.check_cluster()
        options = cluster.SlurmOptions(args.partition, args.time_minutes, args.cpus_per_run,
                                       args.mem_per_run, args.gpus_per_run, args.max_parallel)
        cluster.check_resources(options)
    jobs = args.jobs or default_jobs(args.device)
    # Decode (or check) the data once here, so that the runs share one cache and bad data
    # stops everything with one line before any run starts.
    data = load_cifar10(args.data_dir, quiet=args.quiet)
    data_flags = ["--device", args.device, "--subset", str(args.subset)]
    if args.data_dir is not None:
        data_flags += ["--data-dir", str(args.data_dir)]
    if args.quiet:
        data_flags.append("--quiet")
    runs_dir = prepare_output_dir(Outputs(args.outputs).runs)
    lock = hold_sweep_lock(runs_dir)  # before any folder is marked or any log opened
    lambdas = [] if args.no_lambda_sweep else args.lambdas
    runs = plan(args.seeds, lambdas, args.outputs, [*data_flags, *args.extra],
                [*data_flags, *(["--null-draws", str(args.null_draws)] if args.null_draws else []),
                 *(["--occlusion-images", str(args.occlusion_images)] if args.occlusion_images else [])]
                if args.task3 else None, permuted=args.permuted,
                snapshots=",".join(f"{e:g}" for e in args.snapshots), task1_seeds=args.task1_seeds)
    decisions = decide_reuse(runs, data.content_hash, force=args.force)
    to_run, reused = [], []
    for run in runs:
        decision, identity = decisions[run.name]
        if decision == UP_TO_DATE:
            reused.append(run.name)
            print(f"up to date  {run.name} ({run.out})", flush=True)
            continue
        if decision == RESUME:
            run.command.append("--resume")
            print(f"resuming    {run.name} from its last saved epoch", flush=True)
        # results of an earlier sweep must not pass for this one's
        mark_incomplete(prepare_output_dir(run.out), "sweep.py (not yet run)")
        save_json(identity, run.out / RUN_IDENTITY)
        to_run.append(replace(run, after=tuple(a for a in run.after if a not in reused)))
    started = time.perf_counter()
    codes, job_ids = dict.fromkeys(reused, 0), None
    if not to_run:
        print(f"nothing to train: all {len(runs)} runs are up to date (--force trains them again)")
    elif args.executor == "slurm":
        jobs = args.max_parallel or len(to_run)
        print(f"{len(to_run)} runs as Slurm jobs; logs in {runs_dir / 'logs'}, Slurm's "
              f"files in {runs_dir / 'slurm'}")
        ran, job_ids = cluster.run_on_slurm(to_run, runs_dir / "logs", runs_dir / "slurm", options)
        codes.update(ran)
    else:
        print(f"{len(to_run)} runs, {jobs} at once; logs in {runs_dir / 'logs'}")
        codes.update(run_parallel(to_run, jobs, runs_dir / "logs"))
    for run in to_run:  # what the next sweep reuses: each run that finished well, with its results
        if codes.get(run.name) == 0:
            save_json(record_finished(decisions[run.name][1], run.results),
                      run.out / RUN_IDENTITY)
    summary = summarize(runs, codes, args.seeds, lambdas)
    summary.update(jobs=jobs, wall_seconds=round(time.perf_counter() - started, 1),
                   includes_task3=args.task3, executor=args.executor)
    if job_ids is not None:
        summary["slurm_jobs"] = job_ids
    if summary["lambda_sweep"]:
        sweep_figure(summary, runs_dir / "lambda_sweep.svg")
    save_json(summary, runs_dir / SUMMARY)
    lock.close()
    print(f"wrote {runs_dir / SUMMARY}")
    if summary["failed_runs"]:
        skipped = [n for n in summary["failed_runs"] if codes.get(n) == NOT_STARTED]
        failed = [n for n in summary["failed_runs"] if n not in skipped]
        if skipped:
            raise UsageError(f"{plural(len(failed), 'run')} failed ({', '.join(failed)}) and "
                             f"{plural(len(skipped), 'run')} waiting for them not started "
                             f"({', '.join(skipped)}); the logs are in {runs_dir / 'logs'}")
        raise UsageError(f"{len(summary['failed_runs'])} run(s) failed: "
                         f"{', '.join(summary['failed_runs'])}; their logs are in {runs_dir / 'logs'}")


if __name__ == "__main__":
    run_cli(main)
