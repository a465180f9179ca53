"""Task 3's typed result (study/analysis/task3_result.py): the file Task 3 wrote reads back into
one LayerResult per layer of its architecture and writes back key for key; a file that lies
about a layer, a decoder or a group is refused with one line naming the field."""
import json
from pathlib import Path

import pytest

from models import Architecture
from study.analysis.task3_result import read_task3
from study.core.common import UsageError
from study.core.ids import DecoderId, ModelId

pytestmark = pytest.mark.slow  # reads the session's tiny study (trained by its fixture)


def _metrics(study_outputs: Path) -> dict:
    return json.loads((study_outputs / "task3" / "metrics.json").read_text())


def test_the_result_reads_back_every_layer_and_writes_the_same_file(study_outputs):
    path = study_outputs / "task3" / "metrics.json"
    written = json.loads(path.read_text())
    result = read_task3(path)
    arch = Architecture.from_description(written["architecture"])
    assert [layer.name for layer in result.layers] == [f"z{k}" for k in range(1, arch.depth + 1)]
    for layer, stage in zip(result.layers, arch.layers):
        assert layer.stage == stage
        assert layer.channels == written["channels"][stage.name]
        assert [row["channel"] for row in layer.channels] == list(range(stage.channels))
        assert layer.top9 == written["top9"][stage.name]
        assert layer.nulls == written["baselines"]["rules"][stage.name]
        assert layer.controls["own"].psnr_db == written["controls"][stage.name]["own"]["psnr_db"]
    # decoders by value: the file's "z1_refit" is DecoderId(1, "refit"), nothing else
    assert {(d.layer, d.kind) for d in result.decoders} == {
        tuple([int(key.split("_")[0][1:]), key.split("_")[1]]) for key in written["decoders"]}
    assert result.decoder(1, "refit").psnr_db == written["decoders"]["z1_refit"]["psnr_db"]
    # the summaries by DecoderId and ModelId: the pictures of z2 use Task 2's own decoder
    psnr = result.summary("psnr", result.layer("z2"))
    assert psnr[ModelId("trained")] == written["baselines"]["psnr_summary"]["z2_learned"]["trained"]
    assert result.picture_decoder(result.layer("z1")) == DecoderId(1, "refit")
    assert [str(g) for g in result.cascade(result.layer("z2"))] == ["conv2", "conv1_conv2"]
    # the one writer gives the file back, key for key and in its order
    assert result.to_json() == written
    assert json.dumps(result.to_json()) == json.dumps(written)


@pytest.mark.parametrize("damage, field", [
    (lambda m: m["channels"]["z2"].reverse(), "channels: z2[0]: channel is 15, not 0"),
    (lambda m: m["channels"]["z2"].pop(), "channels: z2 is a list of 15 items"),
    (lambda m: m["top9"].pop("z1"), "top9 lacks 'z1'"),
    (lambda m: m["controls"].pop("z2"), "controls lacks 'z2'"),
    (lambda m: m["decoders"].pop("z2_tied"), "decoders lacks z2_tied"),
    (lambda m: m["decoders"].update(z9_learnt=m["decoders"]["z2_tied"]), "decoders: 'z9_learnt'"),
    (lambda m: m["decoders"]["z1_refit"].update(layer=2), "decoders: z1_refit: layer is 2"),
    (lambda m: m["baselines"]["psnr_summary"]["z2_learned"].update(
        conv7_conv2=m["baselines"]["psnr_summary"]["z2_learned"]["trained"]),
     "psnr_summary: z2_learned: 'conv7_conv2'"),
    (lambda m: m["baselines"]["rules"].pop("z1"), "baselines: rules lacks 'z1'"),
    (lambda m: m["top9"]["z1"][0]["test_indices"].__setitem__(0, 10 ** 6), "top9: z1[0]: test_indices[0]"),
    (lambda m: m["architecture"]["layers"][1].update(channels=17), "architecture:"),
    (lambda m: m.update(task="task2"), "not Task 3's"),
])
def test_a_file_that_lies_about_a_layer_decoder_or_group_is_one_line(study_outputs, tmp_path,
                                                                     damage, field):
    metrics = _metrics(study_outputs)
    damage(metrics)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    with pytest.raises(UsageError) as error:
        read_task3(path)
    message = str(error.value)
    assert field in message and str(path) in message and "\n" not in message, message
