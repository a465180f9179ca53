"""Task 2 against Task 1: training steps per second of both scripts' loops, one run, same data.

The issue's target is that the default 2-epoch Task 2 run takes at most 2x Task 1's time.

    python benchmarks/bench_task2.py --data-dir ../shared/cifar10 [--steps 2000]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_task1 import EPOCH_STEPS, classifier_epoch, project_steps_per_second  # noqa: E402
from common import select_device  # noqa: E402
from data import default_data_dir, load_cifar10  # noqa: E402


def deconv_epoch(data, args) -> None:
    """One epoch of train_deconv.py's own loop with its default settings."""
    import train_deconv

    defaults = train_deconv.parse_args([])
    for key in ("lam", "decoder_optimizer", "decoder_lr", "init_from"):
        setattr(args, key, getattr(defaults, key))
    net, optimizers = train_deconv.build_model(args, torch.device("cpu"))
    history = {"loss_log": [], "epoch_loss": []}
    train_deconv.train_one_epoch(net, data, args, args.lam, 0, optimizers,
                                 torch.Generator().manual_seed(args.seed), history, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per model")
    args = parser.parse_args()
    data = load_cifar10(args.data_dir, quiet=True)
    select_device("cpu")
    task1 = project_steps_per_second(classifier_epoch, data, args.steps)
    task2 = project_steps_per_second(deconv_epoch, data, args.steps)
    print(f"{args.steps} steps of batch 4 each, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"Task 1 (TutorialNet): {task1:8.1f} steps/s  (2 epochs ~ {2 * EPOCH_STEPS / task1:6.1f} s)")
    print(f"Task 2 (DeconvNet):   {task2:8.1f} steps/s  (2 epochs ~ {2 * EPOCH_STEPS / task2:6.1f} s)")
    print(f"Task 2 / Task 1 time: {task1 / task2:.2f}x  (target <= 2x)")


if __name__ == "__main__":
    main()
