"""Checkpoints: plain state dicts (what the tutorial saves and reloads), told apart by their keys,
checked value by value before any use, and built into the network their run recorded.
"""
from pathlib import Path

import torch
import torch.nn as nn

from models import ARCHITECTURE, ARCHITECTURES, Architecture, DeconvNet, TutorialNet
from study.core.common import UsageError, printable
from study.core.layout import METRICS
from study.core.readers import load_torch_file, read_json


def architecture_beside(checkpoint: Path) -> Architecture:
    """The architecture recorded in the metrics.json written beside a checkpoint (every training
    run records it), or the tutorial's when there is none (the tutorial's own checkpoints)."""
    if not Path(checkpoint).name or Path(checkpoint).is_dir():
        return ARCHITECTURE  # no checkpoint file: its loader says so
    metrics = Path(checkpoint).with_name(METRICS)
    if not metrics.is_file():
        return ARCHITECTURE
    described = read_json(metrics, "metrics file", "rerun the script that wrote it").get("architecture")
    if described is None:
        return ARCHITECTURE
    try:
        return Architecture.from_description(described)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise UsageError(f"{metrics} records an architecture this repository cannot build "
                         f"({printable(error)}); rerun the script that wrote it") from None


def architecture_of(state: dict, arch: Architecture = ARCHITECTURE) -> str | None:
    """'DeconvNet' or 'TutorialNet' (built as `arch`) by the keys of a state dict; None for
    anything else."""
    keys = {k for k in state if isinstance(k, str)}
    classifier = set(TutorialNet(arch).state_dict())
    if classifier <= keys and any(k.startswith("deconv") for k in keys):
        return "DeconvNet"
    if classifier <= keys:
        return "TutorialNet"
    return None


def check_state_dict(state: object, path: Path, what: str,
                     shapes: dict[str, torch.Size] | None = None) -> dict:
    """`state` if it is a state dict of weights this repo can use; else one UsageError.

    Required: a non-empty dict with text keys; every value a dense (not sparse, not meta)
    tensor of a real floating-point dtype (float16/32/64, bfloat16; not integer, bool or
    complex) holding finite numbers; with `shapes`, each key found there has that shape.
    Checked before any use, so a crafted file fails here and not after a whole run.
    """
    fix = "pass cifar_net.pth or deconv_net.pth as this repo writes them"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{what} {path} is not a model state dict (as saved by "
                         "torch.save(net.state_dict(), PATH)); pass cifar_net.pth or deconv_net.pth")
    if not state:
        raise UsageError(f"{what} {path} is an empty state dict (no weights at all); {fix}")
    keys = [k for k in state if not isinstance(k, str)]
    if keys:
        key = keys[0]
        raise UsageError(f"{what} {path} has a key that is not a parameter name "
                         f"({type(key).__name__} {printable(repr(key)[:40])}); {fix}")
    for name, tensor in state.items():
        shown = printable(name)
        if tensor.layout != torch.strided or tensor.is_meta or tensor.device.type != "cpu":
            kind = "meta" if tensor.is_meta else str(tensor.layout).replace("torch.", "")
            raise UsageError(f"{what} {path}: {shown} is a {kind} tensor, not a dense one "
                             f"of numbers; {fix}")
        if not tensor.is_floating_point() or tensor.dtype in (torch.float8_e4m3fn,
                                                              torch.float8_e5m2):
            raise UsageError(f"{what} {path}: {shown} holds {str(tensor.dtype).replace('torch.', '')} "
                             f"values, not float32 weights; {fix}")
        if shapes is not None and name in shapes and tensor.shape != shapes[name]:
            raise UsageError(f"{what} {path} does not fit this architecture: {shown} has "
                             f"shape {tuple(tensor.shape)}, it needs {tuple(shapes[name])}; {fix}")
        if not bool(tensor.isfinite().all()):
            raise UsageError(f"{what} {path} holds non-finite weights ({shown} has NaN or inf): "
                             "the run that wrote it diverged; retrain it")
    return state


def read_state_dict(path: Path, what: str, data: bytes | None = None,
                    arch: Architecture = ARCHITECTURE) -> tuple[str, dict]:
    """(architecture, state dict) of a checkpoint file (or of its bytes `data`, read once by the
    caller), or one UsageError saying what is wrong."""
    state = check_state_dict(load_torch_file(path, what, data), path, what)
    architecture = architecture_of(state, arch)
    if architecture is None:
        shown = ", ".join(printable(k) for k in list(state)[:3])
        for other in ARCHITECTURES.values():  # a network of this repository, of another shape
            if other != arch and architecture_of(state, other) is not None:
                raise UsageError(f"{what} {path} is a {architecture_of(state, other)} of another "
                                 f"architecture ({len(other.channels)} stages, channels "
                                 f"{', '.join(map(str, other.channels))}) than this run's "
                                 f"({', '.join(map(str, arch.channels))}); pass a checkpoint "
                                 "of the same --arch")
        raise UsageError(f"{what} {path} holds neither the tutorial net nor the DeconvNet "
                         f"(keys {shown}{', ...' if len(state) > 3 else ''}); pass "
                         "cifar_net.pth or deconv_net.pth")
    model = DeconvNet(arch) if architecture == "DeconvNet" else TutorialNet(arch)
    check_state_dict(state, path, what, {k: v.shape for k, v in model.state_dict().items()})
    return architecture, state


def load_weights(model: nn.Module, state: dict, path: Path, what: str, strict: bool = True) -> None:
    """load_state_dict with one line for a checkpoint of another shape."""
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()),
                      str(error).strip())
        raise UsageError(f"{what} {path} does not fit this architecture: {detail}") from None


def load_model(path: Path, architecture: str, what: str, data: bytes | None = None,
               arch: Architecture | None = None) -> nn.Module:
    """A model of `architecture` with the weights of `path` (a state dict of that architecture);
    from `data` when the caller has read the file's bytes already. The network is built as
    `arch`, by default as the metrics.json beside the checkpoint records it."""
    arch = arch or architecture_beside(path)
    found, state = read_state_dict(path, what, data, arch)
    if found != architecture:
        raise UsageError(f"{what} {path} holds a {found}, not a {architecture}")
    model = DeconvNet(arch) if architecture == "DeconvNet" else TutorialNet(arch)
    load_weights(model, state, path, what)
    return model
