"""The step modes and the parallel runner, in one run.

1. Steps per second of Task 1 and Task 2 through training.train_epoch, eager against a CUDA
   graph replayed over static buffers (on a GPU; on a CPU only eager and static are timed).
2. The runner of sweep.py: the wall time of two independent short Task 1 runs started together,
   against one alone (target: at most 1.2x on a 2-core CPU, where each run uses one thread).

    python -m benchmarks.bench_parallel --data-dir ../shared/cifar10
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmarks.bench_task2 import task2_steps_per_second

from benchmarks.bench_task1 import task1_steps_per_second
from data import default_data_dir, load_cifar10
from study.core.common import ArgumentParser, number, select_device
from sweep import Run, run_parallel

REPO = Path(__file__).resolve().parent.parent


def step_modes(data, steps: int, device: torch.device) -> None:
    modes = ("eager", "graph") if device.type == "cuda" else ("eager", "static")
    for name, measure in (("Task 1", task1_steps_per_second), ("Task 2", task2_steps_per_second)):
        rates = {mode: measure(data, steps, mode) for mode in modes}
        print(f"{name} on {device}: " + ", ".join(f"{m} {r:8.1f} steps/s" for m, r in rates.items())
              + f"  ({modes[1]} / eager: {rates[modes[1]] / rates[modes[0]]:.2f}x)")


def parallel_speedup(data_dir: Path, subset: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        def run(name: str) -> Run:
            return Run(name, [sys.executable, str(REPO / "train_classifier.py"), "--data-dir",
                              str(data_dir), "--subset", str(subset), "--epochs", "1", "--quiet",
                              "--device", "cpu", "--out", str(Path(tmp) / name)], Path(tmp) / name)
        started = time.perf_counter()
        run_parallel([run("alone")], 1, Path(tmp) / "logs", quiet=True)
        alone = time.perf_counter() - started
        started = time.perf_counter()
        run_parallel([run("a"), run("b")], 2, Path(tmp) / "logs", quiet=True)
        both = time.perf_counter() - started
    print(f"runner on {len(os.sched_getaffinity(0))} CPU cores: one run {alone:.1f} s, two at once "
          f"{both:.1f} s ({both / alone:.2f}x the time of one; target <= 1.2x)")


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="CIFAR-10 copy (image folders or cifar-10-batches-py)")
    parser.add_argument("--steps", type=number(int, 100), default=2000, help="timed steps per mode")
    parser.add_argument("--subset", type=number(float, 0, 1, low_open=True), default=0.2,
                        help="data fraction of each runner benchmark run (one epoch)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="device of the step-mode benchmark")
    args = parser.parse_args()
    device = select_device(args.device)
    data = load_cifar10(args.data_dir, quiet=True).to(device)
    print(f"torch {torch.__version__}, {args.steps} steps of batch 4 per mode")
    step_modes(data, args.steps, device)
    parallel_speedup(args.data_dir, args.subset)


if __name__ == "__main__":
    main()
