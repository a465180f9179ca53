"""baselines.py: known answers, each computed here independently (a formula or a written-out loop)."""
import copy
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from conftest import SHARED_CIFAR10, run_script
from data import normalize
from models import ARCHITECTURE, DeconvNet
from study.analysis import (baselines, evidence, findings, nulls, occlusion, projections,
                            random_models)
from study.analysis.evidence import channel_table
from train_deconv import permuted_labels


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


class InputBlind(DeconvNet):
    """A decoder that ignores its input: decode = the sum of fixed patterns of the kept channels."""

    def __init__(self) -> None:
        super().__init__()
        patterns = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(5))
        self.register_buffer("patterns", patterns)

    def decode(self, latents, layer, keep=None, tied=False):
        channels = latents.at(layer).shape[1]
        mask = torch.ones(len(latents.at(layer)), channels) if keep is None else torch.zeros(len(keep), channels)
        for k, kept in enumerate(keep or []):
            mask[k, list(kept)] = 1
        return torch.einsum("nc,cxyz->nxyz", mask, self.patterns[:channels])


# --- re-initialisation ---

def test_reinitialisation_never_touches_the_trained_model_and_avoids_the_training_seed():
    torch.manual_seed(0)
    net = DeconvNet()
    before = copy.deepcopy(net.state_dict())
    rng_before = torch.get_rng_state()
    seeds = random_models.baseline_seeds(training_seed=1002, count=3)
    assert seeds == [1001, 1003, 1004] and 1002 not in seeds
    with pytest.raises(ValueError):
        random_models.reinitialised(net, "conv2", 1002, training_seed=1002)
    only2 = random_models.reinitialised(net, "conv2", seeds[0], training_seed=1002)
    both = random_models.reinitialised(net, "conv1_conv2", seeds[0], training_seed=1002)
    other = random_models.reinitialised(net, "conv2", seeds[1], training_seed=1002)
    for key, value in net.state_dict().items():  # the trained model is untouched
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng_before)  # and so is the global random state
    assert not torch.equal(only2.conv2.weight, net.conv2.weight)
    assert torch.equal(only2.conv1.weight, net.conv1.weight)  # conv1 stays trained
    assert torch.equal(only2.fc1.weight, net.fc1.weight) and torch.equal(only2.deconv2.weight, net.deconv2.weight)
    assert not torch.equal(both.conv1.weight, net.conv1.weight)
    assert torch.equal(both.conv2.weight, only2.conv2.weight)  # a cascade: the same random conv2
    assert not torch.equal(other.conv2.weight, only2.conv2.weight)
    # PyTorch's default init: uniform within +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5))
    bound = 1 / (ARCHITECTURE.layer(2).in_channels * ARCHITECTURE.kernel ** 2) ** 0.5
    assert only2.conv2.weight.abs().max() <= bound
    again = random_models.reinitialised(net, "conv2", seeds[0], training_seed=1002)
    assert torch.equal(again.conv2.weight, only2.conv2.weight)


# --- pictures ---

def test_a_decoder_that_ignores_its_input_gives_trained_vs_random_similarity_one():
    torch.manual_seed(0)
    trained = InputBlind().eval()
    random = random_models.reinitialised(trained, "conv1_conv2", 1001, training_seed=0)
    image = _images(1)[0]
    for layer in (1, 2):
        a = baselines.single_channel_pictures(trained, image, layer)
        b = baselines.single_channel_pictures(random, image, layer)
        assert torch.allclose(a, trained.patterns[:len(a)], atol=1e-6)  # own pattern, the empty one's 0
        for pa, pb in zip(a, b):
            score = baselines.picture_similarity(pa, pb)
            assert score["spearman"] == pytest.approx(1) and score["ssim"] == pytest.approx(1)
    # ... while a decoder that reads its input does not
    real = DeconvNet().eval()
    moved = random_models.reinitialised(real, "conv1_conv2", 1001, training_seed=0)
    a, b = (baselines.single_channel_pictures(m, image, 1) for m in (real, moved))
    assert baselines.picture_similarity(a[0], b[0])["ssim"] < 0.9


def test_picture_similarity_is_scipys_spearman_of_absolute_values():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 32, 32, generator=g), torch.randn(3, 32, 32, generator=g)
    b = b + a  # correlated
    expected = spearmanr(np.abs(a.numpy()).ravel(), np.abs(b.numpy()).ravel()).statistic
    assert baselines.picture_similarity(a, b)["spearman"] == pytest.approx(expected)
    assert baselines.picture_similarity(a, -a)["spearman"] == pytest.approx(1)  # |values|
    flat = torch.zeros(3, 32, 32)
    assert baselines.picture_similarity(flat, flat) == {"spearman": 1.0, "ssim": 1.0}
    assert baselines.picture_similarity(flat, a) == {"spearman": 0.0, "ssim": 0.0}


# --- rules on synthetic latents, and rotations ---

@pytest.mark.slow
def test_a_class_pure_axis_is_named_on_that_axis_and_loses_the_claim_under_rotation():
    n, per_class = 1000, 100
    labels = torch.arange(10).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(n, *ARCHITECTURE.layer(1).shape, generator=g)
    z2 = torch.randn(n, *ARCHITECTURE.layer(2).shape, generator=g)
    z2[:, 0] = 0.1 * (labels == 3).float()[:, None, None] + 0.001 * z2[:, 0]  # axis 0: class 3 only
    z2[:, 1] = 0  # a dead channel: its "top 100" are ties, mostly the first images (class 0)
    images = _images(n)
    named = baselines.name_channels({1: z1, 2: z2}, images, labels, seed=0)
    classed = [row["channel"] for row in named[2] if "class" in row["rules"]]
    assert classed == [0] and not any("class" in row["rules"] for row in named[1])
    assert named[2][1]["images_active"] == 0 and named[2][1]["top_k_class_share"] >= 30  # named without the check
    assert not {"class", "look"} & set(named[2][1]["rules"])
    top = z2[:, 0].flatten(1).max(1).values.topk(100).indices  # by hand: all 100 are class 3
    assert (labels[top] == 3).all() and named[2][0]["top_k_class_share"] == 100
    for seed in (0, 1, 2):
        generator = torch.Generator().manual_seed(seed)
        q = {layer: random_models.random_rotation(z.shape[1], generator) for layer, z in ((1, z1), (2, z2))}
        for layer in (1, 2):
            assert torch.allclose(q[layer].T @ q[layer], torch.eye(len(q[layer])), atol=1e-5)
        rotated = baselines.name_channels({1: random_models.rotate(z1, q[1]), 2: random_models.rotate(z2, q[2])},
                                          images, labels, seed=0)
        assert not any("class" in row["rules"] for row in rotated[2]), seed
    # rotation by hand: new channel j = sum_c q[c, j] z_c
    q2 = random_models.random_rotation(16, torch.Generator().manual_seed(9))
    by_hand = sum(q2[c, 5] * z2[:, c] for c in range(16))
    assert torch.allclose(random_models.rotate(z2, q2)[:, 5], by_hand, atol=1e-5)


@pytest.mark.slow
def test_replayed_latents_give_task3s_statistics_of_the_model():
    torch.manual_seed(0)
    net, images = DeconvNet().eval(), _images(1500, seed=2)
    labels = torch.arange(10).repeat(150)
    with torch.no_grad():
        latents = net.encode(normalize(images))
    direct, z_direct, _ = channel_table(net, images, labels, seed=0)
    replayed, z_replayed, _ = channel_table(baselines.Replay(latents.at(1), latents.at(2)), images, labels, seed=0)
    for layer in (1, 2):
        assert direct[layer] == replayed[layer] and torch.equal(z_direct[layer], z_replayed[layer])


def test_a_channels_words_keep_only_what_survives_its_null():
    row = {"roles": [{"kind": "class", "detail": "plane", "words": "plane-skewed"},
                     {"kind": "look", "detail": "saturated blue", "words": "saturated blue patches"}]}
    judgement = {"class_share": {"survives": False, "p_holm": 0.4},
                 "claims": [{"rule": "look", "survives": True, "p_holm": 0.002}]}
    assert [r["kind"] for r in findings.surviving_roles(row, judgement)] == ["look"]
    sentence = findings.against_baselines(row, judgement, {"draws": 299})
    assert "top-class share (p = 0.40), no higher than untrained channels reach" in sentence
    assert "appearance (p = 0.002)" in sentence
    judgement["class_share"]["survives"] = True
    assert [r["kind"] for r in findings.surviving_roles(row, judgement)] == ["class", "look"]


# --- projection diversity ---

class Periodic(DeconvNet):
    """Projections that are one fixed pattern, repeating with the layer's stride: every crop of
    every unit's projection is the same picture (times the unit's value)."""

    def decode(self, latents, layer, keep=None, tied=False):
        stride = ARCHITECTURE.layer(layer).stride
        g = torch.Generator().manual_seed(3)
        tile = torch.randn(3, stride, stride, generator=g)
        pattern = tile.repeat(1, 32 // stride, 32 // stride)
        z = latents.at(layer)
        return z.flatten(1).sum(1)[:, None, None, None] * pattern


def test_projection_diversity_of_a_constant_projection_is_one():
    torch.manual_seed(0)
    net, images = Periodic().eval(), _images(60, seed=3)
    with torch.no_grad():
        latents = net.encode(normalize(images))
    for layer in (1, 2):
        rows = projections.projection_diversity(net, latents.at(layer), images, layer)
        # channels whose nine strongest units are all above zero (a zero unit projects nothing)
        alive = latents.at(layer).flatten(2).amax(2).topk(9, dim=0).values.amin(0) > 0
        assert alive.sum() >= 5
        assert all(row["projection_similarity"] == pytest.approx(1, abs=1e-3)
                   for row, on in zip(rows, alive) if on)
        # the patches' similarity by hand: mean r over the 36 pairs of the top-9 patches
        z = latents.at(layer)[:, 0]
        peaks, where = z.flatten(1).max(1)
        size, stride, width = ARCHITECTURE.layer(layer).receptive_field, ARCHITECTURE.layer(layer).stride, z.shape[-1]
        tiles = []
        for i in peaks.topk(9).indices.tolist():
            top, left = (int(where[i]) // width) * stride, (int(where[i]) % width) * stride
            tiles.append(images[i, :, top:top + size, left:left + size].double().flatten().numpy())
        pairs = [np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(tiles, 2)]
        assert rows[0]["patch_similarity"] == pytest.approx(np.mean(pairs), abs=1e-3)
        assert rows[0]["flagged"] is (rows[0]["projection_similarity"] > rows[0]["patch_similarity"])


# --- occlusion ---

def test_the_occlusion_map_of_a_linear_model_is_its_weight_map():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 32, 32, generator=g)
    x = torch.randn(2, 3, 32, 32, generator=g)
    ones = torch.ones(1, 3, 32, 32)

    def linear(batch):
        return (batch * w).sum((1, 2, 3))[:, None] + 0.5

    size, stride = occlusion.OCCLUDER["size"], occlusion.OCCLUDER["stride"]
    n = (32 - size) // stride + 1
    base, maps = occlusion.occlusion_maps(linear, ones, size, stride)
    assert maps.shape == (1, 1, n, n) == (1, 1, 13, 13)
    weight_map = torch.zeros(n, n)  # the weights under each square position, by hand
    for i in range(n):
        for j in range(n):
            weight_map[i, j] = w[:, i * stride:i * stride + size, j * stride:j * stride + size].sum()
    assert torch.allclose(base[0, 0] - maps[0, 0], weight_map, atol=1e-3)
    base, maps = occlusion.occlusion_maps(linear, x, size, stride)
    for b in range(2):  # any image: the drop is w . x under the square
        for i, j in ((0, 0), (5, 7), (12, 12)):
            part = (w * x[b])[:, i * stride:i * stride + size, j * stride:j * stride + size].sum()
            assert (base[b, 0] - maps[b, 0, i, j]).item() == pytest.approx(part.item(), abs=1e-3)


def test_rowwise_spearman_is_scipys_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (5, 169), generator=g).float()  # many ties
    b = torch.randn(5, 169, generator=g) + a
    rho = occlusion.rowwise_spearman(a, b)
    for row in range(5):
        assert rho[row].item() == pytest.approx(spearmanr(a[row].numpy(), b[row].numpy()).statistic)
    assert occlusion.rowwise_spearman(torch.zeros(1, 9), torch.arange(9.0)[None]).isnan().all()



@pytest.mark.parametrize("tied", [False, True])
def test_occlusion_agreement_is_a_plain_loop_over_each_images_active_channels(tied):
    """Per image and active last-layer channel, by hand: the drop of the channel's strongest value
    under the occluder, against its strongest unit's |projection| (minus the empty decode for a
    learned decoder) averaged under each occluder position; Spearman by scipy; inactive
    channels and constant maps left out."""
    torch.manual_seed(3)
    net = DeconvNet().eval()
    with torch.no_grad():
        net.conv2.bias[:6] -= 100  # six z2 channels never fire: left out, never projected
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8)
    size, stride, classes = occlusion.OCCLUDER["size"], occlusion.OCCLUDER["stride"], 10
    expected = []
    with torch.no_grad():
        for image in images:
            x = normalize(image[None])
            base, maps = occlusion.occlusion_maps(occlusion.deconvnet_scores(net), x, size, stride)
            latents = net.encode(x)
            z = latents.last[0]
            for c in range(z.shape[0]):
                peak = z[c].max()
                if peak <= 0:
                    continue
                where = int(z[c].flatten().argmax())
                single = torch.zeros_like(latents.last)
                single[0, c].view(-1)[where] = peak
                projection = net.decode(latents.with_map(2, single), 2, tied=tied)
                if not tied:
                    projection = projection - net.decode(latents.with_map(2, torch.zeros_like(single)), 2)
                pooled = F.avg_pool2d(projection.abs().sum(1, keepdim=True), size, stride).flatten()
                drop = (base[0, classes + c] - maps[0, classes + c]).flatten()
                rho = spearmanr(drop.numpy(), pooled.numpy()).statistic
                if not np.isnan(rho):
                    expected.append(rho)
    got = occlusion.occlusion_agreement(net, {"d": (net, tied)}, images, chunk=2)["d"]
    assert got["n"] == len(expected) > 0 and len(expected) <= 5 * 10
    assert got["mean"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert got["sd"] == pytest.approx(np.std(expected, ddof=1), abs=1e-4)


# --- permuted labels (baseline (c)) ---

def test_permuted_labels_are_a_deterministic_permutation():
    labels = torch.arange(10).repeat(500)
    once, again, other = permuted_labels(labels, 0), permuted_labels(labels, 0), permuted_labels(labels, 1)
    assert torch.equal(once, again) and not torch.equal(once, other)
    assert torch.equal(torch.bincount(once), torch.bincount(labels))  # every class keeps its count
    assert 0.07 < (once == labels).float().mean().item() < 0.13  # chance agreement only
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(once, labels[order])  # not the first epoch's shuffling order


def test_train_deconv_permute_labels_is_recorded(tmp_path, tiny_cifar, script_env):
    result = run_script("train_deconv.py", "--data-dir", tiny_cifar, "--epochs", "1", "--quiet",
                        "--log-every", "10", "--permute-labels", "--out", tmp_path / "perm",
                        env=script_env)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "perm" / "metrics.json").read_text())["config"]
    assert config["permute_labels"] is True and config["seed"] == 0


# --- the whole block on the real data ---

@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_CIFAR10 / "train").is_dir(), reason="../shared/cifar10 is not here")
def test_a_short_real_run_has_the_baseline_keys_for_every_rule():
    from data import load_cifar10

    data = load_cifar10(SHARED_CIFAR10, subset=0.02, seed=0, quiet=True)
    torch.manual_seed(0)
    net = DeconvNet().eval()
    result, figure = baselines.randomisation_baselines(
        net, data, training_seed=0, picks={"train": 0, "test": 0},
        trained_rows={stage.index: [{"channel": c, "roles": [{"kind": "colour"}]}
                                    for c in range(stage.channels)] for stage in ARCHITECTURE.layers},
        settings=baselines.BaselineSettings(seeds=[1001, 1002],
                                            refit={**random_models.REFIT, "steps": 10},
                                            occlusion_images=6, null_draws=3))
    block = result.to_json()
    assert list(block) == ["protocol", "models", "psnr_summary", "rules", "picture_similarity",
                           "projection_diversity", "occlusion", "seconds"]
    assert block["models"]["conv2_seed1001"] == {"group": "conv2", "seed": 1001, "refit_seconds":
                                                 result.models["conv2_seed1001"].refit_seconds,
                                                 "psnr_db": result.models["conv2_seed1001"].psnr_db}
    json.dumps(block, allow_nan=False)
    for layer, groups in (("z1", {"conv1_conv2", "rotation"}), ("z2", {"conv2", "conv1_conv2", "rotation"})):
        counts = block["rules"][layer]["counts"]
        assert set(counts) == set(baselines.RULE_KINDS)
        for entry in counts.values():
            assert set(entry["baselines"]) == groups
            assert all(b["draws"] == 3 and len(b["counts"]) == 3 for b in entry["baselines"].values())
            assert {"p", "p_value", "p_holm", "survives", "mean_statistic"} <= set(entry)
        for channel in block["rules"][layer]["channels"]:
            # pooled over 3 draws of every channel of the layer: p is at least 1 / (1 + 3 C)
            assert channel["class_share"]["p_value"] >= 1 / (1 + 3 * len(block["rules"][layer]["channels"]))
            assert [c["rule"] for c in channel["claims"]] == ["colour"]
    assert set(block["occlusion"]["summary"]) == {"z2_learned", "z2_tied"}
    similarity = block["picture_similarity"]["summary"]
    assert set(similarity["z2_learned"]) == {"conv2", "conv1_conv2", "refit_seed"}
    assert set(similarity["z1_tied"]) == {"conv1_conv2"}  # z1 is the trained one under conv2
    assert block["occlusion"]["per_model"]["trained"]["z2_tied"]["n"] > 0
    assert figure.pictures["conv2_seed1001"]["test"].keys() == {"z2_learned", "z2_tied"}
    occlusion = figure.occlusion["trained"]["test"]
    assert occlusion["drop"].shape == (16, 13, 13) and occlusion["probability"].shape == (13, 13)
    assert occlusion["strongest_unit_projections"]["z2_tied"].shape == (16, 3, 32, 32)
    assert 0 <= occlusion["probability_unoccluded"] <= 1


@pytest.mark.slow
def test_the_shortcuts_give_the_same_numbers():
    """Image measures computed once for all models, and the zero-latent decodes reused."""

    torch.manual_seed(0)
    net, images = DeconvNet().eval(), _images(300, seed=4)
    labels = torch.arange(10).repeat(30)
    plain, _, _ = channel_table(net, images, labels, seed=0)
    signals = {layer: evidence.local_signals(images, layer) for layer in (1, 2)}
    once = [channel_table(m, images, labels, seed=0, signals=signals)[0] for m in (net, net)]
    assert once == [plain, plain]
    with torch.no_grad():
        latents = net.encode(normalize(images[:4]))
        zero = latents.with_map(2, torch.zeros_like(latents.at(2)))
        channel, position = torch.tensor([0, 3, 7, 15]), torch.tensor([0, 6, 12, 24])
        for tied in (False, True):
            single = torch.zeros_like(latents.at(2))
            for m in range(4):
                r, c = divmod(int(position[m]), latents.at(2).shape[-1])
                single[m, channel[m], r, c] = latents.at(2)[m, channel[m], r, c]
            expected = (net.decode(latents.with_map(2, single), 2, tied=tied)
                        - net.decode(zero, 2, tied=tied))
            got = projections.unit_projections(net, latents, 2, channel, position, tied)
            assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.slow
def test_class_selectivity_is_not_read_from_signed_directions():
    n = 500
    labels = torch.arange(10).repeat_interleave(50)
    g = torch.Generator().manual_seed(0)
    z1 = torch.rand(n, *ARCHITECTURE.layer(1).shape, generator=g)
    z2 = torch.rand(n, *ARCHITECTURE.layer(2).shape, generator=g)
    z2[:, 2] = 1.0 * (labels == 5).float()[:, None, None] - 0.2  # class 5 only, mean < 0 elsewhere
    z2[:, 3] = 1.0 * (labels == 5).float()[:, None, None] + 0.01 * z2[:, 3]  # the same, >= 0
    named = baselines.name_channels({1: z1, 2: z2}, _images(n), labels, seed=0)
    signed, plain = named[2][2], named[2][3]
    assert "selective" in signed["undefined"] and "selective" not in signed["rules"]
    assert "selective" in plain["rules"] and plain["undefined"] == []
    assert nulls.rule_value("selective", signed) is None
