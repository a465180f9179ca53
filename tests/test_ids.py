"""Decoder and model names as values: each written by its type and read back only by it."""
import pytest

from study.core.ids import DecoderId, ModelId


@pytest.mark.parametrize("text, layer, kind", [("z1_refit", 1, "refit"), ("z4_learned", 4, "learned"),
                                               ("z12_tied", 12, "tied"), ("z2_literal", 2, "literal")])
def test_a_decoder_id_reads_back_what_it_writes(text, layer, kind):
    decoder = DecoderId.parse(text)
    assert (decoder.layer, decoder.kind) == (layer, kind) and str(decoder) == text


@pytest.mark.parametrize("text", ["z1_x", "z0_refit", "1_refit", "z1refit", "z1_refit ", "", None,
                                  "z_refit", "z1_refit_tied", "Z1_refit"])
def test_anything_else_is_not_a_decoder_id(text):
    with pytest.raises(ValueError):
        DecoderId.parse(text)


def test_pictures_use_the_refit_at_z1_and_task2s_own_decoder_above():
    # a four-stage net: refit, literal, literal, learned; a one-stage net has no refit
    assert [str(DecoderId.picture(k, 4)) for k in range(1, 5)] == [
        "z1_refit", "z2_literal", "z3_literal", "z4_learned"]
    assert str(DecoderId.picture(1, 1)) == "z1_learned"
    assert DecoderId(3, "tied").tied and not DecoderId(3, "learned").tied
    assert DecoderId(1, "refit").label == "z1, refitted on the real latents"


@pytest.mark.parametrize("model, text", [
    (ModelId("trained"), "trained"), (ModelId("permuted"), "permuted_labels"),
    (ModelId("random", 1001, (1, 2)), "conv1_conv2_seed1001"),
    (ModelId("lambda", 0, lam=0.01), "lambda_0.01_seed0")])
def test_a_model_id_is_written_as_task3_and_the_page_name_it_and_travels_as_json(model, text):
    assert str(model) == text
    assert ModelId.from_json(model.to_json()) == model


@pytest.mark.parametrize("value", [
    None, [], {"kind": "random"}, {"kind": "random", "seed": 1, "stages": [], "lambda": None},
    {"kind": "trained", "seed": -1, "stages": [], "lambda": None},
    {"kind": "trained", "seed": True, "stages": [], "lambda": None},
    {"kind": "random", "seed": 1, "stages": [0], "lambda": None},
    {"kind": "random", "seed": 1, "stages": ["1"], "lambda": None},
    {"kind": "lambda", "seed": 0, "stages": [], "lambda": float("inf")},
    {"kind": "lambda", "seed": 0, "stages": [], "lambda": None},
    {"kind": "wizard", "seed": 0, "stages": [], "lambda": None},
    {"kind": 3, "seed": 0, "stages": [], "lambda": None},
    {"kind": "trained", "seed": 0, "stages": [], "lambda": None, "extra": 1}])
def test_a_crafted_model_description_is_refused(value):
    with pytest.raises(ValueError):
        ModelId.from_json(value)


@pytest.mark.parametrize("text, model", [
    ("trained", ModelId("trained")), ("permuted_labels", ModelId("permuted")),
    ("rotation", ModelId("rotation")), ("refit_seed", ModelId("refit_seed")),
    ("conv2", ModelId("random", None, (2,))), ("conv3_conv4_seed7", ModelId("random", 7, (3, 4))),
    ("lambda_0.1_seed2", ModelId("lambda", 2, lam=0.1))])
def test_groups_and_models_parse_back_to_what_wrote_them(text, model):
    assert ModelId.parse(text) == model and str(model) == text


@pytest.mark.parametrize("text", ["conv1_conv3", "conv0", "conv_seed1", "conv1_seed", "conv1_seedx",
                                  "lambda_x_seed0", "permuted", "conv1__conv2", "", None, "conv2 "])
def test_anything_else_is_not_a_model_id(text):
    with pytest.raises(ValueError):
        ModelId.parse(text)


def test_a_cascade_step_is_named_and_worded_from_its_stages():
    # the words the tutorial's figures used: "random conv2", "conv2 re-initialised over the
    # trained conv1"; a four-stage net's middle step says which trained layers lie below
    assert ModelId.cascade(2, 2).short == "random conv2"
    assert ModelId.cascade(2, 2).long == "conv2 re-initialised over the trained conv1"
    assert ModelId.cascade(1, 2).long == "conv1 and conv2 re-initialised"
    assert ModelId.cascade(3, 4).long == "conv3 and conv4 re-initialised over the trained conv1..conv2"
    assert ModelId.cascade(3, 4, seed=1001).group == ModelId.cascade(3, 4)
