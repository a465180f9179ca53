"""Task 2: the tutorial classifier plus a deconvolutional mirror, trained with eq. (1).

The model returns class scores and a 3x32x32 reconstruction; the loss is
    L = CE(y_hat, y) + lambda * L_rec,   L_rec = (1/3) * sum_{c in R,G,B} ||x_hat_c - x_c||_F^2
per image, averaged over the batch. The encoder and head are trained with the tutorial's SGD;
the decoder, whose parameters only L_rec reaches, has its own optimiser (Adam by default).

    python train_deconv.py --data-dir ../shared/cifar10
"""
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data import DISPLAY_NAMES, denormalize, load_cifar10, normalize
from models import ARCHITECTURES, Architecture, DeconvNet, fold_batchnorm, reconstruction_loss
from study.core.common import (FLOAT32_MAX, ArgumentParser, UsageError, add_data_arguments,
                               add_output_arguments, environment_info, number, printable, run_cli,
                               select_device, snapshot_epochs)
from study.core.files import save_json, save_torch
from study.core.layout import (CLASSIFIER_CHECKPOINT, DECONV_CHECKPOINT, INCOMPLETE, METRICS,
                               SNAPSHOTS, TRAINING_STATE, Outputs)
from study.core.readers import field, read_json
from study.core.settings import COMPARED_WITH_TASK1, DEFAULT_LAMBDA
from study.reporting import plots
from study.runs.folders import check_output_dir, run_folder
from study.runs.identity import file_sha256
from study.training.checkpoints import load_weights, read_state_dict
from study.training.loop import (accuracy_summary, add_training_arguments, check_resumable,
                                 evaluate, mcnemar, psnr_db, steps_per_epoch, train_task)
from study.training.recipes import (FAST_LABEL_SMOOTHING, describe_fast_recipe, fast_sgd,
                                    parse_with_recipe)
from study.training.state import require_training_state

PART_NAMES = ("ce", "rec")  # the two parts of eq. (1) the running loss log holds


def build_parser() -> ArgumentParser:
    """The command line; sweep.py checks the flags it passes on with this same parser."""
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--lambda", dest="lam", metavar="LAMBDA", type=number(float, 0, FLOAT32_MAX),
                        default=DEFAULT_LAMBDA,
                        help="weight of L_rec in eq. (1); equals 1024x the weight of a "
                             "mean-squared-error loss (see README)")
    parser.add_argument("--decoder-optimizer", choices=("adam", "sgd"), default="adam",
                        help="sgd: one joint SGD for all parameters (plain eq. (1) training)")
    parser.add_argument("--decoder-lr", type=number(float, 0, FLOAT32_MAX, low_open=True),
                        default=1e-3,
                        help="decoder learning rate (with adam; sgd uses --lr)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="initialise encoder and head from a Task 1 cifar_net.pth "
                             "(default: random initialisation, as Task 1)")
    parser.add_argument("--permute-labels", action="store_true",
                        help="train on the training labels permuted once at random (seeded by "
                             "--seed; test labels untouched): the data-randomisation baseline of "
                             "Task 3 (Adebayo et al. 2018)")
    parser.add_argument("--snapshots", type=snapshot_epochs, default=(), metavar="EPOCHS",
                        help="also save the weights at these points of training, in epochs, "
                             "comma-separated (e.g. 0.125,0.25,0.5,1,2), into OUT/snapshots: "
                             "when do channels form? (formation.py); the training is unchanged")
    parser.add_argument("--task1-metrics", type=Path, default=Outputs().task("task1") / METRICS,
                        help="Task 1 results to compare with, if they exist and were trained on "
                             "the same data, subset, seed and protocol")
    parser.add_argument("--no-task1-comparison", action="store_true",
                        help="compare with no Task 1 run (a seed trained without one)")
    add_data_arguments(parser)
    add_output_arguments(parser, out=str(Outputs().task("task2")))
    return parser


def parse_args(argv: list[str] | None = None):
    args = parse_with_recipe(build_parser(), argv)
    if args.snapshots and max(args.snapshots) > args.epochs:
        raise UsageError(f"--snapshots asks for epoch {max(args.snapshots):g}, past the "
                         f"{args.epochs} epochs of --epochs")
    return args


def snapshot_steps(epochs: tuple[float, ...], images: int, batch_size: int) -> dict[int, float]:
    """{mini-batches done: epochs done} of each snapshot (the nearest step, at least the first),
    and the initialisation (step 0) before them; {} without snapshots."""
    steps = steps_per_epoch(images, batch_size)
    return {0: 0.0, **{max(1, round(e * steps)): e for e in epochs}} if epochs else {}


def snapshot_file(step: int) -> str:
    """A snapshot's file, inside the run's folder."""
    return f"{SNAPSHOTS}/step_{step:07d}.pth"


def snapshot_saver(net: DeconvNet, steps: dict[int, float], folder: Path):
    """after_step for training.fit: the weights at each snapshot's step into the run `folder`
    (snapshot_file; as the checkpoint is saved: BatchNorm folded, on the CPU); reading them
    changes nothing."""
    (folder / SNAPSHOTS).mkdir(exist_ok=True)

    def after_step(step: int) -> None:
        if step in steps:
            model = fold_batchnorm(copy.deepcopy(net).eval()) if net.arch.batchnorm else net
            save_torch({k: v.detach().cpu() for k, v in model.state_dict().items()},
                       folder / snapshot_file(step))
    return after_step


def eq1(lam: float, label_smoothing: float = 0.0):
    """Eq. (1) as a loss function for training.fit; logs CE and L_rec separately (the fast
    recipe smooths the labels of the CE part)."""
    def loss_fn(net: DeconvNet, x: torch.Tensor, y: torch.Tensor):
        logits, x_hat = net(x)
        ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        rec = reconstruction_loss(x_hat, x)
        return ce + lam * rec, torch.stack([ce, rec])
    return loss_fn


def encoder_weights(path: Path, arch: Architecture) -> dict:
    """Encoder and head weights of a Task 1 (or Task 2) checkpoint, checked against the net."""
    if arch.batchnorm:  # checkpoints are saved folded: their convs already hold the BatchNorm
        raise UsageError("--init-from cannot start a BatchNorm network (its checkpoints are "
                         "saved with BatchNorm folded into the convolutions); train from scratch")
    _, state = read_state_dict(path, "--init-from", arch=arch)
    state = {k: v for k, v in state.items() if not k.startswith("deconv")}
    load_weights(DeconvNet(arch), state, path, "--init-from", strict=False)  # fails on a wrong shape
    return state


def optimizers_for(net: DeconvNet, args, device: torch.device) -> list[torch.optim.Optimizer]:
    """The tutorial's SGD for encoder and head; the decoder's own Adam (or one joint SGD).
    With --recipe fast the SGD is Nesterov with weight decay (and scheduled by FastRecipe)."""
    fast = getattr(args, "recipe", "tutorial") == "fast"

    def sgd(parameters) -> torch.optim.Optimizer:
        if fast:
            return fast_sgd(parameters, args.lr, args.momentum)
        return torch.optim.SGD(parameters, lr=args.lr, momentum=args.momentum, foreach=True)
    if args.decoder_optimizer == "sgd":
        return [sgd(net.parameters())]
    return [sgd(net.encoder_and_head_parameters()),
            # capturable: its step counter lives on the GPU, so the step fits in a CUDA graph
            torch.optim.Adam(net.decoder_parameters(), lr=args.decoder_lr, foreach=True,
                             capturable=device.type == "cuda")]


def permuted_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The labels in a random order, the same for the same seed: every class keeps its count,
    but no image keeps a relation to its label (beyond chance).

    The order is drawn by numpy's PCG64, not by torch, so it is not the first epoch's shuffling
    order (torch.randperm with the same seed).
    """
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    return labels[order.to(labels.device)]


def run_settings(args, data_sha256: str) -> dict:
    """What determines the trained model: checked on --resume, recorded in metrics.json."""
    # Only a permuted run records the key, so states saved before the flag existed still resume.
    permuted = {"permute_labels": True} if getattr(args, "permute_labels", False) else {}
    return {"model": "DeconvNet", **permuted, "lambda": args.lam, "batch_size": args.batch_size,
            "lr": args.lr, "momentum": args.momentum, "decoder_optimizer": args.decoder_optimizer,
            "decoder_lr": args.decoder_lr, "seed": args.seed, "subset": args.subset, "arch": args.arch,
            "log_every": args.log_every,
            "init_from": str(args.init_from) if args.init_from else None,
            "data_sha256": data_sha256,
            # only a fast run records its recipe: the tutorial's settings stay as they were
            **({"recipe": "fast", "epochs": args.epochs} if getattr(args, "recipe", "tutorial") == "fast" else {})}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = select_device(args.device, args.threads, onednn=args.recipe == "fast")
    check_output_dir(args.out, "task2", args.data_dir)
    init_state = encoder_weights(args.init_from, ARCHITECTURES[args.arch]) if args.init_from else None  # fail early
    if args.resume:
        require_training_state(args.out / TRAINING_STATE)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    data = data.to(device)
    settings = run_settings(args, data.content_hash)
    config = {**settings, "permute_labels": args.permute_labels, "epochs": args.epochs,
              "data_dir": str(args.data_dir),
              **({"recipe_details": describe_fast_recipe()} if args.recipe == "fast" else {}),
              **({"batchnorm_folded": True} if ARCHITECTURES[args.arch].batchnorm else {})}
    train_labels = (permuted_labels(data.train_labels, args.seed) if args.permute_labels
                    else data.train_labels)
    check_resumable(args, settings, lambda: DeconvNet(ARCHITECTURES[args.arch]),
                    lambda probe: optimizers_for(probe, args, device), PART_NAMES)
    # Read and check Task 1's results now, not after the whole training.
    task1 = ({"message": "no comparison with Task 1: this run was trained on permuted labels"}
             if args.permute_labels else
             {"message": "no comparison with Task 1: none was asked for"}
             if args.no_task1_comparison else
             task1_for_comparison(args.task1_metrics, config, data.test_labels))
    with run_folder(args.out, "train_deconv.py", args.data_dir) as out:
        # The classifier with its mirror decoder, trained on eq. (1).
        torch.manual_seed(args.seed)
        net = DeconvNet(ARCHITECTURES[args.arch])
        if init_state is not None:
            net.load_state_dict(init_state, strict=False)
        net.to(device)
        snapshots = snapshot_steps(args.snapshots, len(train_labels), args.batch_size)
        saver = snapshot_saver(net, snapshots, out) if snapshots else None
        if saver is not None and not args.resume:
            saver(0)  # the initialisation (a resumed run keeps the first run's)
        # (the fast recipe's schedule drives the encoder's SGD, not the decoder's Adam)
        net, history = train_task(net, optimizers_for(net, args, device),
                                  (eq1(args.lam), eq1(args.lam, FAST_LABEL_SMOOTHING)),
                                  data.train_images, train_labels, args, settings=settings,
                                  part_names=PART_NAMES, state_path=out / TRAINING_STATE,
                                  divergence_hint="lower --lr or --lambda",
                                  after_step=saver)
        save_torch(net.state_dict(), out / DECONV_CHECKPOINT)

        # Test: accuracy as in Task 1, and how well the image comes back, beside simple baselines.
        evaluation = evaluate(net, data.test_images, data.test_labels)
        summary = accuracy_summary(evaluation["predictions"], data.test_labels, DISPLAY_NAMES)
        print(f"Accuracy of the network on the {summary['test_images']} test images: "
              f"{summary['test_accuracy']:.2f} %")
        for name, accuracy in summary["per_class_accuracy"].items():
            print(f"Accuracy for class: {name:5s} is {accuracy:.1f} %")
        print(f"Reconstruction on the test set: L_rec {evaluation['rec_loss']:.2f}, "
              f"MSE {evaluation['mse']:.5f}, PSNR {evaluation['psnr_db']:.2f} dB")
        baselines = psnr_baselines(data.train_images, data.test_images)
        print("PSNR of simple baselines: " + ", ".join(f"{k} {v:.2f} dB" for k, v in baselines.items()))
        comparison = compare_with_task1(task1, evaluation["predictions"], data.test_labels)
        print(comparison["message"])

        reconstruction_figure(net, data, args.seed, out / "reconstructions.png", args.lam)
        plots.per_class_accuracy(summary["per_class_accuracy"], out / "per_class_accuracy.svg",
                                 f"Task 2: accuracy per class (overall {summary['test_accuracy']:.2f} %)")
        plots.loss_curves(history, {"ce": "cross-entropy", "rec": "λ·L_rec"},
                          steps_per_epoch(len(data.train_labels), args.batch_size),
                          args.log_every, out / "loss_curves.svg",
                          f"Task 2: training losses (λ = {args.lam:g})", scale={"rec": args.lam})

        save_json({
            "task": "task2", "model": "DeconvNet", "architecture": net.arch.describe(),
            "config": config, "lambda": args.lam,
            # L_rec sums over the 32x32 pixels: lambda weighs a mean-squared-error term by 1024 lambda
            "lambda_as_mse_weight": round(1024 * args.lam, 6),
            **summary,
            "test_predictions": "".join(map(str, evaluation["predictions"].tolist())),
            "test_labels": "".join(map(str, data.test_labels.tolist())),
            "test_rec_loss": round(evaluation["rec_loss"], 3),
            "test_mse": round(evaluation["mse"], 6),
            "test_psnr_db": round(evaluation["psnr_db"], 2),
            "psnr_baselines_db": {k: round(v, 2) for k, v in baselines.items()},
            "task1_comparison": comparison,
            # only a run with --snapshots records them: the others' files stay as they were
            **({"snapshots": [{"step": step, "epoch": epoch, "file": snapshot_file(step)}
                              for step, epoch in sorted(snapshots.items())]} if snapshots else {}),
            "loss_log": history["loss_log"], "epoch_loss": history["epoch_loss"],
            "train_seconds": history["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 2),
            "data": data.describe(), "environment": environment_info(device),
        }, out / METRICS)
        print(f"wrote {printable(out)}/: metrics.json, deconv_net.pth and figures")


@torch.no_grad()
def psnr_baselines(train_images: torch.Tensor, test_images: torch.Tensor) -> dict[str, float]:
    """Test-set PSNR of reconstructions that need no network, to read the decoder's PSNR against.

    global mean colour: every pixel the training set's mean colour; image mean colour: each
    image's own mean colour; k x k thumbnail: average-pooled by k, upsampled bilinearly.
    """
    x = test_images.float() / 255
    results = {}
    mean_colour = (train_images.float() / 255).mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    results["global mean colour"] = (x - mean_colour).pow(2).mean().item()
    results["image mean colour"] = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2).mean().item()
    for k in (8, 4):
        thumb = F.interpolate(F.avg_pool2d(x, k), size=(32, 32), mode="bilinear",
                              align_corners=False)
        results[f"{32 // k}x{32 // k} thumbnail"] = (x - thumb).pow(2).mean().item()
    return {name: psnr_db(mse) for name, mse in results.items()}


def task1_for_comparison(path: Path, config: dict, labels: torch.Tensor) -> dict:
    """Task 1's results if they can be compared with this run: {"task1": ...} or {"message": why not}.

    Only a finished Task 1 run with the same data, subset, seed, epochs and SGD protocol, one
    prediction per test image, is compared; a Task 2 started from that run's weights
    (--init-from) is compared too, but not as an independent run.
    """
    path = Path(path)
    if not path.is_file():
        return {"message": f"no comparison with Task 1: {path} does not exist"}
    if (path.parent / INCOMPLETE).exists():
        return {"message": f"no comparison with Task 1: the run in {path.parent} did not finish"}
    fix = "rerun train_classifier.py"
    try:
        task1 = read_json(path, "--task1-metrics", fix)
        if task1.get("task") != "task1":
            found = task1.get("task", "an unknown run")
            return {"message": f"no comparison with Task 1: {path} holds the metrics of "
                               f"{printable(found) if isinstance(found, str) else 'an unknown run'}"
                               ", not of Task 1"}
        task1_config = field(task1, "config", dict, what="it", fix=fix)
        different = [k for k in COMPARED_WITH_TASK1 if task1_config.get(k) != config.get(k)]
        predictions = field(task1, "test_predictions", str, what="it", fix=fix)
        test_labels = field(task1, "test_labels", str, what="it", fix=fix)
        field(task1, "test_accuracy", float, 0, 100, what="it", fix=fix)
        for name, digits in (("test_predictions", predictions), ("test_labels", test_labels)):
            if not (digits.isascii() and digits.isdigit()):
                raise UsageError(f"its {name} is not one class digit per test image; {fix}")
    except UsageError as error:
        reason = str(error).split("; ")[0].replace(f"--task1-metrics {path} ", "")
        reason = reason.removeprefix("it: ")
        return {"message": f"no comparison with Task 1: {path} is not a Task 1 metrics file "
                           f"of this version ({reason})"}
    if len(predictions) != len(labels) or len(test_labels) != len(labels):
        return {"message": f"no comparison with Task 1: {path} has {len(predictions)} test "
                           f"predictions, this run {len(labels)} test images"}
    task1_labels = torch.tensor([int(c) for c in test_labels])
    if different or not torch.equal(task1_labels, labels.cpu()):
        return {"message": f"no comparison with Task 1: {path} was run with other "
                           f"{', '.join(different) or 'test images'}"}
    # not independent when this run started from that Task 1 model's weights: the same file, or
    # a copy of it (compared by content, not by path)
    model = path.parent / CLASSIFIER_CHECKPOINT
    init_from = config.get("init_from")
    dependent = (bool(init_from) and model.is_file()
                 and file_sha256(Path(init_from)) in (file_sha256(model), None))
    return {"task1": task1, "path": str(path), "independent": not dependent,
            "predictions": torch.tensor([int(c) for c in predictions])}


def compare_with_task1(found: dict, predictions: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy change and exact McNemar test against a Task 1 run on the same footing."""
    if "task1" not in found:
        return {"message": found["message"]}
    labels = labels.cpu()
    test = mcnemar((found["predictions"] == labels).tolist(), (predictions.cpu() == labels).tolist())
    task1_accuracy = found["task1"]["test_accuracy"]
    change = round(100.0 * (predictions.cpu() == labels).float().mean().item() - task1_accuracy, 2)
    caveat = ("" if found["independent"] else "; NOT independent runs: this Task 2 started from "
              "that Task 1 model's weights (--init-from)")
    settings = {k: found["task1"]["config"].get(k) for k in COMPARED_WITH_TASK1}
    return {"task1_metrics": found["path"], "task1_test_accuracy": task1_accuracy,
            "task1_settings": settings, "accuracy_change": change, "mcnemar": test, "independent": found["independent"],
            "message": f"Task 1 reached {task1_accuracy:.2f} %: change {change:+.2f} points, "
                       f"McNemar p = {test['p_value']:.3f} ({test['only_first_correct']} images "
                       f"only Task 1 got right, {test['only_second_correct']} only Task 2)"
                       + caveat}


def reconstruction_figure(net: DeconvNet, data, seed: int, path: Path, lam: float) -> None:
    """Three train and three test images (originals above reconstructions), PSNR under each."""
    chooser = torch.Generator().manual_seed(seed)
    device = data.train_labels.device
    train = torch.randperm(len(data.train_labels), generator=chooser)[:3].to(device)
    test = torch.randperm(len(data.test_labels), generator=chooser)[:3].to(device)
    images = torch.cat([data.train_images[train], data.test_images[test]])
    labels = torch.cat([data.train_labels[train], data.test_labels[test]]).tolist()
    net.eval()
    with torch.no_grad():
        _, x_hat = net(normalize(images))
    originals, reconstructions = images.cpu() / 255, denormalize(x_hat).cpu()
    titles = [f"{'train' if i < 3 else 'test'}: {DISPLAY_NAMES[c]}" for i, c in enumerate(labels)]
    psnr = [psnr_db((a - b).pow(2).mean().item()) for a, b in zip(reconstructions, originals)]
    plots.image_rows([list(originals), list(reconstructions)],
                     [titles, [f"PSNR {p:.1f} dB" for p in psnr]], ["original", "reconstruction"],
                     path, title=f"Task 2 reconstructions (λ = {lam:g}), clipped to [0, 1]",
                     width=5.4)


if __name__ == "__main__":
    run_cli(main)
