"""The decoders Task 3 reads, and the checks that each can be read at all.

Task 2's deconv1 never sees the encoder's z1 (only deconv2's output), so layer 1 gets a decoder
of its own, fitted on the real z1 with the encoder frozen and cached next to the checkpoint.
Every decoder is then measured on the full latents of the test set (PSNR, r) and against
controls that feed it latents or switches that do not belong to the image.
"""
import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from data import batches, denormalize, normalize, warn
from models import Architecture, DeconvNet
from study.core.common import UsageError
from study.core.files import save_torch
from study.core.ids import DecoderId
from study.core.readers import load_torch_file
from study.training.loop import psnr_db

CONTROLS = {"own": "own latent and switches",
            "empty_latent": "empty latent, own switches",
            "other_latent": "other image's latent, own switches",
            "other_switches": "own latent, other image's switches"}


# --- which decoder reads which layer ---

def decoders_of(net: DeconvNet, refit: DeconvNet) -> dict[DecoderId, tuple[DeconvNet, int, bool]]:
    """Every decoder Task 3 measures: (model, layer, tied). Layer 1 has Task 2's
    literal decoder, the one refitted on the real z1 and the tied deconvnet; the last layer the
    decoder Task 2 trained on it and the tied one; a layer between them its literal Task 2
    decoder (trained only on the outputs of the layer above) and the tied one."""
    decoders, depth = {}, net.arch.depth
    for stage in net.arch.layers:
        decoders[DecoderId.own(stage.index, depth)] = (net, stage.index, False)
        if stage.index == 1 and depth > 1:
            decoders[DecoderId(1, "refit")] = (refit, 1, False)
        decoders[DecoderId(stage.index, "tied")] = (net, stage.index, True)
    return decoders


def picture_decoder(arch: Architecture, layer: int) -> str:
    """The decoder each layer's pictures use (DecoderId.picture), as metrics.json keys it."""
    return str(DecoderId.picture(layer, arch.depth))


# --- a layer-1 decoder that is valid on the real z1 ---

def fit_layer1_decoder(refit: DeconvNet, images: torch.Tensor, epochs: int, seed: int,
                       quiet: bool) -> float:
    """Give `refit` a fresh deconv1 (the transpose of conv1's shape) fitted to invert its real z1.

    Task 2's deconv1 only ever sees deconv2's output, never the encoder's z1, so it is not a
    decoder of z1. The encoder stays frozen; the layer is trained through DeconvNet.decode (unpool
    with the switches, ReLU, transposed conv) with Adam, batch 32 and the mean squared error
    (eq. (1)'s L_rec / 1024). Returns the seconds taken.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    first = refit.arch.layer(1)
    refit.deconv1 = nn.ConvTranspose2d(first.channels, first.in_channels, first.kernel,
                                       padding=first.padding).to(images.device)
    optimizer = torch.optim.Adam(refit.deconv1.parameters(), lr=3e-3)
    steps = epochs * math.ceil(len(images) / 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    refit.eval()
    progress = tqdm(total=steps, desc="fitting the z1 decoder", unit="batch", leave=False,
                    disable=quiet or None, file=sys.stderr)
    for _ in range(epochs):
        for images_u8, _ in batches(images, torch.zeros(len(images), device=images.device), 32,
                                    generator):
            x = normalize(images_u8)
            with torch.no_grad():
                latents = refit.encode(x, through=1)  # z1 and its switches: all decode(., 1) reads
            loss = F.mse_loss(refit.decode(latents, 1), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            progress.update()
    progress.close()
    refit.requires_grad_(False)
    return time.perf_counter() - started


def layer1_refit(net: DeconvNet, checkpoint: Path, checkpoint_sha256: str, images: torch.Tensor,
                 data_sha256: str, epochs: int, seed: int, quiet: bool) -> tuple[DeconvNet, dict]:
    """The Task 2 model with deconv1 refitted on real z1, cached next to the checkpoint.

    The cache is keyed by the checkpoint's hash (of the bytes the weights were loaded from), the
    data's hash, the epochs and the seed; a damaged cache is fitted again.
    """
    cache = checkpoint.with_name("layer1_decoder.pth")
    key = {"checkpoint_sha256": checkpoint_sha256, "data_sha256": data_sha256, "epochs": epochs,
           "seed": seed}
    refit = copy.deepcopy(net)
    try:
        cached = load_torch_file(cache, "layer-1 decoder cache") if cache.is_file() else None
    except UsageError:
        cached = None  # damaged: fitted again
    if isinstance(cached, dict) and cached.get("key") == key:
        restored = _restore(refit, cached)
        if restored is not None:
            return refit, {**key, "cache": str(cache), "fitted_now": False,
                           "fit_seconds": restored}
        refit = copy.deepcopy(net)  # a damaged cache whose key matches: fitted again, below
    seconds = round(fit_layer1_decoder(refit, images, epochs, seed, quiet), 2)
    try:
        save_torch({"key": key, "state": refit.deconv1.state_dict(), "fit_seconds": seconds},
                   cache)
    except UsageError as error:  # a read-only checkpoint folder costs a refit next time
        warn(f"could not cache the layer-1 decoder ({error})")
    return refit, {**key, "cache": str(cache), "fitted_now": True, "fit_seconds": seconds}


def _restore(refit: DeconvNet, cached: dict) -> float | None:
    """Load a cached layer-1 decoder into `refit`: its fit seconds, or None when the cache's
    content is damaged (no state, a state of another shape, weights that are not finite, no
    time), so that the caller fits it again as the docstring above promises."""
    state, seconds = cached.get("state"), cached.get("fit_seconds")
    if not isinstance(state, dict) or not isinstance(seconds, (int, float)) or isinstance(
            seconds, bool) or not 0 <= seconds < float("inf"):
        return None
    try:
        refit.deconv1.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError):
        return None
    if not all(torch.isfinite(v).all() for v in refit.deconv1.state_dict().values()):
        return None
    return float(seconds)


# --- decoder checks and controls over the test set ---

def _agreement(x_hat: torch.Tensor, x01: torch.Tensor) -> tuple[float, float]:
    """(squared error sum of the [0,1]-clipped image, Pearson r over all pixel values)."""
    y = denormalize(x_hat)
    return (y - x01).pow(2).sum().item(), torch.corrcoef(torch.stack([y.flatten(), x01.flatten()]))[0, 1].item()


@torch.no_grad()
def decoder_checks(decoders: dict, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """Full-latent reconstruction quality of each decoder on the test set: {key: {"layer",
    "psnr_db", "correlation"}} for `decoders` {key: (model, layer, tied)}, keyed as given."""
    squared, correlations = {name: 0.0 for name in decoders}, {name: [] for name in decoders}
    for images_u8 in images.split(batch_size):
        x = normalize(images_u8)
        encoded = {}  # each model encodes a batch once, however many of its decoders read it
        for name, (model, layer, tied) in decoders.items():
            if id(model) not in encoded:
                encoded[id(model)] = model.encode(x)
            error, r = _agreement(model.decode(encoded[id(model)], layer, tied=tied), images_u8 / 255)
            squared[name] += error
            correlations[name].append(r * len(x))
    return {name: {"layer": layer, "psnr_db": round(psnr_db(squared[name] / images.numel()), 2),
                   "correlation": round(sum(correlations[name]) / len(images), 3)}
            for name, (_, layer, _) in decoders.items()}


@torch.no_grad()
def controls(model: DeconvNet, layer: int, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """What the decoder makes of latents that do not belong to the image, on the test set.

    own: the image's latent and switches. empty_latent: all channels zero, own switches.
    other_latent: the next test image's latent with own switches. other_switches: own latent
    with the next image's switches. If 'empty_latent' or 'other_latent' scores near 'own', the
    picture comes from the switches, not from the channels.
    """
    sums = {case: [0.0, 0.0] for case in CONTROLS}
    for images_u8 in images.split(batch_size):
        x = normalize(images_u8)
        own = model.encode(x)
        other = own.apply(lambda t: t.roll(1, 0))
        variants = {"own": own,
                    "empty_latent": own.with_map(layer, torch.zeros_like(own.at(layer))),
                    "other_latent": own.with_map(layer, other.at(layer)),
                    "other_switches": other.with_map(layer, own.at(layer))}
        for case, latents in variants.items():
            error, r = _agreement(model.decode(latents, layer), images_u8 / 255)
            sums[case][0] += error
            sums[case][1] += r * len(x)
    return {case: {"label": CONTROLS[case], "psnr_db": round(psnr_db(error / images.numel()), 2),
                   "correlation": round(r / len(images), 3)} for case, (error, r) in sums.items()}
