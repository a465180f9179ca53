"""Round six, case 7: the architecture in a metrics.json is read through one validation. A fuzz
over the description (random types, ranges, sizes, missing and extra fields) gives either the
network `describe` wrote or a ValueError naming the field; never another exception, never a
network above the stated memory limits."""
import copy
import random

import pytest

from models import ARCHITECTURES, MAX_ACTIVATIONS, MAX_WEIGHTS, Architecture

ODD_VALUES = [-5, 0, 1, 3, 2 ** 31, 10 ** 7, 1e6, 1.5, "32", None, True, [], {}, [1, 2],
              float("nan"), float("inf")]


def _mutate(described: dict, rng: random.Random) -> dict:
    out = copy.deepcopy(described)
    target = rng.choice(["top", "layer", "fc", "drop", "stages"])
    if target == "top":
        out[rng.choice(["image_channels", "image_size", "batchnorm", "fc", "layers"])] = rng.choice(ODD_VALUES)
    elif target == "layer":
        layer = rng.choice(out["layers"])
        layer[rng.choice(["channels", "kernel", "pool", "padding"])] = rng.choice(ODD_VALUES)
    elif target == "fc":
        out["fc"][rng.randrange(len(out["fc"]))] = rng.choice(ODD_VALUES)
    elif target == "drop":
        out.pop(rng.choice(list(out)))
    else:
        out["layers"] = out["layers"] * rng.choice([0, 3, 10_000])
    return out


def _weights(arch: Architecture) -> int:
    """Every parameter of the DeconvNet, counted from the modules torch builds (independently of
    the estimate models.py makes before building)."""
    from models import DeconvNet
    return sum(p.numel() for p in DeconvNet(arch).parameters())


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_preset_reads_back_as_itself(name):
    assert Architecture.from_description(ARCHITECTURES[name].describe()) == ARCHITECTURES[name]


def test_a_fuzzed_description_is_the_network_or_one_value_error():
    rng = random.Random(0)
    accepted = 0
    for _ in range(600):
        base = ARCHITECTURES[rng.choice(sorted(ARCHITECTURES))].describe()
        described = _mutate(base, rng)
        try:
            arch = Architecture.from_description(described)
        except ValueError as error:
            assert "\n" not in str(error) and str(error)
            continue
        accepted += 1
        assert arch.describe()["fc"] == described["fc"]
        assert [s["channels"] for s in arch.describe()["layers"]] == \
            [s["channels"] for s in described["layers"]]
    assert accepted > 0  # some mutations keep a valid network (e.g. another width)


@pytest.mark.parametrize("field, value, words", [
    ("channels", -5, "channels is -5"), ("padding", -1, "padding is -1"), ("pool", 0, "pool is 0"),
    ("channels", "32", "channels is '32'"), ("kernel", 99, "kernel is 99")])
def test_each_bad_stage_value_is_named(field, value, words):
    described = ARCHITECTURES["deep4"].describe()
    for layer in described["layers"]:
        layer[field] = value
    with pytest.raises(ValueError, match=words):
        Architecture.from_description(described)


def test_sizes_that_would_allocate_terabytes_are_refused_before_anything_is_built():
    described = ARCHITECTURES["tutorial"].describe()
    huge_image = {**described, "image_size": 1000}
    with pytest.raises(ValueError):
        Architecture.from_description(huge_image)  # fc widths no longer match, or over limits
    wide = copy.deepcopy(described)
    wide["fc"][1:3] = [60_000, 60_000]  # a 14 GB head: 400 x 6e4 + 6e4 x 6e4 + 6e4 x 10
    with pytest.raises(ValueError, match="over the limits"):
        Architecture.from_description(wide)
    with pytest.raises(ValueError, match="1 to 16 stages"):
        Architecture.from_description({**described, "layers": described["layers"] * 10_000})
    # the estimate agrees with what torch builds, for every preset (so the limit means bytes)
    for arch in ARCHITECTURES.values():
        assert _weights(arch) <= MAX_WEIGHTS
        assert sum(s.channels * s.conv_size ** 2 for s in arch.layers) <= MAX_ACTIVATIONS
