"""visualize_latents.py's core: isolating channels, decoding them, the layer-1 affinity."""
import pytest
import torch

from models import DeconvNet
from visualize_latents import (channel_measures, decode_full, isolate_channels, linearity_gap,
                               single_channel_reconstructions, stretch)


@pytest.fixture
def net_and_latents():
    torch.manual_seed(0)
    net = DeconvNet().eval()
    for parameter in net.parameters():  # stronger weights than the default init: visible effects
        parameter.data.mul_(3)
    with torch.no_grad():
        return net, net.encode(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("shape", [(6, 14, 14), (16, 5, 5)])
def test_isolating_a_channel_keeps_it_and_zeros_the_rest(shape):
    z = torch.rand(shape) + 0.1
    channels = [0, 2, shape[0] - 1]
    isolated = isolate_channels(z, channels)
    assert isolated.shape == (3, *shape)
    for k, c in enumerate(channels):
        assert torch.equal(isolated[k, c], z[c])
        others = torch.ones(shape[0], dtype=torch.bool)
        others[c] = False
        assert not isolated[k, others].any()


@pytest.mark.parametrize("layer,count", [("z1", 6), ("z2", 16)])
def test_single_channel_reconstructions_are_images_that_differ(net_and_latents, layer, count):
    net, latents = net_and_latents
    reconstructions = single_channel_reconstructions(net, latents, layer, list(range(count)))
    assert reconstructions.shape == (count, 3, 32, 32)
    distinct = {tuple(r.flatten()[:200].tolist()) for r in reconstructions}
    assert len(distinct) > count // 2  # dead channels may coincide, live ones differ


def test_layer1_decoder_is_affine_in_z1(net_and_latents):
    net, latents = net_and_latents
    channels = list(range(6))
    singles = single_channel_reconstructions(net, latents, "z1", channels)
    full, empty = decode_full(net, latents, "z1"), decode_full(net, latents, "z1", scale=0.0)
    assert torch.allclose(singles.sum(0) - 5 * empty, full, atol=1e-5)
    assert linearity_gap(net, latents, "z1")["max_abs_gap"] < 1e-5


def test_layer2_is_not_affine_and_the_gap_is_measured(net_and_latents):
    net, latents = net_and_latents
    assert linearity_gap(net, latents, "z2")["relative_gap"] > 1e-3


def test_measures_see_colour_and_orientation():
    vertical_red = torch.zeros(1, 3, 32, 32)
    vertical_red[0, 0, :, 16:] = 1.0  # a red vertical edge
    horizontal_grey = torch.zeros(1, 3, 32, 32)
    horizontal_grey[0, :, 16:, :] = 1.0  # a grey horizontal edge
    z = torch.ones(2, 2, 2)
    rows = channel_measures(z, torch.cat([vertical_red, horizontal_grey]),
                            torch.cat([vertical_red, horizontal_grey]), [0, 1])
    assert rows[0]["colour_share"] > 0.5 > rows[1]["colour_share"] == 0
    assert rows[0]["edge_orientation_deg"] == pytest.approx(90, abs=1)
    assert rows[1]["edge_orientation_deg"] % 180 == pytest.approx(0, abs=1)
    assert rows[0]["orientation_coherence"] == pytest.approx(1, abs=1e-3)


def test_stretch_maps_each_image_to_the_unit_range():
    images = torch.stack([torch.linspace(-3, 5, 3 * 4).view(3, 2, 2), torch.full((3, 2, 2), 2.0)])
    stretched = stretch(images)
    assert stretched[0].min() == 0 and stretched[0].max() == 1
    assert torch.isfinite(stretched[1]).all()
