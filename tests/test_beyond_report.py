"""The companion report's arithmetic (make_beyond_report.py, study/reporting/questions.py):
Holm over the layers, computed here by hand, a verdict per layer that names only what survives
its test, the three questions' facts against hand-made metrics, and a written verdict that a
run contradicts stopping the build with the sentence named."""
import dataclasses

import pytest

import make_beyond_report as depth
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
    """Round six, case 2: beyond.pdf is not built from a folder still marked .incomplete (a run
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


# --- the three questions beyond the assignment, from hand-made metrics ---

def _seeds_metrics() -> dict:
    def pair(mean_r, p):
        return {"mean_r": mean_r, "p_mean_holm": p}
    return {"seeds": [0, 1, 2], "protocol": {"images": 2000}, "data": {"train_images": 50_000,
                                                                       "test_images": 10_000},
            "layers": {
                "z1": {"channels": 6, "counterpart_in_every_seed": [3],
                       "null": {"q95_r": 0.8, "mean_r": 0.5, "draws": 299},
                       "pairs": {"0-1": pair(0.7, 0.02), "0-2": pair(0.8, 0.01), "1-2": pair(0.9, 0.03)}},
                "z2": {"channels": 16, "counterpart_in_every_seed": [],
                       "null": {"q95_r": 0.7, "mean_r": 0.45, "draws": 299},
                       "pairs": {"0-1": pair(0.6, 0.02), "0-2": pair(0.5, 0.2), "1-2": pair(0.7, 0.02)}}}}


def test_the_seeds_facts_average_the_pairs_and_need_every_pair_to_agree():
    from study.reporting.questions import seeds_facts
    found = seeds_facts(_seeds_metrics())
    z1, z2 = found["layers"]
    assert z1["mean_r"] == pytest.approx((0.7 + 0.8 + 0.9) / 3) and z1["p_max"] == 0.03
    assert z1["agree"] and not z2["agree"]  # z2's pair 0-2 has Holm p 0.2
    assert (z1["everywhere"], z2["everywhere"]) == (1, 0) and found["full_data"]
    assert found["pairs"] == 3 and found["draws"] == 299


def _formation_metrics(p_holm: dict[str, list[float]], settled: dict[str, list[int]]) -> dict:
    epochs = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0]
    return {"seeds": [0, 1, 2], "protocol": {"null_draws": 299, "images": 2000},
            "data": {"train_images": 500, "test_images": 100},
            "snapshots": [{"epoch": e, "same_units": {
                layer: {"r": [0.5] * (6 if layer == "z1" else 16), "settled": settled[layer][k],
                        "mean_r": 0.5} for layer in p_holm},
                "other_seeds": {layer: {"mean_r": 0.6, "null_q95_r": 0.55, "p_holm": p_holm[layer][k]}
                                for layer in p_holm}} for k, e in enumerate(epochs)]}


def test_a_layer_matches_the_seeds_from_the_first_snapshot_after_which_it_always_does():
    from study.reporting.questions import formation_facts
    metrics = _formation_metrics({"z1": [1, 0.04, 0.2, 0.01, 0.01, 0.01],  # lost at 1/4 epoch
                                  "z2": [1, 0.04, 0.04, 0.04, 0.04, 0.04]},
                                 {"z1": [0, 1, 1, 1, 2, 6], "z2": [0, 0, 1, 4, 10, 16]})
    z1, z2 = formation_facts(metrics)["layers"]
    assert z1["matched_since"] == 0.5 and z2["matched_since"] == 0.125
    assert z1["settled"] == [0, 1, 1, 1, 2, 6] and z2["channels"] == 16
    never = _formation_metrics({"z1": [1, 1, 1, 1, 1, 0.2], "z2": [1] * 6},
                               {"z1": [0] * 6, "z2": [0] * 6})
    assert [layer["matched_since"] for layer in formation_facts(never)["layers"]] == [None, None]
    assert not formation_facts(never)["full_data"]  # 500 training images: not the prose's run


def test_the_invariance_facts_name_each_surviving_direction():
    from study.reporting.questions import invariance_facts

    def test(kind, layer, trained, more, less):
        return {"transform": kind, "layer": layer, "amount": 8, "trained": trained,
                "random": [0.5, 0.7, 0.6], "p_more_holm": more, "p_less_holm": less}
    trained = {"translation": {"amounts": [0, 4, 8], "true_class": [0.4, 0.3, 0.2]},
               "rotation": {"amounts": [0, 30, -30], "true_class": [0.4, 0.3, 0.35]}}
    metrics = {"images": 500, "data": {}, "trained": trained, "tests": {
        "draws": 399, "smallest_p": 0.0025, "first_step": 0.05 / 4, "tests": [
            test("translation", "z1", 0.4, 0.04, 1.0), test("translation", "z2", 0.9, 1.0, 0.01)]}}
    found = invariance_facts(metrics)
    assert found["more"] == ["z1 translation"] and found["less"] == ["z2 translation"]
    assert found["family"] == 4 and found["tests"][0]["random_low"] == 0.5
    assert found["tests"][1]["random_high"] == 0.7
    # the true class's probability unchanged and at the largest change (the first of two)
    assert found["true_class"]["translation"] == {"unchanged": 0.4, "changed": 0.2, "amount": 8}
    assert found["true_class"]["rotation"] == {"unchanged": 0.4, "changed": 0.3, "amount": 30}


def test_a_run_that_contradicts_a_written_verdict_stops_the_build_naming_the_sentence():
    from study.core.common import UsageError
    from study.reporting import claims
    from study.reporting.beyond_claims import CLAIMS
    from study.reporting.questions import seeds_facts

    template = depth.TEMPLATE.read_text()
    metrics = _seeds_metrics()
    metrics["layers"]["z2"]["pairs"]["0-2"]["p_mean_holm"] = 0.01  # every pair agrees now
    facts = {"networks": {"tutorial": {"seeds": seeds_facts(metrics), "formation": None,
                                       "invariance": None}}, "depth": None}
    with pytest.raises(UsageError, match="seeds-few"):  # z2 has no counterpart in every seed
        claims.check_verdicts(facts, template, CLAIMS, "report/beyond.typ")
    metrics["layers"]["z2"]["counterpart_in_every_seed"] = [4]
    facts["networks"]["tutorial"]["seeds"] = seeds_facts(metrics)
    claims.check_verdicts(facts, template, CLAIMS, "report/beyond.typ")  # now both hold
    with pytest.raises(UsageError, match="Different seeds learn alike layers: every layer"):
        facts["networks"]["tutorial"]["seeds"]["layers"][0]["agree"] = False
        claims.check_verdicts(facts, template, CLAIMS, "report/beyond.typ")


def test_the_deep_verdicts_hold_vacuously_before_make_depth_and_fail_on_a_reversed_order():
    from study.reporting.beyond_claims import CLAIMS
    from study.reporting.questions import formation_facts

    before = {"networks": {"tutorial": {"seeds": None, "formation": None, "invariance": None}}}
    assert all(CLAIMS[k].holds(before) for k in ("deep-seeds-none", "deep-formation",
                                                 "deep-invariance"))
    matched = {"z1": [1, 0.04, 0.04, 0.04, 0.04, 0.04], "z2": [1, 0.04, 0.04, 0.04, 0.04, 0.04]}
    # z1 has 6 channels and z2 16: z1 settles first (3/6 > 4/16, 6/6 > 10/16), then the reverse
    lowest_first = formation_facts(_formation_metrics(matched, {"z1": [0, 3, 6, 6, 6, 6],
                                                                "z2": [0, 4, 10, 16, 16, 16]}))
    top_first = formation_facts(_formation_metrics(matched, {"z1": [0, 1, 2, 6, 6, 6],
                                                             "z2": [0, 8, 12, 16, 16, 16]}))
    for facts, holds in ((lowest_first, True), (top_first, False)):
        f = {"networks": {"deep": {"seeds": None, "formation": facts, "invariance": None}}}
        assert CLAIMS["deep-formation"].holds(f) is holds


@pytest.mark.slow
def test_the_tiny_studys_companion_answers_each_question_with_its_own_numbers(study_outputs):
    """make all's companion report on the tiny study: a section, figure and table per question,
    the seeds' table holding each layer's mean matched r averaged by hand from compare_seeds.py's
    metrics, and no verdict sentence (the prose is for the full data)."""
    import json
    import subprocess

    text = subprocess.run(["pdftotext", "-layout", str(study_outputs / "beyond.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    for heading in ("Do different seeds learn the same channels?", "When do channels form?",
                    "What does each layer become invariant to?", "Does learning show with depth?"):
        assert heading in text
    assert "The seeds' comparison" not in text and "The invariance of the tutorial" not in text
    assert "The deeper network has not been run" in text and "In brief" not in text
    seeds = json.loads((study_outputs / "seeds" / "metrics.json").read_text())
    for name, block in seeds["layers"].items():
        mean = sum(p["mean_r"] for p in block["pairs"].values()) / len(block["pairs"])
        row = next(line for line in text.splitlines() if line.split()[:2] == ["tutorial", name])
        assert row.split()[2] == f"{round(mean, 2):g}", row
    assert all(f"Figure {k}:" in text for k in (1, 2, 3, 4))
