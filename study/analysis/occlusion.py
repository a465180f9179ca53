"""Zeiler & Fergus's occlusion test (2014, Fig. 7): a grey square slid over the image, the
scores it changes, and how well a decoder's projection of a channel points at the pixels that
channel actually depends on.
"""
import math
from typing import Callable

import torch
import torch.nn.functional as F

from data import normalize
from models import DeconvNet
from study.analysis.evidence import strongest_units
from study.analysis.projections import unit_projections

OCCLUDER = {"size": 8, "stride": 2}  # pixels; the grey is 0 in the normalised input


def occlusion_masks(side: int, size: int, stride: int) -> torch.Tensor:
    """(P*P, 1, side, side): 1 everywhere but a size x size square, at top-left (i, j) * stride."""
    n = (side - size) // stride + 1
    masks = torch.ones(n * n, 1, side, side)
    for i in range(n):
        for j in range(n):
            masks[i * n + j, :, i * stride:i * stride + size, j * stride:j * stride + size] = 0
    return masks


@torch.no_grad()
def occlusion_maps(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   size: int = OCCLUDER["size"], stride: int = OCCLUDER["stride"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of normalised images x (B, 3, H, W) whole and with the grey square (0 = the grey of
    the normalised input) at every position, all copies in one forward pass:
    (base (B, K), maps (B, K, P, P)); score_fn maps (M, 3, H, W) to (M, K)."""
    masks = occlusion_masks(x.shape[-1], size, stride).to(x)
    copies = (x[:, None] * masks[None]).flatten(0, 1)
    scores = score_fn(torch.cat([x, copies]))
    n = int(math.isqrt(len(masks)))
    return scores[:len(x)], scores[len(x):].view(len(x), n * n, -1).transpose(1, 2).reshape(len(x), -1, n, n)


def deconvnet_scores(model: DeconvNet) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scores for occlusion: the class probabilities, then each channel's strongest value in the
    last layer (z2 for the tutorial's net)."""
    def score(x: torch.Tensor) -> torch.Tensor:
        latents = model.encode(x)
        return torch.cat([F.softmax(model.head(latents.last), 1), latents.last.flatten(2).amax(2)], 1)
    return score


def rowwise_spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho of each row of a (M, P) with the same row of b (average ranks for ties, as
    scipy.stats.spearmanr); NaN where a row is constant."""
    from scipy.stats import rankdata

    ra, rb = (torch.from_numpy(rankdata(t.double().cpu().numpy(), axis=1)) for t in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


@torch.no_grad()
def occlusion_agreement(model: DeconvNet, decoders: dict[str, tuple[DeconvNet, bool]],
                        images_u8: torch.Tensor, chunk: int = 6) -> dict:
    """Over images_u8, per z2 channel active on an image: Spearman between the drop of its
    strongest activation under the occluder and its strongest unit's |projection| (summed over
    colour, averaged under each occluder position's square), per decoder {name: (model, tied)}:
    {decoder: {"mean", "sd", "n"}} over (image, channel) pairs; constant maps are left out."""
    size, stride, classes = OCCLUDER["size"], OCCLUDER["stride"], model.arch.classes
    rhos = {name: [] for name in decoders}
    for part in images_u8.split(chunk):
        x = normalize(part)
        base, maps = occlusion_maps(deconvnet_scores(model), x, size, stride)
        drop = (base[:, classes:, None, None] - maps[:, classes:]).flatten(2)  # (B, C, P*P)
        latents = model.encode(x)
        c = drop.shape[1]
        top = model.arch.depth
        peaks, positions = strongest_units(latents.last)
        # only the (image, channel) pairs whose channel is active on the image are compared, so
        # only their units are projected (a trained deep4's z4: about one pair in twelve)
        pairs = (peaks > 0).flatten().nonzero().flatten().to(x.device)
        image, channel = pairs // c, pairs % c
        expanded = latents.apply(lambda t: t[image])
        for name, (decoder, tied) in decoders.items():
            empty = None if tied else decoder.decode(latents.with_map(top, torch.zeros_like(latents.last)), top)
            projection = unit_projections(decoder, expanded, top, channel, positions.flatten()[pairs],
                                          tied, None if tied else empty[image])
            pooled = F.avg_pool2d(projection.abs().sum(1, keepdim=True), size, stride).flatten(1)
            rho = rowwise_spearman(drop.flatten(0, 1)[pairs], pooled)
            rhos[name].append(rho[~rho.isnan()])
    summary = {}
    for name, parts in rhos.items():
        values = torch.cat(parts)
        summary[name] = {"mean": round(values.mean().item(), 4),
                         "sd": round(values.std().item(), 4) if len(values) > 1 else 0.0,
                         "n": len(values)}
    return summary
