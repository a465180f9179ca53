"""The models where nothing was learned, that Task 3's findings are weighed against: the trained
network with its convolutions re-initialised from the top down (cascading randomisation, Adebayo
et al. 2018), random rotations of its channels (Bau et al. 2017), and fresh decoders refitted on
any frozen encoder by one fixed protocol.
"""
import copy
import math
import time
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from data import normalize
from models import ARCHITECTURE, Architecture, DeconvNet
from study.core.ids import ModelId

SEEDS_PER_CASCADE = 3
FIRST_SEED = 1001  # baseline seeds count up from here, skipping the training seed
# The reduced refit (Task 3's own refit is 2 epochs of 50k images, ~22 s per decoder): the same
# optimiser, learning rate, one-cycle schedule, batch and loss, for a fixed number of steps on
# the same images in the same order for every model.
REFIT = {"steps": 400, "batch_size": 32, "lr": 3e-3, "seed": 0}  # steps: at most 2 passes


def cascades(arch: Architecture) -> dict[str, tuple[str, ...]]:
    """Cascading randomisation (Adebayo et al.) from the top convolution down: group id -> the
    convolutions re-initialised, in order. The tutorial's net: {"conv2": ("conv2",),
    "conv1_conv2": ("conv2", "conv1")}."""
    depth = arch.depth
    return {str(ModelId.cascade(first, depth)): tuple(f"conv{k}" for k in range(depth, first - 1, -1))
            for first in range(depth, 0, -1)}


def baseline_seeds(training_seed: int, count: int = SEEDS_PER_CASCADE,
                   first: int = FIRST_SEED) -> list[int]:
    """`count` initialisation seeds from `first` upwards, never the training seed."""
    return [s for s in range(first, first + count + 1) if s != training_seed][:count]


def reinitialised(net: DeconvNet, cascade: str, seed: int, training_seed: int) -> DeconvNet:
    """A deep copy of `net` with the layers of cascades(net.arch)[cascade] re-initialised (PyTorch's default
    init, reset_parameters, on the CPU so the seed means the same on any device). `net` and the
    global random state are untouched; a seed equal to the training seed is refused."""
    if seed == training_seed:
        raise ValueError(f"seed {seed} is the training seed; a baseline needs another")
    device = next(net.parameters()).device
    model = copy.deepcopy(net).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in cascades(net.arch)[cascade]:
            getattr(model, name).reset_parameters()
    return model.to(device).eval().requires_grad_(False)


def random_rotation(channels: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthonormal (channels x channels) matrix: QR of a Gaussian, sign-fixed."""
    q, r = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def rotate(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """z (N, C, H, W) read along the columns of q: new channel j = sum_c q[c, j] z[:, c]."""
    return torch.einsum("cj,nchw->njhw", q.to(z), z)


def refit_decoders(model: DeconvNet, train_images: torch.Tensor, layers: Iterable[int] | None = None,
                   protocol: dict = REFIT) -> tuple[dict[int, DeconvNet], float]:
    """Fresh learned decoders fitted on `model`'s frozen encoder: {layer: copy of model}, seconds.

    Layer k (every layer by default): new deconv1 .. deconv k fitted through decode(latents, k)
    (layer 1 as fit_layer1_decoder does). Adam, one-cycle to protocol["lr"], MSE,
    protocol["steps"] batches of protocol["batch_size"] training images; the initial weights and
    the batches depend on protocol["seed"] only, so every model gets the same. One encoder pass
    per batch serves both layers.
    """
    started = time.perf_counter()
    stages = model.arch.layers
    layers = [s.index for s in stages] if layers is None else list(layers)
    device = train_images.device
    fitted, optimisers, schedules = {}, {}, {}
    for layer in layers:
        copy_ = copy.deepcopy(model).eval().requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(protocol["seed"] + layer)
            for stage in stages:  # all made, first stage first, so a seed means the same
                setattr(copy_, f"deconv{stage.index}", nn.ConvTranspose2d(
                    stage.channels, stage.in_channels, stage.kernel, padding=stage.padding))
        copy_.to(device)
        trained = [p for stage in stages[:layer]
                   for p in getattr(copy_, f"deconv{stage.index}").parameters()]
        fitted[layer] = copy_
        optimisers[layer] = torch.optim.Adam(trained, lr=protocol["lr"])
        schedules[layer] = torch.optim.lr_scheduler.OneCycleLR(
            optimisers[layer], max_lr=protocol["lr"], total_steps=protocol["steps"])
    generator = torch.Generator().manual_seed(protocol["seed"])
    n, size = len(train_images), protocol["batch_size"]
    order = torch.cat([torch.randperm(n, generator=generator)
                       for _ in range(math.ceil(protocol["steps"] * size / n))]).to(device)
    for step in range(protocol["steps"]):
        x = normalize(train_images[order[step * size:(step + 1) * size]])
        with torch.no_grad():
            latents = model.encode(x)
        for layer, copy_ in fitted.items():
            loss = F.mse_loss(copy_.decode(latents, layer), x)
            optimisers[layer].zero_grad()
            loss.backward()
            optimisers[layer].step()
            schedules[layer].step()
    for copy_ in fitted.values():
        copy_.requires_grad_(False)
    return fitted, time.perf_counter() - started


def changed_layers(cascade: str, arch: Architecture = ARCHITECTURE) -> set[int]:
    """Layers whose latents a cascade changes: the first re-initialised convolution and above."""
    first = ModelId.parse(cascade).stages[0]
    return {s.index for s in arch.layers if s.index >= first}
