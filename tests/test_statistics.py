"""Known answers, written from each definition, for the statistics the report publishes.

Each expectation is computed here by hand (a formula or a loop), never by the code under test:
accuracy and its binomial standard error, per-class accuracy and its largest standard error, the
confusion matrix, PSNR, the decoders' PSNR and r on a decoder with a known output, the no-network
PSNR baselines, the paired t-test over seeds, Cohen's d and the circular mean of the appearance
rules.
"""
import math

import pytest
import torch

from models import DeconvNet
from study.analysis.decoders import decoder_checks
from study.analysis.evidence import _weighted_angle, effect_size
from study.runs.summary import paired_t_test, seed_spread
from study.training.loop import accuracy_summary, psnr_db
from train_deconv import psnr_baselines


def test_accuracy_its_standard_error_per_class_and_confusion_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    predictions = torch.tensor([0, 0, 1, 2, 1, 1, 1, 0, 2, 2])
    summary = accuracy_summary(predictions, labels, ("a", "b", "c"))
    right = 2 + 3 + 2  # class a 2 of 4, b 3 of 4, c 2 of 2
    assert summary["test_accuracy"] == pytest.approx(100 * right / 10)
    assert summary["test_accuracy_standard_error"] == pytest.approx(
        round(100 * math.sqrt(0.7 * 0.3 / 10), 2))
    assert summary["per_class_accuracy"] == {"a": 50.0, "b": 75.0, "c": 100.0}
    # largest binomial standard error of a per-class accuracy: at p = 0.5, smallest class (c, 2)
    assert summary["per_class_standard_error_max"] == pytest.approx(round(100 * math.sqrt(0.25 / 2), 2))
    assert summary["confusion_matrix"] == [[2, 1, 1], [1, 3, 0], [0, 0, 2]]


def test_psnr_is_ten_log10_of_one_over_the_mse():
    assert psnr_db(0.01) == pytest.approx(20.0)
    assert psnr_db(1e-3) == pytest.approx(30.0)
    assert psnr_db(0.0) == float("inf")


class ConstantDecoder(DeconvNet):
    """Decodes every latent to the normalised value -1 (pixel 0 once denormalised)."""

    def decode(self, latents, layer, keep=None, tied=False):
        return torch.full((len(latents.at(1)), 3, 32, 32), -1.0)


def test_decoder_psnr_of_a_decoder_with_a_known_output():
    images = torch.full((4, 3, 32, 32), 51, dtype=torch.uint8)  # 0.2 in [0, 1]
    images[:, :, :16] = 102  # upper half 0.4
    result = decoder_checks({"z1_refit": (ConstantDecoder().eval(), 1, False)}, images)["z1_refit"]
    mse = (0.2 ** 2 + 0.4 ** 2) / 2  # every pixel decoded as 0
    assert result["psnr_db"] == pytest.approx(round(10 * math.log10(1 / mse), 2))
    assert result["layer"] == 1


def test_decoder_checks_read_each_decoder_through_its_own_encoder():
    # two networks with different encoders in one call (each batch is encoded once per model):
    # each decoder's PSNR and r are those of a plain loop over its own encode and decode
    torch.manual_seed(0)
    first, second = DeconvNet().eval(), DeconvNet().eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    decoders = {"z1_refit": (first, 1, False), "z2_learned": (second, 2, False),
                "z2_tied": (first, 2, True)}
    result = decoder_checks(decoders, images, batch_size=4)
    target = images.double() / 255
    for name, (model, layer, tied) in decoders.items():
        squared, weighted_r = 0.0, 0.0
        for start in (0, 4):  # the same batches, by hand
            x = images[start:start + 4].float() / 127.5 - 1
            with torch.no_grad():
                y = (model.decode(model.encode(x), layer, tied=tied).double() * 0.5 + 0.5).clamp(0, 1)
            t = target[start:start + 4]
            squared += (y - t).pow(2).sum().item()
            a, b = y.flatten() - y.mean(), t.flatten() - t.mean()
            weighted_r += (a @ b / (a.norm() * b.norm())).item() * len(x)
        mse = squared / images.numel()
        assert result[name]["psnr_db"] == pytest.approx(round(10 * math.log10(1 / mse), 2), abs=0.011)
        assert result[name]["correlation"] == pytest.approx(round(weighted_r / len(images), 3), abs=0.0011)


def test_psnr_baselines_by_hand():
    train = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    train[1] = 255  # training mean colour 0.5 in every channel
    test = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    test[0, 0, :, :16] = 255  # left half red, right half blue
    test[0, 2, :, 16:] = 255
    baselines = psnr_baselines(train, test)
    assert baselines["global mean colour"] == pytest.approx(10 * math.log10(1 / 0.25))
    # its own mean colour is (0.5, 0, 0.5): errors 0.25, 0, 0.25 on R, G, B
    assert baselines["image mean colour"] == pytest.approx(10 * math.log10(1 / (0.5 / 3)))
    # 4x4 thumbnails: blocks never straddle the edge at column 16, so away from the bilinear
    # ramp the thumbnail is exact and its PSNR beats the flat baselines
    assert baselines["4x4 thumbnail"] > baselines["image mean colour"]


def test_paired_t_test_over_seeds_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3); with 2 degrees of freedom the
    # t distribution's CDF is 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2)
    t = 2 * math.sqrt(3)
    result = paired_t_test([1.0, 2.0, 3.0])
    assert result["t"] == pytest.approx(round(t, 2)) and result["df"] == 2
    assert result["p_value"] == pytest.approx(round(1 - t / math.sqrt(2 + t * t), 3))
    assert paired_t_test([1.0]) is None
    assert seed_spread([1.0, 2.0, 3.0, 4.0]) == {"mean": 2.5, "sd": round(math.sqrt(5 / 3), 2), "n": 4}


def test_cohens_d_with_the_pooled_standard_deviation():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])
    assert effect_size(a, b) == pytest.approx(-3.0)  # means 2 and 5, pooled sd 1
    c = torch.tensor([0.0, 2.0, 4.0, 6.0])  # variance 20/3
    pooled = math.sqrt((2 * 1.0 + 3 * 20 / 3) / 5)
    assert effect_size(c, a) == pytest.approx(round((3 - 2) / pooled, 2))


def test_weighted_circular_mean_and_resultant_length():
    mean, length = _weighted_angle(torch.tensor([10.0, 30.0]), torch.tensor([1.0, 1.0]), 360)
    assert mean == pytest.approx(20.0) and length == pytest.approx(math.cos(math.radians(10)))
    # weights count: 3 x 0 degrees and 1 x 90 degrees -> resultant (3, 1) / 4
    mean, length = _weighted_angle(torch.tensor([0.0, 90.0]), torch.tensor([3.0, 1.0]), 360)
    assert mean == pytest.approx(math.degrees(math.atan2(1, 3)))
    assert length == pytest.approx(math.sqrt(10) / 4)
    # axial data (period 180): 170 and 10 degrees average to 0, not to 90
    mean, length = _weighted_angle(torch.tensor([170.0, 10.0]), torch.tensor([1.0, 1.0]), 180)
    assert min(mean, 180 - mean) == pytest.approx(0.0, abs=1e-9)
    assert length == pytest.approx(math.cos(math.radians(20)))
