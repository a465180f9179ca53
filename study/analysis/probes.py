"""Linear probes per layer (Alain & Bengio 2016, "Understanding intermediate layers using linear
classifier probes"): how much of the class is linearly readable from each layer's features.

The spec, fixed so that numbers from different networks, layers and runs can be compared:

* features of a layer: per channel of its pooled map z_k (after conv, ReLU and max-pool), the
  global average and the global maximum over positions, so 2 x C features. One rule for every
  layer: the number of features then does not grow with the map's area (a 14x14 z1 of the
  tutorial would otherwise give 1176 features against z2's 400), so a deeper layer does not read
  better merely by having more inputs; it reads what the channels hold wherever they fire.
* the floor: raw pixels, all 3 x 32 x 32 values in [0, 1] (`pixel_probe`).
* the classifier: scikit-learn's multinomial LogisticRegression (lbfgs) on standardised features
  (StandardScaler fitted on the training features only), C = PROBE_C, max_iter = PROBE_MAX_ITER.
* fitted on the training split only, on at most PROBE_TRAIN_IMAGES images (a stratified subset
  seeded by `seed`, the same for every layer and for the pixels, so the comparison is paired);
  the accuracy is measured on the whole test split, as a fraction in [0, 1].

The encoder is frozen and evaluated in eval mode; nothing is trained but the probe.
"""
import warnings
from typing import Sequence

import numpy as np
import torch

from data import CIFAR10, batches, normalize, stratified_subset
from study.core.common import UsageError

PROBE_C = 1.0  # inverse L2 strength: light regularisation on standardised features
PROBE_MAX_ITER = 1000
PROBE_TRAIN_IMAGES = 10_000  # lbfgs on 50,000 x 3072 pixels would take many minutes on a CPU


def probe_predictions(train_features: np.ndarray, train_labels: np.ndarray,
                      test_features: np.ndarray) -> np.ndarray:
    """The test predictions of the fixed probe (standardise, then logistic regression) fitted
    on the training features: the one classifier every layer and the pixels are read with."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_labels)) < 2:
        raise UsageError("a linear probe needs training images of at least two classes")
    probe = make_pipeline(StandardScaler(),
                          LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
    with warnings.catch_warnings():
        # an unconverged fit after PROBE_MAX_ITER steps is part of the fixed protocol
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_features, train_labels)
    return probe.predict(test_features)


def probe_accuracy(train_features: np.ndarray, train_labels: np.ndarray,
                   test_features: np.ndarray, test_labels: np.ndarray) -> float:
    """Test accuracy (0..1) of the fixed probe fitted on the training features."""
    return float(np.mean(probe_predictions(train_features, train_labels, test_features) == test_labels))


def layer_name(layer: int | str) -> str:
    return layer if isinstance(layer, str) else f"z{layer}"


def _layer_indices(net: torch.nn.Module, layers: Sequence[int | str] | None) -> list[int]:
    depth = net.arch.depth
    if layers is None:
        return list(range(1, depth + 1))
    indices = []
    for layer in layers:
        name = layer_name(layer)
        index = int(name[1:]) if name[:1] == "z" and name[1:].isdigit() else 0
        if not 1 <= index <= depth:
            raise UsageError(f"layer {layer!r} is not one of z1..z{depth} of this network")
        indices.append(index)
    return indices


@torch.no_grad()
def layer_features(net: torch.nn.Module, images_u8: torch.Tensor, layers: Sequence[int],
                   batch_size: int = 500) -> dict[int, np.ndarray]:
    """Per layer index: (N, 2C) float64 features, the average then the maximum of each channel
    of the pooled map over positions (the spec above), for uint8 images (N, 3, H, W)."""
    was_training = net.training
    net.eval()
    parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    labels = torch.zeros(len(images_u8), dtype=torch.long, device=images_u8.device)
    try:
        for x, _ in batches(images_u8, labels, batch_size):
            latents = net.encode(normalize(x))
            for layer in layers:
                z = latents.at(layer).flatten(2)
                parts[layer].append(torch.cat([z.mean(2), z.amax(2)], 1).double().cpu())
    finally:
        net.train(was_training)
    return {layer: torch.cat(chunks).numpy() for layer, chunks in parts.items()}


def probe_training_images(data: CIFAR10, seed: int = 0,
                          limit: int = PROBE_TRAIN_IMAGES) -> torch.Tensor:
    """Indices of the training images the probes fit on: all of them, or a stratified `limit`."""
    n = len(data.train_labels)
    if n <= limit:
        return torch.arange(n)
    return stratified_subset(data.train_labels.cpu(), limit / n, seed)


def probe_layer_predictions(net: torch.nn.Module, data: CIFAR10,
                            layers: Sequence[int | str] | None = None, seed: int = 0,
                            limit: int = PROBE_TRAIN_IMAGES) -> dict[str, np.ndarray]:
    """{"z1": test predictions, ...}: the fixed linear probe on each layer's pooled features of
    `net` (a TutorialNet or DeconvNet; every layer when `layers` is None)."""
    indices = _layer_indices(net, layers)
    train = probe_training_images(data, seed, limit).to(data.train_labels.device)
    train_features = layer_features(net, data.train_images[train], indices)
    test_features = layer_features(net, data.test_images, indices)
    train_labels = data.train_labels[train].cpu().numpy()
    for layer in indices:
        require_finite_features(train_features[layer], test_features[layer], layer=layer)
    return {f"z{layer}": probe_predictions(train_features[layer], train_labels, test_features[layer])
            for layer in indices}


def require_finite_features(*features: np.ndarray, layer: int) -> None:
    """Refuse features a probe cannot be fitted on: finite weights can still overflow float32 in
    the forward pass (weights near 3e38 make every feature inf or NaN)."""
    if not all(np.isfinite(f).all() for f in features):
        raise UsageError(f"the network's z{layer} features are not all finite (its weights "
                         "overflow float32 in the forward pass), so no probe can be fitted on "
                         "them; pass a checkpoint written by train_deconv.py")


def probe_accuracies(net: torch.nn.Module, data: CIFAR10,
                     layers: Sequence[int | str] | None = None, seed: int = 0,
                     limit: int = PROBE_TRAIN_IMAGES) -> dict[str, float]:
    """{"z1": accuracy, ...}: the test accuracy (0..1) of probe_layer_predictions."""
    test_labels = data.test_labels.cpu().numpy()
    return {layer: float(np.mean(predicted == test_labels)) for layer, predicted
            in probe_layer_predictions(net, data, layers, seed, limit).items()}


def pixel_probe_predictions(data: CIFAR10, seed: int = 0, limit: int = PROBE_TRAIN_IMAGES) -> np.ndarray:
    """The floor's test predictions: the same probe on the raw pixels (in [0, 1]) of the same
    training images."""
    train = probe_training_images(data, seed, limit).to(data.train_labels.device)

    def pixels(images: torch.Tensor) -> np.ndarray:
        return (images.flatten(1).double() / 255).cpu().numpy()
    return probe_predictions(pixels(data.train_images[train]), data.train_labels[train].cpu().numpy(),
                             pixels(data.test_images))


def pixel_probe(data: CIFAR10, seed: int = 0, limit: int = PROBE_TRAIN_IMAGES) -> float:
    """The floor's test accuracy (0..1)."""
    return float(np.mean(pixel_probe_predictions(data, seed, limit) == data.test_labels.cpu().numpy()))


def describe_protocol(limit: int = PROBE_TRAIN_IMAGES) -> dict:
    """The fixed protocol, as metrics.json records it beside the accuracies."""
    return {"features": "per channel of each pooled map: mean and maximum over positions",
            "classifier": f"standardised features, multinomial logistic regression (lbfgs, "
                          f"C = {PROBE_C:g}, at most {PROBE_MAX_ITER} iterations)",
            "train_images": f"at most {limit}, a stratified subset of the training split",
            "test_images": "the whole test split", "floor": "raw pixels in [0, 1]"}
