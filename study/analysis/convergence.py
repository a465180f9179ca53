"""Do different seeds learn the same channels? (convergent learning: Li, Yosinski, Clune, Lipson &
Hopcroft, ICLR 2016.)

Each channel is described by its response to a set of test images: the largest value of its
pooled map on each image (N values per channel). Two networks' channels of one layer are matched
one-to-one by the Hungarian algorithm on the Pearson correlation of these responses
(scipy.optimize.linear_sum_assignment, maximising the summed correlation); a channel's matched
correlation says how closely its best counterpart in the other network follows it.

The null is the same matching between two independently initialised random networks of the
same architecture (forward passes only, many draws): random channels are not blank, so they
correlate by chance, and more so in small layers. A trained channel's matched correlation gets a
rank p-value against every matched correlation of the null draws of its layer, p = (1 + #null >=
r) / (1 + #null); a channel "has a counterpart" in another seed when that p survives Holm over
the layer's channels and seed pairs. The layer as a whole is tested by its mean matched
correlation against the null draws' means (Holm over the layers and seed pairs).
"""
from itertools import combinations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from data import batches, normalize
from models import DeconvNet
from study.analysis.nulls import holm

ALPHA = 0.05


@torch.no_grad()
def channel_responses(net: DeconvNet, images: torch.Tensor, batch_size: int = 500
                      ) -> dict[int, np.ndarray]:
    """{layer: (N, C) array}: each channel's largest pooled value on each of the N images."""
    parts: dict[int, list[torch.Tensor]] = {s.index: [] for s in net.arch.layers}
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    for x, _ in batches(images, labels, batch_size):
        latents = net.encode(normalize(x))
        for s in net.arch.layers:
            parts[s.index].append(latents.at(s.index).amax(dim=(2, 3)).double().cpu())
    return {layer: torch.cat(chunks).numpy() for layer, chunks in parts.items()}


def correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(C, C) Pearson correlations between the columns of a and of b; a constant (dead) channel
    correlates 0 with everything."""
    def standardised(x: np.ndarray) -> np.ndarray:
        centred = x - x.mean(axis=0)
        norm = np.sqrt((centred ** 2).sum(axis=0))
        return np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)
    return standardised(a).T @ standardised(b)


def match_channels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(partner, r): for each channel c of a, its one-to-one partner in b (Hungarian, maximising
    the summed correlation) and their correlation."""
    r = correlation_matrix(a, b)
    rows, cols = linear_sum_assignment(-r)
    partner = np.empty(len(rows), dtype=int)
    partner[rows] = cols
    return partner, r[np.arange(len(partner)), partner]


def rank_p(value: float, null: np.ndarray) -> float:
    """(1 + #null >= value) / (1 + #null)."""
    return float((1 + np.sum(null >= value)) / (1 + len(null)))


def seeds_agree(responses: list[dict[int, np.ndarray]], null_pairs: list[tuple[dict, dict]],
                seeds: list[int]) -> dict:
    """Every pair of trained networks matched per layer, against the same matching of pairs of
    random networks (`null_pairs`, each two networks' responses on the same images).

    Returns per layer: the matched partners and correlations of every seed pair, each channel's
    rank p and Holm p per pair, the channels of the first seed with a counterpart in every other
    seed, the layer's mean matched correlation against the null's means, and the null's summary.
    """
    result = {}
    for layer in responses[0]:
        null = [match_channels(a[layer], b[layer])[1] for a, b in null_pairs]
        pooled, means = np.concatenate(null), np.array([n.mean() for n in null])
        pairs, tests = {}, []
        for i, j in combinations(range(len(responses)), 2):
            partner, r = match_channels(responses[i][layer], responses[j][layer])
            p = [rank_p(v, pooled) for v in r]
            pairs[f"{seeds[i]}-{seeds[j]}"] = {
                "partner": partner.tolist(), "r": [round(float(v), 4) for v in r], "p": p,
                "mean_r": round(float(r.mean()), 4), "p_mean": rank_p(float(r.mean()), means)}
            tests += [(f"{seeds[i]}-{seeds[j]}", c, value) for c, value in enumerate(p)]
        for (pair, c, _), adjusted in zip(tests, holm([t[2] for t in tests])):
            pairs[pair].setdefault("p_holm", []).append(round(adjusted, 5))
        first = [f"{seeds[0]}-{seeds[j]}" for j in range(1, len(responses))]
        everywhere = [c for c in range(len(pairs[first[0]]["r"]))
                      if all(pairs[pair]["p_holm"][c] < ALPHA for pair in first)]
        result[f"z{layer}"] = {
            "pairs": pairs, "channels": len(pairs[first[0]]["r"]),
            "counterpart_in_every_seed": everywhere,
            "null": {"draws": len(null), "values": int(pooled.size),
                     "mean_r": round(float(pooled.mean()), 4),
                     "q95_r": round(float(np.quantile(pooled, 0.95)), 4),
                     "smallest_p": round(1 / (1 + pooled.size), 6)}}
    # the layers as wholes: each pair's mean matched r against the null pairs' means, Holm over
    # every layer and pair
    means = [(name, pair) for name, block in result.items() for pair in block["pairs"]]
    adjusted = holm([result[name]["pairs"][pair]["p_mean"] for name, pair in means])
    for (name, pair), p in zip(means, adjusted):
        result[name]["pairs"][pair]["p_mean_holm"] = round(p, 5)
    return result
