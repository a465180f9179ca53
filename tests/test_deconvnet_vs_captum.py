"""The tied deconvnet against an independent implementation: Captum's NeuronDeconvolution.

Zeiler & Fergus's deconvnet is the gradient of one unit with respect to the image, with every
ReLU's backward replaced by a ReLU of the incoming gradient (Springenberg et al. 2015 state it
so; Captum implements it that way). `DeconvNet.decode(..., tied=True)` builds the same thing
forwards: unpool with the switches, ReLU, conv_transpose2d with the encoder's weights, no bias.
Both are positively homogeneous in the unit's value, so the projection of a unit holding v is
v times Captum's attribution of that unit.

Captum sees a forward model of its own, made here from the network's convolutions and
torch.nn's ReLU and MaxPool2d modules (conv -> ReLU -> max-pool per stage, up to the unit's
pooled map): its backward through max-pool routes the gradient by the pooling's argmax, the
same switches `encode` returns. Nothing of DeconvNet's decoder code is used on that side.
"""
import pytest
import torch
import torch.nn as nn

# Captum warns each time it hooks the ReLUs; that is the point here
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")

captum_attr = pytest.importorskip("captum.attr")  # a test dependency (requirements.txt)

from models import ARCHITECTURES, Architecture, DeconvNet, fold_batchnorm  # noqa: E402

UNITS_PER_LAYER = 6  # channels checked per layer (spread over the layer), each at its peak
TOLERANCE = 1e-5

# A padded toy: padding moves every field past the border, which the decoder must mirror.
PADDED_TOY = Architecture(channels=(4, 6, 8), kernel=3, padding=1, hidden=(16,), image_size=16)


def encoder_up_to(net: DeconvNet, layer: int) -> nn.Sequential:
    """conv -> ReLU -> MaxPool2d per stage, up to stage `layer`'s pooled map, from torch.nn's
    own modules around the network's convolutions (the weights are shared, not copied)."""
    modules: list[nn.Module] = []
    for stage, conv in zip(net.arch.layers[:layer], net.convs()):
        modules += [conv, nn.ReLU(), nn.MaxPool2d(stage.pool, stage.pool)]
    return nn.Sequential(*modules)


def spread(count: int, k: int) -> list[int]:
    """k channels spread over 0..count-1, first and last included."""
    return sorted({round(i * (count - 1) / max(k - 1, 1)) for i in range(min(k, count))})


def check_every_layer(net: DeconvNet, images: torch.Tensor) -> int:
    """Compare decode(tied) with Captum on units of every layer; returns how many were nonzero."""
    net.eval()
    latents = net.encode(images)
    nonzero = 0
    for stage in net.arch.layers:
        forward = encoder_up_to(net, stage.index)
        with torch.no_grad():  # the Captum side's own forward gives the same pooled map
            assert torch.equal(forward(images), latents.at(stage.index))
        deconvolution = captum_attr.NeuronDeconvolution(forward, forward[-1])
        z = latents.at(stage.index)
        for channel in spread(stage.channels, UNITS_PER_LAYER):
            # the unit where this channel peaks on the first image, for every image of the batch
            position = int(z[0, channel].flatten().argmax())
            row, column = divmod(position, stage.size)
            single = torch.zeros_like(z)
            single[:, channel, row, column] = z[:, channel, row, column]
            with torch.no_grad():
                ours = net.decode(latents.with_map(stage.index, single), stage.index, tied=True)
            theirs = deconvolution.attribute(images.clone().requires_grad_(True),
                                             (channel, row, column))
            expected = z[:, channel, row, column].view(-1, 1, 1, 1) * theirs
            torch.testing.assert_close(ours, expected.detach(), atol=TOLERANCE, rtol=TOLERANCE,
                                       msg=lambda m: f"{stage.name} channel {channel}: {m}")
            nonzero += int((ours.abs().amax(dim=(1, 2, 3)) > 0).sum())
    return nonzero


def images_for(arch: Architecture, n: int = 3) -> torch.Tensor:
    return torch.randn(n, arch.image_channels, arch.image_size, arch.image_size,
                       generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_tied_decode_is_captums_deconvolution_on_every_layer(name):
    torch.manual_seed(0)
    net = DeconvNet(ARCHITECTURES[name])
    if net.arch.batchnorm:  # the deconvnet of a BatchNorm net is that of its folded twin
        with torch.no_grad():
            net.train()
            net(images_for(net.arch, 8))  # moves the running statistics off 0 and 1
        net = fold_batchnorm(net)
    nonzero = check_every_layer(net, images_for(net.arch))
    # the comparison is not between zeros: most checked units fired and projected something
    assert nonzero >= len(net.arch.layers) * 3


def test_tied_decode_is_captums_deconvolution_with_padding():
    torch.manual_seed(0)
    net = DeconvNet(PADDED_TOY)
    assert check_every_layer(net, images_for(PADDED_TOY)) >= 9


def test_the_check_can_fail():
    """A decoder that forgets the ReLU (plain gradient, not the deconvnet) is told apart."""
    torch.manual_seed(0)
    net = DeconvNet(ARCHITECTURES["small3"]).eval()
    images = images_for(net.arch)
    latents = net.encode(images)
    forward = encoder_up_to(net, 3)
    z = latents.at(3)
    channel = int(z[0].flatten(1).amax(1).argmax())
    position = int(z[0, channel].flatten().argmax())
    row, column = divmod(position, net.arch.layer(3).size)
    deconvolution = captum_attr.NeuronDeconvolution(forward, forward[-1])
    theirs = deconvolution.attribute(images.clone().requires_grad_(True), (channel, row, column))
    gradient = captum_attr.NeuronGradient(forward, forward[-1]).attribute(
        images.clone().requires_grad_(True), (channel, row, column))
    assert (theirs - gradient).abs().max() > 1e-3  # the ReLU's backward matters here
