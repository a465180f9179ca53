"""Training recipes: the tutorial's protocol (the default everywhere), and a fast one for deeper
networks (`--recipe fast`).

The fast recipe, for nets like models.ARCHITECTURES["deep4"] (which has BatchNorm):
* SGD with Nesterov momentum (--momentum, default 0.9) and weight decay FAST_WEIGHT_DECAY on
  the encoder and head (Task 2's decoder keeps its own optimiser and constant rate);
* a one-cycle learning rate per mini-batch (Smith & Topin 2019, torch's OneCycleLR with its
  defaults: cosine warm-up over the first 30 % of the steps from peak/25 to the peak --lr,
  cosine annealing to peak/(25 * 10^4)); computed from the global step, so --resume needs no
  scheduler state;
* cross-entropy with label smoothing FAST_LABEL_SMOOTHING (Task 2: the CE part of eq. (1));
* random horizontal flips of half the images of each mini-batch, then random translations of
  each image by up to FAST_SHIFT pixels along each axis (the image padded by reflection, then
  cropped back to its size), both drawn from (seed, step), so a resumed run augments the same
  images in the same way as one that never stopped;
* unless given on the command line: batch FAST_DEFAULTS["batch_size"], peak lr
  FAST_DEFAULTS["lr"], FAST_DEFAULTS["epochs"] epochs;
* the network and each mini-batch in channels-last memory layout (`FastRecipe.prepare`): the
  same arithmetic, about 2.4 times faster for 3x3 convolutions on a CPU (oneDNN's native layout;
  benchmarks/bench_deep.py), and what tensor cores want on a GPU;
* the forward pass (and so its backward) under bfloat16 autocast, FAST_AUTOCAST: convolutions
  and matrix products in bfloat16, losses, BatchNorm and the weights, gradients and optimiser in
  float32 (mixed precision, as on a GPU); about twice as fast again on a CPU with AVX-512 BF16
  (benchmarks/bench_deep.py, against its --float32). Every analysis runs the trained float32 weights in float32.
A scheduled step runs eagerly (no CUDA graph: a graph would replay the captured learning rate).
"""
import argparse
import math
import os
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

FAST_DEFAULTS = {"batch_size": 256, "lr": 0.1, "epochs": 19, "threads": len(os.sched_getaffinity(0))}
FAST_WEIGHT_DECAY = 5e-4
FAST_LABEL_SMOOTHING = 0.1
FAST_AUTOCAST = torch.bfloat16  # the training step's compute precision (None: float32 throughout)
FAST_SHIFT = 2  # pixels: the short-schedule choice (a 4-pixel crop pays off over longer runs)
PCT_START, DIV_FACTOR, FINAL_DIV_FACTOR = 0.3, 25.0, 1e4  # OneCycleLR's defaults

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def parse_with_recipe(parser: argparse.ArgumentParser, argv: list[str] | None = None):
    """parse_args, with the fast recipe's defaults for the flags not given when --recipe fast.

    argparse fills in a default only where the namespace it starts from has no value, so
    starting from the recipe's values lets every flag given on the command line win, and
    leaves the parser (and --help, and sweep.py's checks) with the tutorial's defaults.
    """
    known, _ = parser.parse_known_args(argv)
    fast = getattr(known, "recipe", "tutorial") == "fast"
    return parser.parse_args(argv, namespace=argparse.Namespace(**FAST_DEFAULTS) if fast else None)


def one_cycle_lr(step: int, total_steps: int, peak: float) -> float:
    """The learning rate of mini-batch `step` (0-based) of `total_steps`: torch's OneCycleLR
    (anneal_strategy "cos", three_phase False) with its default shape."""
    initial, final = peak / DIV_FACTOR, peak / DIV_FACTOR / FINAL_DIV_FACTOR
    warm_end = float(PCT_START * total_steps) - 1
    if step <= warm_end:
        start, end, fraction = initial, peak, step / warm_end if warm_end > 0 else 1.0
    else:
        start, end = peak, final
        fraction = (step - warm_end) / (total_steps - 1 - warm_end)
    return end + (start - end) / 2 * (math.cos(math.pi * min(fraction, 1.0)) + 1)


class FastRecipe:
    """The schedule and the flips of the fast recipe for one run: `before_step(step)` sets the
    learning rate and draws the flips of global mini-batch `step`; `loss(base)` wraps a loss
    function so it sees the flipped images."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int,
                 seed: int) -> None:
        self.optimizer, self.peak_lr, self.total_steps, self.seed = optimizer, peak_lr, total_steps, seed
        self.step = 0

    def before_step(self, step: int) -> None:
        self.step = step
        lr = one_cycle_lr(step, self.total_steps, self.peak_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)

    def flips(self, n: int) -> torch.Tensor:
        """Which of the n images of the current mini-batch are mirrored (bool, on the CPU)."""
        return torch.rand(n, generator=self._generator()) < 0.5

    def shifts(self, n: int) -> torch.Tensor:
        """(n, 2) integer (down, right) shifts in -FAST_SHIFT..FAST_SHIFT of the current
        mini-batch's images: output pixel (r, c) shows input pixel (r + down, c + right)."""
        generator = self._generator()
        torch.rand(n, generator=generator)  # the flips' draw comes first
        return torch.randint(-FAST_SHIFT, FAST_SHIFT + 1, (n, 2), generator=generator)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The mini-batch x (N, C, H, W) flipped and translated as drawn for the current step."""
        mask = self.flips(len(x)).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
        if FAST_SHIFT:
            p, (h, w) = FAST_SHIFT, x.shape[2:]
            padded = F.pad(x, (p, p, p, p), mode="reflect")
            x = torch.stack([padded[i, :, p + down:p + down + h, p + right:p + right + w]
                             for i, (down, right) in enumerate(self.shifts(len(x)).tolist())])
        return x

    def loss(self, base: LossFn) -> LossFn:
        """`base` on the augmented mini-batch, in channels-last layout, under FAST_AUTOCAST."""
        def augmented(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
            x = self.augment(x).contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=FAST_AUTOCAST, enabled=FAST_AUTOCAST is not None):
                return base(model, x, y)
        return augmented

    @staticmethod
    def prepare(model: nn.Module) -> nn.Module:
        """The model in channels-last layout (its 4-d weights; in place, returned): the
        values do not change, only how they are laid out in memory."""
        return model.to(memory_format=torch.channels_last)


def fast_sgd(parameters, lr: float, momentum: float) -> torch.optim.SGD:
    """The fast recipe's optimiser: SGD, Nesterov momentum, weight decay."""
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=True,
                           weight_decay=FAST_WEIGHT_DECAY, foreach=True)


def describe_fast_recipe() -> dict:
    """What metrics.json records of the recipe beyond the flags."""
    return {"optimizer": "SGD nesterov", "weight_decay": FAST_WEIGHT_DECAY,
            "schedule": f"one-cycle (cos, pct_start {PCT_START}, div {DIV_FACTOR:g}, "
                        f"final div {FINAL_DIV_FACTOR:g})",
            "label_smoothing": FAST_LABEL_SMOOTHING,
            "augmentation": f"horizontal flips, p = 0.5; translations up to {FAST_SHIFT} pixels "
                            "(reflection padding)",
            "memory_format": "channels last",
            "precision": (f"{str(FAST_AUTOCAST).removeprefix('torch.')} autocast, float32 weights"
                          if FAST_AUTOCAST is not None else "float32")}
