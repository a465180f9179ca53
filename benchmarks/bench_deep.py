"""The deep preset with the fast recipe: test accuracy against wall time, within a time budget.

Trains models.ARCHITECTURES[--arch] (default deep4) from scratch with study/training/recipes.py's fast
recipe (the schedule spans --epochs) and, after every epoch, prints the wall time so far and
the test accuracy (BatchNorm in eval mode, which is the folded network's function). Stops after
the first epoch that ends past --budget seconds, or after --epochs.

    python -m benchmarks.bench_deep --data-dir ../shared/cifar10 --budget 600
    python -m benchmarks.bench_deep --data-dir ../shared/cifar10 --subset 0.1 --epochs 1  # a look
"""
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from data import default_data_dir, load_cifar10
from models import ARCHITECTURES, TutorialNet
from study.core.common import ArgumentParser, number, select_device
from study.training import recipes
from study.training.loop import StepRunner, TrainingRun, evaluate, step_mode, train_epoch
from study.training.recipes import FAST_DEFAULTS, FAST_LABEL_SMOOTHING, FastRecipe, fast_sgd


def smoothed_cross_entropy(net, x, y):
    loss = F.cross_entropy(net(x), y, label_smoothing=FAST_LABEL_SMOOTHING)
    return loss, loss.detach().reshape(1)


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--subset", type=number(float, 0, 1, low_open=True), default=1.0)
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), default="deep4")
    parser.add_argument("--epochs", type=number(int, 1), default=FAST_DEFAULTS["epochs"],
                        help="length of the one-cycle schedule")
    parser.add_argument("--batch-size", type=number(int, 1), default=FAST_DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=number(float, 0, 10, low_open=True), default=FAST_DEFAULTS["lr"],
                        help="peak learning rate")
    parser.add_argument("--budget", type=number(float, 0, low_open=True), default=600.0,
                        help="seconds of training after which no new epoch starts")
    parser.add_argument("--seed", type=number(int, 0), default=0)
    parser.add_argument("--threads", type=number(int, 1), default=FAST_DEFAULTS["threads"])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--float32", action="store_true",
                        help="train in float32 throughout instead of the recipe's bfloat16 "
                             "autocast (evaluation is float32 either way)")
    args = parser.parse_args()

    device = select_device(args.device, args.threads, onednn=True)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=True).to(device)
    torch.manual_seed(args.seed)
    net = TutorialNet(ARCHITECTURES[args.arch]).to(device)
    optimizer = fast_sgd(net.parameters(), args.lr, 0.9)
    n = len(data.train_labels)
    recipe = FastRecipe(optimizer, args.lr, args.epochs * math.ceil(n / args.batch_size), args.seed)
    recipe.prepare(net)
    if args.float32:
        recipes.FAST_AUTOCAST = None
    runner = StepRunner(net, recipe.loss(smoothed_cross_entropy), [optimizer],
                        min(args.batch_size, n), device, step_mode(device, False))
    generator = torch.Generator().manual_seed(args.seed)
    run = TrainingRun(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      log_every=10 ** 9, settings={}, part_names=("loss",), quiet=True,
                      before_step=recipe.before_step)
    print(f"{args.arch}, fast recipe: {n} training images, batch {args.batch_size}, peak lr "
          f"{args.lr}, {args.epochs}-epoch schedule, budget {args.budget:g} s, device {device}"
          f", {'float32' if args.float32 else 'bfloat16 autocast'}")
    print("epoch  train_s  wall_s  test_accuracy_%")
    started, training = time.perf_counter(), 0.0
    for epoch in range(1, args.epochs + 1):
        net.train()
        epoch_start = time.perf_counter()
        train_epoch(runner, data.train_images, data.train_labels, run, generator, epoch)
        training += time.perf_counter() - epoch_start
        predictions = evaluate(net, data.test_images, data.test_labels)["predictions"]
        accuracy = 100 * (predictions == data.test_labels).float().mean().item()
        print(f"{epoch:5d}  {training:7.1f}  {time.perf_counter() - started:6.1f}  {accuracy:6.2f}",
              flush=True)
        if training > args.budget:
            break


if __name__ == "__main__":
    main()
