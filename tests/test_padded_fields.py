"""Receptive fields of padded networks: the offset of models.ConvLayer and study/analysis/evidence.py's
field averages, boxes, patches and crops, against hand computation and autograd."""
import pytest
import torch

from models import ARCHITECTURES, Architecture, DeconvNet
from study.analysis.evidence import clip_box, crop, local_signals, patches_at, receptive_box

# small3's stages with padding 1: the padded kind Task 3 must read
SMALL3_PADDED = Architecture(channels=(8, 16, 32), kernel=3, hidden=(64,), padding=1)
# one stage on a 4x4 image, 3x3 conv with padding 1, 2x2 pool: small enough to do by hand
TOY = Architecture(image_size=4, channels=(1,), kernel=3, padding=1, hidden=())


def test_offsets_sizes_and_fields_of_padded_stages_by_hand():
    # z1: conv 32 -> 32 (padding keeps size), pool -> 16; a unit sees 3 + 1 = 4 pixels starting
    # 1 pixel before the image (the padding). z2: 10 = 4 + 2*2 + 1*2 pixels, offset 1 + 1*2 = 3.
    # z3: 22 = 10 + 2*4 + 1*4, offset 3 + 1*4 = 7.
    assert [(s.size, s.receptive_field, s.stride, s.offset) for s in SMALL3_PADDED.layers] == [
        (16, 4, 2, 1), (8, 10, 4, 3), (4, 22, 8, 7)]
    five = Architecture(channels=(6, 16), kernel=5, padding=2)
    # z1: 6 pixels from -2; z2: 6 + 4*2 + 1*2 = 16 pixels from -(2 + 2*2) = -6
    assert [(s.receptive_field, s.offset) for s in five.layers] == [(6, 2), (16, 6)]
    assert all(s.offset == 0 for s in ARCHITECTURES["tutorial"].layers)
    assert "offset" not in str(ARCHITECTURES["tutorial"].describe())  # metrics files unchanged


def test_boxes_start_before_the_image_in_a_padded_net_and_not_in_the_tutorials():
    assert receptive_box(1, 0, 2, TOY) == (-1, -1, 4)
    assert receptive_box(1, 3, 2, TOY) == (1, 1, 4)  # unit (1, 1): pixels 1..4, one past
    assert receptive_box(2, 6, 5) == (4, 4, 16)  # the tutorial's z2 unit (1, 1): unchanged
    # small3 padded, z3 unit (row 1, column 3): 1*8 - 7 and 3*8 - 7
    assert receptive_box(3, 1 * 4 + 3, 4, SMALL3_PADDED) == (1, 17, 22)


def test_clip_box_keeps_the_part_inside_the_image():
    assert clip_box((-1, -1, 4), 4) == (0, 0, 3, 3)
    assert clip_box((1, 1, 4), 4) == (1, 1, 3, 3)
    assert clip_box((4, 4, 16), 32) == (4, 4, 16, 16)
    assert clip_box((-7, 17, 22), 32) == (0, 17, 15, 15)


def test_crops_and_patches_are_zero_where_the_field_leaves_the_image():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 4, 4).repeat(3, 1, 1)
    expected = torch.zeros(3, 4, 4, dtype=torch.uint8)
    expected[:, 1:, 1:] = image[:, 0:3, 0:3]
    assert torch.equal(crop(image, (-1, -1, 4)), expected)
    expected = torch.zeros(3, 4, 4, dtype=torch.uint8)
    expected[:, :3, :3] = image[:, 1:4, 1:4]
    assert torch.equal(crop(image, (1, 1, 4)), expected)
    assert torch.equal(crop(image, (0, 1, 2)), image[:, 0:2, 1:3])  # inside: a plain slice
    patches = patches_at(image[None], torch.tensor([0, 0]), torch.tensor([0, 3]), 1, 2, TOY)
    assert patches.shape == (2, 3, 4, 4)
    assert torch.equal(patches[1], expected.float() / 255)


def test_field_averages_count_only_pixels_inside_the_image():
    # a grey image whose pixel (i, j) is 10 * (4i + j): luminance is that over 255
    values = 10 * (4 * torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4))
    image = values.to(torch.uint8).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    luminance = local_signals(image, 1, TOY)["luminance"][0] * 255 / 10
    # unit (0, 0) sees pixels rows/columns 0..2 (3x3 of the 4x4 field), unit (1, 1) rows and
    # columns 1..3: means of 4i + j over those are 5 and 10; unit (0, 1): rows 0..2, cols 1..3
    expected = torch.tensor([[5.0, 6.0], [9.0, 10.0]])
    torch.testing.assert_close(luminance, expected, atol=1e-4, rtol=1e-5)
    signals = local_signals(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), 3,
                            SMALL3_PADDED)
    assert all(m.shape == (2, 4, 4) for m in signals.values())


def test_unpadded_field_averages_are_unchanged():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    luminance = (0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]) / 255
    expected = torch.nn.functional.avg_pool2d(luminance.float(), 16, 4)[:, 0]
    torch.testing.assert_close(local_signals(images, 2)["luminance"], expected)


@pytest.mark.parametrize("layer, position", [(1, 0), (2, 0), (2, 9), (3, 15), (3, 5)])
def test_the_box_is_exactly_where_the_unit_can_see_by_autograd(layer, position):
    """Union over random images of the pixels with a nonzero gradient of the unit: the box,
    clipped to the image (the pooling switches vary, so together they cover the whole field)."""
    torch.manual_seed(0)
    net = DeconvNet(SMALL3_PADDED)
    with torch.no_grad():  # positive weights: every unit fires, each pixel can reach it
        for conv in net.convs():
            conv.weight.uniform_(0.01, 1.0)
            conv.bias.fill_(0.1)
    width = SMALL3_PADDED.layer(layer).size
    seen = torch.zeros(32, 32, dtype=torch.bool)
    for _ in range(8):
        images = torch.rand(16, 3, 32, 32, requires_grad=True)
        z = net.encode(images).at(layer)
        z[:, :, position // width, position % width].sum().backward()
        seen |= (images.grad.abs().sum((0, 1)) > 0)
    top, left, height, width_ = clip_box(receptive_box(layer, position, width, SMALL3_PADDED), 32)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[top:top + height, left:left + width_] = True
    assert torch.equal(seen, expected)
