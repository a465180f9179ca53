"""The same study on a deeper network (make depth): does learning show with depth?

The plan, each step a script of its own writing OUTPUTS/depth/ (docs/depth.md):
1. the tutorial's Task 2 models, trained by the study's own sweep if make all has not made them;
2. Task 1, Task 2 (two seeds, the first keeping a snapshot after every epoch) and Task 2 on
   permuted labels for the deeper network (sweep.py, the fast recipe, one thread per run),
   while the tutorial's net is probed beside them;
3. Task 3 on the deeper network, per layer, with the linear probes of its layers beside it;
4. the questions beyond the assignment on the deeper network: do its two Task 2 seeds learn
   the same channels (compare_seeds.py), when do its channels form (formation.py, from the
   snapshots seed 0's Task 2 kept after every epoch), what is each layer invariant to
   (invariance.py);
5. the deeper network's explorer page, then the companion report beyond.pdf and the report
   again (its abstract points to beyond.pdf).
The probes run on one thread at the lowest priority (nice 19): they take the CPU time the
training and Task 3 leave idle. A step whose folder holds the finished results of the same run
(same settings, inputs and data) is reused, as make would; --force redoes every step.

    python depth.py --data-dir ../shared/cifar10            # what make depth runs
    python depth.py --arch small3 --epochs 1 --null-draws 19  # a quick look at another depth
"""
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from data import load_cifar10
from models import ARCHITECTURES
from study.analysis.probes import PROBE_TRAIN_IMAGES
from study.core.common import ArgumentParser, UsageError, add_data_arguments, number, run_cli, say
from study.core.files import save_json
from study.core.layout import METRICS, RUN_IDENTITY, Outputs
from study.core.settings import (MAX_BASELINE_SEEDS, MAX_NULL_DRAWS, MAX_OCCLUSION_IMAGES,
                                 usable_cores)
from study.runs.identity import UP_TO_DATE, record_finished, reuse, run_identity

REPO = Path(__file__).resolve().parent


@dataclass(frozen=True)
class DepthProtocol:
    """What make depth trains and measures (each a flag of this script, defaults shown by --help).

    Six epochs of the fast recipe keep the whole plan to about 40 minutes on two CPU cores
    (docs/depth.md); 99 draws per null and 50 occlusion images keep its Task 3 to minutes. The
    questions beyond the assignment read fewer images than the tutorial's (a deep network's
    forward pass costs some 20 of the tutorial's) and draw as many random networks as their
    Holm families need: 99 pairs of seeds' matchings (4 layers x 1 pair), 599 for the
    snapshots (4 layers x 7 snapshots), the invariance script's own default (4 layers x 4
    transformations x 2 directions: 699).
    """

    arch: str = "deep4"
    epochs: int = 6
    null_draws: int = 99
    baseline_seeds: int = 1
    occlusion_images: int = 50
    probe_train_images: int = PROBE_TRAIN_IMAGES
    threads: int = 0  # Task 3's threads; 0: every usable core
    seeds: tuple[int, ...] = (0, 1)  # Task 2's seeds (Task 1: the first only)
    seed_images: int = 500
    seed_null_draws: int = 99
    formation_images: int = 250
    formation_null_draws: int = 599
    invariance_images: int = 100


@dataclass
class Step:
    """One script of the plan: its flags, the folder it writes, the files it reads."""

    script: str
    flags: list[str]
    out: Path

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(REPO / self.script), *self.flags, "--out", str(self.out)]


def parse_args(argv: list[str] | None = None):
    defaults = DepthProtocol()
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default=defaults.arch,
                        help="the deeper network (models.ARCHITECTURES)")
    parser.add_argument("--epochs", type=number(int, 1, 1000), default=defaults.epochs,
                        help="epochs of the fast recipe for the deeper network's runs")
    parser.add_argument("--null-draws", type=number(int, 19, MAX_NULL_DRAWS),
                        default=defaults.null_draws, help="Task 3's models per null group")
    parser.add_argument("--baseline-seeds", type=number(int, 1, MAX_BASELINE_SEEDS),
                        default=defaults.baseline_seeds,
                        help="Task 3's re-initialisations per cascade step")
    parser.add_argument("--occlusion-images", type=number(int, 1, MAX_OCCLUSION_IMAGES),
                        default=defaults.occlusion_images, help="Task 3's occlusion test images")
    parser.add_argument("--probe-train-images", type=number(int, 10),
                        default=defaults.probe_train_images,
                        help="training images each linear probe is fitted on")
    parser.add_argument("--threads", type=number(int, 0, usable_cores()), default=defaults.threads,
                        help=f"Task 3's threads, 0 for every usable core ({usable_cores()} here)")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"),
                        help="the study's outputs folder; the depth study goes to OUTPUTS/depth")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="passed to every step")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="how the sweeps run their training (sweep.py --executor)")
    parser.add_argument("--partition", default=None, help="with --executor slurm: the partition")
    parser.add_argument("--force", action="store_true",
                        help="redo every step, even those whose results are up to date")
    add_data_arguments(parser, seed=False)
    return parser.parse_args(argv)


def common_flags(args) -> list[str]:
    flags = ["--subset", str(args.subset), "--device", args.device]
    if args.data_dir is not None:
        flags += ["--data-dir", str(args.data_dir)]
    return flags + (["--quiet"] if args.quiet else [])


def sweep_flags(args) -> list[str]:
    flags = ["--executor", args.executor, *(["--force"] if args.force else [])]
    return flags + (["--partition", args.partition] if args.partition else [])


def run(command: list[str], what: str) -> None:
    """One step in the foreground; a failure stops the plan with one line."""
    say(f"depth: {what}")
    code = subprocess.call(command)
    if code != 0:
        raise UsageError(f"{what} failed (exit {code}); the steps before it are kept, so make "
                         "depth again redoes only what is missing")


def identity_to_run(step: Step, data_sha256: str, force: bool) -> dict | None:
    """The identity a step will record, or None when its folder already holds the finished
    results of that very step (said as "up to date"); a step to run has its identity written
    into its folder first, so an interrupted one is never taken for finished."""
    identity = run_identity(step.script, step.flags, data_sha256)
    if not force and reuse(step.out, None, identity, step.out / METRICS) == UP_TO_DATE:
        say(f"depth: up to date  {step.out}")
        return None
    step.out.mkdir(parents=True, exist_ok=True)
    save_json(identity, step.out / RUN_IDENTITY)
    return identity


def beside(step: Step, data_sha256: str, force: bool):
    """Start a step at the lowest priority (or None when it is up to date); see finish()."""
    identity = identity_to_run(step, data_sha256, force)
    if identity is None:
        return None
    say(f"depth: {step.script} into {step.out} (beside, nice 19)")
    process = subprocess.Popen(step.command, preexec_fn=lambda: os.nice(19))
    return process, step, identity


def in_front(step: Step, data_sha256: str, force: bool, what: str) -> None:
    identity = identity_to_run(step, data_sha256, force)
    if identity is None:
        return
    run(step.command, what)
    save_json(record_finished(identity, step.out / METRICS), step.out / RUN_IDENTITY)


def finish(started) -> None:
    """Wait for a step started beside another; a failure stops the plan with one line."""
    if started is None:
        return
    process, step, identity = started
    if process.wait() != 0:
        raise UsageError(f"{step.script} into {step.out} failed (exit {process.returncode})")
    save_json(record_finished(identity, step.out / METRICS), step.out / RUN_IDENTITY)


def stop(started) -> None:
    if started is not None and started[0].poll() is None:
        started[0].terminate()
        started[0].wait()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    protocol = DepthProtocol()
    study, deep = Outputs(args.outputs), Outputs(args.outputs).depth
    common, python = common_flags(args), sys.executable
    if not study.task2_checkpoint.is_file():  # the tutorial's models the depth study compares with
        run([python, str(REPO / "sweep.py"), *common, "--task3", "--outputs", str(study.root),
             *sweep_flags(args)], "the tutorial's study (make runs), whose models are compared")
    data_sha256 = load_cifar10(args.data_dir, quiet=args.quiet).content_hash
    permuted = study.permuted_checkpoint(0)
    tutorial_probes = Step("probe_layers.py", [
        *common, "--checkpoint", str(study.task2_checkpoint),
        *(["--permuted-checkpoint", str(permuted)] if permuted.is_file() else []),
        "--train-images", str(args.probe_train_images), "--threads", "1"], deep.probes_tutorial)
    started = beside(tutorial_probes, data_sha256, args.force)
    try:
        seeds = ",".join(map(str, protocol.seeds))
        run([python, str(REPO / "sweep.py"), *common, "--seeds", seeds, "--task1-seeds",
             str(protocol.seeds[0]), "--no-lambda-sweep", "--permuted", "--snapshots",
             ",".join(str(e) for e in range(1, args.epochs + 1)), "--outputs", str(deep.root),
             *sweep_flags(args), "--", "--arch", args.arch, "--recipe", "fast", "--epochs",
             str(args.epochs), "--threads", "1"],
            f"Task 1, Task 2 (seeds {seeds}) and its permuted-labels twin of {args.arch}")
        finish(started)
    finally:
        stop(started)
    checkpoints = ["--checkpoint", str(deep.task2_checkpoint),
                   "--permuted-checkpoint", str(deep.permuted_checkpoint(0))]
    deep_probes = Step("probe_layers.py", [*common, *checkpoints, "--pixels-from",
                                           str(deep.probes_tutorial), "--train-images",
                                           str(args.probe_train_images), "--threads", "1"],
                       deep.probes)
    started = beside(deep_probes, data_sha256, args.force)
    try:
        task3 = Step("visualize_latents.py", [
            *common, *checkpoints, "--null-draws", str(args.null_draws),
            "--baseline-seeds", str(args.baseline_seeds),
            "--occlusion-images", str(args.occlusion_images),
            "--threads", str(args.threads or usable_cores())], deep.task("task3"))
        in_front(task3, data_sha256, args.force, f"Task 3 on {args.arch}")
        finish(started)
    finally:
        stop(started)
    questions(args, protocol, deep, common)
    data_dir = ["--data-dir", str(args.data_dir)] if args.data_dir is not None else []
    # with Task 3's channel cards: the layer overview is the way into 256 channels
    run([python, str(REPO / "build_explorer.py"), str(deep.task2_checkpoint), "--task3",
         str(deep.task("task3") / METRICS), "--out", str(deep.depth_explorer), "--quiet",
         *data_dir], "the deeper network's explorer page")
    run([python, str(REPO / "make_beyond_report.py"), "--outputs", str(study.root)],
        "the companion report beyond.pdf")
    run([python, str(REPO / "make_report.py"), "--outputs", str(study.root)],
        "the report (its abstract now points to beyond.pdf)")


def questions(args, protocol: DepthProtocol, deep: Outputs, common: list[str]) -> None:
    """Do the deeper network's seeds agree, when do its channels form, what is each layer
    invariant to: each script reuses its results when nothing it reads changed (--force:
    every one again)."""
    python, seeds = sys.executable, ",".join(map(str, protocol.seeds))
    force = ["--force"] if args.force else []
    threads = ["--threads", str(args.threads or usable_cores())]
    run([python, str(REPO / "compare_seeds.py"), *common, *force, *threads, "--outputs",
         str(deep.root), "--seeds", seeds, "--images", str(protocol.seed_images),
         "--null-draws", str(protocol.seed_null_draws)], f"the seeds of {args.arch} compared")
    run([python, str(REPO / "formation.py"), *common, *force, *threads, "--outputs",
         str(deep.root), "--seeds", seeds, "--images", str(protocol.formation_images),
         "--null-draws", str(protocol.formation_null_draws)],
        f"the snapshots of {args.arch} against its finished networks")
    run([python, str(REPO / "invariance.py"), *common, *force, *threads, "--checkpoint",
         str(deep.task2_checkpoint), "--out", str(deep.invariance), "--images",
         str(protocol.invariance_images)], f"the invariance of {args.arch}'s layers")


if __name__ == "__main__":
    run_cli(main)
