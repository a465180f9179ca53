"""The depth report's arithmetic (make_depth_report.py): Holm over the layers, computed here by
hand, and a verdict per layer that names only what survives its test."""
import dataclasses

import pytest

import make_depth_report as depth
from models import Architecture
from study.analysis.task3_result import LayerResult, Task3Result


def _task3(p_values: dict[str, float], trained: dict[str, int]) -> Task3Result:
    """Task 3's result for a net of 16-channel layers, one per p-value, holding only the
    class-dominant counts the depth report reads."""
    arch = Architecture(channels=(16,) * len(p_values), kernel=3, padding=1, hidden=())
    layers = tuple(LayerResult(stage, [{}] * 16, [], [], {}, {
        "channels": [], "counts": {"class": {
            "trained": trained[stage.name], "p_value": p_values[stage.name],
            "baselines": {"conv2": {"mean": 3.0}, "rotation": {"mean": 2.5},
                          "permuted_labels": {"mean": 4}}}}}) for stage in arch.layers)
    return Task3Result(arch, layers, {}, {}, {}, {}, {}, {}, {}, [], "", None, None, {}, 0.0,
                       {}, {})


def _probes(accuracy: dict[str, dict[str, float]], p_holm: dict[str, float], pixels=0.40) -> dict:
    return {"pixels": pixels, "layers": {name: {
        "accuracy": found,
        "mcnemar": {g: {"p_value": p_holm[name] / 2, "p_holm": p_holm[name]}
                    for g in [*found, "pixels"] if g != "trained"}}
        for name, found in accuracy.items()}}


def test_counts_are_holm_corrected_over_the_layers():
    facts = depth.layer_facts(_task3({"z1": 0.04, "z2": 0.01, "z3": 0.03}, {"z1": 5, "z2": 9, "z3": 7}), None)
    # Holm by hand: sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert [f["count"]["p_holm"] for f in facts] == pytest.approx([0.06, 0.03, 0.06])
    assert [f["count"]["channels"] for f in facts] == [16, 16, 16]


def test_a_layer_where_both_tests_pass_says_learning_shows_and_one_that_fails_says_it_does_not():
    task3 = _task3({"z1": 0.5, "z2": 0.001}, {"z1": 2, "z2": 12})
    probes = _probes({"z1": {"trained": 0.45, "conv1_conv2": 0.47},
                      "z2": {"trained": 0.60, "conv2": 0.41, "conv1_conv2": 0.38}},
                     {"z1": 0.2, "z2": 0.0001})
    first, second = (depth.layer_sentence(f, 2) for f in depth.layer_facts(task3, probes))
    assert first.startswith("z1: learning does not show:")
    assert "not above every baseline" in first and "not significant" in first
    assert second.startswith("z2: learning shows in both tests:")
    assert "60.0 %" in second and "41.0 %" in second and "12 of its 16 channels" in second


def test_a_probe_above_its_baselines_but_not_significant_is_not_called_learning():
    probes = _probes({"z1": {"trained": 0.50, "conv1": 0.49}}, {"z1": 0.3})
    (sentence,) = (depth.layer_sentence(f, 1) for f in depth.layer_facts(None, probes))
    assert sentence.startswith("z1: learning does not show in the probe (the channel count was "
                               "not measured):")


def test_group_labels_follow_the_depth():
    assert depth.group_label("conv3_conv4", 4) == "random conv3+conv4"
    assert depth.group_label("permuted_labels", 4) == "permuted labels"
    assert depth.group_label("pixels", 2) == "raw pixels"


@pytest.mark.parametrize("part", ["task2", "task3", "probes"])
def test_a_part_whose_run_did_not_finish_is_refused(part, tmp_path):
    """Round six, case 2: depth.pdf is not built from a folder still marked .incomplete (a run
    that stopped, whose files may be older than it): one UsageError naming the folder."""
    from study.core.common import UsageError
    from study.core.layout import INCOMPLETE

    folder = tmp_path / "depth" / part
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / INCOMPLETE).write_text('{"script": "x.py", "started": "today"}')
    with pytest.raises(UsageError, match=f"{part} holds an unfinished run") as error:
        depth.optional(folder / "metrics.json", part, f"deep {part} metrics")
    assert "\n" not in str(error.value)
    (folder / INCOMPLETE).unlink()  # past the marker, the file's values are checked
    with pytest.raises(UsageError, match="lacks"):
        depth.optional(folder / "metrics.json", part, f"deep {part} metrics")


def test_probes_or_task3_of_another_network_are_refused(tmp_path):
    """Round six, case 3: probes (or Task 3) that read another network than the depth study's
    Task 2 model, put into depth/probes, used to go into the report without a word."""
    import hashlib

    from study.core.common import UsageError

    checkpoint = tmp_path / "deconv_net.pth"
    checkpoint.write_bytes(b"the deep model")
    ours = hashlib.sha256(b"the deep model").hexdigest()
    folders = (tmp_path / "task3", tmp_path / "probes")
    def task3_of(sha256: str) -> Task3Result:
        return dataclasses.replace(_task3({"z1": 0.5}, {"z1": 1}),
                                   layer1_refit={"checkpoint_sha256": sha256})

    depth.check_same_network(task3_of(ours), {"checkpoint_sha256": ours}, checkpoint, folders)
    depth.check_same_network(None, None, checkpoint, folders)  # nothing to combine: nothing to say
    with pytest.raises(UsageError, match="probes read another network") as error:
        depth.check_same_network(None, {"checkpoint_sha256": "0" * 64}, checkpoint, folders)
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="task3 read another network"):
        depth.check_same_network(task3_of("1" * 64), None, checkpoint, folders)
