"""The command line, shared by every script: one-line errors, escaped messages, flags, devices.

Nothing here knows about the experiment; it keeps each script's `main()` about the task. Output
folders and safe writes are in files.py, reading files that may be crafted in readers.py.
"""
import argparse
import math
import platform
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import torch

MAX_SEED = 2 ** 32 - 2  # seed + 1 seeds the test subset; numpy and torch accept < 2**32
FLOAT32_MAX = 3.4028234663852886e38  # a larger learning rate or weight cannot reach float32


class UsageError(Exception):
    """A problem the user can fix (bad flag, missing data, wrong checkpoint, full disk).

    Scripts print its message as one line and exit with status 2, without a traceback.
    The message is kept on one line with its names escaped (`printable`) from the start, so
    it is harmless wherever it is shown, not only where run_cli prints it.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(printable(message), *args)


class Interrupted(Exception):
    """Ctrl-C or SIGTERM, with what the user can do next (e.g. rerun with --resume)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_cli(main: Callable[[], None]) -> None:
    """Run a script's main(); turn UsageError into `error: ...` on stderr and exit code 2.

    SIGTERM is handled like Ctrl-C, so `kill` and a closed terminal leave the same clean state.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except UsageError as error:
        _say(f"error: {error}")
        sys.exit(2)
    except Interrupted as stop:
        _say(f"interrupted: {stop}")
        sys.exit(130)
    except KeyboardInterrupt:
        _say("interrupted: every file written is whole; the run did not finish")
        sys.exit(130)


# Characters that a terminal acts on or that break a line: C0 and C1 controls (ESC, BEL, CR,
# LF, ...), DEL, the Unicode line and paragraph separators, bidirectional overrides and marks,
# and lone surrogates (the bytes of a file name that are not UTF-8).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: Any) -> str:
    """`text` (a str, a Path, anything) as one harmless line for a terminal.

    Control characters become escapes (ESC as \\x1b, a newline as \\n, an undecodable byte
    of a file name as \\udcff), so a file or folder name can neither move the cursor, set the
    window title, overwrite a printed line nor forge an extra `warning:` line. Everything else,
    Cyrillic letters included, is kept as it is. Backslashes are kept too, so the escape of a
    name that held a real backslash reads the same; names are for reading, not for parsing.
    """
    return _UNPRINTABLE.sub(_escape, str(text))


def say(line: str) -> None:
    """One line on stderr, always: every name in it is passed through `printable`.

    run_cli prints errors through it and data.warn warnings, so every message a script gives
    is escaped in one place.
    """
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


_say = say


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" unless the help text already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with defaults shown in --help and a one-line error for bad flags.

    Abbreviations are off: `--se 7` would otherwise mean `--seed 7`, which no check that looks
    for `--seed` (sweep.py's) would see.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShown)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)
        self._raise_errors = False

    def error(self, message: str) -> None:  # argparse's own prints the whole usage first
        if self._raise_errors:
            raise UsageError(message)
        say(f"error: {message} (see {self.prog} --help)")
        sys.exit(2)

    def check(self, argv: list[str]) -> argparse.Namespace:
        """Parse `argv` as the script would, raising UsageError instead of exiting.

        For a caller that passes flags on to this script (sweep.py): a bad flag is found before
        any run starts, and reported by the caller in its own words.
        """
        self._raise_errors = True
        try:
            return self.parse_args(argv)
        finally:
            self._raise_errors = False


def number(kind: type = float, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], Any]:
    """argparse type: a finite int or float in [low, high] ((low, high] with low_open).

    Each bound may be None. The error says the allowed range, e.g. "must be in (0, 1]".
    """
    left = "(" if low_open else "["
    show = (lambda v: str(v)) if kind is int else (lambda v: f"{v:g}")
    allowed = (f"in {left}{show(low)}, {show(high)}]" if low is not None and high is not None
               else f"> {show(low)}" if low_open else f">= {show(low)}" if low is not None
               else f"<= {show(high)}" if high is not None else "a number")
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text.strip()) if text.strip().isascii() else kind("not a number")
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if ((low is not None and (value < low or (low_open and value == low)))
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"{text} must be {allowed}")
        return value
    parse.__name__ = noun  # argparse names the type in its messages
    return parse


def number_list(kind: type, low: float, high: float | None = None):
    """An argparse type: comma-separated numbers, each checked as `number` checks one, in the
    order given, repeats dropped."""
    parse_one = number(kind, low, high)

    def parse(text: str) -> list:
        values = [parse_one(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("is empty; give at least one value, e.g. 0,1,2")
        return sorted(set(values), key=values.index)
    parse.__name__ = f"comma-separated {parse_one.__name__}s"
    return parse


def snapshot_epochs(text: str) -> tuple[float, ...]:
    """--snapshots: distinct points of training in epochs, each > 0, at most 64 of them."""
    try:
        points = sorted({float(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epochs") from None
    if not points or len(points) > 64 or not all(0 < p < 1e6 for p in points):
        raise argparse.ArgumentTypeError("give 1 to 64 points of training, each above 0 epochs")
    return tuple(points)


def output_folder(text: str) -> Path:
    """argparse type for --out: a non-empty path (an empty one would silently mean '.')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder such as outputs/task1")
    return Path(text)


def add_data_arguments(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    """Where CIFAR-10 is, which part of it, the seed and how chatty: the same in every script."""
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 location: image folders (train/<class>/*, test/<class>/*) "
                             "or cifar-10-batches-py; default $CIFAR10_DIR, else ./data in the "
                             "current folder (downloaded there when empty)")
    parser.add_argument("--subset", type=number(float, 0, 1, low_open=True), default=1.0,
                        help="use this stratified fraction of CIFAR-10's train and test sets, "
                             "in (0, 1]")
    if seed:
        parser.add_argument("--seed", type=number(int, 0, MAX_SEED), default=0,
                            help="seed of initialisation, shuffling and --subset")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (warnings and results are still printed)")


def add_threads_argument(parser: argparse.ArgumentParser, default: int = 1) -> None:
    """--threads: CPU threads (one by default: the tutorial's runs are fastest and repeatable
    on one; deeper networks read faster on every core)."""
    from study.core.settings import usable_cores

    cores = usable_cores()
    parser.add_argument("--threads", type=number(int, 1, cores), default=min(default, cores),
                        help=f"CPU threads, 1 to the {cores} cores this process may use (deeper "
                             "networks than the tutorial's also use oneDNN)")


def add_output_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """Where results go and which device computes them."""
    parser.add_argument("--out", type=output_folder, default=Path(out),
                        help="output folder, relative to the current folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when a GPU is present, else CPU")


# --- device ---

def select_device(name: str, threads: int = 1, onednn: bool = False) -> torch.device:
    """The device; on the CPU also its settings: `threads` threads, oneDNN on or off."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        # Measured on a 2-core machine (benchmarks/bench_task1.py): at batch 4 every step is
        # overhead, and one thread with PyTorch's native convolutions beats oneDNN and more threads.
        # One thread also makes CPU runs bit-for-bit repeatable.
        # The fast recipe's batch-256 steps of 3x3 convolutions are 2-3 times faster with oneDNN
        # and channels-last (study/training/recipes.py); a fixed thread count keeps them repeatable too.
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn
    return torch.device(name)


def fast_layout(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`net` in channels-last memory layout where select_device turned oneDNN on (the CPU, for
    deeper networks than the tutorial's), else `net` as it is. oneDNN's convolutions then read
    every map without reordering it: Task 3's encodes and single-unit decodes of deep4 ran 1.6 to
    1.8 times faster (docs/depth.md). The same arithmetic up to float rounding; the maps it returns
    are channels-last, which indexing, reshapes and views across the batch read as before."""
    if device.type == "cpu" and torch.backends.mkldnn.enabled:
        return net.to(memory_format=torch.channels_last)
    return net


def cpu_model() -> str:
    """The CPU type as /proc/cpuinfo names it, with its family and model numbers ('AMD EPYC,
    family 25 model 17'): the same seed gives the same numbers on one CPU type, and the last
    digits may differ on another. The platform's processor name where there is no cpuinfo."""
    try:
        fields = dict(line.split(":", 1) for line in
                      Path("/proc/cpuinfo").read_text().splitlines()[:30] if ":" in line)
    except OSError:
        return platform.processor() or "unknown"
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name", platform.processor() or "unknown")
    if "cpu family" in fields and "model" in fields:
        name += f", family {fields['cpu family']} model {fields['model']}"
    return name


def environment_info(device: torch.device) -> dict:
    import numpy
    import torchvision

    info = {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
