"""The sweep's runs as data: what each run is (task, seed, λ), its command line, its folder and
the runs it waits for. The sweep runs them (locally or on Slurm), and the summary finds them by
these fields.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

from study.core.layout import DECONV_CHECKPOINT, INCOMPLETE, METRICS, Outputs
from study.core.settings import DEFAULT_LAMBDA, lambda_name

REPO = Path(__file__).resolve().parents[2]

NOT_STARTED = -1  # the exit code recorded for a run skipped because one it waits for failed
NO_RESULTS = -2  # ... for a run that exited 0 without leaving its results (see missing_results)


@dataclass
class Run:
    """One process of the sweep: a name, its command line, its output folder, runs to wait for.

    `results` is the file a successful run leaves (its metrics.json): a run that exits 0 without
    it, or with its folder still marked incomplete, failed (e.g. it printed --help and exited).
    """

    name: str
    command: list[str]
    out: Path
    after: tuple[str, ...] = field(default_factory=tuple)
    results: Path | None = None
    # what the run is, for the summary to find it by (never by its display name)
    task: str | None = None  # "task1", "task2" or "task3"
    seed: int | None = None
    lam: float | None = None  # Task 2's λ
    permuted: bool = False  # Task 2 on permuted training labels


def missing_results(run: Run) -> str | None:
    """Why a run that exited 0 has not left its results, or None when it has."""
    if run.results is None:
        return None
    if (run.out / INCOMPLETE).exists():
        return f"{run.out} is still marked incomplete ({INCOMPLETE})"
    if not run.results.is_file():
        return f"it wrote no {run.results.name} in {run.out}"
    return None


def plan(seeds: list[int], lambdas: list[float], outputs: Path, shared: list[str],
         task3: list[str] | None = None, permuted: bool = False,
         snapshots: str | None = None, task1_seeds: list[int] | None = None) -> list[Run]:
    """Task 1 per seed, Task 2 per seed at the default lambda, Task 2 per other lambda at seed 0.

    A Task 2 run waits for the Task 1 run of its seed, so that it can compare itself with it.
    With `task3` (its flags), Task 3 follows the first seed's Task 2 and the Task 2 trained on
    permuted labels (its data-randomisation baseline), before the other runs; `permuted` plans
    that permuted-labels run without Task 3. With `snapshots` (train_deconv.py's --snapshots),
    the first seed's Task 2 keeps its weights at those points of training (the same run
    otherwise: make formation reads them). `task1_seeds`: the seeds that get a Task 1 run (default:
    every seed); a Task 2 without its seed's Task 1 neither waits nor compares.
    """
    tree = Outputs(outputs)

    def folder(task: str, seed: int, lam: float | None = None) -> Path:
        return tree.run(task, seed, lam, first_seed=seeds[0])

    runs = []

    def add(name: str, script: str, out: Path, flags: list[str], after: tuple[str, ...] = (),
            **identity):
        """One more run: `script` with `flags`, writing `out`, after the runs named in `after`."""
        runs.append(Run(name, [sys.executable, str(REPO / script), *flags, "--out", str(out)],
                        out, after, results=out / METRICS, **identity))

    classified = seeds if task1_seeds is None else [s for s in seeds if s in task1_seeds]
    for seed in classified:
        add(f"task1 seed {seed}", "train_classifier.py", folder("task1", seed),
            ["--seed", str(seed), *shared], task="task1", seed=seed)
    for seed in seeds:
        keep = ["--snapshots", snapshots] if snapshots and seed == seeds[0] else []
        compare = (["--task1-metrics", str(folder("task1", seed) / METRICS)]
                   if seed in classified else ["--no-task1-comparison"])
        add(f"task2 seed {seed}", "train_deconv.py", folder("task2", seed),
            ["--seed", str(seed), "--lambda", str(DEFAULT_LAMBDA), *compare, *keep, *shared],
            after=(f"task1 seed {seed}",) if seed in classified else (), task="task2", seed=seed,
            lam=DEFAULT_LAMBDA)
        if (task3 is not None or permuted) and seed == seeds[0]:
            # Task 3's data-randomisation baseline: the same Task 2 protocol on permuted labels
            twin = tree.run("task2", seed, permuted=True)
            add(f"task2 permuted labels seed {seed}", "train_deconv.py", twin,
                ["--seed", str(seed), "--lambda", str(DEFAULT_LAMBDA), "--permute-labels",
                 *shared], task="task2", seed=seed, lam=DEFAULT_LAMBDA, permuted=True)
        if task3 is not None and seed == seeds[0]:
            add("task3", "visualize_latents.py", tree.task("task3"),
                ["--checkpoint", str(folder("task2", seed) / DECONV_CHECKPOINT),
                 "--permuted-checkpoint", str(twin / DECONV_CHECKPOINT), *task3],
                after=(f"task2 seed {seed}", f"task2 permuted labels seed {seed}"), task="task3",
                seed=seed)
    for lam in lambdas:
        if lam != DEFAULT_LAMBDA:
            seed = seeds[0]
            add(f"task2 lambda {lambda_name(lam)} seed {seed}", "train_deconv.py",
                folder("task2", seed, lam),
                ["--seed", str(seed), "--lambda", str(lam),
                 "--task1-metrics", str(folder("task1", seed) / METRICS), *shared],
                after=(f"task1 seed {seed}",), task="task2", seed=seed, lam=lam)
    return runs
