"""Task 1: the PyTorch tutorial "Training a Classifier" on CIFAR-10, every result as a file.

The story follows the tutorial: load and normalise CIFAR-10 and show some training images,
define the small CNN, a cross-entropy loss and SGD with momentum, train for two epochs printing
the running loss every 2000 mini-batches, save and reload the model, then test it: predictions on
a few test images, overall accuracy and accuracy per class.

    python train_classifier.py --data-dir ../shared/cifar10
"""
import math
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torchvision
from tqdm import tqdm

import plots
from common import (ArgumentParser, accuracy_summary, add_common_arguments,
                    add_training_arguments, check_finite, environment_info, load_checkpoint, load_state,
                    prepare_output_dir, resume_training_state, run_cli, save_figure, save_json,
                    save_torch, save_training_state, select_device)
from data import DISPLAY_NAMES, batches, denormalize, load_cifar10, normalize
from models import TutorialNet

MODEL_NAME = "TutorialNet"


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    add_common_arguments(parser, out="outputs/task1")
    return parser.parse_args(argv)


def show_training_images(images: torch.Tensor, labels: torch.Tensor, path: Path) -> list[str]:
    """The tutorial's imshow(make_grid(images)) with the labels printed under it."""
    names = [DISPLAY_NAMES[i] for i in labels]
    grid = torchvision.utils.make_grid(denormalize(normalize(images)), nrow=len(images), padding=2)
    fig, ax = plt.subplots(figsize=(1.2 * len(images), 1.6))
    ax.imshow(plots.to_hwc(grid), interpolation="nearest")
    ax.set_xticks([(i + 0.5) * 34 for i in range(len(images))], names, fontsize=8)
    ax.set_yticks([])
    ax.set_title("Training images and their labels", fontsize=9)
    save_figure(fig, path, dpi=120)
    return names


def train_one_epoch(net: nn.Module, data, args, epoch: int, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, generator: torch.Generator, device: torch.device,
                    loss_log: list[dict]) -> float:
    """One pass over the shuffled training set; returns the mean loss."""
    net.train()
    steps = math.ceil(len(data.train_labels) / args.batch_size)
    progress = tqdm(batches(data.train_images, data.train_labels, args.batch_size, generator),
                    total=steps, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
                    leave=False, disable=args.quiet or None, file=sys.stderr)
    running_loss, epoch_loss = 0.0, 0.0
    for i, (inputs, labels) in enumerate(progress):
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()

        loss_value = loss.item()
        check_finite(loss_value, epoch + 1, i + 1)
        running_loss += loss_value
        epoch_loss += loss_value
        if i % args.log_every == args.log_every - 1:
            mean = running_loss / args.log_every
            tqdm.write(f"[{epoch + 1}, {i + 1:5d}] loss: {mean:.3f}")
            loss_log.append({"epoch": epoch + 1, "step": i + 1, "loss": round(mean, 4)})
            running_loss = 0.0
    return epoch_loss / steps


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class predictions for uint8 images, in order."""
    net.eval()
    dummy_labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    return torch.cat([net(x).argmax(1) for x, _ in batches(images, dummy_labels, batch_size)])


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = select_device(args.device)
    torch.manual_seed(args.seed)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    data = data.to(device)
    out = prepare_output_dir(Path(args.out))
    config = {k: v for k, v in vars(args).items() if k not in ("quiet", "resume", "out")}

    # 1. Load and normalise CIFAR-10; show some training images.
    sample = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(args.seed))[:8]
    names = show_training_images(data.train_images[sample].cpu(), data.train_labels[sample].cpu(),
                                 out / "train_samples.png")
    print(" ".join(f"{name:5s}" for name in names))

    # 2. Define a convolutional neural network; 3. a loss function and optimiser.
    net = TutorialNet().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                                foreach=True)
    generator = torch.Generator().manual_seed(args.seed)
    state_path = out / "training_state.pth"
    first_epoch, history = 0, {"loss_log": [], "epoch_loss": [], "train_seconds": 0.0}
    if args.resume:
        first_epoch, history = resume_training_state(state_path, MODEL_NAME, config, net,
                                                     [optimizer], generator)
        print(f"resumed after epoch {first_epoch} from {state_path}")

    # 4. Train the network.
    for epoch in range(first_epoch, args.epochs):
        epoch_start = time.perf_counter()
        mean_loss = train_one_epoch(net, data, args, epoch, optimizer, criterion, generator,
                                    device, history["loss_log"])
        history["epoch_loss"].append(round(mean_loss, 4))
        history["train_seconds"] += time.perf_counter() - epoch_start
        save_training_state(state_path, MODEL_NAME, config, epoch + 1, net, [optimizer],
                            generator, history)
    print("Finished Training")

    # Save the trained model, and load it back as the tutorial does before testing.
    model_path = out / "cifar_net.pth"
    save_torch({"model": MODEL_NAME, "model_state": net.state_dict(), "config": config}, model_path)
    net = TutorialNet().to(device)
    load_state(net, load_checkpoint(model_path, MODEL_NAME, "checkpoint")["model_state"],
               model_path, "checkpoint")

    # 5. Test the network on the test data: a few images first, then the whole test set.
    predictions = predict(net, data.test_images)
    shown = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(args.seed))[:8]
    truth = [DISPLAY_NAMES[i] for i in data.test_labels[shown].tolist()]
    guessed = [DISPLAY_NAMES[i] for i in predictions[shown].tolist()]
    print("GroundTruth: ", " ".join(f"{name:5s}" for name in truth))
    print("Predicted:   ", " ".join(f"{name:5s}" for name in guessed))
    plots.image_rows([[denormalize(normalize(img)) for img in data.test_images[shown].cpu()]],
                     [[f"true: {t}\npred: {p}" for t, p in zip(truth, guessed)]], ["test"],
                     out / "test_predictions.png", suptitle="GroundTruth vs Predicted")

    summary = accuracy_summary(predictions, data.test_labels, DISPLAY_NAMES)
    print(f"Accuracy of the network on the {summary['test_images']} test images: "
          f"{summary['test_accuracy']:.0f} %")
    for name, accuracy in summary["per_class_accuracy"].items():
        print(f"Accuracy for class: {name:5s} is {accuracy:.1f} %")
    plots.per_class_accuracy(summary["per_class_accuracy"], out / "per_class_accuracy.png",
                             f"Task 1: accuracy per class (overall {summary['test_accuracy']:.2f} %)")
    plots.confusion_matrix(summary["confusion_matrix"], DISPLAY_NAMES, out / "confusion_matrix.png",
                           "Task 1: confusion matrix (test set)")
    steps_per_epoch = math.ceil(len(data.train_labels) / args.batch_size)
    log = history["loss_log"]
    plots.curves({f"running mean of {args.log_every} mini-batches":
                  ([(r["epoch"] - 1) + r["step"] / steps_per_epoch for r in log],
                   [r["loss"] for r in log]),
                  "mean over the epoch": (list(range(1, len(history["epoch_loss"]) + 1)),
                                          history["epoch_loss"])},
                 out / "loss_curve.png", "epoch", "cross-entropy", "Task 1: training loss")

    save_json({
        "task": "task1", "model": MODEL_NAME, "config": config,
        **summary,
        "loss_log": history["loss_log"],
        "epoch_loss": history["epoch_loss"],
        "sample_predictions": {"ground_truth": truth, "predicted": guessed},
        "train_seconds": round(history["train_seconds"], 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "data": data.describe(),
        "environment": environment_info(device),
    }, out / "metrics.json")
    print(f"wrote {out}/: metrics.json and figures")


if __name__ == "__main__":
    run_cli(main)
