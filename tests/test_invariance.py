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
    assert power["first_step"] == 0.025 and power["draws_needed"] == 39  # 1 / (1 + 39) = 0.025
    above = compare_with_random(curves(1.0), random)["tests"][0]
    assert above["p_less"] == pytest.approx(1 / 20) and above["less_invariant"] is False  # 0.1 > 0.05
