"""Task 2: the tutorial classifier plus a deconvolutional mirror, trained with eq. (1).

The model returns class scores and a 3x32x32 reconstruction; the loss is
    L = CE(y_hat, y) + lambda * L_rec,   L_rec = (1/3) * sum_{c in R,G,B} ||x_hat_c - x_c||_F^2
per image, averaged over the batch. The encoder and head are trained with the tutorial's SGD;
the decoder, whose parameters only L_rec reaches, has its own optimiser (Adam by default).

    python train_deconv.py --data-dir ../shared/cifar10
"""
import json
import math
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
from tqdm import tqdm

import plots
from common import (ArgumentParser, UsageError, accuracy_summary, add_common_arguments,
                    add_training_arguments, check_finite, environment_info, load_checkpoint,
                    non_negative_float, positive_float, prepare_output_dir,
                    resume_training_state, run_cli, save_figure, save_json, save_torch,
                    save_training_state, select_device)
from data import DISPLAY_NAMES, batches, denormalize, load_cifar10, normalize
from models import DeconvNet, reconstruction_loss

MODEL_NAME = "DeconvNet"


def lambda_list(text: str) -> list[float]:
    return [non_negative_float(value) for value in text.split(",") if value.strip()]


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--lambda", dest="lam", metavar="LAMBDA", type=non_negative_float,
                        default=1e-2,
                        help="weight of L_rec in eq. (1); equals 1024x the weight of a "
                             "mean-squared-error loss (see README)")
    parser.add_argument("--decoder-optimizer", choices=("adam", "sgd"), default="adam",
                        help="sgd: one joint SGD for all parameters (plain eq. (1) training)")
    parser.add_argument("--decoder-lr", type=positive_float, default=1e-3,
                        help="decoder learning rate (with adam; sgd uses --lr)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="initialise encoder and head from a Task 1 cifar_net.pth")
    parser.add_argument("--lambda-sweep", type=lambda_list, default=None, metavar="L1,L2,...",
                        help="also train one model per lambda and plot accuracy against PSNR")
    parser.add_argument("--task1-metrics", type=Path, default=Path("outputs/task1/metrics.json"),
                        help="Task 1 results to compare with, when the file exists")
    add_common_arguments(parser, out="outputs/task2")
    return parser.parse_args(argv)


def load_encoder_weights(net: DeconvNet, path: Path) -> None:
    """Copy encoder and head weights from a Task 1 (or Task 2) checkpoint; the decoder keeps its init."""
    checkpoint = load_checkpoint(path, ("TutorialNet", "DeconvNet"), "--init-from")
    state = {k: v for k, v in checkpoint["model_state"].items()
             if not k.startswith(("deconv1.", "deconv2."))}
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1].strip()
        raise UsageError(f"--init-from {path} does not fit the tutorial encoder: {detail}") from None
    wrong = result.unexpected_keys + [k for k in result.missing_keys
                                      if not k.startswith(("deconv1.", "deconv2."))]
    if wrong:
        raise UsageError(f"--init-from {path} does not fit the tutorial encoder "
                         f"(mismatched keys: {', '.join(wrong[:3])})")


def build_model(args, device: torch.device) -> tuple[DeconvNet, list[torch.optim.Optimizer]]:
    torch.manual_seed(args.seed)
    net = DeconvNet()
    if args.init_from is not None:
        load_encoder_weights(net, args.init_from)
    net.to(device)
    if args.decoder_optimizer == "sgd":
        return net, [torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                                     foreach=True)]
    return net, [torch.optim.SGD(net.encoder_and_head_parameters(), lr=args.lr,
                                 momentum=args.momentum, foreach=True),
                 torch.optim.Adam(net.decoder_parameters(), lr=args.decoder_lr, foreach=True)]


def train_one_epoch(net: DeconvNet, data, args, lam: float, epoch: int,
                    optimizers: list[torch.optim.Optimizer], generator: torch.Generator,
                    history: dict, label: str) -> None:
    """One pass over the shuffled training set with eq. (1); logs CE and L_rec separately."""
    net.train()
    criterion = nn.CrossEntropyLoss()
    steps = math.ceil(len(data.train_labels) / args.batch_size)
    progress = tqdm(batches(data.train_images, data.train_labels, args.batch_size, generator),
                    total=steps, desc=f"{label}epoch {epoch + 1}/{args.epochs}", unit="batch",
                    leave=False, disable=args.quiet or None, file=sys.stderr)
    running_ce, running_rec, epoch_ce, epoch_rec = 0.0, 0.0, 0.0, 0.0
    for i, (inputs, labels) in enumerate(progress):
        logits, reconstruction = net(inputs)
        ce = criterion(logits, labels)
        rec = reconstruction_loss(reconstruction, inputs)
        loss = ce + lam * rec
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

        ce_value, rec_value = ce.item(), rec.item()
        check_finite(ce_value + lam * rec_value, epoch + 1, i + 1, "lower --lr or --lambda")
        running_ce += ce_value
        running_rec += rec_value
        epoch_ce += ce_value
        epoch_rec += rec_value
        if i % args.log_every == args.log_every - 1:
            ce_mean, rec_mean = running_ce / args.log_every, running_rec / args.log_every
            tqdm.write(f"{label}[{epoch + 1}, {i + 1:5d}] CE: {ce_mean:.3f}  L_rec: {rec_mean:.1f}"
                       f"  lambda*L_rec: {lam * rec_mean:.3f}")
            history["loss_log"].append({"epoch": epoch + 1, "step": i + 1, "ce": round(ce_mean, 4),
                                        "rec": round(rec_mean, 3)})
            running_ce, running_rec = 0.0, 0.0
    ce_mean, rec_mean = epoch_ce / steps, epoch_rec / steps
    history["epoch_loss"].append({"epoch": epoch + 1, "ce": round(ce_mean, 4),
                                  "rec": round(rec_mean, 3)})


def train_model(args, lam: float, data, device: torch.device, state_path: Path | None,
                label: str = "") -> tuple[DeconvNet, dict]:
    """Train one DeconvNet; with a state_path, save a resumable state after every epoch."""
    net, optimizers = build_model(args, device)
    generator = torch.Generator().manual_seed(args.seed)
    config = training_config(args, lam)
    first_epoch, history = 0, {"loss_log": [], "epoch_loss": [], "train_seconds": 0.0}
    if args.resume and state_path is not None:
        first_epoch, history = resume_training_state(state_path, MODEL_NAME, config, net,
                                                     optimizers, generator)
        print(f"resumed after epoch {first_epoch} from {state_path}")
    for epoch in range(first_epoch, args.epochs):
        epoch_start = time.perf_counter()
        train_one_epoch(net, data, args, lam, epoch, optimizers, generator, history, label)
        history["train_seconds"] += time.perf_counter() - epoch_start
        if state_path is not None:
            save_training_state(state_path, MODEL_NAME, config, epoch + 1, net, optimizers,
                                generator, history)
    return net, history


@torch.no_grad()
def evaluate(net: DeconvNet, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 500) -> dict:
    """Predictions, mean L_rec, and MSE/PSNR of the [0,1]-clipped reconstruction."""
    net.eval()
    predictions, rec_sum, squared_error = [], 0.0, 0.0
    for x, _ in batches(images, labels, batch_size):
        logits, x_hat = net(x)
        predictions.append(logits.argmax(1))
        rec_sum += reconstruction_loss(x_hat, x).item() * len(x)
        squared_error += (denormalize(x_hat) - denormalize(x)).pow(2).sum().item()
    mse = squared_error / images.numel()
    return {"predictions": torch.cat(predictions), "rec_loss": rec_sum / len(labels),
            "mse": mse, "psnr_db": psnr_db(mse)}


def training_config(args, lam: float) -> dict:
    """What determines the trained model: saved with it and checked on --resume."""
    skip = ("quiet", "resume", "out", "lambda_sweep", "lam", "task1_metrics", "log_every")
    config = {k: v for k, v in vars(args).items() if k not in skip}
    config["init_from"] = str(args.init_from) if args.init_from else None
    config["lambda"] = lam
    return config


def psnr_db(mse: float) -> float:
    """Peak signal-to-noise ratio of images in [0, 1]: 10 log10(1 / MSE)."""
    return 10 * math.log10(1 / mse)


def reconstruction_figure(net: DeconvNet, data, seed: int, path: Path, lam: float) -> None:
    """Three train and three test images (originals above reconstructions)."""
    chooser = torch.Generator().manual_seed(seed)
    train = torch.randperm(len(data.train_labels), generator=chooser)[:3].to(data.train_labels.device)
    test = torch.randperm(len(data.test_labels), generator=chooser)[:3].to(data.test_labels.device)
    images = torch.cat([data.train_images[train], data.test_images[test]])
    labels = torch.cat([data.train_labels[train], data.test_labels[test]]).tolist()
    net.eval()
    with torch.no_grad():
        x = normalize(images)
        _, x_hat = net(x)
    titles = [f"{'train' if i < 3 else 'test'}: {DISPLAY_NAMES[c]}" for i, c in enumerate(labels)]
    psnr = [psnr_db((denormalize(a) - denormalize(b)).pow(2).mean().item())
            for a, b in zip(x_hat, x)]
    plots.image_rows([list(denormalize(x).cpu()), list(denormalize(x_hat).cpu())],
                     [titles, [f"{p:.1f} dB" for p in psnr]], ["original", "reconstruction"],
                     path, suptitle=f"Reconstructions (lambda = {lam:g}), de-normalised, "
                                    "clipped to [0, 1]")


def results(net: DeconvNet, data, history: dict, lam: float) -> dict:
    evaluation = evaluate(net, data.test_images, data.test_labels)
    summary = accuracy_summary(evaluation["predictions"], data.test_labels, DISPLAY_NAMES)
    return {"lambda": lam, **summary,
            "test_rec_loss": round(evaluation["rec_loss"], 3),
            "test_mse": round(evaluation["mse"], 6),
            "test_psnr_db": round(evaluation["psnr_db"], 2),
            "train_seconds": round(history["train_seconds"], 2)}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = select_device(args.device)
    if args.init_from is not None:
        load_encoder_weights(DeconvNet(), args.init_from)  # fail before the data is loaded
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=args.quiet)
    data = data.to(device)
    out = prepare_output_dir(Path(args.out))

    # Train the classifier with its mirror decoder on eq. (1).
    net, history = train_model(args, args.lam, data, device, out / "training_state.pth")
    print("Finished Training")
    model_path = out / "deconv_net.pth"
    save_torch({"model": MODEL_NAME, "model_state": net.state_dict(),
                "config": training_config(args, args.lam)}, model_path)

    # Test: accuracy as in Task 1, and how well the image comes back.
    metrics = results(net, data, history, args.lam)
    print(f"Accuracy of the network on the {metrics['test_images']} test images: "
          f"{metrics['test_accuracy']:.2f} %")
    for name, accuracy in metrics["per_class_accuracy"].items():
        print(f"Accuracy for class: {name:5s} is {accuracy:.1f} %")
    print(f"Reconstruction on the test set: L_rec {metrics['test_rec_loss']:.2f}, "
          f"MSE {metrics['test_mse']:.5f}, PSNR {metrics['test_psnr_db']:.2f} dB")
    task1 = read_task1_accuracy(args.task1_metrics)
    if task1 is not None:
        metrics["task1_test_accuracy"] = task1
        metrics["accuracy_change_vs_task1"] = round(metrics["test_accuracy"] - task1, 2)
        print(f"Task 1 reached {task1:.2f} %: change {metrics['accuracy_change_vs_task1']:+.2f} points")

    reconstruction_figure(net, data, args.seed, out / "reconstructions.png", args.lam)
    plots.per_class_accuracy(metrics["per_class_accuracy"], out / "per_class_accuracy.png",
                             f"Task 2: accuracy per class (overall {metrics['test_accuracy']:.2f} %)")
    loss_curves_figure(history, args, len(data.train_labels), out / "loss_curves.png")

    if args.lambda_sweep:
        metrics["lambda_sweep"] = lambda_sweep(args, data, device, metrics, out)

    save_json({
        "task": "task2", "model": MODEL_NAME,
        "config": training_config(args, args.lam),
        **metrics,
        "loss_log": history["loss_log"], "epoch_loss": history["epoch_loss"],
        "wall_seconds": round(time.perf_counter() - started, 2),
        "data": data.describe(),
        "environment": environment_info(device),
    }, out / "metrics.json")
    print(f"wrote {out}/: metrics.json, deconv_net.pth and figures")


def read_task1_accuracy(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def loss_curves_figure(history: dict, args, n_train: int, path: Path) -> None:
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    log = history["loss_log"] or history["epoch_loss"]
    x = [(r["epoch"] - 1) + r.get("step", steps_per_epoch) / steps_per_epoch for r in log]
    plots.curves({"cross-entropy": (x, [r["ce"] for r in log]),
                  f"lambda * L_rec (lambda = {args.lam:g})": (x, [args.lam * r["rec"] for r in log]),
                  "L_rec / 1000": (x, [r["rec"] / 1000 for r in log])},
                 path, "epoch", "loss", "Task 2: training losses (running means)")


def lambda_sweep(args, data, device: torch.device, main_result: dict, out: Path) -> list[dict]:
    """One model per lambda, same seed and protocol; the default lambda's run is reused."""
    rows = []
    for lam in args.lambda_sweep:
        if lam == args.lam:
            result = main_result
        else:
            net, history = train_model(args, lam, data, device, None, label=f"lambda={lam:g} ")
            result = results(net, data, history, lam)
        row = {k: result[k] for k in ("lambda", "test_accuracy", "test_psnr_db", "test_rec_loss",
                                      "train_seconds")}
        print(f"lambda {lam:g}: accuracy {row['test_accuracy']:.2f} %, "
              f"PSNR {row['test_psnr_db']:.2f} dB")
        rows.append(row)
    sweep_figure(rows, args, out / "lambda_sweep.png")
    return rows


def sweep_figure(rows: list[dict], args, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["test_psnr_db"] for r in rows], [r["test_accuracy"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"λ={r['lambda']:g}", (r["test_psnr_db"], r["test_accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("test reconstruction PSNR (dB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy vs reconstruction over lambda ({args.epochs} epochs, "
                 f"decoder {args.decoder_optimizer})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    run_cli(main)
