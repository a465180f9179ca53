"""What each layer is invariant to: the transformations, the distance and the tests, against
answers computed by hand."""
import numpy as np
import pytest
import torch

from models import DeconvNet
from study.analysis.invariance import (GREY, TRANSFORMS, compare_with_random, invariance_curves,
                                       relative_distance, transform)


def test_each_transformation_moves_the_pixels_it_says():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    moved = transform(x, "translation", 4)  # 4 px right and down, grey where nothing was
    assert torch.equal(moved[:, :, 4:, 4:], x[:, :, :-4, :-4])
    assert (moved[:, :, :4, :] == GREY).all() and (moved[:, :, :, :4] == GREY).all()
    assert torch.equal(transform(x, "flip", 1), x[..., torch.arange(31, -1, -1)])
    for kind, amounts in TRANSFORMS.items():  # the first amount is the identity
        assert torch.equal(transform(x, kind, amounts[0]), x), kind
    # a 90-degree rotation (clockwise, as torchvision turns) of a 32x32 image moves pixels exactly
    quarter = transform(x, "rotation", 90)
    assert torch.equal(quarter, torch.rot90(x, -1, dims=(-2, -1)))
    # the grey frame moves no pixel: away from the border, torchvision's own turn and scale
    # (up to a rounding of one level), and none of its dark seam at the border
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF
    for kind, angle, scale in (("rotation", 20.0, 1.0), ("scale", 0.0, 0.9)):
        plain = TF.affine(x, angle=angle, translate=[0, 0], scale=scale, shear=[0.0],
                          interpolation=InterpolationMode.BILINEAR, fill=GREY)
        ours = transform(x, kind, angle if kind == "rotation" else scale)
        inside = (ours.int() - plain.int())[..., 8:24, 8:24].abs()
        assert inside.max() <= 1, kind


def test_the_relative_distance_is_written_out():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[3.0, 0.0], [0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    # |(0,-4)|/5 = 0.8; an all-zero image that stays so: 0; |(1,0)|/1 = 1
    assert relative_distance(a, b) == pytest.approx((0.8 + 0 + 1) / 3)


def test_curves_start_at_zero_and_the_probability_is_the_networks():
    torch.manual_seed(0)
    net = DeconvNet().eval()
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    curves = invariance_curves(net, x, labels)
    from data import normalize
    with torch.no_grad():
        p = torch.softmax(net(normalize(x))[0], dim=1)[torch.arange(6), labels].mean().item()
    for kind, block in curves.items():
        assert all(v[0] == 0 for v in block["distance"].values()), kind  # the identity
        assert block["true_class"][0] == pytest.approx(p, abs=1e-5)


def test_the_two_directions_are_ranked_against_the_random_networks_and_corrected_together():
    def curves(value):
        return {"flip": {"amounts": [0, 1], "distance": {"z1": [0.0, value]}, "true_class": [1, 1]}}
    random = [curves(v) for v in np.linspace(0.5, 0.9, 19)]
    below = compare_with_random(curves(0.1), random)["tests"][0]  # below every random network
    assert below["p_more"] == pytest.approx(1 / 20) and below["p_less"] == 1
    assert below["p_more_holm"] == pytest.approx(2 / 20)  # Holm over 2 tests (two directions)
    power = compare_with_random(curves(0.1), random)
    # 2 tests: 2 / (1 + 39) = 0.05 is not below 0.05; 2 / (1 + 40) is
    assert power["first_step"] == 0.025 and power["draws_needed"] == 40
    above = compare_with_random(curves(1.0), random)["tests"][0]
    assert above["p_less"] == pytest.approx(1 / 20) and above["less_invariant"] is False  # 0.1 > 0.05


def test_an_image_every_transformation_leaves_alone_has_flat_curves_through_a_fixed_net():
    """A grey image (the fill value everywhere) is unchanged by every move, scale and rotation,
    and a left-right symmetric one by the mirror: every distance is 0, and the true class's
    probability stays the network's own for the image."""
    torch.manual_seed(3)
    net = DeconvNet().eval()
    grey = torch.full((2, 3, 32, 32), GREY, dtype=torch.uint8)
    half = torch.randint(0, 256, (2, 3, 32, 16), dtype=torch.uint8)
    mirrored = torch.cat([half, half.flip(-1)], dim=-1)  # symmetric left-right
    labels = torch.tensor([0, 7])
    from data import normalize
    for images, kinds in ((grey, TRANSFORMS), (mirrored, ["flip"])):
        curves = invariance_curves(net, images, labels)
        with torch.no_grad():
            p = torch.softmax(net(normalize(images))[0], 1)[torch.arange(2), labels].mean().item()
        for kind in kinds:
            for layer, values in curves[kind]["distance"].items():
                assert values == [0.0] * len(TRANSFORMS[kind]), (kind, layer)
            assert curves[kind]["true_class"] == pytest.approx([p] * len(TRANSFORMS[kind]), abs=1e-5)
    # and a mirrored copy of an asymmetric image is not left alone
    assert max(invariance_curves(net, half.repeat(1, 1, 1, 2), labels)["flip"]["distance"]["z1"]) > 0


def test_a_null_draw_of_the_largest_amounts_only_ranks_as_a_whole_curve_does():
    torch.manual_seed(1)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3])
    trained = invariance_curves(DeconvNet().eval(), x, labels)
    draws = []
    for seed in range(3):
        torch.manual_seed(100 + seed)
        draws.append(DeconvNet().eval())
    whole = [invariance_curves(n, x, labels) for n in draws]
    short = [invariance_curves(n, x, labels, largest_only=True) for n in draws]
    assert short[0]["rotation"]["amounts"] == [0, 30] and short[0]["scale"]["amounts"] == [1.0, 0.8]
    assert short[0]["rotation"]["distance"]["z2"][1] == whole[0]["rotation"]["distance"]["z2"][3]
    assert compare_with_random(trained, short) == compare_with_random(trained, whole)


def test_the_default_draws_let_the_smallest_rank_p_pass_holm_and_a_hundred_fewer_would_not():
    import invariance
    for layers, tests in ((2, 16), (4, 32)):  # layers x 4 transformations x 2 directions
        draws = invariance.default_draws(layers)
        assert tests / (1 + draws) < 0.05 <= tests / (1 + draws - 100), layers
        assert (draws + 1) % 100 == 0
