"""Task 1: the PyTorch tutorial "Training a Classifier" on CIFAR-10, every result as a file.

The story follows the tutorial: load and normalise CIFAR-10 and show some training images,
define the small CNN, a cross-entropy loss and SGD with momentum, train for two epochs printing
the running loss every 2000 mini-batches, save and reload the model, then test it: predictions on
a few test images, overall accuracy and accuracy per class.

    python train_classifier.py --data-dir ../shared/cifar10
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from data import DISPLAY_NAMES, TUTORIAL_TEST_BATCH, load_cifar10, tutorial_test_batch
from models import ARCHITECTURES, TutorialNet
from study.core.common import (ArgumentParser, add_data_arguments, add_output_arguments,
                               environment_info, printable, run_cli, select_device)
from study.core.files import save_json, save_torch
from study.core.layout import CLASSIFIER_CHECKPOINT, METRICS, TRAINING_STATE, Outputs
from study.reporting import plots
from study.runs.folders import check_output_dir, run_folder
from study.training.checkpoints import load_model
from study.training.loop import (accuracy_summary, add_training_arguments, check_resumable,
                                 evaluate, steps_per_epoch, train_task)
from study.training.recipes import (FAST_LABEL_SMOOTHING, describe_fast_recipe, fast_sgd,
                                    parse_with_recipe)
from study.training.state import require_training_state


def build_parser() -> ArgumentParser:
    """The command line; sweep.py checks the flags it passes on with this same parser."""
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    add_data_arguments(parser)
    add_output_arguments(parser, out=str(Outputs().task("task1")))
    return parser


def parse_args(argv: list[str] | None = None):
    return parse_with_recipe(build_parser(), argv)


def cross_entropy(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The tutorial's criterion; the one part logged is the loss itself."""
    loss = F.cross_entropy(net(x), y)
    return loss, loss.detach().reshape(1)


def smoothed_cross_entropy(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The fast recipe's criterion: cross-entropy with label smoothing."""
    loss = F.cross_entropy(net(x), y, label_smoothing=FAST_LABEL_SMOOTHING)
    return loss, loss.detach().reshape(1)


PART_NAMES = ("loss",)  # what the running loss log holds
TUTORIAL_BATCH = len(TUTORIAL_TEST_BATCH)  # the tutorial shows one mini-batch of four images


def sgd(net: nn.Module, args) -> torch.optim.Optimizer:
    """The tutorial's optimiser (with --recipe fast: Nesterov SGD with weight decay)."""
    if getattr(args, "recipe", "tutorial") == "fast":
        return fast_sgd(net.parameters(), args.lr, args.momentum)
    return torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, foreach=True)


def run_settings(args, data_sha256: str) -> dict:
    """What determines the trained model: checked on --resume, compared by Task 2."""
    return {"model": "TutorialNet", "batch_size": args.batch_size, "lr": args.lr,
            "momentum": args.momentum, "seed": args.seed, "subset": args.subset, "arch": args.arch,
            "log_every": args.log_every, "data_sha256": data_sha256,
            # only a fast run records its recipe: the tutorial's settings stay as they were
            **({"recipe": "fast", "epochs": args.epochs} if args.recipe == "fast" else {})}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = select_device(args.device, args.threads, onednn=args.recipe == "fast")
    check_output_dir(args.out, "task1", args.data_dir)
    if args.resume:
        require_training_state(args.out / TRAINING_STATE)  # before anything is written
    torch.manual_seed(args.seed)

    # 1. Load and normalise CIFAR-10 (normalised per mini-batch); show some training images.
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    data = data.to(device)
    settings = run_settings(args, data.content_hash)
    check_resumable(args, settings, lambda: TutorialNet(ARCHITECTURES[args.arch]),
                    lambda probe: [sgd(probe, args)], PART_NAMES)
    with run_folder(args.out, "train_classifier.py", args.data_dir) as out:
        sample = torch.randperm(len(data.train_labels),
                                generator=torch.Generator().manual_seed(args.seed))[:TUTORIAL_BATCH]
        names = [DISPLAY_NAMES[i] for i in data.train_labels[sample].tolist()]
        plots.labelled_strip(data.train_images[sample].cpu(), names, out / "train_samples.png",
                             "Training images and their labels")
        print(" ".join(f"{name:5s}" for name in names))

        # 2. Define a convolutional neural network; 3. a loss function and optimiser.
        net = TutorialNet(ARCHITECTURES[args.arch]).to(device)

        # 4. Train the network.
        net, history = train_task(net, [sgd(net, args)], (cross_entropy, smoothed_cross_entropy),
                                  data.train_images, data.train_labels, args, settings=settings,
                                  part_names=PART_NAMES, state_path=out / TRAINING_STATE)
        arch = net.arch

        # Save the trained model as the tutorial does (a plain state dict), and load it back.
        model_path = out / CLASSIFIER_CHECKPOINT
        save_torch(net.state_dict(), model_path)
        net = load_model(model_path, "TutorialNet", "checkpoint", arch=arch).to(device)

        # 5. Test the network on the test data: a few images first, then the whole test set.
        predictions = evaluate(net, data.test_images, data.test_labels)["predictions"]
        shown = tutorial_test_batch(data.test_labels)
        truth = [DISPLAY_NAMES[i] for i in data.test_labels[shown].tolist()]
        guessed = [DISPLAY_NAMES[i] for i in predictions[shown].tolist()]
        print("GroundTruth: ", " ".join(f"{name:5s}" for name in truth))
        print("Predicted:   ", " ".join(f"{name:5s}" for name in guessed))
        plots.image_rows([list(data.test_images[shown].cpu() / 255)],
                         [[f"{t}\n{p}" for t, p in zip(truth, guessed)]], ["truth\npredicted"],
                         out / "test_predictions.png", title="GroundTruth vs Predicted",
                         width=plots.TEXT_WIDTH_IN / 2)

        summary = accuracy_summary(predictions, data.test_labels, DISPLAY_NAMES)
        print(f"Accuracy of the network on the {summary['test_images']} test images: "
              f"{summary['test_accuracy']:.0f} %")
        for name, accuracy in summary["per_class_accuracy"].items():
            print(f"Accuracy for class: {name:5s} is {accuracy:.1f} %")
        plots.per_class_accuracy(summary["per_class_accuracy"], out / "per_class_accuracy.svg",
                                 f"Task 1: accuracy per class (overall {summary['test_accuracy']:.2f} %)")
        plots.confusion_matrix(summary["confusion_matrix"], DISPLAY_NAMES, out / "confusion_matrix.svg",
                               "Task 1: confusion matrix (test set)")
        plots.loss_curves(history, {"loss": "cross-entropy"},
                          steps_per_epoch(len(data.train_labels), args.batch_size),
                          args.log_every, out / "loss_curve.svg", "Task 1: training loss")

        save_json({
            "task": "task1", "model": "TutorialNet", "architecture": arch.describe(),
            "config": {**settings, "epochs": args.epochs, "data_dir": str(args.data_dir),
                       **({"recipe_details": describe_fast_recipe()} if args.recipe == "fast" else {}),
                       **({"batchnorm_folded": True} if ARCHITECTURES[args.arch].batchnorm else {})},
            **summary,
            # One class digit per test image: Task 2 and sweep.py pair them for McNemar's test.
            "test_predictions": "".join(map(str, predictions.tolist())),
            "test_labels": "".join(map(str, data.test_labels.tolist())),
            "loss_log": history["loss_log"], "epoch_loss": history["epoch_loss"],
            "sample_predictions": {"ground_truth": truth, "predicted": guessed},
            "train_seconds": history["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 2),
            "data": data.describe(), "environment": environment_info(device),
        }, out / METRICS)
        print(f"wrote {printable(out)}/: metrics.json, cifar_net.pth and figures")


if __name__ == "__main__":
    run_cli(main)
