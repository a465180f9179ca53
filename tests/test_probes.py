"""study/analysis/probes.py: linear probes with answers known by construction."""
import functools
import math

import pytest
import torch

from data import CIFAR10
from models import Architecture, DeconvNet, TutorialNet
from study.analysis.probes import (layer_features, pixel_probe, probe_accuracies, probe_accuracy,
                                   probe_training_images)
from study.core.common import UsageError

# per class; 8x8 images keep every fit near a second. 200 training images per class, as the
# real protocol's 1,000 (PROBE_TRAIN_IMAGES over 10 classes) do, leave the fixed C a light
# regulariser: with 60 the ten levels of one scalar channel are not all told apart.
TRAIN, TEST, SIDE = 200, 40, 8


def chance_ceiling(classes: int, test_images: int) -> float:
    """Chance accuracy plus 4 binomial standard deviations: a probe on noise stays below."""
    p = 1 / classes
    return p + 4 * math.sqrt(p * (1 - p) / test_images)


@functools.cache
def dataset(make_images, seed: int = 0) -> CIFAR10:
    """Balanced synthetic images: make_images(labels, generator) -> uint8 (N, 3, SIDE, SIDE)."""
    generator = torch.Generator().manual_seed(seed)

    def split(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(10).repeat(per_class)
        labels = labels[torch.randperm(len(labels), generator=generator)]
        return make_images(labels, generator), labels
    train_images, train_labels = split(TRAIN)
    test_images, test_labels = split(TEST)
    return CIFAR10(train_images, train_labels, test_images, test_labels, "synthetic", "none")


def noise(labels: torch.Tensor, generator: torch.Generator, high: int = 256) -> torch.Tensor:
    return torch.randint(0, high, (len(labels), 3, SIDE, SIDE), generator=generator,
                         dtype=torch.uint8)


def label_in_red(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Red is 25 x label everywhere; green and blue are noise."""
    images = noise(labels, generator)
    images[:, 0] = (25 * labels).to(torch.uint8).view(-1, 1, 1)
    return images


def picker(channels: tuple[int, ...], depth: int = 1) -> TutorialNet:
    """A hand-built encoder of 1x1 convolutions: at every stage channel j copies (input channel
    channels[j] at stage 1, channel j later) plus 1, so it is positive and ReLU passes it."""
    arch = Architecture(image_size=SIDE, channels=(len(channels),) * depth, kernel=1, hidden=())
    net = DeconvNet(arch)
    with torch.no_grad():
        for k, conv in enumerate(net.convs()):
            conv.weight.zero_()
            conv.bias.fill_(1.0)
            for j, source in enumerate(channels):
                conv.weight[j, source if k == 0 else j] = 1.0
    return net


def bright_pixel(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dark noise with one bright green pixel at a position given by the label: each class is
    cut off from the others by a hyperplane on its pixel."""
    images = noise(labels, generator, high=60)
    images[torch.arange(len(labels)), 1, labels // SIDE, labels % SIDE] = 255
    return images


def test_a_channel_that_carries_the_label_reads_perfectly_and_noise_reads_at_chance():
    data = dataset(label_in_red)
    net = picker((0, 1))  # z1 channel 0: the label; channel 1: green noise
    assert probe_accuracies(net, data) == {"z1": 1.0}
    features_train = layer_features(net, data.train_images, [1])[1]
    features_test = layer_features(net, data.test_images, [1])[1]
    noise = [1, 3]  # channel 1's average and maximum (features: 2 averages, then 2 maxima)
    accuracy = probe_accuracy(features_train[:, noise], data.train_labels.numpy(),
                              features_test[:, noise], data.test_labels.numpy())
    assert accuracy < chance_ceiling(10, len(data.test_labels))
    # and a net that sees only the noise reads at chance on every layer
    noisy = probe_accuracies(picker((1, 2), depth=2), data)
    assert set(noisy) == {"z1", "z2"}
    assert all(a < chance_ceiling(10, len(data.test_labels)) for a in noisy.values())


def test_features_are_the_average_and_maximum_of_each_channel():
    net = picker((0, 1), depth=2)
    images = dataset(label_in_red).test_images[:5]
    features = layer_features(net, images, [1, 2])
    z2 = net.encode((images.float() / 255 - 0.5) / 0.5).at(2)
    assert features[2].shape == (5, 4)
    torch.testing.assert_close(torch.from_numpy(features[2]),
                               torch.cat([z2.mean((2, 3)), z2.amax((2, 3))], 1).double())


def test_layers_are_chosen_by_name_or_index_and_a_missing_one_is_one_error():
    data = dataset(label_in_red)
    net = picker((0, 1), depth=2)
    assert set(probe_accuracies(net, data, layers=["z2"])) == {"z2"}
    assert set(probe_accuracies(net, data, layers=[1])) == {"z1"}
    with pytest.raises(UsageError, match="z3"):
        probe_accuracies(net, data, layers=["z3"])


def test_pixel_probe_reads_linearly_separable_images_perfectly():
    assert pixel_probe(dataset(bright_pixel)) == 1.0


def test_pixel_probe_on_noise_reads_at_chance():
    data = dataset(noise)
    assert pixel_probe(data) < chance_ceiling(10, len(data.test_labels))


def test_the_probes_fit_on_a_stratified_subset_of_at_most_limit_training_images():
    data = dataset(label_in_red)
    chosen = probe_training_images(data, seed=0, limit=500)
    assert len(chosen) == 500 and len(set(chosen.tolist())) == 500
    assert torch.bincount(data.train_labels[chosen], minlength=10).tolist() == [50] * 10
    assert len(probe_training_images(data, limit=10**6)) == len(data.train_labels)
    # fewer images fit a worse probe: the limit reaches the fit (10 images, one per class)
    assert probe_accuracies(picker((0, 1)), data, limit=10)["z1"] < 1.0
