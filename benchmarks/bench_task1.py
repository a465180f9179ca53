"""Task 1 speed: the tutorial's input pipeline against this repo's, same data, one run.

Tutorial style: torchvision dataset with per-image PIL -> ToTensor -> Normalize, a DataLoader
with batch 4 and 2 workers, PyTorch's default threads and convolution backend.
This repo: uint8 tensors in memory normalised per batch, no workers, one thread and native
convolutions (common.select_device), through training.train_epoch with Task 1's loss.
Both take the same optimiser, batch size and number of steps; the ratio is the speed-up.

    python -m benchmarks.bench_task1 --data-dir ../shared/cifar10 [--steps 2000]
"""
import time
from pathlib import Path

import torch

from benchmarks.common_bench import EPOCH_STEPS, steps_per_second
from data import default_data_dir, load_cifar10
from models import TutorialNet
from study.core.common import ArgumentParser, number, select_device
from train_classifier import cross_entropy


def tutorial_steps_per_second(data_dir: Path, steps: int) -> float:
    """The tutorial's loop, as written there, over its own kind of data pipeline."""
    import torchvision
    import torchvision.transforms as transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    if (data_dir / "train").is_dir():
        dataset = torchvision.datasets.ImageFolder(str(data_dir / "train"), transform=transform)
    else:
        dataset = torchvision.datasets.CIFAR10(str(data_dir), train=True, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)
    torch.manual_seed(0)
    net = TutorialNet()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    warmup, started = 100, None
    for i, (inputs, labels) in enumerate(loader):
        if i == warmup:
            started = time.perf_counter()
        if i == warmup + steps:
            break
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        loss.item()
    return steps / (time.perf_counter() - started)


def task1_steps_per_second(data, steps: int, mode: str = "eager") -> float:
    """Steps/s of Task 1's own training loop (training.train_epoch), set up as its main() does,
    on the data's device, with the StepRunner `mode` (eager, static or graph)."""
    torch.manual_seed(0)
    net = TutorialNet().to(data.train_labels.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, foreach=True)
    return steps_per_second(net, cross_entropy, [optimizer], data, steps, ("loss",), mode)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="CIFAR-10 copy (image folders or cifar-10-batches-py)")
    parser.add_argument("--steps", type=number(int, 100), default=2000,
                        help="timed steps per pipeline")
    args = parser.parse_args()
    data = load_cifar10(args.data_dir, quiet=True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default, "
          f"{args.steps} steps of batch 4 per pipeline")
    tutorial = tutorial_steps_per_second(args.data_dir, args.steps)
    select_device("cpu")  # from here on: the repo's CPU settings
    project = task1_steps_per_second(data, args.steps)
    print(f"tutorial-style pipeline: {tutorial:8.1f} steps/s  "
          f"(2 epochs ~ {2 * EPOCH_STEPS / tutorial:6.1f} s)")
    print(f"this repo's pipeline:    {project:8.1f} steps/s  "
          f"(2 epochs ~ {2 * EPOCH_STEPS / project:6.1f} s)")
    print(f"speed-up: {project / tutorial:.2f}x")


if __name__ == "__main__":
    main()
