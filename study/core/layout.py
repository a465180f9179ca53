"""Where every result lives: the one place that names the outputs tree's folders and files.

    outputs/                      Outputs("outputs")
      task1/ task2/ task3/        the first seed's runs, the ones the figures come from
        metrics.json              every task's results (METRICS), beside its checkpoint
        cifar_net.pth             Task 1's weights (CLASSIFIER_CHECKPOINT)
        deconv_net.pth            Task 2's weights (DECONV_CHECKPOINT)
        training_state.pth        the state --resume reads (TRAINING_STATE)
        .incomplete               while a run writes its folder, and after it failed (INCOMPLETE)
        .run_identity.json        what a sweep run is (RUN_IDENTITY): a later sweep reuses it
      task3/baseline_models/      the randomised models Task 3 saves (BASELINE_MODELS)
      task3/explorer.html         the explorer page (EXPLORER)
      runs/                       every other run of the sweep: task1_seed1, task2_lambda0.1_seed0,
                                  task2_permuted_seed0 ..., and logs/, summary.json
      seeds/ formation/ invariance/   the questions beyond the assignment (make all)
      report.pdf                  the report (REPORT)
      beyond.pdf                  its companion, "Beyond the assignment" (BEYOND_REPORT)
      depth/                      the same tree for the deeper network (make depth), with
                                  probes/, probes_tutorial/ and explorer.html

Scripts, the sweep, the readers and the tests ask this module for a path; none types a name.
"""
from dataclasses import dataclass
from pathlib import Path

from study.core.settings import lambda_name

METRICS = "metrics.json"
CLASSIFIER_CHECKPOINT = "cifar_net.pth"
DECONV_CHECKPOINT = "deconv_net.pth"
TRAINING_STATE = "training_state.pth"
INCOMPLETE = ".incomplete"
RUN_IDENTITY = ".run_identity.json"  # what a sweep run was, for the next sweep to reuse it
SUMMARY = "summary.json"
EXPLORER = "explorer.html"
REPORT = "report.pdf"
BEYOND_REPORT = "beyond.pdf"
BASELINE_MODELS = "baseline_models"
SNAPSHOTS = "snapshots"  # a Task 2 run's weights during training (train_deconv.py --snapshots)
TASKS = ("task1", "task2", "task3")
# The outputs' format: raised whenever a task writes its files differently (a new field that
# readers rely on, such as the ModelId in Task 3's model.json). A run recorded under another
# format is not reused: make all redoes it, as make redoes a target whose recipe changed.
OUTPUTS_FORMAT = 2


@dataclass(frozen=True)
class Outputs:
    """One outputs tree (the study's, or the depth study's inside it)."""

    root: Path = Path("outputs")

    def task(self, name: str) -> Path:
        """The folder of the first seed's run of a task ("task1", "task2" or "task3")."""
        if name not in TASKS:
            raise ValueError(f"no task {name!r}; one of {', '.join(TASKS)}")
        return self.root / name

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.runs / "logs"

    @property
    def summary(self) -> Path:
        return self.runs / SUMMARY

    def run(self, task: str, seed: int, lam: float | None = None, permuted: bool = False,
            first_seed: int | None = None) -> Path:
        """A sweep run's folder: the task's own folder for `first_seed` at the default setting,
        else runs/<task>[_lambda<λ>|_permuted]_seed<seed>."""
        if seed == first_seed and lam is None and not permuted:
            return self.task(task)
        suffix = "_permuted" if permuted else f"_lambda{lambda_name(lam)}" if lam is not None else ""
        return self.runs / f"{task}{suffix}_seed{seed}"

    @property
    def task2_checkpoint(self) -> Path:
        return self.task("task2") / DECONV_CHECKPOINT

    def permuted_checkpoint(self, seed: int = 0) -> Path:
        """The deconv_net.pth of Task 2 trained on permuted labels (Task 3's baseline)."""
        return self.run("task2", seed, permuted=True) / DECONV_CHECKPOINT

    @property
    def baseline_models(self) -> Path:
        return self.task("task3") / BASELINE_MODELS

    @property
    def explorer(self) -> Path:
        """The study's page (Task 3's folder); the depth tree's page is depth_explorer."""
        return self.task("task3") / EXPLORER

    def explorer_checkpoints(self) -> list[Path]:
        """The models the study's page shows, the default first: Task 2's, the randomised ones
        Task 3 saved, and the λ sweep's (seed 0); those not made yet are left out."""
        return [self.task2_checkpoint, *sorted(self.baseline_models.glob(f"*/{DECONV_CHECKPOINT}")),
                *sorted(self.runs.glob(f"task2_lambda*_seed0/{DECONV_CHECKPOINT}"))]

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def beyond_report(self) -> Path:
        """The companion report: the questions beyond the assignment (make_beyond_report.py)."""
        return self.root / BEYOND_REPORT

    @property
    def seeds(self) -> Path:
        """Do the seeds learn the same channels? (compare_seeds.py)"""
        return self.root / "seeds"

    @property
    def formation(self) -> Path:
        """When do channels form? (formation.py, from the snapshots seed 0's Task 2 kept)"""
        return self.root / "formation"

    @property
    def invariance(self) -> Path:
        """What does each layer become invariant to? (invariance.py)"""
        return self.root / "invariance"

    # --- the depth study (make depth): a tree of its own inside this one ---
    @property
    def depth(self) -> "Outputs":
        return Outputs(self.root / "depth")

    @property
    def probes(self) -> Path:
        """Linear probes of this tree's Task 2 model."""
        return self.root / "probes"

    @property
    def probes_tutorial(self) -> Path:
        """In the depth tree: the tutorial net's probes, the deep report's comparison."""
        return self.root / "probes_tutorial"

    @property
    def depth_explorer(self) -> Path:
        return self.root / EXPLORER

