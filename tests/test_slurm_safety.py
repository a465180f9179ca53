"""The Slurm path as safe as the local one (issue "reliability, round five", items 1-6, 18, 19).

The cluster tests run against a real one-node Slurm (tests/test_slurm.py's fixture, started
with .ci/slurm_cluster.sh); sbatch and squeue failures are simulated with wrapper scripts put
first on PATH, the daemons are left alone.
"""
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_input import assert_one_line_error, run_in_process
from test_slurm import slurm_cluster, slurm_state  # noqa: F401 (a fixture)

import sweep
from conftest import REPO


@pytest.fixture
def deadline():
    """Fail (rather than hang) a test whose watcher never returns: SIGALRM after 150 s."""
    def expired(signum, frame):
        raise TimeoutError("the sweep's watcher did not return within 150 s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(150)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def wrapper(folder: Path, name: str, body: str) -> Path:
    """An executable `name` in `folder` (put first on PATH) running the shell `body`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return folder


def quick_run(tmp_path: Path, name: str, seconds: float = 0, marker: Path | None = None) -> sweep.Run:
    """A run that sleeps `seconds`, then writes `marker` (if given) and exits 0."""
    script = f"import time; time.sleep({seconds})"
    if marker is not None:
        script += f"; open({str(marker)!r}, 'w').write('done')"
    return sweep.Run(name, [sys.executable, "-c", script], tmp_path / "o" / name.replace(" ", "_"))


def final_state(job: str, timeout: float = 30) -> str | None:
    """Slurm's state of `job` once it is no longer RUNNING (a job writes its result file, then
    ends a moment later)."""
    deadline = time.monotonic() + timeout
    while (state := slurm_state([job])[job]) in ("RUNNING", "COMPLETING") \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    return state


def last_job_id() -> int:
    """Submit a job that does nothing: its id is the cluster's latest."""
    out = subprocess.run(["sbatch", "--parsable", "--wrap", "true", "--mem", "100M", "--output", "/dev/null"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().split(";")[0])


def array_states(array: str) -> dict[str, str]:
    """Slurm's record of every task of a job array (or of the array as one job)."""
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T"],
                         capture_output=True, text=True, check=True).stdout
    states = dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)
    return {job: state for job, state in states.items() if job.split("_")[0] == array}


# --- without a cluster ---

def test_a_percent_in_the_outputs_is_refused_for_slurm_with_one_line(tmp_path, monkeypatch,
                                                                     capsys):
    """Item 6: Slurm expands %u, %j in its output paths; the sweep says so before anything."""
    outputs = tmp_path / "a%ub" / "o"
    code, lines = run_in_process(sweep, ["--outputs", outputs, "--executor", "slurm",
                                         "--allow-node-local-outputs"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "'%'", "Slurm expands", str(outputs))
    assert not outputs.parent.exists()
    from study.runs import cluster
    cluster.check_slurm_path(tmp_path / "plain")  # a path without % passes
    with pytest.raises(sweep.UsageError):
        cluster.check_slurm_path(Path("relative%j"))


def test_the_sweep_refuses_outputs_inside_its_data_folder_before_planning(tiny_cifar, tmp_path,
                                                                         monkeypatch, capsys):
    """Item 19: --outputs DATA/out --data-dir DATA is one line, and nothing is made in DATA."""
    data = tmp_path / "data"
    shutil.copytree(tiny_cifar, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    code, lines = run_in_process(sweep, ["--outputs", data / "out", "--data-dir", data,
                                         "--seeds", "0", "--lambdas", "1e-2"],
                                 monkeypatch, capsys, tmp_path)
    assert_one_line_error(code, lines, "inside the data folder", str(data / "out"))
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


@pytest.mark.slow
def test_a_failed_local_run_names_its_log_by_path(tmp_path, capsys):
    """Item 18: the failure line names the log's path, not a file descriptor's number."""
    run = sweep.Run("task1 seed 7", [sys.executable, "-c", "import sys; sys.exit(3)"],
                    tmp_path / "o")
    codes = sweep.run_parallel([run], 1, tmp_path / "logs", quiet=True)
    printed = capsys.readouterr().out
    assert codes == {"task1 seed 7": 3}
    log = tmp_path / "logs" / "task1_seed_7.log"
    assert f"FAILED (exit 3, see {log})" in printed, printed
    assert log.is_file()


# --- the one-node cluster ---

@pytest.mark.slow
@pytest.mark.cluster
def test_a_slurm_job_replaces_a_link_at_its_log_and_links_in_the_job_folder(slurm_cluster,
                                                                            tmp_path, capsys):
    """Item 1: `logs/<run>.log -> ../../victim.txt` is replaced, the victim untouched; links in
    the job folder (where Slurm writes by name) are removed before anything is submitted."""
    from study.runs import cluster

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    logs, jobs_dir = tmp_path / "o" / "runs" / "logs", tmp_path / "o" / "runs" / "slurm"
    logs.mkdir(parents=True)
    jobs_dir.mkdir(parents=True)
    (logs / "quick.log").symlink_to("../../../victim.txt")
    assert (logs / "quick.log").resolve() == victim
    (jobs_dir / "999999").symlink_to(tmp_path)  # where a future job's folder would be
    (jobs_dir / "12").mkdir()
    (jobs_dir / "12" / "12_0_log.out").symlink_to(victim)
    codes, ids = cluster.run_on_slurm([quick_run(tmp_path, "quick")], logs, jobs_dir,
                                      cluster.SlurmOptions(time_minutes=5, mem_gb=0.5,
                                                           poll_seconds=0.5), quiet=True)
    err = capsys.readouterr().err
    assert codes == {"quick": 0}
    assert victim.read_text() == "precious\n"
    log = logs / "quick.log"
    assert not log.is_symlink() and log.read_text().startswith(f"slurm job {ids['quick']} on ")
    assert not (jobs_dir / "999999").is_symlink() and not (jobs_dir / "999999").exists()
    assert not (jobs_dir / "12" / "12_0_log.out").exists()
    assert err.count("was a symbolic link") == 2, err  # (the log's warning is in the job's)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_refused_second_submission_cancels_the_jobs_already_submitted(slurm_cluster, tiny_cifar,
                                                                       tmp_path):
    """Item 2: sbatch fails on the sweep's second (dependent) submission: one line naming the
    jobs it cancelled; none of them runs, no folder loses its .incomplete, no summary."""
    real = shutil.which("sbatch")
    bin_dir = wrapper(tmp_path / "bin", "sbatch", f"""
count=$(cat {tmp_path}/count 2>/dev/null || echo 0); count=$((count + 1))
echo $count > {tmp_path}/count
if [ $count -ge 2 ]; then
    echo "sbatch: error: Batch job submission failed: Invalid account (simulated)" >&2; exit 1
fi
out=$({real} "$@"); status=$?
echo "$out" >> {tmp_path}/submitted; echo "$out"; exit $status
""")
    env = dict(os.environ, CIFAR10_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1",
               PATH=f"{bin_dir}:{os.environ['PATH']}")
    outputs = tmp_path / "o"
    result = subprocess.run(
        [sys.executable, str(REPO / "sweep.py"), "--data-dir", str(tiny_cifar), "--outputs",
         str(outputs), "--seeds", "0,1", "--lambdas", "1e-2", "--executor", "slurm",
         "--allow-node-local-outputs", "--mem-per-run", "1", "--device", "cpu", "--quiet", "--",
         "--epochs", "1", "--log-every", "10"], capture_output=True, text=True, env=env,
        timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert_one_line_error(result.returncode, lines, "sbatch refused", "simulated", "cancelled")
    submitted = (tmp_path / "submitted").read_text().splitlines()
    assert len(submitted) == 1  # the first array (Task 1, seeds 0 and 1) got through
    array = re.search(r"(\d+)", submitted[0]).group(1)  # "Submitted batch job N" or "N;cluster"
    tasks = [f"{array}_0", f"{array}_1"]
    assert f"({', '.join(tasks)})" in lines[-1] or all(t in lines[-1] for t in tasks), lines[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and set(array_states(array).values()) != {"CANCELLED"}:
        time.sleep(0.5)
    # (Slurm records a pending array whose tasks were all cancelled as one job, the array's id)
    assert set(array_states(array).values()) == {"CANCELLED"}, array_states(array)
    time.sleep(2)
    for task in ("task1", "task2", "runs/task1_seed1", "runs/task2_seed1"):
        assert (outputs / task / ".incomplete").is_file(), task
        assert not (outputs / task / "metrics.json").exists(), task
    assert not (outputs / "runs" / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.cluster
def test_while_squeue_fails_the_result_files_are_still_read_and_a_warning_says_so(
        slurm_cluster, deadline, tmp_path, monkeypatch, capsys):
    """Item 3: squeue fails for the whole sweep; the run's result still ends it, one warning
    (once a minute) says the controller does not answer, and no "in -0 s" is printed."""
    from study.runs import cluster

    bin_dir = wrapper(tmp_path / "bin", "squeue",
                      'echo "squeue: error: Unable to contact slurm controller (simulated)" >&2\n'
                      "exit 1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    marker = tmp_path / "finished"
    started = time.monotonic()
    codes, ids = cluster.run_on_slurm([quick_run(tmp_path, "quick", 3, marker)],
                                      tmp_path / "logs", tmp_path / "slurm",
                                      cluster.SlurmOptions(time_minutes=5, mem_gb=0.5,
                                                           poll_seconds=0.5))
    taken = time.monotonic() - started
    out, err = capsys.readouterr()
    assert codes == {"quick": 0} and marker.is_file()
    assert taken < 60
    warnings = [line for line in err.splitlines() if "does not answer" in line]
    assert len(warnings) == 1 and "simulated" in warnings[0], err
    finished = [line for line in out.splitlines() if line.startswith("finished quick")]
    assert len(finished) == 1 and "-0 s" not in finished[0], out
    assert "after submission (its start was not seen)" in finished[0]
    monkeypatch.undo()
    assert final_state(ids["quick"]) == "COMPLETED"


@pytest.mark.slow
@pytest.mark.cluster
def test_a_result_file_left_by_an_older_job_with_the_same_id_is_not_taken(slurm_cluster, deadline,
                                                                          tmp_path, capsys):
    """Item 4: Slurm reused the job id; the old job's "ok" result file is in the new job's
    folder. The sweep waits for the job itself to finish."""
    from study.runs import cluster

    jobs_dir = tmp_path / "slurm"
    after = last_job_id()
    for job in range(after + 1, after + 6):  # whichever id the run gets, plain or array task
        for name in (str(job), f"{job}_0"):
            (jobs_dir / name).mkdir(parents=True)
            with open(jobs_dir / name / f"{name}_0_result.pkl", "wb") as stream:
                pickle.dump(("success", name), stream)
    marker = tmp_path / "finished"
    codes, ids = cluster.run_on_slurm([quick_run(tmp_path, "slow", 8, marker)],
                                      tmp_path / "logs", jobs_dir,
                                      cluster.SlurmOptions(time_minutes=5, mem_gb=0.5,
                                                           poll_seconds=0.5), quiet=True)
    assert int(ids["slow"].split("_")[0]) in range(after + 1, after + 6)  # a planted id
    # the run really ran to its end before the sweep called it finished
    assert codes == {"slow": 0} and marker.is_file()
    assert final_state(ids["slow"]) == "COMPLETED"


@pytest.mark.slow
@pytest.mark.cluster
def test_a_job_that_can_never_start_is_reported_and_cancelled(slurm_cluster, deadline, tmp_path, capsys):
    """Item 5: 64 CPUs on this small node pend for ever (PartitionConfig): reported with the
    reason and cancelled; the run waiting for it is skipped."""
    from study.runs import cluster

    cpus = os.cpu_count() * 32
    greedy = quick_run(tmp_path, "greedy")
    after = sweep.Run("after", [sys.executable, "-c", "pass"], tmp_path / "o" / "after",
                      ("greedy",))
    started = time.monotonic()
    codes, ids = cluster.run_on_slurm([greedy, after], tmp_path / "logs", tmp_path / "slurm",
                                      cluster.SlurmOptions(time_minutes=5, mem_gb=0.5, cpus=cpus,
                                                           poll_seconds=0.5), quiet=True)
    printed = capsys.readouterr().out
    assert time.monotonic() - started < 60
    assert codes == {"greedy": 1, "after": sweep.NOT_STARTED}
    assert f"Slurm job {ids['greedy']} was pending for a reason that cannot resolve: " \
           "PartitionConfig" in printed, printed
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and slurm_state([ids["greedy"]])[ids["greedy"]] != "CANCELLED":
        time.sleep(0.5)
    assert slurm_state([ids["greedy"]]) == {ids["greedy"]: "CANCELLED"}


@pytest.mark.slow
@pytest.mark.cluster
def test_the_sweep_refuses_more_cpus_or_memory_than_a_node_has_before_submitting(
        slurm_cluster, tiny_cifar, tmp_path, monkeypatch, capsys):
    """Item 5, up front: sinfo shows the node's size; nothing is submitted or written."""
    before = last_job_id()
    cpus = os.cpu_count()
    for flags, words in ((["--cpus-per-run", str(cpus * 32)], [f"({cpus} CPUs)", "for ever"]),
                         (["--mem-per-run", "100000"], ["GB)", "--mem-per-run 100000"])):
        outputs = tmp_path / "o"
        code, lines = run_in_process(sweep, ["--data-dir", tiny_cifar, "--outputs", outputs,
                                             "--executor", "slurm", "--allow-node-local-outputs",
                                             *flags], monkeypatch, capsys, tmp_path)
        assert_one_line_error(code, lines, *words)
        assert not outputs.exists()
    assert last_job_id() == before + 1  # nothing submitted between the two probes
