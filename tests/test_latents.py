"""Task 3's core: decoding chosen channels, contributions, and the per-channel statistics."""
import pytest
import torch

from data import denormalize, normalize
from models import DeconvNet
from training import psnr_db
from visualize_latents import (RULES, channel_choice, channel_statistics, controls,
                               describe_channel, local_signals, pearson)


@pytest.fixture
def net_and_latents():
    torch.manual_seed(0)
    net = DeconvNet().eval()
    for parameter in net.parameters():  # stronger weights than the default init: visible effects
        parameter.data.mul_(3)
    with torch.no_grad():
        return net, net.encode(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("layer,count", [(1, 6), (2, 16)])
def test_keeping_one_channel_equals_decoding_a_latent_with_only_that_channel(net_and_latents,
                                                                              layer, count):
    net, latents = net_and_latents
    singles = net.decode(latents, layer, keep=[[c] for c in range(count)])
    assert singles.shape == (count, 3, 32, 32)
    field = "z1" if layer == 1 else "z2"
    for c in (0, count - 1):
        z = getattr(latents, field).clone()
        z[:, [k for k in range(count) if k != c]] = 0
        assert torch.allclose(singles[c], net.decode(latents._replace(**{field: z}), layer)[0])
    distinct = {tuple(r.flatten()[:200].tolist()) for r in singles}
    assert len(distinct) > count // 2  # dead channels may coincide, live ones differ


@pytest.mark.parametrize("layer", [1, 2])
def test_the_empty_latent_decodes_biases_and_switches_alone(net_and_latents, layer):
    net, latents = net_and_latents
    field = "z1" if layer == 1 else "z2"
    zeroed = latents._replace(**{field: torch.zeros_like(getattr(latents, field))})
    assert torch.equal(net.decode(latents, layer, keep=[[]])[0], net.decode(zeroed, layer)[0])
    count = getattr(latents, field).shape[1]
    assert torch.equal(net.decode(latents, layer, keep=[list(range(count))])[0],
                       net.decode(latents, layer)[0])


def test_layer1_contributions_sum_with_the_empty_decode_to_the_full_decode(net_and_latents):
    """z1 >= 0, so the ReLU after unpooling is the identity and layer 1 is affine in z1."""
    net, latents = net_and_latents
    singles = net.decode(latents, 1, keep=[[c] for c in range(6)])
    empty, full = net.decode(latents, 1, keep=[[]])[0], net.decode(latents, 1)[0]
    assert torch.allclose((singles - empty).sum(0) + empty, full, atol=1e-5)


def test_layer2_contributions_do_not_sum_since_a_relu_follows_the_second_unpooling(net_and_latents):
    net, latents = net_and_latents
    singles = net.decode(latents, 2, keep=[[c] for c in range(16)])
    empty, full = net.decode(latents, 2, keep=[[]])[0], net.decode(latents, 2)[0]
    assert (((singles - empty).sum(0) + empty - full).norm() / (full - empty).norm()) > 1e-3


def test_tied_decoding_uses_the_encoder_filters_without_bias(net_and_latents):
    net, latents = net_and_latents
    empty = net.decode(latents, 1, keep=[[]], tied=True)
    assert not empty.any()  # no bias: nothing in, nothing out


def test_local_signals_cover_the_receptive_fields():
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    images[0, :, :6, :6] = 255  # a white 6x6 square: exactly z1 unit (0, 0)'s field
    signals = local_signals(images, layer=1)
    assert signals["luminance"].shape == (1, 14, 14)
    assert signals["luminance"][0, 0, 0] == pytest.approx(1.0)
    assert signals["luminance"][0, 3, 3] == 0
    assert local_signals(images, layer=2)["luminance"].shape == (1, 5, 5)


def test_oriented_edge_energy_names_the_edge_orientation():
    vertical = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    vertical[..., :, 16:] = 255
    horizontal = vertical.transpose(2, 3).contiguous()
    for images, angle in ((vertical, 90), (horizontal, 0)):
        signals = local_signals(images, layer=2)
        energies = {a: signals[f"edge_{a}"].sum().item() for a in (0, 45, 90, 135)}
        assert max(energies, key=energies.get) == angle


class ChannelNet(DeconvNet):
    """A DeconvNet whose z1 channel 0 is the local luminance and channel 1 fires only on class 3."""

    def __init__(self, labels_by_image):
        super().__init__()
        self.labels_by_image = labels_by_image

    def encode(self, x):
        latents = super().encode(x)
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # as local_signals
        luminance = torch.nn.functional.avg_pool2d(grey, 6, 2)[:, 0]
        z1 = latents.z1.clone()
        z1[:, 0] = luminance + 1
        z1[:, 1] = 0
        return latents._replace(z1=z1)


def test_statistics_find_a_luminance_channel_and_a_class_channel():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(60) % 10
    images[labels == 3] //= 4  # class 3 is dark
    net = ChannelNet(labels).eval()
    rows, z, class_means = channel_statistics(net, images, labels, layer=1)
    assert rows[0]["r_luminance"] == pytest.approx(1.0, abs=1e-3)
    assert "brightness detector" in describe_channel(1, rows[0])
    assert rows[1]["zero_share"] == 1.0 and rows[1]["always_zero_positions"] == 1.0
    assert class_means.shape == (6, 10)
    # Class 3 images are dark, so channel 0 responds least to class 3 and most elsewhere.
    assert class_means[0].argmin() == 3


def test_class_selectivity_picks_the_class_a_channel_fires_for():
    torch.manual_seed(1)
    labels = torch.arange(50) % 10
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    images[labels == 7] = 255  # class 7 is white
    net = ChannelNet(labels).eval()
    rows, _, _ = channel_statistics(net, images, labels, layer=1)
    assert rows[0]["top_class"] == "horse"  # class 7
    assert rows[0]["class_selectivity"] > 0
    row = {**rows[0], "r_luminance": 0.0, "r_red_green": 0.0, "r_blue_yellow": 0.0,
           "r_gradient_energy": 0.0, "class_selectivity": RULES["class_selectivity"] + 0.1}
    assert "class-selective for horse" in describe_channel(1, row)
    assert "mixed" in describe_channel(1, {**row, "class_selectivity": 0.0})


def test_pearson_of_a_constant_is_zero_not_nan():
    assert pearson(torch.ones(10), torch.arange(10.0)) == 0.0
    assert pearson(torch.arange(10.0), 2 * torch.arange(10.0)) == pytest.approx(1.0)


def test_controls_measure_what_the_decoder_makes_of_the_empty_latent():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    net = DeconvNet().eval()
    result = controls(net, 1, images, batch_size=10)
    assert set(result) == {"own latent and switches", "empty latent, own switches",
                           "other image's latent, own switches",
                           "own latent, other image's switches"}
    with torch.no_grad():
        latents = net.encode(normalize(images))
        empty = net.decode(latents._replace(z1=torch.zeros_like(latents.z1)), 1)
    mse = (denormalize(empty) - images / 255).pow(2).mean().item()
    assert result["empty latent, own switches"]["psnr_db"] == pytest.approx(psnr_db(mse), abs=0.01)


def test_channel_choices_parse_lists_top_k_and_all():
    assert channel_choice(2, "11,0,5,5") == ("list", [0, 5, 11])
    assert channel_choice(2, "top6") == ("top", 6)
    assert channel_choice(1, "all") == ("all", None)
