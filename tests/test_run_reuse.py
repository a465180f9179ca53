"""A sweep that knows what is done: a finished run of the same identity is reused, an interrupted
one resumed, anything else (and whatever waits for it) trained again."""
import json
import shutil
import sys

import pytest

from conftest import run_script
from study.core.layout import INCOMPLETE, METRICS, RUN_IDENTITY, TRAINING_STATE
from study.runs.identity import RESUME, RUN, UP_TO_DATE, decide_reuse, reuse, run_identity
from study.runs.plan import Run


def test_identity_holds_input_files_by_content_and_drops_where_a_run_writes(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("same"), b.write_text("same")
    first = run_identity("train_deconv.py", ["--seed", "1", "--task1-metrics", str(a),
                                             "--out", "x", "--quiet", "--data-dir", "d"], "h")
    second = run_identity("train_deconv.py", ["--seed", "1", f"--task1-metrics={b}",
                                              "--out", "elsewhere"], "h")
    assert first == second
    import hashlib
    assert first["inputs"] == {"--task1-metrics": hashlib.sha256(b"same").hexdigest()}
    assert first["flags"] == ["--seed", "1"]
    b.write_text("retrained")
    assert run_identity("train_deconv.py", ["--task1-metrics", str(b)], "h") != \
        run_identity("train_deconv.py", ["--task1-metrics", str(a)], "h")
    assert run_identity("x.py", ["--seed", "1"], "h") != run_identity("x.py", ["--seed", "2"], "h")
    assert run_identity("x.py", [], "h") != run_identity("x.py", [], "other data")


def _finished(folder, identity, incomplete=False, state=False, results=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_IDENTITY).write_text(json.dumps(identity))
    if results:
        (folder / METRICS).write_text("{}")
    if incomplete:
        (folder / INCOMPLETE).write_text("{}")
    if state:
        (folder / TRAINING_STATE).write_bytes(b"state")


@pytest.mark.parametrize("setup, task, expected", [
    ({}, "task1", UP_TO_DATE),
    ({"incomplete": True, "state": True}, "task1", RESUME),
    ({"incomplete": True, "state": True}, "task3", RUN),  # Task 3 has no --resume
    ({"incomplete": True}, "task2", RUN),
    ({"results": False}, "task2", RUN),
])
def test_reuse_decides_as_make_would(setup, task, expected, tmp_path):
    identity = run_identity("s.py", ["--seed", "0"], "h")
    _finished(tmp_path / "run", identity, **setup)
    assert reuse(tmp_path / "run", task, identity, tmp_path / "run" / METRICS) == expected
    other = run_identity("s.py", ["--seed", "1"], "h")
    assert reuse(tmp_path / "run", task, other, tmp_path / "run" / METRICS) == RUN


def test_a_damaged_identity_file_means_the_run_is_done_again(tmp_path):
    identity = run_identity("s.py", [], "h")
    _finished(tmp_path, identity)
    (tmp_path / RUN_IDENTITY).write_text("{not json")
    assert reuse(tmp_path, "task1", identity, tmp_path / METRICS) == RUN


def test_whatever_waits_for_a_redone_run_is_redone(tmp_path):
    def run(name, after=()):
        out = tmp_path / name
        return Run(name, [sys.executable, "s.py", "--name", name], out, after,
                   results=out / METRICS, task="task1")
    runs = [run("a"), run("b", ("a",)), run("c", ("b",)), run("d")]
    for r in runs:
        _finished(r.out, run_identity("s.py", ["--name", r.name], "h"))
    assert {n: d for n, (d, _) in decide_reuse(runs, "h").items()} == dict.fromkeys("abcd", UP_TO_DATE)
    (tmp_path / "a" / METRICS).unlink()
    assert {n: d for n, (d, _) in decide_reuse(runs, "h").items()} == {
        "a": RUN, "b": RUN, "c": RUN, "d": UP_TO_DATE}
    assert {d for d, _ in decide_reuse(runs, "h", force=True).values()} == {RUN}


@pytest.mark.slow
def test_a_second_sweep_trains_nothing_and_an_interrupted_run_resumes(study_outputs, tiny_cifar,
                                                                      tmp_path):
    """The study's own sweep, run again on a copy of its outputs: every run up to date (no log
    written, no result touched); then one run left as an interrupt leaves it: only it resumes,
    to the same numbers, and what waits for it is trained again."""
    if not (study_outputs / "task1" / RUN_IDENTITY).is_file():
        pytest.skip("STUDY_OUTPUTS points at a study made before runs recorded their identity")
    outputs = tmp_path / "outputs"
    shutil.copytree(study_outputs, outputs, ignore=shutil.ignore_patterns("logs"))
    before = {p: p.read_bytes() for p in outputs.rglob(METRICS)}
    args = ["--data-dir", tiny_cifar, "--outputs", outputs, "--seeds", "0,1", "--lambdas", "0,1e-2",
            "--quiet", "--task3", "--null-draws", "19", "--occlusion-images", "8",
            "--snapshots", "0.5,1", "--",
            "--epochs", "1", "--log-every", "10"]
    env = {**__import__("os").environ, "CIFAR10_CACHE": str(tmp_path / "cache")}
    again = run_script("sweep.py", *args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to train: all 7 runs are up to date" in again.stdout
    assert {p: p.read_bytes() for p in outputs.rglob(METRICS)} == before
    assert not list((outputs / "runs" / "logs").glob("*.log"))

    interrupted = outputs / "runs" / "task1_seed1"
    accuracy = json.loads((interrupted / METRICS).read_text())["test_accuracy"]
    (interrupted / METRICS).unlink()
    (interrupted / INCOMPLETE).write_text(json.dumps({"script": "train_classifier.py"}))
    third = run_script("sweep.py", *args, env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "resuming    task1 seed 1" in third.stdout
    trained = sorted(p.stem for p in (outputs / "runs" / "logs").glob("*.log"))
    assert trained == ["task1_seed_1", "task2_seed_1"]
    assert json.loads((interrupted / METRICS).read_text())["test_accuracy"] == accuracy
    assert not (interrupted / INCOMPLETE).exists()


def test_results_replaced_by_hand_since_the_sweep_are_not_reused(tmp_path):
    from study.runs.identity import record_finished
    identity = run_identity("s.py", [], "h")
    _finished(tmp_path, identity)
    (tmp_path / RUN_IDENTITY).write_text(json.dumps(record_finished(identity, tmp_path / METRICS)))
    assert reuse(tmp_path, "task1", identity, tmp_path / METRICS) == UP_TO_DATE
    (tmp_path / METRICS).write_text('{"test_accuracy": 1}')  # e.g. train_classifier.py run by hand
    assert reuse(tmp_path, "task1", identity, tmp_path / METRICS) == RUN


def test_a_second_sweep_into_the_same_outputs_is_refused_before_it_writes(tmp_path):
    """Round six, case 6: a second sweep started beside a running one used to truncate the first's
    job logs and race it for summary.json."""
    import sweep
    from study.core.common import UsageError

    first = sweep.hold_sweep_lock(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "task1_seed_0.log").write_text("the first sweep's log")
    with pytest.raises(UsageError, match="another sweep is running into"):
        sweep.hold_sweep_lock(tmp_path)
    assert (tmp_path / "logs" / "task1_seed_0.log").read_text() == "the first sweep's log"
    first.close()
    sweep.hold_sweep_lock(tmp_path).close()  # free again once the first has ended


def test_a_run_recorded_under_another_outputs_format_is_done_again(tmp_path, monkeypatch):
    """A run whose files an older version wrote (before a field its readers now need) is not
    reused: the format is part of its identity."""
    from study.runs import identity as ids
    old = run_identity("s.py", [], "h")
    _finished(tmp_path, old)
    monkeypatch.setattr(ids, "OUTPUTS_FORMAT", old["format"] + 1)
    assert reuse(tmp_path, "task1", run_identity("s.py", [], "h"), tmp_path / METRICS) == RUN
