"""sweep.py --executor slurm, against a real one-node Slurm cluster started here.

The fixture starts munged, slurmctld and slurmd with .ci/slurm_cluster.sh (its own key, socket,
ports and folders under a temporary directory) and stops them by their pids at the end. Where
Slurm's daemons are not installed the cluster tests are skipped with the reason; under CI
(`REQUIRE_SLURM=1`, set by .ci/run) that is a failure instead. The first tests need no cluster.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_bad_input import assert_one_line_error, run_in_process
from test_sweep_and_outputs import alive

import sweep
from conftest import REPO, SHARED_CIFAR10, run_script

CLUSTER_SCRIPT = REPO / ".ci" / "slurm_cluster.sh"
TINY_SWEEP = ["--seeds", "0,1", "--lambdas", "0,1e-2", "--task3", "--null-draws", "19",
              "--occlusion-images", "8", "--quiet"]


def poisoned_submitit(folder: Path, marker: Path) -> Path:
    """A `submitit` package that records being imported, then fails to import."""
    package = folder / "submitit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "raise ImportError('No module named submitit (poisoned by the test)')\n")
    return folder


# --- without a cluster ---

def test_the_local_sweep_never_imports_submitit(tiny_cifar, tmp_path, script_env):
    marker = tmp_path / "imported"
    script_env["PYTHONPATH"] = str(poisoned_submitit(tmp_path / "poison", marker))
    result = run_script("sweep.py", "--data-dir", tiny_cifar, "--outputs", tmp_path / "o",
                        "--seeds", "0", "--lambdas", "1e-2", "--quiet", "--", "--epochs", "1",
                        "--log-every", "10", env=script_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists()
    summary = json.loads((tmp_path / "o" / "runs" / "summary.json").read_text())
    assert summary["executor"] == "local" and "slurm_jobs" not in summary
    assert [r["seed"] for r in summary["per_seed"]] == [0]


def test_slurm_without_submitit_is_one_line_saying_how_to_install_it(tiny_cifar, tmp_path,
                                                                     script_env):
    marker = tmp_path / "imported"
    script_env["PYTHONPATH"] = str(poisoned_submitit(tmp_path / "poison", marker))
    # (--allow-node-local-outputs: in a clone under /tmp the outputs are under /tmp too, and that
    # check, which comes first, must not hide the one this test is about)
    result = run_script("sweep.py", "--data-dir", tiny_cifar, "--outputs", REPO / "outputs-x",
                        "--executor", "slurm", "--allow-node-local-outputs", env=script_env)
    assert marker.exists()  # it did try
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert_one_line_error(result.returncode, lines, "submitit", "pip install")
    assert not (REPO / "outputs-x").exists()


def test_slurm_refuses_outputs_under_tmp_unless_told(tmp_path, monkeypatch, capsys):
    outputs = Path("/tmp") / f"sweep-test-{os.getpid()}" / "o"  # (tmp_path may be elsewhere)
    code, lines = run_in_process(sweep, ["--outputs", outputs, "--executor", "slurm"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "/tmp", "every Slurm node", "--allow-node-local-outputs")
    assert not outputs.parent.exists()


@pytest.mark.slow
def test_the_help_says_the_outputs_must_be_visible_to_every_node():
    result = run_script("sweep.py", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "must be visible to every node" in text and "--executor {local,slurm}" in text
    for flag in ("--partition", "--time", "--cpus-per-run", "--mem-per-run", "--gpus-per-run",
                 "--max-parallel"):
        assert flag in text


def test_jobs_are_submitted_in_the_local_order_with_one_array_per_neighbouring_dependency(tmp_path):
    from study.runs import cluster

    def run(name: str, *after: str) -> sweep.Run:
        return sweep.Run(name, [sys.executable, "-c", "pass"], tmp_path / name, after)
    runs = [run("task1 seed 0"), run("task1 seed 1"), run("task2 seed 0", "task1 seed 0"),
            run("task3", "task2 seed 0"), run("task2 seed 1", "task1 seed 1"),
            run("lambda 0", "task1 seed 0"), run("lambda 0.1", "task1 seed 0"), run("late")]
    groups = [(after, [r.name for r in group])
              for after, group in cluster.submission_groups(runs)]
    assert groups == [
        ((), ["task1 seed 0", "task1 seed 1", "late"]),  # all that wait for nothing: one array
        (("task1 seed 0",), ["task2 seed 0"]),
        (("task2 seed 0",), ["task3"]),  # Task 3 before the other seeds, as locally
        (("task1 seed 1",), ["task2 seed 1"]),
        (("task1 seed 0",), ["lambda 0", "lambda 0.1"])]  # neighbours, same inputs: one array
    # and the sweep's own plan: every run once, each group after the groups it waits for
    plan = sweep.plan([0, 1], [0.0, 1e-3, 1e-2], tmp_path, [], task3=[])
    submitted: list[str] = []
    for after, group in cluster.submission_groups(plan):
        assert set(after) <= set(submitted), after
        submitted += [r.name for r in group]
    assert sorted(submitted) == sorted(r.name for r in plan)


@pytest.mark.slow
def test_make_passes_the_executor_and_a_partition_to_the_sweep_unharmed(tmp_path):
    show = tmp_path / "show.sh"
    show.write_text('#!/bin/sh\nprintf "%s|" "$@"\n')
    show.chmod(0o755)

    def runs(*variables: str) -> list[str]:
        result = subprocess.run(["make", "-s", "-C", str(REPO), "runs", f"PYTHON={show}",
                                 *variables], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("|")
    local = runs()
    assert local[local.index("--executor") + 1] == "local" and "--partition" not in local
    cluster = runs("EXECUTOR=slurm", "PARTITION=cpu $(touch pwned); `touch pwned2`")
    assert cluster[cluster.index("--executor") + 1] == "slurm"
    assert cluster[cluster.index("--partition") + 1] == "cpu $(touch pwned); `touch pwned2`"
    assert not list(tmp_path.glob("pwned*")) and not list(REPO.glob("pwned*"))


# --- the one-node cluster ---

@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node cluster; SLURM_CONF points the tests and the sweep at it."""
    missing = [tool for tool in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch")
               if shutil.which(tool) is None]
    reason = None
    if missing:
        reason = (f"Slurm is not installed here ({', '.join(missing)} missing; "
                  "apt-get install -y slurm-wlm munge, as .ci/run does)")
    elif os.geteuid() != 0:
        reason = "the one-node cluster's slurmd must run as root"
    else:
        try:
            import submitit  # noqa: F401
        except ImportError:
            reason = "submitit is not installed (pip install -r requirements-cluster.txt)"
    if reason:
        if os.environ.get("REQUIRE_SLURM"):
            pytest.fail(f"REQUIRE_SLURM is set but {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(CLUSTER_SCRIPT), "start", str(root)], capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(root / "slurm.conf")
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([str(CLUSTER_SCRIPT), "stop", str(root)], timeout=120)


def slurm_state(job_ids: list[str]) -> dict[str, str]:
    """Slurm's own record of each job (squeue keeps ended jobs for the cluster's MinJobAge)."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all",
                          "--format=%i|%T"], capture_output=True, text=True, check=True).stdout
    states = dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
    return {job: states.get(job) for job in job_ids}


def comparable(metrics: dict, root: Path) -> dict:
    """A run's metrics without what differs between two runs of it: times, the folder, and the
    checkpoint file's SHA-256 (torch.save names the zip's inner folder after the temporary file,
    which carries a pid; the weights themselves are compared separately)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()
                    if "seconds" not in k and "time" not in k and k != "checkpoint_sha256"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return value.replace(str(root), "OUTPUTS")
        return value
    return clean(metrics)


@pytest.mark.skipif(not (SHARED_CIFAR10 / "train").is_dir(), reason="../shared/cifar10 is not here")
def test_a_tiny_sweep_through_slurm_gives_the_local_numbers_to_the_last_digit(slurm_cluster,
                                                                             tmp_path):
    """--subset 0.02, 1 epoch, 2 seeds, 2 lambdas and Task 3: locally, then every run a job."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the usual data cache ($CIFAR10_CACHE or ./data)
    common = ["--data-dir", SHARED_CIFAR10, "--subset", "0.02", "--device", "cpu", *TINY_SWEEP]
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    # the local sweep runs while the cluster's jobs wait for their turn (one thread each, so
    # its numbers are those of a run alone)
    ran_local = subprocess.Popen([sys.executable, str(REPO / "sweep.py"), *map(str, common),
                                  "--outputs", str(local), "--", "--epochs", "1"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ran = run_script("sweep.py", *common, "--outputs", cluster, "--executor", "slurm",
                         "--allow-node-local-outputs", "--time", "20", "--mem-per-run", "3",
                         "--", "--epochs", "1", env=env, timeout=900)
        printed_local, _ = ran_local.communicate(timeout=900)
    finally:
        if ran_local.poll() is None:
            ran_local.kill()
    assert ran_local.returncode == 0, printed_local
    assert ran.returncode == 0, ran.stdout + ran.stderr

    runs = sweep.plan([0, 1], [0.0, 1e-2], cluster, [], task3=[])
    for run in runs:  # every run's metrics, number for number
        ours = json.loads((run.out / "metrics.json").read_text())
        theirs = json.loads((local / run.out.relative_to(cluster) / "metrics.json").read_text())
        assert comparable(ours, cluster) == comparable(theirs, local), run.name
        assert not (run.out / ".incomplete").exists()
        for checkpoint in [*run.out.glob("cifar_net.pth"), *run.out.glob("deconv_net.pth")]:
            mine = torch.load(checkpoint, weights_only=True)  # the trained weights, bit for bit
            other = torch.load(local / checkpoint.relative_to(cluster), weights_only=True)
            assert mine.keys() == other.keys(), checkpoint
            assert all(torch.equal(mine[k], other[k]) for k in mine), checkpoint
    summary = json.loads((cluster / "runs" / "summary.json").read_text())
    local_summary = json.loads((local / "runs" / "summary.json").read_text())
    for key in ("per_seed", "task1_accuracy", "task2_accuracy", "difference", "lambda_sweep",
                "failed_runs", "psnr_baselines_db"):
        assert comparable(summary[key], cluster) == comparable(local_summary[key], local), key
    assert summary["failed_runs"] == [] and summary["executor"] == "slurm"

    # every run ran as a Slurm job: Slurm recorded it as completed, its log names the job,
    # and Slurm's own output file for that job exists
    jobs = summary["slurm_jobs"]
    assert set(jobs) == {run.name for run in runs} and len(set(jobs.values())) == len(runs)
    assert set(slurm_state(list(jobs.values())).values()) == {"COMPLETED"}
    for run in runs:
        job = jobs[run.name]
        log = cluster / "runs" / "logs" / (run.name.replace(" ", "_") + ".log")
        assert log.read_text().startswith(f"slurm job {job} on "), run.name
        assert (cluster / "runs" / "slurm" / job / f"{job}_0_log.out").is_file(), run.name
    # and waited for its inputs: each dependent job was submitted with afterok on their jobs
    for run in runs:
        job = jobs[run.name].split("_")[0]  # an array's tasks share its submission script
        script = (cluster / "runs" / "slurm" / job / f"{job}_submission.sh").read_text()
        needed = ":".join(jobs[name] for name in run.after)
        assert (f"--dependency=afterok:{needed}\n" in script) == bool(run.after), run.name
    print("\nlocal vs slurm: every metrics.json equal but times;", json.dumps(jobs))


def test_a_failing_run_is_reported_with_its_job_id_and_the_others_finish(slurm_cluster, tiny_cifar,
                                                                        tmp_path, monkeypatch,
                                                                        capsys):
    from study.runs import cluster

    monkeypatch.setenv("CIFAR10_CACHE", str(tmp_path / "cache"))
    flags = ["--data-dir", str(tiny_cifar), "--quiet", "--device", "cpu", "--epochs", "1",
             "--log-every", "10"]
    runs = sweep.plan([0, 1], [0.0, 1e-2], tmp_path / "o", flags)
    broken = next(run for run in runs if run.name == "task1 seed 1")
    broken.command += ["--batch-size", "0"]  # a bad flag for this one run
    codes, jobs = cluster.run_on_slurm(runs, tmp_path / "o" / "runs" / "logs",
                                       tmp_path / "o" / "runs" / "slurm",
                                       cluster.SlurmOptions(time_minutes=10, mem_gb=2,
                                                            poll_seconds=0.5), quiet=True)
    printed = capsys.readouterr().out
    assert codes == {"task1 seed 0": 0, "task1 seed 1": 2, "task2 seed 0": 0,
                     "task2 seed 1": sweep.NOT_STARTED, "task2 lambda 0 seed 0": 0}
    failed = [line for line in printed.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "task1 seed 1" in failed[0]
    assert f"Slurm job {jobs['task1 seed 1']}: exit 2" in failed[0]
    assert "| error: argument --batch-size: 0 must be >= 1" in printed  # the log's tail
    skipped = f"skipped  task2 seed 1 (Slurm job {jobs['task2 seed 1']}): task1 seed 1 failed"
    assert skipped in printed
    states = slurm_state(list(jobs.values()))
    assert states[jobs["task1 seed 1"]] == "FAILED"
    assert states[jobs["task2 seed 1"]] == "CANCELLED"  # never started: its input failed
    assert not (tmp_path / "o" / "runs" / "logs" / "task2_seed_1.log").exists()
    for run in runs:
        if codes[run.name] == 0:
            assert (run.out / "metrics.json").is_file() and not (run.out / ".incomplete").exists()


def test_a_run_past_its_time_limit_is_reported_with_its_job_id_and_stopped(slurm_cluster,
                                                                        tmp_path, capsys):
    """--time 2: submitit asks Slurm for its signal 90 s before the end (Slurm may send it up to
    60 s earlier), so the run is stopped within 30 s of its start."""
    from study.runs import cluster

    pid = tmp_path / "sleeper.pid"
    script = (f"import os, time; open({str(pid)!r}, 'w').write(str(os.getpid())); "
              "print('epoch 1 of 1000', flush=True); time.sleep(300)")
    sleeper = sweep.Run("sleeper", [sys.executable, "-c", script], tmp_path / "o" / "sleeper")
    started = time.monotonic()
    codes, jobs = cluster.run_on_slurm([sleeper], tmp_path / "o" / "runs" / "logs",
                                       tmp_path / "o" / "runs" / "slurm",
                                       cluster.SlurmOptions(time_minutes=2, mem_gb=1,
                                                            poll_seconds=0.5), quiet=True)
    printed = capsys.readouterr().out
    assert codes == {"sleeper": 1} and time.monotonic() - started < 120
    assert f"sleeper: FAILED (Slurm job {jobs['sleeper']}: it reached its time limit" in printed
    if pid.exists():  # the signal may come before the run started; if it had, it is stopped
        assert "| epoch 1 of 1000" in printed
        assert not alive(int(pid.read_text()))


def test_ctrl_c_cancels_every_submitted_job(slurm_cluster, tiny_cifar, tmp_path):
    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    # Ctrl-C is what a user's terminal sends; a suite started in the background of a
    # non-interactive shell (`make test &`) hands its processes SIGINT ignored, which Python
    # then leaves ignored: the sweep is started with Python's own Ctrl-C handler either way
    with_ctrl_c = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    sweep_process = subprocess.Popen(
        [sys.executable, "-c", with_ctrl_c, str(REPO / "sweep.py"), "--data-dir", str(tiny_cifar), "--outputs",
         str(tmp_path / "o"), "--seeds", "0,1", "--lambdas", "1e-2", "--executor", "slurm",
         "--allow-node-local-outputs", "--mem-per-run", "2", "--device", "cpu", "--quiet", "--",
         "--epochs", "1000", "--log-every", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    submitted = sweep_process.stdout.readline() + sweep_process.stdout.readline()
    job_ids = re.findall(r"seed \d+ (\d+(?:_\d+)?)", submitted)
    assert len(job_ids) == 4, submitted
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "RUNNING" not in slurm_state(job_ids).values():
        time.sleep(0.5)
    assert "RUNNING" in slurm_state(job_ids).values()
    time.sleep(2)  # the training processes are under way
    sweep_process.send_signal(signal.SIGINT)
    try:
        _, err = sweep_process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # say where it stood, so a hang can be diagnosed
        tree = subprocess.run(["ps", "-o", "pid,stat,wchan:20,args", "--ppid",
                               str(sweep_process.pid), "-p", str(sweep_process.pid)],
                              capture_output=True, text=True).stdout
        sweep_process.kill()
        _, err = sweep_process.communicate()
        pytest.fail(f"the sweep did not end within 120 s of Ctrl-C; jobs {slurm_state(job_ids)}; "
                    f"processes:\n{tree}\nstderr:\n{err}")
    assert sweep_process.returncode == 130, err
    assert "interrupted: cancelled the sweep's Slurm jobs with scancel" in err
    for job in job_ids:
        assert job in err
    deadline = time.monotonic() + 60  # scancel, then Slurm's KillWait (10 s on this cluster)
    while time.monotonic() < deadline:
        active = subprocess.run(["squeue", "--noheader", "--array", "--format=%i"],
                                capture_output=True, text=True, check=True).stdout.split()
        if not set(active) & set(job_ids):
            break
        time.sleep(0.5)
    assert not set(active) & set(job_ids), active
    training = subprocess.run(["pgrep", "-f", str(tmp_path / "o")], capture_output=True,
                              text=True).stdout.split()
    assert training == []
