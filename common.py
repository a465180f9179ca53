"""Plumbing the four scripts share: one-line errors, devices, atomic writes, checkpoints.

Nothing here knows about the experiment itself; it keeps each script's `main()` about the task.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing data, wrong checkpoint).

    Scripts print its message as one line and exit with status 2, without a traceback.
    """


def run_cli(main: Callable[[], None]) -> None:
    """Run a script's main(); turn UsageError into `error: ...` on stderr and exit code 2."""
    try:
        main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished files are complete; rerun with --resume to continue training",
              file=sys.stderr)
        sys.exit(130)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and a one-line error for bad flags."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> None:  # argparse's own prints the whole usage first
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


# --- argparse value types: each rejects what the experiment cannot use, with the reason ---

def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def fraction(text: str) -> float:
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1], e.g. 0.1 for a tenth")
    return value


def add_common_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """Flags every script has: where the data is, where results go, which device."""
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 location: image folders (train/<class>/*, test/<class>/*) "
                             "or cifar-10-batches-py; default $CIFAR10_DIR, else ./data "
                             "(downloaded there when empty)")
    parser.add_argument("--out", default=out, help="output folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The tutorial's training protocol, shared by Tasks 1 and 2 so their defaults stay equal."""
    parser.add_argument("--epochs", type=positive_int, default=2, help="passes over the training set")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="mini-batch size")
    parser.add_argument("--lr", type=positive_float, default=0.001,
                        help="SGD learning rate (of the encoder and classifier head)")
    parser.add_argument("--momentum", type=non_negative_float, default=0.9, help="SGD momentum")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of initialisation, shuffling and --subset")
    parser.add_argument("--subset", type=fraction, default=1.0,
                        help="train and test on this stratified fraction of CIFAR-10")
    parser.add_argument("--log-every", type=positive_int, default=2000,
                        help="print the running loss every N mini-batches")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped run from OUT/training_state.pth")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# --- device and threads ---

def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        # Measured on a 2-core machine (benchmarks/bench_task1.py): at batch 4 every step is
        # overhead, and one thread with PyTorch's native convolutions beats oneDNN and more threads.
        # One thread also makes CPU runs bit-for-bit repeatable.
        torch.set_num_threads(1)
        torch.backends.mkldnn.enabled = False
    return torch.device(name)


# --- files: written to a temporary name and renamed, so no file is ever half-written ---

def prepare_output_dir(path: Path) -> Path:
    """Create the output folder, or say clearly why it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to output folder {path} ({error.strerror or error}); "
                         "pass a writable --out") from None
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; results should read like any other file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_json(data: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_figure(figure: Any, path: Path, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip("."), bbox_inches="tight", **kwargs)
    plt.close(figure)


def save_torch(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, model_name: str | tuple[str, ...], what: str) -> dict:
    """Load a checkpoint written by this repo and check it holds a `model_name` (or one of them)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise UsageError(f"{what} {path} is not a readable PyTorch checkpoint "
                         f"({type(error).__name__}); it may be truncated, write it again") from None
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint:
        raise UsageError(f"{what} {path} was not written by this repo (no 'model_state')")
    found = checkpoint.get("model")
    accepted = (model_name,) if isinstance(model_name, str) else model_name
    if found not in accepted:
        raise UsageError(f"{what} {path} holds a {found}, not a {' or '.join(accepted)}")
    return checkpoint


def load_state(model: torch.nn.Module, state: dict, path: Path, what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UsageError(f"{what} {path} does not fit this architecture: {first}") from None


def check_finite(loss: float, epoch: int, step: int, fix: str = "lower --lr") -> None:
    """Stop a diverging run, naming where; the training state of the last epoch stays on disk."""
    if not math.isfinite(loss):
        raise UsageError(f"the loss became {loss} at epoch {epoch}, mini-batch {step}; {fix} "
                         "(the last epoch's training state is kept)")


def environment_info(device: torch.device) -> dict:
    import numpy
    import torchvision

    return {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }


# --- evaluation and resumable training state, shared by both training scripts ---

def accuracy_summary(predictions: torch.Tensor, labels: torch.Tensor,
                     class_names: tuple[str, ...]) -> dict:
    """Overall and per-class accuracy in percent, and the confusion matrix (rows: truth)."""
    predictions, labels = predictions.cpu(), labels.cpu()
    n = len(class_names)
    confusion = torch.bincount(labels * n + predictions, minlength=n * n).reshape(n, n)
    per_class = {name: round(100.0 * confusion[i, i].item() / max(confusion[i].sum().item(), 1), 2)
                 for i, name in enumerate(class_names)}
    return {
        "test_accuracy": round(100.0 * (predictions == labels).float().mean().item(), 2),
        "test_images": len(labels),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def save_training_state(path: Path, model_name: str, config: dict, epoch: int,
                        model: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
                        shuffle_generator: torch.Generator, history: dict) -> None:
    """Everything needed to continue after `epoch` as if the run had never stopped."""
    save_torch({
        "model": model_name, "config": config, "epoch": epoch,
        "model_state": model.state_dict(),
        "optimizer_states": [opt.state_dict() for opt in optimizers],
        "shuffle_rng": shuffle_generator.get_state(), "torch_rng": torch.get_rng_state(),
        "history": history,
    }, path)


def resume_training_state(path: Path, model_name: str, config: dict, model: torch.nn.Module,
                          optimizers: list[torch.optim.Optimizer],
                          shuffle_generator: torch.Generator) -> tuple[int, dict]:
    """Restore a state saved by save_training_state; return (epochs done, history)."""
    if not Path(path).is_file():
        raise UsageError(f"--resume: {path} does not exist; run once without --resume "
                         "(it is written after every epoch)")
    state = load_checkpoint(path, model_name, "--resume state")
    differing = sorted(k for k in config if k != "epochs" and state["config"].get(k) != config[k])
    if differing:
        raise UsageError(f"--resume: {path} was trained with other settings "
                         f"({', '.join(differing)}); use the same flags or a new --out")
    load_state(model, state["model_state"], path, "--resume state")
    for optimizer, saved in zip(optimizers, state["optimizer_states"]):
        optimizer.load_state_dict(saved)
    shuffle_generator.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["history"]
