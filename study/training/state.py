"""A run's training state, saved after every epoch and read back by --resume, with every
saved value checked before it is used (settings, epoch, history, generators, optimiser states).
"""
import math
from pathlib import Path

import torch
import torch.nn as nn

from study.core.common import UsageError, printable
from study.core.files import save_torch
from study.core.readers import describe, load_torch_file, require, require_items
from study.training.checkpoints import check_state_dict, load_weights


def epoch_on_disk(path: Path | None) -> int:
    """The epoch a saved training state holds (0 if there is none or it cannot be read)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # absent, partial or foreign: nothing to resume from
        return 0


def save_training_state(path: Path, settings: dict, epoch: int, model: nn.Module,
                        optimizers: list[torch.optim.Optimizer], generator: torch.Generator,
                        history: dict) -> None:
    """Everything needed to continue after `epoch` as if the run had never stopped."""
    save_torch({"settings": settings, "epoch": epoch, "model_state": model.state_dict(),
                "optimizer_states": [opt.state_dict() for opt in optimizers],
                "shuffle_rng": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "history": history}, path)


def require_training_state(path: Path | None) -> None:
    """--resume needs a saved state: say so before anything is written."""
    if path is None or not Path(path).is_file():
        raise UsageError(f"--resume: {path} does not exist; run once without --resume "
                         "(the state is written after every epoch)")


def check_training_state(path: Path | None, settings: dict, epochs: int,
                         optimizers: int | list[torch.optim.Optimizer],
                         model: nn.Module | None = None,
                         part_names: tuple[str, ...] | None = None) -> dict:
    """The state saved by save_training_state, if this run can continue it; else a UsageError.

    Everything is checked before use: text keys, settings of plain values, an epoch >= 0 that
    the history agrees with, a history of the right shape (with `part_names`, the logged loss
    parts), and (with `model` and a list of `optimizers`) dense finite floating-point tensors
    of the model's shapes, in the weights and in the optimiser states, whose hyperparameters
    must be this run's. So a crafted state is one line, never a traceback or a wrong history.
    """
    require_training_state(path)
    state = load_torch_file(path, "--resume state")
    keys = {"settings", "epoch", "model_state", "optimizer_states", "shuffle_rng", "torch_rng",
            "history"}
    if (not isinstance(state, dict) or not keys <= set(state)
            or not isinstance(state["settings"], dict) or not isinstance(state["epoch"], int)
            or not isinstance(state["optimizer_states"], list)):
        missing = ", ".join(sorted(keys - set(state))) if isinstance(state, dict) else "all"
        raise UsageError(f"--resume: {path} is not a complete training state of this repo "
                         f"(missing or damaged: {missing or 'values'}); delete it or pass a new --out")
    what, fix = f"--resume: {path}", "delete it or pass a new --out"
    saved = state["settings"]
    for key, value in saved.items():
        require(key, str, what=f"{what}: a settings key", fix=fix)
        require(value, (str, int, float, bool, type(None)), what=f"{what}: settings {key}", fix=fix)
    differing = sorted(k for k in set(settings) | set(saved)
                       if saved.get(k) != settings.get(k)
                       or type(saved.get(k)) is not type(settings.get(k)))
    if differing:
        raise UsageError(f"--resume: {path} was trained with other settings "
                         f"({', '.join(map(printable, differing))}); use the same flags or a new --out")
    count = optimizers if isinstance(optimizers, int) else len(optimizers)
    if len(state["optimizer_states"]) != count:
        raise UsageError(f"--resume: {path} holds {len(state['optimizer_states'])} optimiser "
                         f"states, this run has {count}; use the same flags or a new --out")
    epoch = require(state["epoch"], int, 0, None, f"{what}: epoch", fix)
    if epoch > epochs:
        raise UsageError(f"--resume: {path} has already trained {epoch} epochs, more "
                         f"than --epochs {epochs}; pass --epochs {epoch} or more")
    _check_history(state["history"], epoch, part_names, what, fix)
    shapes = {k: v.shape for k, v in model.state_dict().items()} if model is not None else None
    check_state_dict(state["model_state"], path, "--resume state", shapes)
    for name in ("shuffle_rng", "torch_rng"):
        rng = state[name]
        if (not isinstance(rng, torch.Tensor) or rng.layout != torch.strided or rng.is_meta
                or rng.device.type != "cpu" or rng.dtype != torch.uint8 or rng.dim() != 1):
            raise UsageError(f"{what}: {name} is not a random generator state; {fix}")
    if not isinstance(optimizers, int):
        for i, (saved_opt, optimizer) in enumerate(zip(state["optimizer_states"], optimizers)):
            _check_optimizer_state(saved_opt, optimizer, f"{what}: optimizer_states[{i}]", fix,
                                   scheduled=settings.get("recipe") == "fast")
    return state


def _check_history(history: object, epoch: int, part_names: tuple[str, ...] | None, what: str,
                   fix: str) -> None:
    """A history as fit keeps it: one epoch_loss entry per epoch done, logs of those epochs."""
    what = f"{what}: history"
    require(history, dict, what=what, fix=fix)
    for key in ("loss_log", "epoch_loss", "train_seconds"):
        if key not in history:
            raise UsageError(f"{what} lacks {key!r}; {fix}")
    require(history["train_seconds"], float, 0, None, f"{what}: train_seconds", fix)
    epoch_loss = require(history["epoch_loss"], list, epoch, epoch, f"{what}: epoch_loss "
                         f"(one entry per epoch, {epoch} here)", fix)
    rows = [(f"epoch_loss[{i}]", row, ("epoch",)) for i, row in enumerate(epoch_loss)]
    rows += [(f"loss_log[{i}]", row, ("epoch", "step"))
             for i, row in enumerate(require(history["loss_log"], list, what=f"{what}: loss_log",
                                             fix=fix))]
    for name, row, counters in rows:
        require(row, dict, what=f"{what}: {name}", fix=fix)
        for key, value in row.items():
            require(key, str, what=f"{what}: a key of {name}", fix=fix)
            require(value, int if key in counters else float, 0 if key in counters else None,
                    None, f"{what}: {name}: {key}", fix)
        if not all(key in row for key in counters):
            raise UsageError(f"{what}: {name} lacks {' or '.join(counters)}; {fix}")
        if part_names is not None and set(row) != {*counters, *part_names}:
            raise UsageError(f"{what}: {name} logs {', '.join(map(printable, row))}, this run "
                             f"logs {', '.join(counters + tuple(part_names))}; use the same "
                             "script and flags or a new --out")
        if not 1 <= row["epoch"] <= epoch:
            raise UsageError(f"{what}: {name} is of epoch {row['epoch']}, outside the "
                             f"{epoch} epochs done; {fix}")
    if [row["epoch"] for row in epoch_loss] != list(range(1, epoch + 1)):
        raise UsageError(f"{what}: epoch_loss does not hold epochs 1 to {epoch} in order; {fix}")


# Hyperparameters of a param group compared with this run's; how it computes (foreach, fused,
# capturable, differentiable) may differ between machines and is this run's choice.
_HOW_NOT_WHAT = {"params", "foreach", "fused", "capturable", "differentiable"}


def _same(saved: object, live: object) -> bool:
    if isinstance(live, (tuple, list)):
        return (type(saved) is type(live) and len(saved) == len(live)
                and all(_same(a, b) for a, b in zip(saved, live)))
    return type(saved) is type(live) and isinstance(saved, (int, float, bool, str, type(None))) \
        and saved == live


def _check_optimizer_state(saved: object, optimizer: torch.optim.Optimizer, what: str,
                           fix: str, scheduled: bool = False) -> None:
    """An optimizer.state_dict() that fits `optimizer`: its groups, hyperparameters and
    per-parameter tensors (dense, finite floats of the parameter's shape; a step a scalar).
    `scheduled`: the run sets lr before every step (--recipe fast), so the saved lr is where
    the schedule stood, not a flag; it must still be a finite positive number."""
    require(saved, dict, what=what, fix=fix)
    if set(saved) != {"state", "param_groups"}:
        raise UsageError(f"{what} is not an optimiser state (keys state and param_groups); {fix}")
    groups = require(saved["param_groups"], list, len(optimizer.param_groups),
                     len(optimizer.param_groups), f"{what}: param_groups", fix)
    shapes = {}
    for g, (group, live) in enumerate(zip(groups, optimizer.param_groups)):
        require(group, dict, what=f"{what}: param_groups[{g}]", fix=fix)
        ids = require_items(require(group.get("params"), list, len(live["params"]),
                                    len(live["params"]), f"{what}: param_groups[{g}]: params", fix),
                            int, 0, None, f"{what}: param_groups[{g}]: params", fix)
        shapes.update(zip(ids, (p.shape for p in live["params"])))
        for key, value in live.items():
            if key == "params":
                continue
            if key in _HOW_NOT_WHAT:
                if not isinstance(group.get(key), (bool, type(None))):
                    raise UsageError(f"{what}: param_groups[{g}]: {key} is "
                                     f"{describe(group.get(key))}, not true, false or None; {fix}")
            elif scheduled and key == "lr":
                found = group.get(key)
                if not (type(found) is float and math.isfinite(found) and found > 0):
                    raise UsageError(f"{what}: param_groups[{g}]: lr is {describe(found)}, not "
                                     f"a positive number; {fix}")
            elif not _same(group.get(key), value):
                raise UsageError(f"{what} was made with another {printable(key)} "
                                 f"({describe(group.get(key))}, this run {value!r}); use the "
                                 "same flags or a new --out")
    if len(shapes) != sum(len(g["params"]) for g in optimizer.param_groups):
        raise UsageError(f"{what} names a parameter twice; {fix}")
    require(saved["state"], dict, what=f"{what}: state", fix=fix)
    for pid, entry in saved["state"].items():
        if not isinstance(pid, int) or isinstance(pid, bool) or pid not in shapes:
            raise UsageError(f"{what}: state has an entry for no parameter "
                             f"({describe(pid)}); {fix}")
        require(entry, dict, what=f"{what}: state[{pid}]", fix=fix)
        for key, value in entry.items():
            name = f"{what}: state[{pid}]: {printable(key)}"
            if value is None:
                continue
            if (not isinstance(value, torch.Tensor) or value.layout != torch.strided
                    or value.is_meta or not value.is_floating_point()):
                raise UsageError(f"{name} is not a dense floating-point tensor; {fix}")
            expected = torch.Size([]) if key == "step" else shapes[pid]
            if value.shape != expected and not (key == "step" and value.numel() == 1):
                raise UsageError(f"{name} has shape {tuple(value.shape)}, the parameter "
                                 f"needs {tuple(expected)}; {fix}")
            if not bool(value.isfinite().all()) or (key == "step" and float(value) < 0):
                raise UsageError(f"{name} holds NaN, inf or a negative step: the run that "
                                 f"wrote it diverged or the file is damaged; {fix}")


def resume_training_state(path: Path | None, settings: dict, epochs: int, model: nn.Module,
                          optimizers: list[torch.optim.Optimizer],
                          generator: torch.Generator,
                          part_names: tuple[str, ...] | None = None) -> tuple[int, dict]:
    """Restore a state saved by save_training_state; return (epochs done, history)."""
    state = check_training_state(path, settings, epochs, optimizers, model, part_names)
    load_weights(model, state["model_state"], path, "--resume state")
    try:
        for optimizer, saved in zip(optimizers, state["optimizer_states"]):
            how = [{k: v for k, v in group.items() if k in _HOW_NOT_WHAT}
                   for group in optimizer.param_groups]
            optimizer.load_state_dict(saved)
            for group, keep in zip(optimizer.param_groups, how):
                group.update(keep)  # how to compute stays this run's (e.g. capturable on a GPU)
        generator.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise UsageError(f"--resume: {path} holds a damaged optimiser or random state "
                         f"({type(error).__name__}); delete it or pass a new --out") from None
    return state["epoch"], state["history"]
