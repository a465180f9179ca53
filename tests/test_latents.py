"""Task 3's core: decoding chosen channels, contributions, and the per-channel statistics."""
import math

import pytest
import torch
import torch.nn.functional as F

from data import denormalize, normalize
from models import DeconvNet
from study.analysis.decoders import controls
from study.analysis.evidence import (channel_statistics, class_makeup, local_signals,
                                     patch_appearance, patch_measures, pearson, strongest_units)
from study.analysis.findings import EDGE_NAMES, RULES, describe_channel
from study.analysis.projections import single_channels
from visualize_latents import channel_choice


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
    for c in (0, count - 1):
        z = latents.at(layer).clone()
        z[:, [k for k in range(count) if k != c]] = 0
        assert torch.allclose(singles[c], net.decode(latents.with_map(layer, z), layer)[0])
    distinct = {tuple(r.flatten()[:200].tolist()) for r in singles}
    assert len(distinct) > count // 2  # dead channels may coincide, live ones differ


@pytest.mark.parametrize("layer", [1, 2])
def test_the_empty_latent_decodes_biases_and_switches_alone(net_and_latents, layer):
    net, latents = net_and_latents
    zeroed = latents.with_map(layer, torch.zeros_like(latents.at(layer)))
    assert torch.equal(net.decode(latents, layer, keep=[[]])[0], net.decode(zeroed, layer)[0])
    count = latents.at(layer).shape[1]
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


def _unpool_by_hand(z, indices, side):
    """Max-unpooling written out: each value back at its flat argmax, zeros elsewhere."""
    n, c = z.shape[:2]
    out = torch.zeros(n, c, side * side, dtype=z.dtype)
    out.scatter_(2, indices.flatten(2), z.flatten(2))
    return out.view(n, c, side, side)


def test_tied_decoding_uses_the_encoder_filters_transposed_and_no_bias(net_and_latents):
    """Zeiler & Fergus's deconvnet written out: unpool, ReLU, conv_transpose2d with the
    encoder's own conv weights and no bias, for both layers."""
    net, latents = net_and_latents
    with torch.no_grad():
        h1 = F.relu(_unpool_by_hand(latents.at(1), latents.switches_at(1), 28))
        expected1 = F.conv_transpose2d(h1, net.conv1.weight)  # no bias argument
        h2 = F.relu(_unpool_by_hand(latents.at(2), latents.switches_at(2), 10))
        z1_hat = F.relu(_unpool_by_hand(F.conv_transpose2d(h2, net.conv2.weight),
                                        latents.switches_at(1), 28))
        expected2 = F.conv_transpose2d(z1_hat, net.conv1.weight)
        assert net.conv1.bias.abs().sum() > 0 and net.conv2.bias.abs().sum() > 0  # would show
        assert torch.allclose(net.decode(latents, 1, tied=True), expected1, atol=1e-5)
        assert torch.allclose(net.decode(latents, 2, tied=True), expected2, atol=1e-5)
        assert not net.decode(latents, 1, keep=[[]], tied=True).any()  # nothing in, nothing out


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
        z1 = latents.at(1).clone()
        z1[:, 0] = luminance + 1
        z1[:, 1] = 0
        return latents.with_map(1, z1)


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
    assert set(result) == {"own", "empty_latent", "other_latent", "other_switches"}
    with torch.no_grad():
        latents = net.encode(normalize(images))
        empty = net.decode(latents.with_map(1, torch.zeros_like(latents.at(1))), 1)
    mse = (denormalize(empty) - images / 255).pow(2).mean().item()
    assert result["empty_latent"]["psnr_db"] == pytest.approx(
        10 * math.log10(1 / mse), abs=0.01)


def test_channel_choices_parse_lists_top_k_and_all():
    assert channel_choice(2, "11,0,5") == ("list", [0, 5, 11])  # a repeat is refused (test_bad_input)
    assert channel_choice(2, "top6") == ("top", 6)
    assert channel_choice(1, "all") == ("all", None)


# --- issue 16: class make-up, patch appearance, where a channel fires ---

def test_a_channel_firing_on_one_class_only_gets_that_class_at_100_percent():
    torch.manual_seed(0)
    labels = torch.arange(1000) % 10  # 100 images per class
    peaks = torch.rand(1000, 2) * 0.1
    peaks[labels == 3, 0] += 1.0  # channel 0 fires on cats only; channel 1 on nothing in particular
    rows = class_makeup(peaks, labels, k=100, tests=22)
    assert rows[0]["top_k_classes"]["cat"] == 100.0 and rows[0]["top_k_class"] == "cat"
    assert sum(rows[0]["top_k_classes"].values()) == pytest.approx(100.0)
    # P(X >= 100 | n = 100, p = 0.1) = 1e-100, times 22 tests
    assert rows[0]["top_k_class_p_bonferroni"] == pytest.approx(22e-100, rel=1e-2)
    assert rows[1]["top_k_class_share"] < 30 and rows[1]["top_k_class_p_bonferroni"] > 1e-3
    row = {**_neutral_row(), **rows[0]}
    assert "class-dominant for cat (100 % of its top-100" in describe_channel(2, row)


def test_the_binomial_test_matches_the_formula_for_a_partial_share():
    from math import comb
    labels = torch.arange(1000) % 10
    peaks = torch.zeros(1000, 1)
    horses = (labels == 7).nonzero().flatten()[:36]
    others = (labels != 7).nonzero().flatten()[:64]
    peaks[horses, 0], peaks[others, 0] = 2.0, 1.0
    row = class_makeup(peaks, labels, k=100, tests=22)[0]
    tail = sum(comb(100, i) * 0.1 ** i * 0.9 ** (100 - i) for i in range(36, 101))
    assert row["top_k_classes"]["horse"] == 36.0
    assert row["top_k_class_p_bonferroni"] == pytest.approx(min(1, 22 * tail), rel=1e-2)
    # one-sided: a channel unrelated to the class has a largest share near chance, whose
    # one-sided tail differs from a two-sided p-value
    unrelated = torch.rand(1000, 1, generator=torch.Generator().manual_seed(4))
    even = class_makeup(unrelated, labels, k=100, tests=1)[0]
    top = int(even["top_k_class_share"])
    expected = sum(comb(100, i) * 0.1 ** i * 0.9 ** (100 - i) for i in range(top, 101))
    assert even["top_k_class_p_bonferroni"] == pytest.approx(expected, rel=1e-2)


def _neutral_row(channel=0):
    return {"channel": channel, "r_luminance": 0.0, "r_red_green": 0.0, "r_blue_yellow": 0.0,
            "r_gradient_energy": 0.0, "orientation_spread": 0.0, "preferred_edge_deg": 0,
            "r_edge_by_angle": {}, "top_class": "cat", "class_selectivity": 0.0,
            "zero_share": 0.5}


def _blue_square_images(n=600, seed=0):
    """Grey noise images, each with one saturated blue 16x16 square at a random 4-aligned spot."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 32, 32, generator=g) * 80 + 90).repeat(1, 3, 1, 1)
    spots = torch.randint(0, 5, (n, 2), generator=g) * 4
    for i, (top, left) in enumerate(spots.tolist()):
        images[i, :, top:top + 16, left:left + 16] = torch.tensor([20., 40., 230.])[:, None, None]
    return images.round().to(torch.uint8), spots


def test_a_channel_driven_by_blue_patches_is_called_blue_and_gets_no_class_claim():
    images, _ = _blue_square_images()
    x = images.float() / 255
    # The channel: mean blueness B - (R+G)/2 over each z2 receptive field (16x16, stride 4),
    # computed here by hand with a sliding window.
    blueness = x[:, 2] - (x[:, 0] + x[:, 1]) / 2
    z = torch.stack([torch.stack([blueness[:, 4 * i:4 * i + 16, 4 * j:4 * j + 16].mean((1, 2))
                                  for j in range(5)], 1) for i in range(5)], 1)[:, None]
    labels = torch.arange(len(images)) % 10  # the squares are unrelated to the class
    peaks, positions = strongest_units(z)
    makeup = class_makeup(peaks, labels, k=100, tests=22)[0]
    looks = patch_appearance(images, peaks, positions, layer=2, k=100, seed=0)[0]
    assert looks["hue_name"] == "blue" and looks["d_saturation"] > 1.0
    sentence = describe_channel(2, {**_neutral_row(), **makeup, **looks})
    assert "saturated blue" in sentence
    assert "class-dominant" not in sentence and makeup["top_k_class_share"] < 30


@pytest.mark.parametrize("angle", [0, 45, 90, 135])
def test_patch_orientation_names_a_synthetic_edge(angle):
    yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(16.), indexing="ij")
    up = 15 - yy  # rows grow downwards; angles count counter-clockwise from horizontal
    theta = math.radians(angle)
    # luminance steps across the line through the centre at `angle`
    side = (-math.sin(theta) * (xx - 7.5) + math.cos(theta) * (up - 7.5)) > 0
    patch = side.float()[None, None].repeat(1, 3, 1, 1)
    measured = patch_measures(patch)
    difference = abs(measured["orientation_deg"].item() - angle) % 180
    assert min(difference, 180 - difference) < 8
    assert measured["coherence"].item() > 0.8


def test_centre_surround_and_luminance_of_a_dark_spot_on_light_ground():
    patch = torch.ones(1, 3, 16, 16)
    patch[..., 4:12, 4:12] = 0.0
    m = patch_measures(patch)
    assert m["centre_surround"].item() == pytest.approx(-1.0)
    assert m["luminance"].item() == pytest.approx(1 - 64 / 256)


def test_the_marked_box_is_the_argmax_of_the_map_mapped_to_pixels(tmp_path):
    torch.manual_seed(3)
    net = DeconvNet().eval()
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    x = image.float()[None] / 255 * 2 - 1
    # z1 and z2 computed here with the functional ops, not with net.encode
    z1 = F.max_pool2d(F.relu(F.conv2d(x, net.conv1.weight, net.conv1.bias)), 2)
    z2 = F.max_pool2d(F.relu(F.conv2d(z1, net.conv2.weight, net.conv2.bias)), 2)
    for layer, z, size, stride in ((1, z1, 6, 2), (2, z2, 16, 4)):
        channels = list(range(z.shape[1]))[:6]
        result = single_channels(net, net, image, layer, channels)
        for row in result.rows["channels"]:
            c = row["channel"]
            flat = int(z[0, c].flatten().argmax())
            i, j = divmod(flat, z.shape[-1])
            assert row["peak_position"] == [i, j]
            assert row["strongest_box"] == {"top": i * stride, "left": j * stride, "size": size}


class SignalNet(DeconvNet):
    """z1 channels set to known local signals, computed here by hand (6x6 mean, stride 2):
    0: R-G (or the gradient energy), 1: B-(R+G)/2, 2..5: squared directional derivative across
    edges at 0/45/90/135 deg."""

    def __init__(self, gradient_first=False):
        super().__init__()
        self.gradient_first = gradient_first

    def encode(self, x):
        latents = super().encode(x)
        rgb = (x + 1) / 2
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        lum = 0.299 * r + 0.587 * g + 0.114 * b
        gx = torch.zeros_like(lum)
        gy = torch.zeros_like(lum)
        gx[:, :, :-1] = lum[:, :, 1:] - lum[:, :, :-1]  # rightwards
        gy[:, :-1, :] = lum[:, 1:, :] - lum[:, :-1, :]  # downwards
        edges = []
        for angle in (0, 45, 90, 135):
            across = math.radians(angle + 90)  # an edge's gradient points across it; y up
            edges.append((math.cos(across) * gx - math.sin(across) * gy) ** 2)
        maps = [r - g, b - (r + g) / 2, *edges]
        if self.gradient_first:
            maps[0] = gx ** 2 + gy ** 2
        pooled = [torch.stack([torch.stack([m[:, 2 * i:2 * i + 6, 2 * j:2 * j + 6].mean((1, 2))
                                            for j in range(14)], 1) for i in range(14)], 1)
                  for m in maps]
        return latents.with_map(1, torch.stack(pooled, 1) + 2)


def test_every_channel_statistic_has_a_known_answer():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
    images = torch.nn.functional.avg_pool2d(images.float(), 3, 1, 1).round().to(torch.uint8)
    labels = torch.arange(30) % 10
    rows, _, _ = channel_statistics(SignalNet().eval(), images, labels, layer=1)
    assert rows[0]["r_red_green"] == pytest.approx(1.0, abs=1e-3)
    assert rows[1]["r_blue_yellow"] == pytest.approx(1.0, abs=1e-3)
    assert "colour-opponent, red over green (r = +1.00 with R-G)" in describe_channel(1, rows[0])
    assert "colour-opponent, blue over yellow (r = +1.00 with B-(R+G)/2)" in describe_channel(1, rows[1])
    flipped = {**rows[0], "r_red_green": -rows[0]["r_red_green"]}
    assert "green over red (r = -1.00" in describe_channel(1, flipped)
    for c, angle in zip(range(2, 6), (0, 45, 90, 135)):
        assert rows[c]["r_edge_by_angle"][str(angle)] == pytest.approx(1.0, abs=1e-3), angle
        assert rows[c]["preferred_edge_deg"] == angle
        sentence = describe_channel(1, {**rows[c], "r_gradient_energy": 0.9,
                                        "orientation_spread": 0.5})
        assert f"prefers {EDGE_NAMES[angle]} edges, r = +1.00" in sentence


def test_the_gradient_energy_statistic_has_a_known_answer():
    torch.manual_seed(1)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    rows, _, _ = channel_statistics(SignalNet(gradient_first=True).eval(), images,
                                    torch.arange(20) % 10, layer=1)
    assert rows[0]["r_gradient_energy"] == pytest.approx(1.0, abs=1e-3)
    assert "an edge detector (r = +1.00 with local gradient energy" in describe_channel(1, rows[0])


def test_the_other_image_controls_swap_latents_and_switches_between_images():
    torch.manual_seed(2)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    net = DeconvNet().eval()
    for p in net.parameters():
        p.data.mul_(3)
    result = controls(net, 2, images, batch_size=6)
    with torch.no_grad():
        own = [net.encode(normalize(images[i:i + 1])) for i in range(6)]
        other_latent, other_switches = [], []
        for i in range(6):
            j = (i - 1) % 6  # "another image": the previous one in the batch
            other_latent.append(net.decode(own[i].with_map(2, own[j].at(2)), 2))
            other_switches.append(net.decode(own[j].with_map(2, own[i].at(2)), 2))
    for case, decoded in (("other_latent", other_latent),
                          ("other_switches", other_switches)):
        mse = (denormalize(torch.cat(decoded)) - images / 255).pow(2).mean().item()
        assert result[case]["psnr_db"] == pytest.approx(10 * math.log10(1 / mse), abs=0.01), case
