"""Changes to the deep net's fast recipe, each measured on its own in one run: test accuracy and
seconds on this machine, at make depth's length of training.

Every variant trains models.ARCHITECTURES[--arch] from the same seed, data and data order with
study/training/recipes.py's fast recipe (as make depth's Task 1 does), changed in one respect:

* plain: the recipe as it is;
* ema: plain's very run, read through an exponential moving average of its weights (decay
  --ema-decay per step, BatchNorm's running statistics averaged alike;
  torch.optim.swa_utils.AveragedModel): no second training;
* bn-lr: BatchNorm's scales and shifts at --bn-lr-scale times the learning rate, without weight
  decay (airbench raises its BatchNorm biases' rate);
* identity: every 3x3 convolution with at least as many outputs as inputs starts with its first
  `inputs` filters as the identity (torch.nn.init.dirac_), the others as PyTorch initialises them.

Each trained network (and the average) is also read with test-time augmentation, for the
accuracy line only (the analyses always read the network itself): the mean of the class
probabilities of every test image and its mirror image ("flip"), and of those and their copies
moved 2 pixels left, right, up and down ("flip+shift", ten reads per image; reflection padding,
as the recipe's training shifts). Prints one row per variant: training seconds, test accuracy
plain / flip / flip+shift, and the seconds each reading of the test set took.

    python -m benchmarks.bench_recipe --data-dir ../shared/cifar10            # 6 epochs, deep4
    python -m benchmarks.bench_recipe --subset 0.1 --epochs 1 --variants plain  # a quick look
"""
import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from data import batches, default_data_dir, load_cifar10, normalize
from models import ARCHITECTURES, BatchNorm, TutorialNet
from study.core.common import ArgumentParser, number, select_device
from study.training.loop import StepRunner, TrainingRun, step_mode, train_epoch
from study.training.recipes import (FAST_DEFAULTS, FAST_LABEL_SMOOTHING, FAST_WEIGHT_DECAY,
                                    FastRecipe)

VARIANTS = ("plain", "bn-lr", "identity")  # each its own training; ema reads plain's run
SHIFT = 2  # test-time moves, pixels


def smoothed_cross_entropy(net, x, y):
    loss = F.cross_entropy(net(x), y, label_smoothing=FAST_LABEL_SMOOTHING)
    return loss, loss.detach().reshape(1)


def identity_init(net: TutorialNet) -> None:
    """The first `inputs` filters of every 3x3 convolution with outputs >= inputs as the
    identity (their biases 0): the layer starts by passing its input on."""
    for conv in net.convs():
        out_channels, in_channels = conv.weight.shape[:2]
        if conv.weight.shape[2:] == (3, 3) and out_channels >= in_channels:
            with torch.no_grad():
                torch.nn.init.dirac_(conv.weight[:in_channels])
                conv.bias[:in_channels] = 0


def optimizer_for(net: TutorialNet, variant: str, lr: float, bn_lr_scale: float):
    """The recipe's SGD; with bn-lr, BatchNorm's parameters in a group of their own (no weight
    decay; the schedule's rate times `bn_lr_scale`, see train)."""
    norms = [p for m in net.modules() if isinstance(m, BatchNorm) for p in m.parameters()]
    others = [p for p in net.parameters() if all(p is not q for q in norms)]
    groups = ([{"params": others}, {"params": norms, "weight_decay": 0.0}]
              if variant == "bn-lr" else [{"params": list(net.parameters())}])
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True,
                           weight_decay=FAST_WEIGHT_DECAY, foreach=True)


def train(variant: str, data, args, device) -> tuple[TutorialNet, AveragedModel | None, float]:
    """(the trained network, its moving average for plain, training seconds)."""
    torch.manual_seed(args.seed)
    net = TutorialNet(ARCHITECTURES[args.arch])
    if variant == "identity":
        identity_init(net)
    net = net.to(device)
    optimizer = optimizer_for(net, variant, args.lr, args.bn_lr_scale)
    n = len(data.train_labels)
    recipe = FastRecipe(optimizer, args.lr, args.epochs * math.ceil(n / args.batch_size), args.seed)
    recipe.prepare(net)
    average = (AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay),
                             use_buffers=True) if variant == "plain" else None)

    def before_step(step: int) -> None:
        recipe.before_step(step)
        if variant == "bn-lr":
            optimizer.param_groups[1]["lr"] *= args.bn_lr_scale

    runner = StepRunner(net, recipe.loss(smoothed_cross_entropy), [optimizer],
                        min(args.batch_size, n), device, step_mode(device, False))
    run = TrainingRun(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                      log_every=10 ** 9, settings={}, part_names=("loss",), quiet=True,
                      before_step=before_step,
                      after_step=(lambda step: average.update_parameters(net)) if average else None)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        train_epoch(runner, data.train_images, data.train_labels, run, generator, epoch)
    return net, average, time.perf_counter() - started


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             reading: str) -> tuple[float, float]:
    """(test accuracy %, seconds) of `model` read plainly, with its mirror image ("flip"), or
    with the mirror and four 2-pixel moves of both ("flip+shift")."""
    model.eval()
    started, right = time.perf_counter(), 0
    for x_u8, y in batches(images, labels, 500):
        x = normalize(x_u8)
        views = [x] if reading == "plain" else [x, x.flip(3)]
        if reading == "flip+shift":
            padded = [F.pad(v, (SHIFT,) * 4, mode="reflect") for v in views[:2]]
            h, w = x.shape[2:]
            for down, across in ((0, -SHIFT), (0, SHIFT), (-SHIFT, 0), (SHIFT, 0)):
                views += [p[:, :, SHIFT + down:SHIFT + down + h, SHIFT + across:SHIFT + across + w]
                          for p in padded]
        probabilities = sum(F.softmax(model(v.contiguous(memory_format=torch.channels_last)), 1)
                            for v in views)
        right += int((probabilities.argmax(1) == y).sum())
    return 100 * right / len(labels), time.perf_counter() - started


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--subset", type=number(float, 0, 1, low_open=True), default=1.0)
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), default="deep4")
    parser.add_argument("--epochs", type=number(int, 1), default=6,
                        help="length of the one-cycle schedule (make depth's: 6)")
    parser.add_argument("--batch-size", type=number(int, 1), default=FAST_DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=number(float, 0, 10, low_open=True), default=FAST_DEFAULTS["lr"])
    parser.add_argument("--ema-decay", type=number(float, 0, 0.99999, low_open=True),
                        default=0.99, help="the moving average's decay per step")
    parser.add_argument("--bn-lr-scale", type=number(float, 0, low_open=True), default=5.0)
    parser.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (ema comes with plain)")
    parser.add_argument("--seed", type=number(int, 0), default=0)
    parser.add_argument("--threads", type=number(int, 1), default=FAST_DEFAULTS["threads"])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"no variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")

    device = select_device(args.device, args.threads, onednn=True)
    data = load_cifar10(args.data_dir, subset=args.subset, seed=args.seed, quiet=True).to(device)
    print(f"{args.arch}, fast recipe, {args.epochs} epochs, batch {args.batch_size}, peak lr "
          f"{args.lr}, {len(data.train_labels)} training and {len(data.test_labels)} test images, "
          f"device {device}, {args.threads} threads")
    print(f"{'variant':10s} {'train_s':>8s} {'plain_%':>8s} {'flip_%':>8s} {'flip+shift_%':>13s}  "
          "read_s (plain, flip, flip+shift)")
    for variant in args.variants:
        net, average, seconds = train(variant, data, args, device)
        models = [(variant, net)] + ([("ema", average.module)] if average is not None else [])
        for name, model in models:
            found = [accuracy(copy.deepcopy(model) if name == "ema" else model, data.test_images,
                              data.test_labels, reading) for reading in ("plain", "flip", "flip+shift")]
            print(f"{name:10s} {seconds if name == variant else 0.0:8.1f} "
                  f"{found[0][0]:8.2f} {found[1][0]:8.2f} {found[2][0]:13.2f}  "
                  + ", ".join(f"{s:.1f}" for _, s in found), flush=True)


if __name__ == "__main__":
    main()
