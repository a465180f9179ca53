"""Reading files that may be crafted: JSON with limits on size, depth and numbers, values
checked by type and range, and torch files loaded as weights only; each failure one UsageError.
"""
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch

from study.core.common import UsageError, printable
from study.core.layout import INCOMPLETE

# --- JSON: read with limits, then checked value by value ---

JSON_MAX_BYTES = 64 * 2 ** 20  # metrics files are under 1 MB; the sweep's summary too
JSON_MAX_DEPTH = 32  # the deepest file this repo writes (Task 3's metrics) nests 7 levels
JSON_MAX_DIGITS = 20  # a whole number of up to 20 digits (any int64 or uint64)
JSON_MAX_NUMBER_TEXT = 64  # characters of a written real number (1e999 is refused anyway)


class _JSONLimit(ValueError):
    """A number or a nesting that read_json refuses; its text says which."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_DIGITS:
        raise _JSONLimit(f"holds a whole number of {len(text.lstrip('-'))} digits "
                         f"(at most {JSON_MAX_DIGITS} are read)")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text) if len(text) <= JSON_MAX_NUMBER_TEXT else math.inf
    if not math.isfinite(value):
        raise _JSONLimit(f"holds the number {text[:20]}{'...' if len(text) > 20 else ''}, "
                         "which is not a finite double")
    return value


def _json_constant(name: str) -> float:
    raise _JSONLimit(f"holds {name}, which is not a number JSON allows")


def _json_depth(data: Any) -> int:
    """How deeply lists and objects nest in `data` (iterative: no recursion limit)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if depth > JSON_MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest


def read_json(path: Path, what: str, fix: str, max_bytes: int = JSON_MAX_BYTES) -> dict:
    """A JSON object from `path`, or one UsageError naming the file, the problem and `fix`.

    Limits, so that a crafted file costs one line and not a traceback or the memory: at most
    `max_bytes` bytes (checked before reading; a FIFO or folder is refused), nesting at most
    JSON_MAX_DEPTH deep, whole numbers of at most JSON_MAX_DIGITS digits, finite real numbers
    only (no NaN, Infinity or 1e999), valid UTF-8, and an object at the top. What the values
    are is checked by the caller, with `require` and `field`.
    """
    path = Path(path)
    problem = None
    try:
        # non-blocking, so that a FIFO is refused instead of waiting for a writer forever
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{what} {path} is not a regular file; {fix}")
            if info.st_size > max_bytes:
                raise UsageError(f"{what} {path} is {info.st_size:,} bytes, more than the "
                                 f"{max_bytes:,} a file of this repo can be; {fix}")
            os.set_blocking(handle.fileno(), True)
            encoded = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder, not a JSON file; {fix}") from None
    except OSError as error:
        raise UsageError(f"{what} {path} is unreadable ({error.strerror}); {fix}") from None
    if len(encoded) > max_bytes:
        raise UsageError(f"{what} {path} grew past {max_bytes:,} bytes while being read; {fix}")
    try:
        data = json.loads(encoded.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_json_constant)
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except json.JSONDecodeError as error:
        problem = f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
    except _JSONLimit as error:
        problem = str(error)
    except RecursionError:
        problem = f"nests lists or objects more than {JSON_MAX_DEPTH} deep"
    except ValueError as error:  # e.g. Python's own limit on the digits of an int
        problem = f"holds a value that cannot be read ({error})"
    if problem is None and _json_depth(data) > JSON_MAX_DEPTH:
        problem = f"nests lists or objects more than {JSON_MAX_DEPTH} deep"
    if problem is None and not isinstance(data, dict):
        problem = f"holds {_describe(data)}, not a JSON object"
    if problem is not None:
        raise UsageError(f"{what} {path} {problem}; {fix}")
    return data


_NUMBERS = {float: "a number", int: "a whole number", bool: "true or false", str: "a text",
            list: "a list", dict: "an object", type(None): "null"}


def _describe(value: Any) -> str:
    """What a JSON value is, in a few words (texts shortened, control characters escaped)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return f"the text {printable(repr(value[:40]))}{'...' if len(value) > 40 else ''}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return f"an object of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, torch.Tensor):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def describe(value: Any) -> str:
    """A value in a few words for a message: "the text 'abc'", "a list of 3 items", "null",
    "a Tensor of shape (3,)"; never a long or multi-line repr."""
    return _describe(value)


def _kind_matches(value: Any, kind: type) -> bool:
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def require(value: Any, kind: type | tuple[type, ...], low: float | None = None,
            high: float | None = None, what: str = "a value",
            fix: str = "rerun the script that wrote it") -> Any:
    """`value` if it is of `kind` (and within [low, high]); else one UsageError "what is X, not Y; fix".

    kind: float (any finite int or float, never a bool or NaN), int (a whole number, never a
    bool), bool, str, list, dict, type(None), or a tuple of these (any of them). low and high
    (inclusive, each optional) bound a number's value and a str's, list's or dict's length.
    `what` names the value for the user, e.g. "outputs/task1/metrics.json: test_accuracy";
    `fix` says what to do. Examples:

        accuracy = require(metrics.get("test_accuracy"), float, 0, 100, f"{path}: test_accuracy")
        seeds = require(summary["seeds"], list, 1, None, f"{path}: seeds", "rerun sweep.py")

    See `field` (a key of an object) and `require_items` (every element of a list or object).
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    matched = next((k for k in kinds if _kind_matches(value, k)), None)
    if matched is not None:
        size = (value if matched in (float, int) else len(value)
                if matched in (str, list, dict) else None)
        if size is None or ((low is None or size >= low) and (high is None or size <= high)):
            return value
    expected = " or ".join(_NUMBERS.get(k, k.__name__) for k in kinds)
    if low is not None or high is not None:
        counted = all(k in (str, list, dict) for k in kinds)
        show = "{:g}".format
        bounds = (f"in [{show(low)}, {show(high)}]" if low is not None and high is not None
                  else f">= {show(low)}" if low is not None else f"<= {show(high)}")
        expected += f" with a length {bounds}" if counted else f" {bounds}"
    raise UsageError(f"{what} is {_describe(value)}, not {expected}; {fix}")


def field(data: Any, key: str, kind: type | tuple[type, ...], low: float | None = None,
          high: float | None = None, what: str = "the file",
          fix: str = "rerun the script that wrote it") -> Any:
    """data[key], checked by `require` (what: "WHAT: key"); a missing key or a `data` that is
    not an object is one UsageError too. E.g. field(metrics, "test_accuracy", float, 0, 100,
    str(path), "rerun train_classifier.py")."""
    require(data, dict, what=what, fix=fix)
    if key not in data:
        raise UsageError(f"{what} lacks {key!r}; {fix}")
    return require(data[key], kind, low, high, f"{what}: {key}", fix)


def require_items(values: Any, kind: type | tuple[type, ...], low: float | None = None,
                  high: float | None = None, what: str = "a list",
                  fix: str = "rerun the script that wrote it") -> Any:
    """`values` (a list or an object) if every element (or every value) passes
    require(element, kind, low, high); the error names the element: "WHAT[3]" or "WHAT: key"."""
    require(values, (list, dict), what=what, fix=fix)
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for key, value in items:
        require(value, kind, low, high,
                f"{what}: {key}" if isinstance(values, dict) else f"{what}[{key}]", fix)
    return values


def load_torch_file(path: Path, what: str, data: bytes | None = None) -> Any:
    """torch.load with weights_only=True, or one UsageError for a missing or damaged file.

    With `data`, the file's bytes as read once by the caller (who hashed them) are loaded, so
    the weights are those of the hash even if the file is rewritten meanwhile.
    """
    path = Path(path)
    if data is not None:
        import io
        source: Any = io.BytesIO(data)
    elif path.is_dir():
        raise UsageError(f"{what} {path} is a folder; pass the checkpoint file inside it "
                         "(e.g. cifar_net.pth or deconv_net.pth)")
    elif not path.is_file():
        raise UsageError(f"{what} {path} does not exist")
    else:
        source = path
    import pickle
    import warnings
    try:
        with warnings.catch_warnings():  # torch warns in many lines before some refusals
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise UsageError(f"{what} {path} is not a readable PyTorch checkpoint (damaged "
                             "pickle data); it may be truncated, write it again") from None
        raise UsageError(f"{what} {path} holds Python objects other than tensors, numbers and "
                         "containers, which are not loaded (they could run code); pass a "
                         "checkpoint written by this repo") from None
    except RecursionError:
        raise UsageError(f"{what} {path} nests its contents too deeply to be a checkpoint of "
                         "this repo; pass one written by it") from None
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise UsageError(f"{what} {path} is not a readable PyTorch checkpoint "
                         f"({type(error).__name__}); it may be truncated, write it again") from None


def check_metrics(metrics: dict, expected: list, what: str, fix: str) -> None:
    """Every value a reader reads has its type and range, or one UsageError naming it.

    `expected`: (key, kind, (low, high)) per value, kind and bounds as `require` takes them;
    "a.b" is a nested key, "a.*" every value of an object, "rows[].key" every row of a list.
    A reader checks a file once, where it reads it, and then reads it without .get chains."""
    def values(data, parts: list[str], name: str):
        """(name, value) of every value that a key pattern selects."""
        part, rest = parts[0], parts[1:]
        if part == "*":
            selected = require(data, dict, what=f"{what}: {name or 'the file'}", fix=fix).items()
        elif part.endswith("[]"):
            rows = field(data, part[:-2], list, what=what, fix=fix)
            selected = ((f"{part[:-2]}[{i}]", row) for i, row in enumerate(rows))
        else:
            selected = [(part, field(data, part, object, what=what, fix=fix))]
        for key, value in selected:
            full = f"{name}.{key}" if name else key
            if rest:
                require(value, dict, what=f"{what}: {full}", fix=fix)
                yield from values(value, rest, full)
            else:
                yield full, value

    for key, kind, (low, high) in expected:
        for name, value in values(metrics, key.split("."), ""):
            require(value, kind, low, high, f"{what}: {name}", fix)


def require_complete(folder: Path, what: str, fix: str) -> None:
    """Refuse results from a folder whose last run did not finish (see run_folder)."""
    marker = Path(folder) / INCOMPLETE
    if marker.exists() or marker.is_symlink():
        try:
            info = read_json(marker, "marker", "")
            started = (f"{require(info.get('script'), str, 1, 200, 'script')} started "
                       f"{require(info.get('started'), str, 1, 40, 'started')}")
        except UsageError:
            started = "a run"
        raise UsageError(f"{what} {folder} holds an unfinished run ({started}; {INCOMPLETE} "
                         f"is there), so its files may be older than that run; {fix}")
