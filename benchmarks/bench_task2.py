"""Task 2 against Task 1: training steps per second of both scripts' losses, one run, same data.

Both go through training.train_epoch with the scripts' own loss functions and optimisers.

    python -m benchmarks.bench_task2 --data-dir ../shared/cifar10 [--steps 2000]
"""
from pathlib import Path

import torch

from benchmarks.bench_task1 import task1_steps_per_second
from benchmarks.common_bench import EPOCH_STEPS, steps_per_second
from data import default_data_dir, load_cifar10
from models import DeconvNet
from study.core.common import ArgumentParser, number, select_device
from train_deconv import eq1, optimizers_for
from train_deconv import parse_args as task2_defaults


def task2_steps_per_second(data, steps: int, mode: str = "eager") -> float:
    """Steps/s of Task 2's loop with its default lambda and optimisers, on the data's device,
    with the StepRunner `mode` (eager, static or graph)."""
    defaults = task2_defaults([])
    device = data.train_labels.device
    torch.manual_seed(0)
    net = DeconvNet().to(device)
    optimizers = optimizers_for(net, defaults, device)
    return steps_per_second(net, eq1(defaults.lam), optimizers, data, steps, ("ce", "rec"), mode)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="CIFAR-10 copy (image folders or cifar-10-batches-py)")
    parser.add_argument("--steps", type=number(int, 100), default=2000, help="timed steps per model")
    args = parser.parse_args()
    data = load_cifar10(args.data_dir, quiet=True)
    select_device("cpu")
    task1 = task1_steps_per_second(data, args.steps)
    task2 = task2_steps_per_second(data, args.steps)
    print(f"{args.steps} steps of batch 4 each, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"Task 1 (TutorialNet): {task1:8.1f} steps/s  (2 epochs ~ {2 * EPOCH_STEPS / task1:6.1f} s)")
    print(f"Task 2 (DeconvNet):   {task2:8.1f} steps/s  (2 epochs ~ {2 * EPOCH_STEPS / task2:6.1f} s)")
    print(f"Task 2 / Task 1 time: {task1 / task2:.2f}x")


if __name__ == "__main__":
    main()
