"""Single channels and units projected back to pixels through a decoder (no drawing here).

Zeiler & Fergus's pictures: per channel the top-9 test images with the projection of each one's
strongest unit (`top9`), one image decoded from one channel at a time (`single_channels`), and
how alike a channel's unit projections are against the patches under them
(`projection_diversity`, the sign that a picture is the decoder's rather than the images').
Patches and crops follow study/analysis/evidence.py's receptive fields.
"""
from typing import NamedTuple

import torch

from data import DISPLAY_NAMES, normalize
from models import DeconvNet, Latents
from study.analysis.evidence import crop, receptive_box, strongest_units

# --- the top-9 projections of each channel ---

class Top9(NamedTuple):
    rows: list[dict]  # per channel, JSON-ready: test indices, boxes, classes, peak, similarity
    patches: list[list[torch.Tensor]]  # per channel, k patches (3, s, s) in [0, 1]
    projections: list[list[torch.Tensor]]  # per channel, k cropped contributions (3, s, s)


@torch.no_grad()
def top9(model: DeconvNet, z: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
         layer: int, k: int = 9) -> Top9:
    """Per channel, the k test images with its strongest activation, as Zeiler & Fergus show them.

    For each: the image patch under the receptive field of that activation, and the projection
    of that single activation (all else zeroed) minus the empty-latent image, cropped to the
    same field. `projection_similarity` is the mean pairwise r of the k projections (near 1 = one
    fixed pattern whatever the image).
    """
    count, width = z.shape[1], z.shape[-1]
    peaks, positions = strongest_units(z)  # (N, C)
    winners = peaks.topk(k, dim=0).indices.T  # (C, k)
    all_patches, all_projections, rows = [], [], []
    for c in range(count):
        chosen = winners[c].to(images.device)
        latents = model.encode(normalize(images[chosen]))
        field = latents.at(layer)
        where = positions[winners[c], c].to(images.device)
        single = torch.zeros_like(field)
        rows_k = torch.arange(k, device=field.device)
        single.view(k, count, -1)[rows_k, c, where] = field.view(k, count, -1)[rows_k, c, where]
        projection = (model.decode(latents.with_map(layer, single), layer)
                      - model.decode(latents.with_map(layer, torch.zeros_like(field)), layer))
        boxes = [receptive_box(layer, int(p), width, model.arch) for p in where.tolist()]
        patches = [crop(images[chosen[i]], box).cpu() / 255 for i, box in enumerate(boxes)]
        projections = [crop(projection[i], box).cpu() for i, box in enumerate(boxes)]
        all_patches.append(patches)
        all_projections.append(projections)
        flat = torch.stack([p.flatten() for p in projections])
        similarity = torch.corrcoef(flat)[~torch.eye(k, dtype=torch.bool)].nan_to_num().mean()
        rows.append({"channel": c, "test_indices": winners[c].tolist(),
                     "boxes": [list(box) for box in boxes],
                     "classes": [DISPLAY_NAMES[i] for i in labels[winners[c]].tolist()],
                     "peak_activation": round(peaks[winners[c][0], c].item(), 4),
                     "projection_similarity": round(similarity.item(), 3)})
    return Top9(rows, all_patches, all_projections)


# --- one image, one channel at a time ---

class SingleChannels(NamedTuple):
    """What Task 3 draws for one image and layer: tensors for the figure, rows for metrics."""

    z: torch.Tensor  # (C, H, W) the image's pooled map
    channels: list[int]  # the channels shown
    contributions: torch.Tensor  # (len(channels), 3, 32, 32) decode(only c) - decode(empty)
    tied: torch.Tensor  # (len(channels), 3, 32, 32) tied deconvnet projections
    full: torch.Tensor  # (3, 32, 32) decode of the full latent
    empty: torch.Tensor  # (3, 32, 32) decode of the empty latent
    share: torch.Tensor  # (C,) share of the activation energy
    positions: torch.Tensor  # (C,) flat position of each channel's strongest unit
    boxes: dict[int, tuple[int, int, int]]  # channel -> receptive field (top, left, size)
    rows: dict  # JSON-ready summary


@torch.no_grad()
def single_channels(model: DeconvNet, tied_model: DeconvNet, image_u8: torch.Tensor, layer: int,
                    channels: list[int]) -> SingleChannels:
    """Decode one image from one channel at a time (others zeroed), and where each fires most.

    The contribution of channel c is decode(only c) - decode(empty latent): what the channel
    adds to what the switches and biases give on their own. The tied projections use the
    encoder's own filters (Zeiler & Fergus's deconvnet).
    """
    latents = model.encode(normalize(image_u8[None]))
    z = latents.at(layer)[0]
    width = z.shape[-1]
    singles = model.decode(latents, layer, keep=[[c] for c in channels])
    empty = model.decode(latents, layer, keep=[[]])[0]
    full = model.decode(latents, layer)[0]
    tied = tied_model.decode(latents, layer, keep=[[c] for c in channels], tied=True)
    contributions = singles - empty
    energy = z.pow(2).sum(dim=(1, 2))
    share = energy / energy.sum().clamp_min(1e-12)
    peaks, positions = strongest_units(z[None])
    boxes = {c: receptive_box(layer, int(positions[0, c]), width, model.arch) for c in channels}
    # Linearity check of layer 1: the contributions of all channels add up to full - empty.
    residual = ((contributions.sum(0) + empty - full).abs().max().item()
                if layer == 1 and len(channels) == z.shape[0] else None)
    rows = {"channels": [{"channel": c, "energy_share": round(share[c].item(), 4),
                          "peak_activation": round(peaks[0, c].item(), 4),
                          "peak_position": list(divmod(int(positions[0, c]), width)),
                          "strongest_box": dict(zip(("top", "left", "size"), boxes[c])),
                          "contribution_rms": round(contributions[k].pow(2).mean().sqrt().item(), 4)}
                         for k, c in enumerate(channels)],
            "sum_of_contributions_minus_full_max_abs": residual}
    return SingleChannels(z, channels, contributions, tied, full, empty, share, positions[0],
                          boxes, rows)


# --- projections of single units, and how alike a channel's are ---

@torch.no_grad()
def unit_projections(model: DeconvNet, latents: Latents, layer: int, channels: torch.Tensor,
                     positions: torch.Tensor, tied: bool = False,
                     empty: torch.Tensor | None = None) -> torch.Tensor:
    """(M, 3, H, W): row m decodes only unit (channels[m], flat positions[m]) of image m's latent,
    minus the decode of the zero latent, with image m's switches (Zeiler & Fergus's projection).
    `empty`: those zero-latent decodes if already known (the tied deconvnet's are 0: no bias)."""
    z = latents.at(layer)
    rows = torch.arange(len(z), device=z.device)
    single = torch.zeros_like(z)
    single.view(len(z), z.shape[1], -1)[rows, channels, positions] = \
        z.view(len(z), z.shape[1], -1)[rows, channels, positions]
    projection = model.decode(latents.with_map(layer, single), layer, tied=tied)
    if empty is None and not tied:
        empty = model.decode(latents.with_map(layer, torch.zeros_like(z)), layer)
    return projection if empty is None else projection - empty


def mean_pairwise_correlation(tiles: torch.Tensor) -> float:
    """Mean Pearson r over all pairs of tiles (k, ...), each flattened; a flat tile counts r = 0."""
    r = torch.corrcoef(tiles.flatten(1).double())
    return r[~torch.eye(len(tiles), dtype=torch.bool)].nan_to_num().mean().item()


@torch.no_grad()
def projection_diversity(model: DeconvNet, z: torch.Tensor, images: torch.Tensor, layer: int,
                         tied: bool = False, k: int = 9) -> list[dict]:
    """Per channel, mean pairwise r of its top-k unit projections against its top-k patches, both
    cropped to the receptive field of the strongest unit; flagged where projections are more
    alike than patches (the picture is the decoder's, not the images')."""
    peaks, positions = strongest_units(z)
    winners = peaks.topk(k, dim=0).indices.T  # (C, k)
    channels = z.shape[1]
    chosen = winners.flatten().to(images.device)
    channel = torch.arange(channels).repeat_interleave(k).to(images.device)
    where = positions[winners.flatten(), channel.cpu()].to(images.device)
    latents = model.encode(normalize(images[chosen]))
    projections = unit_projections(model, latents, layer, channel, where, tied).cpu()
    rows = []
    for c in range(channels):
        patches, crops = [], []
        for m in range(c * k, (c + 1) * k):
            box = receptive_box(layer, int(where[m]), z.shape[-1], model.arch)
            patches.append(crop(images[chosen[m]], box).float().cpu())
            crops.append(crop(projections[m], box))
        proj, patch = mean_pairwise_correlation(torch.stack(crops)), mean_pairwise_correlation(torch.stack(patches))
        rows.append({"channel": c, "projection_similarity": round(proj, 3),
                     "patch_similarity": round(patch, 3), "flagged": proj > patch})
    return rows
