"""The one training loop of Tasks 1 and 2: mini-batch step, epochs, resumable state, evaluation.

A script supplies only what differs: its model, its loss and its optimisers. The loss is a
function `loss_fn(model, x, y) -> (loss, parts)`: the tensor to minimise and a 1-D tensor of the
parts to log (Task 1: the cross-entropy; Task 2: CE and L_rec of eq. (1)).

On CUDA, one training step (normalise, forward, loss, backward, optimiser steps) is captured
once in a CUDA graph and replayed for every mini-batch: at batch 4 an eager step is ~40 tiny
kernel launches plus Python, which leaves the GPU idle most of the time.
"""
import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from data import batches, denormalize, normalize
from models import ARCHITECTURES, fold_batchnorm, reconstruction_loss
from study.core.common import FLOAT32_MAX, Interrupted, UsageError, number
from study.core.layout import TRAINING_STATE
from study.core.settings import usable_cores
from study.training.recipes import FAST_DEFAULTS, FastRecipe
from study.training.state import (check_training_state, epoch_on_disk, resume_training_state,
                                  save_training_state)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The tutorial's training protocol, shared by Tasks 1 and 2 so their defaults stay equal."""
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), default="tutorial",
                        help="the network: the tutorial's, or another of the same kind (models.py)")
    parser.add_argument("--recipe", choices=("tutorial", "fast"), default="tutorial",
                        help="fast: Nesterov SGD with a one-cycle schedule, label smoothing, "
                             "flips and shifts, bfloat16 autocast, batch "
                             f"{FAST_DEFAULTS['batch_size']}, peak lr {FAST_DEFAULTS['lr']}, "
                             f"{FAST_DEFAULTS['epochs']} epochs unless given "
                             "(study/training/recipes.py, docs/depth.md)")
    parser.add_argument("--epochs", type=number(int, 1), default=2, help="passes over the training set")
    parser.add_argument("--batch-size", type=number(int, 1), default=4, help="mini-batch size")
    # bounded by float32's range: torch refuses (with a traceback) a step size it cannot hold
    parser.add_argument("--lr", type=number(float, 0, FLOAT32_MAX, low_open=True), default=0.001,
                        help="SGD learning rate (of the encoder and classifier head)")
    parser.add_argument("--momentum", type=number(float, 0, 1), default=0.9,
                        help="SGD momentum, 0 to 1 (above 1 every step grows without bound)")
    parser.add_argument("--log-every", type=number(int, 1), default=2000,
                        help="print the running loss every N mini-batches")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped run from OUT/training_state.pth")
    cores = usable_cores()
    parser.add_argument("--threads", type=number(int, 1, cores), default=1,
                        help=f"CPU threads, 1 to the {cores} cores this process may use (the "
                             "tutorial's batch-4 steps are fastest on one; --recipe fast uses "
                             "every core, with oneDNN, unless given)")
    parser.add_argument("--no-cuda-graph", action="store_true",
                        help="on CUDA, run every step eagerly instead of replaying a CUDA graph")


# --- one mini-batch ---

def training_step(model: nn.Module, loss_fn: LossFn, optimizers: list[torch.optim.Optimizer],
                  images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Normalise uint8 images, compute the loss, backpropagate, step every optimiser.

    Returns the loss parts, detached and still on the device: reading them (.item()) would wait
    for the GPU at every step.
    """
    for optimizer in optimizers:
        optimizer.zero_grad()
    loss, parts = loss_fn(model, normalize(images), labels)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()
    return parts.detach()


class StepRunner:
    """Runs `training_step` for each mini-batch, in one of three ways.

    eager:  call it directly (CPU, and CUDA with --no-cuda-graph).
    static: copy each full batch into fixed input buffers first, then call it (what the graph
            replays; on the CPU this is the eager computation, which the tests check).
    graph:  CUDA only; capture one step over the static buffers in a CUDA graph, replay it.
    A batch of another size (the last one of an epoch) always runs eagerly; none is dropped.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, optimizers: list[torch.optim.Optimizer],
                 batch_size: int, device: torch.device, mode: str = "eager") -> None:
        if mode == "graph" and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.model, self.loss_fn, self.optimizers = model, loss_fn, optimizers
        self.mode, self.batch_size = mode, batch_size
        static = mode != "eager"
        self.images = (torch.zeros(batch_size, 3, 32, 32, dtype=torch.uint8, device=device)
                       if static else None)
        self.labels = torch.zeros(batch_size, dtype=torch.long, device=device) if static else None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.parts: torch.Tensor | None = None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.mode == "eager" or len(labels) != self.batch_size:
            return training_step(self.model, self.loss_fn, self.optimizers, images, labels)
        self.images.copy_(images)
        self.labels.copy_(labels)
        if self.mode == "static":
            return training_step(self.model, self.loss_fn, self.optimizers, self.images, self.labels)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.parts

    def _capture(self) -> None:
        """Warm up on a side stream, undo the warm-up, then record one step.

        The warm-up steps (which create cuDNN plans and the optimisers' lazy state) change the
        weights; they are put back exactly, and new optimiser state is zeroed, which is what a
        first eager step starts from. So the replayed run follows the eager one step for step.
        """
        saved = _snapshot(self.model, self.optimizers)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                training_step(self.model, self.loss_fn, self.optimizers, self.images, self.labels)
        torch.cuda.current_stream().wait_stream(side)
        _restore(self.model, self.optimizers, saved)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)  # gradients get static memory inside the graph
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.parts = training_step(self.model, self.loss_fn, self.optimizers,
                                       self.images, self.labels)


def _snapshot(model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> tuple[list, list]:
    params = [p.detach().clone() for p in model.parameters()]
    states = [{id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
               for p, s in opt.state.items()} for opt in optimizers]
    return params, states


@torch.no_grad()
def _restore(model: nn.Module, optimizers: list[torch.optim.Optimizer], saved: tuple) -> None:
    """Put weights and optimiser state back in place (the graph records their addresses)."""
    params, states = saved
    for p, value in zip(model.parameters(), params):
        p.copy_(value)
    for opt, before in zip(optimizers, states):
        for p, state in opt.state.items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    if id(p) in before:
                        value.copy_(before[id(p)][key])
                    else:
                        value.zero_()


def step_mode(device: torch.device, cuda_graph: bool) -> str:
    """graph on CUDA unless turned off; eager elsewhere."""
    return "graph" if device.type == "cuda" and cuda_graph else "eager"


# --- epochs ---

def steps_per_epoch(images: int, batch_size: int) -> int:
    """Mini-batches in an epoch of `images` (the last one may be short)."""
    return math.ceil(images / batch_size)


def train_epoch(run_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                images: torch.Tensor, labels: torch.Tensor, run: "TrainingRun",
                generator: torch.Generator, epoch: int) -> tuple[list[dict], dict]:
    """Epoch `epoch` of `run`: one pass over the training set shuffled by `generator`, each
    mini-batch through `run_step`; returns (running-loss log rows, epoch means).

    `run.before_step(global step)`, if given, runs before each mini-batch (a learning-rate
    schedule: steps are counted from 0 over the whole run); `run.after_step(steps done)`, if
    given, after it (a snapshot of the weights: counted from 1).

    Losses are summed on the device and read only every `log_every` mini-batches and at the
    end, which is also where a non-finite loss stops the run.
    """
    steps, log_every, part_names = steps_per_epoch(len(labels), run.batch_size), run.log_every, run.part_names
    progress = tqdm(batches(images, labels, run.batch_size, generator), total=steps,
                    desc=f"epoch {epoch}/{run.epochs}", unit="batch", leave=False,
                    disable=run.quiet or None, file=sys.stderr)
    window = torch.zeros(len(part_names), dtype=torch.float64, device=labels.device)
    total = torch.zeros_like(window)
    log, window_start = [], 1
    for i, (x, y) in enumerate(progress, start=1):
        if run.before_step is not None:
            run.before_step((epoch - 1) * steps + i - 1)
        window += run_step(x, y)
        if run.after_step is not None:
            run.after_step((epoch - 1) * steps + i)
        if i % log_every == 0 or i == steps:
            values = window.tolist()
            _check_finite(values, epoch, window_start, i, run.divergence_hint)
            total += window
            if i % log_every == 0:
                means = {name: round(v / log_every, 4) for name, v in zip(part_names, values)}
                tqdm.write(f"[{epoch}, {i:5d}] "
                           + "  ".join(f"{name}: {v:.3f}" for name, v in means.items()))
                log.append({"epoch": epoch, "step": i, **means})
            window.zero_()
            window_start = i + 1
    means = {name: round(v / steps, 4) for name, v in zip(part_names, total.tolist())}
    return log, {"epoch": epoch, **means}


def _check_finite(window_sums: list[float], epoch: int, first: int, last: int, hint: str) -> None:
    bad = next((v for v in window_sums if not math.isfinite(v)), None)
    if bad is not None:
        where = f"mini-batch {last}" if first == last else f"mini-batches {first}-{last}"
        raise UsageError(f"the loss became {bad} at epoch {epoch}, {where}; {hint}")


@dataclass(frozen=True)
class TrainingRun:
    """How one training run goes, apart from the model, its loss and its optimisers.

    `settings` are what determines the trained model (saved with the state, and compared on
    --resume); `part_names` name the loss's parts in the log; with a `state_path` a resumable
    state is saved after every epoch. `before_step` (see train_epoch) must depend on the global
    step alone, so a resumed run follows the one that never stopped; with it every step runs
    eagerly (a CUDA graph would replay the captured learning rate). `after_step` only reads
    the model (it must not change it, nor draw random numbers).
    """

    epochs: int
    batch_size: int
    seed: int
    log_every: int
    settings: dict
    part_names: tuple[str, ...]
    state_path: Path | None = None
    resume: bool = False
    quiet: bool = False
    cuda_graph: bool = True
    divergence_hint: str = "lower --lr"
    before_step: Callable[[int], None] | None = None
    after_step: Callable[[int], None] | None = None

    @classmethod
    def from_args(cls, args, **rest) -> "TrainingRun":
        """The run the command-line flags of add_training_arguments describe."""
        return cls(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                   log_every=args.log_every, resume=args.resume, quiet=args.quiet,
                   cuda_graph=not args.no_cuda_graph, **rest)


def fit(model: nn.Module, loss_fn: LossFn, optimizers: list[torch.optim.Optimizer],
        images: torch.Tensor, labels: torch.Tensor, run: TrainingRun) -> dict:
    """Train for run.epochs; returns the history: loss_log, epoch_loss and train_seconds."""
    generator = torch.Generator().manual_seed(run.seed)  # the shuffling order, on the CPU
    history = {"loss_log": [], "epoch_loss": [], "train_seconds": 0.0}
    done = 0
    if run.resume:
        done, history = resume_training_state(run.state_path, run.settings, run.epochs, model,
                                              optimizers, generator, run.part_names)
        print(f"resumed after epoch {done} from {run.state_path}")
    device = labels.device
    run_step = StepRunner(model, loss_fn, optimizers, min(run.batch_size, len(labels)), device,
                          step_mode(device, run.cuda_graph and run.before_step is None))
    model.train()
    saved_epoch, saving = done, 0  # saving: the epoch whose state is being written
    try:
        for epoch in range(done + 1, run.epochs + 1):
            started = time.perf_counter()
            log, means = train_epoch(run_step, images, labels, run, generator, epoch)
            history["train_seconds"] += time.perf_counter() - started
            history["loss_log"] += log
            history["epoch_loss"].append(means)
            if run.state_path is not None:
                saving = epoch
                save_training_state(run.state_path, run.settings, epoch, model, optimizers,
                                    generator, history)
                saved_epoch, saving = epoch, 0
    except KeyboardInterrupt:
        # A signal that lands after this epoch's state was renamed into place, but before the
        # save returned, still leaves the epoch resumable: ask the file.
        if saving and epoch_on_disk(run.state_path) == saving:
            saved_epoch = saving
        if saved_epoch:
            raise Interrupted(f"the training state after epoch {saved_epoch} is in "
                              f"{run.state_path}; rerun the same command with --resume to continue") from None
        raise Interrupted("stopped before the first epoch ended, so there is nothing to resume; "
                          "rerun the same command to start again") from None
    except UsageError as error:
        kept = (f" (the state after epoch {saved_epoch} is kept in {run.state_path})"
                if saved_epoch else "")
        raise UsageError(f"{error}{kept}") from None
    history["train_seconds"] = round(history["train_seconds"], 2)
    return history


# --- the skeleton Task 1 and Task 2 share ---

def check_resumable(args, settings: dict, make_model: Callable[[], nn.Module],
                    make_optimizers: Callable[[nn.Module], list[torch.optim.Optimizer]],
                    part_names: tuple[str, ...]) -> None:
    """With --resume: the saved state must be this run's (settings, epochs, the model's and the
    optimisers' shapes), checked on a throw-away model before anything is written."""
    if not args.resume:
        return
    with torch.random.fork_rng(devices=[]):  # the probe must not move the seeded stream
        probe = make_model()
    check_training_state(args.out / TRAINING_STATE, settings, args.epochs,
                         make_optimizers(probe), probe, part_names)


def train_task(net: nn.Module, optimizers: list[torch.optim.Optimizer],
               losses: tuple[LossFn, LossFn], images: torch.Tensor, labels: torch.Tensor,
               args, **run_fields) -> tuple[nn.Module, dict]:
    """Train `net` as Task 1 and Task 2 do, and return (the network to save, its history).

    `losses` is (the tutorial's loss, the fast recipe's label-smoothed one). With --recipe fast
    the one-cycle schedule drives the first optimiser (the encoder's SGD) and the network is laid
    out for oneDNN; `run_fields` complete the TrainingRun (settings, part_names, state_path,
    divergence_hint). A network trained with BatchNorm comes back folded, so every reader of its
    checkpoint sees a plain network of the tutorial's kind (the same function in eval mode).
    """
    loss_fn, before_step = losses[0], None
    if args.recipe == "fast":
        steps = args.epochs * steps_per_epoch(len(labels), args.batch_size)
        recipe = FastRecipe(optimizers[0], args.lr, steps, args.seed)
        loss_fn, before_step = recipe.loss(losses[1]), recipe.before_step
        recipe.prepare(net)
    history = fit(net, loss_fn, optimizers, images, labels,
                  TrainingRun.from_args(args, before_step=before_step, **run_fields))
    print("Finished Training")
    if net.arch.batchnorm:
        net = fold_batchnorm(net.eval())
    return net, history


# --- evaluation ---

@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 500) -> dict:
    """Test-set predictions; for a model that also reconstructs (DeconvNet), its errors too.

    Reconstruction errors: mean L_rec (eq. (1), normalised space) and the MSE and PSNR of the
    image clipped to [0, 1] against the original in [0, 1].
    """
    model.eval()
    predictions, rec_sum, squared_error, reconstructs = [], 0.0, 0.0, False
    for images_u8, _ in batches(images, labels, batch_size):
        x = normalize(images_u8)
        output = model(x)
        reconstructs = isinstance(output, tuple)
        logits = output[0] if reconstructs else output
        predictions.append(logits.argmax(1))
        if reconstructs:
            rec_sum += reconstruction_loss(output[1], x).item() * len(x)
            squared_error += (denormalize(output[1]) - images_u8 / 255).pow(2).sum().item()
    result = {"predictions": torch.cat(predictions)}
    if reconstructs:
        mse = squared_error / images.numel()
        result.update(rec_loss=rec_sum / len(labels), mse=mse, psnr_db=psnr_db(mse))
    return result


def psnr_db(mse: float) -> float:
    """Peak signal-to-noise ratio of images in [0, 1]: 10 log10(1 / MSE)."""
    if not math.isfinite(mse):
        raise UsageError(f"the reconstruction error is {mse}: the model's weights or outputs "
                         "are not finite; retrain it or check the checkpoint")
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def accuracy_summary(predictions: torch.Tensor, labels: torch.Tensor,
                     class_names: tuple[str, ...]) -> dict:
    """Overall and per-class accuracy in percent, and the confusion matrix (rows: truth)."""
    predictions, labels = predictions.cpu(), labels.cpu()
    n = len(class_names)
    confusion = torch.bincount(labels * n + predictions, minlength=n * n).reshape(n, n)
    per_class = {name: round(100.0 * confusion[i, i].item() / max(confusion[i].sum().item(), 1), 2)
                 for i, name in enumerate(class_names)}
    accuracy = (predictions == labels).float().mean().item()
    return {
        "test_accuracy": round(100.0 * accuracy, 2),
        # binomial standard error of that accuracy, in points: the noise of a 10,000-image test
        "test_accuracy_standard_error": round(100.0 * math.sqrt(accuracy * (1 - accuracy) / len(labels)), 2),
        "test_images": len(labels),
        "per_class_accuracy": per_class,
        "per_class_standard_error_max": round(max(
            100.0 * math.sqrt(0.25 / max(confusion[i].sum().item(), 1)) for i in range(n)), 2),
        "confusion_matrix": confusion.tolist(),
    }


def mcnemar(first_correct: list[bool], second_correct: list[bool]) -> dict:
    """Exact McNemar test of two classifiers on the same test images (two-sided binomial).

    Only the images where exactly one of them is right carry information: under the null
    hypothesis of equal accuracy each such image is a fair coin.
    """
    only_first = sum(a and not b for a, b in zip(first_correct, second_correct))
    only_second = sum(b and not a for a, b in zip(first_correct, second_correct))
    n, k = only_first + only_second, min(only_first, only_second)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"only_first_correct": only_first, "only_second_correct": only_second,
            "p_value": round(p, 4)}
