"""Task 3's result as one typed value, written by one writer and read back by one reader.

visualize_latents.py builds a `Task3Result` and writes it with `to_json` (task3/metrics.json);
the report, the depth report and the explorer read it back with `read_task3`, which checks every
value they read, by type and range, where the file is read (one line naming the field for
anything else), and hands them the typed value: one `LayerResult` per layer of the recorded
architecture (so every reader loops over `result.layers`, whatever the depth), the decoders by
`DecoderId`, and the baselines' summaries by `DecoderId` and group `ModelId`. No reader builds or
splits an id string.
"""
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from models import Architecture, ConvLayer
from study.core.common import UsageError
from study.core.ids import DecoderId, ModelId
from study.core.readers import check_metrics, field, read_json, require, require_items

FIX = "rerun visualize_latents.py"
ANY, UNIT, POSITIVE = (None, None), (0, 1), (0, None)
PERCENT, CORRELATION = (0, 100), (-1, 1)
SUMMARIES = {"psnr": "psnr_summary", "occlusion": "occlusion", "similarity": "picture_similarity"}


@dataclass(frozen=True)
class Reading:
    """How well a decoder reads full latents of the test set: PSNR (dB) and Pearson's r."""

    label: str
    psnr_db: float
    correlation: float

    def to_json(self) -> dict:
        return {"label": self.label, "psnr_db": self.psnr_db, "correlation": self.correlation}


@dataclass(frozen=True)
class LayerResult:
    """One latent layer: per channel its row of measures and finding (`channels`), its
    strongest test images (`top9`), its mean per class (`class_means`, channels x classes), the
    controls of the decoder its pictures use (`controls`: case -> Reading), and the null tests
    of its rules (`nulls`: {"channels": each channel's claims, "counts": rule -> count test})."""

    stage: ConvLayer
    channels: list[dict]
    top9: list[dict]
    class_means: list[list[float]]
    controls: dict[str, Reading]
    nulls: dict

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def index(self) -> int:
        return self.stage.index

    def count_nulls(self, rule: str) -> dict[ModelId, dict]:
        """The null groups of a rule's count ({"mean", "sd", "draws", ...} per group), by
        group; {} when the trained net never meets the rule."""
        count = self.nulls["counts"].get(rule)
        return {ModelId.parse(g): v for g, v in count["baselines"].items()} if count else {}


@dataclass(frozen=True)
class Task3Result:
    """Everything Task 3 found, as task3/metrics.json holds it.

    architecture: the network read; layers: one LayerResult per stage, in order; decoders: each
    decoder's full-latent Reading; baselines: the randomisation baselines' block (study.analysis
    .baselines.BaselineResult.to_json); images: the two images' single-channel results by split;
    layer1_refit: the layer-1 decoder's fit; rules: the rules' thresholds; the rest says what was
    read and how (rule_images, appearance_reference, conv1_filters, checkpoint,
    permuted_checkpoint, task2_config, config, wall_seconds, data, environment)."""

    architecture: Architecture
    layers: tuple[LayerResult, ...]
    decoders: dict[DecoderId, Reading]
    baselines: dict
    images: dict
    layer1_refit: dict
    rules: dict
    rule_images: dict
    appearance_reference: dict
    conv1_filters: list
    checkpoint: str
    permuted_checkpoint: dict | None
    task2_config: dict | None
    config: dict
    wall_seconds: float
    data: dict
    environment: dict

    def layer(self, name: str) -> LayerResult:
        return next(layer for layer in self.layers if layer.name == name)

    def decoder(self, layer: int, kind: str) -> Reading:
        return self.decoders[DecoderId(layer, kind)]

    def picture_decoder(self, layer: LayerResult) -> DecoderId:
        """The decoder whose pictures show `layer` (DecoderId.picture)."""
        return DecoderId.picture(layer.index, self.architecture.depth)

    @property
    def protocol(self) -> dict:
        """The null distributions' protocol (draws, Holm families, the groups per layer)."""
        return self.baselines["rules"]["protocol"]

    @cached_property
    def _summaries(self) -> dict[str, dict[DecoderId, dict[ModelId, dict]]]:
        return {part: {DecoderId.parse(d): {ModelId.parse(g): v for g, v in groups.items()}
                       for d, groups in _summary_block(self.baselines, part).items()}
                for part in SUMMARIES}

    def summary(self, part: str, layer: LayerResult) -> dict[ModelId, dict]:
        """A baseline summary ("psnr", "occlusion" or "similarity") of the decoder whose
        pictures show `layer`, by group: {"mean", "sd", ...}; {} when it was not measured."""
        return self._summaries[part].get(self.picture_decoder(layer), {})

    def cascade(self, layer: LayerResult) -> list[ModelId]:
        """The randomised groups whose nulls judge `layer`, in the cascade's order."""
        groups = map(ModelId.parse, self.protocol["groups"][layer.name])
        return [group for group in groups if group.kind == "random"]

    def to_json(self) -> dict:
        """The one writer: task3/metrics.json, key for key."""
        return {
            "task": "task3", "checkpoint": self.checkpoint,
            "permuted_checkpoint": self.permuted_checkpoint, "task2_config": self.task2_config,
            "architecture": self.architecture.describe(), "layer1_refit": self.layer1_refit,
            "decoders": {str(d): {"label": r.label, "layer": d.layer, "psnr_db": r.psnr_db,
                                  "correlation": r.correlation} for d, r in self.decoders.items()},
            "controls": {layer.name: {case: r.to_json() for case, r in layer.controls.items()}
                         for layer in self.layers},
            "rules": self.rules, "channels": {layer.name: layer.channels for layer in self.layers},
            "baselines": self.baselines, "appearance_reference": self.appearance_reference,
            "rule_images": self.rule_images,
            "class_means": {layer.name: layer.class_means for layer in self.layers},
            "images": self.images, "top9": {layer.name: layer.top9 for layer in self.layers},
            "conv1_filters": self.conv1_filters, "config": self.config,
            "wall_seconds": self.wall_seconds, "data": self.data,
            "environment": self.environment,
        }


def _summary_block(baselines: dict, part: str) -> dict:
    block = baselines[SUMMARIES[part]]
    return block if part == "psnr" else block["summary"]


# --- the one reader ---

# Every value a reader of the file reads, checked where it is read; "a.*" is every value of an
# object, "a[].b" every row of a list (study.core.readers.check_metrics).
EXPECTED = [
    ("task", str, (5, 5)), ("checkpoint", str, (0, 4000)),
    ("permuted_checkpoint", (dict, type(None)), ANY), ("task2_config", (dict, type(None)), ANY),
    ("architecture", dict, ANY), ("decoders", dict, (1, None)), ("controls", dict, ANY),
    ("channels", dict, ANY), ("top9", dict, ANY), ("class_means", dict, ANY),
    ("layer1_refit", dict, ANY), ("layer1_refit.checkpoint_sha256", str, (1, 128)),
    ("layer1_refit.epochs", int, POSITIVE), ("layer1_refit.fit_seconds", float, POSITIVE),
    ("rules", dict, ANY), ("rules.*", float, ANY), ("images", dict, ANY),
    ("images.*.index", int, POSITIVE), ("images.*.class", str, (1, 40)),
    ("rule_images", dict, ANY), ("rule_images.count", int, (1, None)),
    ("rule_images.of", int, (1, None)), ("appearance_reference", dict, ANY),
    ("appearance_reference.top_k", int, (1, None)),
    ("appearance_reference.random_patches", int, (1, None)),
    ("conv1_filters", list, ANY), ("config", dict, ANY), ("wall_seconds", float, POSITIVE),
    ("data", dict, ANY), ("environment", dict, ANY),
    ("baselines", dict, ANY), ("baselines.models", dict, (1, None)),
    ("baselines.protocol", dict, ANY), ("baselines.protocol.seeds", list, ANY),
    ("baselines.protocol.refit", dict, ANY), ("baselines.protocol.refit.steps", int, POSITIVE),
    ("baselines.protocol.occluder", dict, ANY),
    ("baselines.protocol.occluder.size", int, (1, None)),
    ("baselines.protocol.occluder.stride", int, (1, None)),
    ("baselines.psnr_summary", dict, ANY), ("baselines.psnr_summary.*", dict, ANY),
    ("baselines.psnr_summary.*.*.mean", float, ANY),
    ("baselines.picture_similarity", dict, ANY), ("baselines.picture_similarity.summary", dict, ANY),
    ("baselines.picture_similarity.summary.*.*.spearman_mean", float, CORRELATION),
    ("baselines.occlusion", dict, ANY), ("baselines.occlusion.images", int, POSITIVE),
    ("baselines.occlusion.summary", dict, ANY),
    ("baselines.occlusion.summary.*.*.mean", float, CORRELATION),
    ("baselines.projection_diversity", dict, ANY),
    ("baselines.rules", dict, ANY), ("baselines.rules.protocol", dict, ANY),
    ("baselines.rules.protocol.draws", int, (1, None)),
    ("baselines.rules.protocol.alpha", float, UNIT),
    ("baselines.rules.protocol.smallest_p", float, UNIT),
    ("baselines.rules.protocol.groups", dict, ANY),
    ("baselines.rules.protocol.groups.*", list, ANY),
    ("baselines.rules.protocol.families", dict, ANY),
    ("baselines.rules.protocol.families.*", int, POSITIVE),
    ("baselines.rules.seconds", dict, ANY), ("baselines.rules.seconds.total", float, POSITIVE),
]
READING = [("label", str, (0, 200)), ("psnr_db", float, ANY),
           ("correlation", float, CORRELATION)]
ROW = [("channel", int, POSITIVE), ("finding", str, (0, 100_000)), ("roles", list, (0, 100)),
       ("roles[].kind", str, (1, 40)), ("top_k", int, (1, None)),
       ("top_k_classes", dict, (1, None)), ("top_k_classes.*", float, PERCENT),
       ("top_k_class", str, (1, 40)), ("top_k_class_share", float, PERCENT),
       ("r_luminance", float, CORRELATION), ("r_red_green", float, CORRELATION),
       ("r_blue_yellow", float, CORRELATION), ("r_gradient_energy", float, CORRELATION)]
TOP = [("test_indices", list, (1, 100)), ("test_indices[]", int, POSITIVE),
       ("boxes", list, (1, 100)), ("classes", list, (1, 100)), ("classes[]", str, (0, 100)),
       ("projection_similarity", float, CORRELATION)]
NULLS = [("channels", list, (1, None)), ("channels[].channel", int, POSITIVE),
         ("channels[].claims", list, ANY), ("channels[].class_share", dict, ANY),
         ("counts", dict, ANY), ("counts.*.trained", int, POSITIVE),
         ("counts.*.channels", int, (1, None)), ("counts.*.baselines", dict, ANY),
         ("counts.*.questions", dict, ANY)]


def read_task3(path: Path, fix: str = FIX) -> Task3Result:
    """Task 3's metrics at `path` as a Task3Result, or one UsageError naming the file and the
    field: every value a reader reads is checked here (EXPECTED, then per layer of the recorded
    architecture its rows, strongest images, controls, class means and null tests, each for
    exactly that layer's channels; the strongest images' indices within the test split Task 3
    read, whose size the caller compares with the data it loads)."""
    path = Path(path)
    what = str(path)
    metrics = read_json(path, "Task 3 metrics", fix)
    check_metrics(metrics, EXPECTED, what, fix)
    if metrics["task"] != "task3":
        raise UsageError(f"{what} holds the metrics of {metrics['task']!r}, not Task 3's; {fix}")
    try:
        arch = Architecture.from_description(metrics["architecture"])
    except ValueError as error:
        raise UsageError(f"{what}: architecture: {error}; {fix}") from None
    decoders = {}
    for key, value in metrics["decoders"].items():
        try:
            decoder = DecoderId.parse(key)
        except ValueError as error:
            raise UsageError(f"{what}: decoders: {error}; {fix}") from None
        check_metrics(value, [*READING, ("layer", int, (decoder.layer, decoder.layer))],
                      f"{what}: decoders: {key}", fix)
        decoders[decoder] = Reading(value["label"], value["psnr_db"], value["correlation"])
    for stage in arch.layers:  # the decoders every reader takes for granted
        for kind in {"tied", DecoderId.own(stage.index, arch.depth).kind}:
            if DecoderId(stage.index, kind) not in decoders:
                raise UsageError(f"{what}: decoders lacks {DecoderId(stage.index, kind)}; {fix}")
    for part in SUMMARIES:
        for key, groups in _summary_block(metrics["baselines"], part).items():
            where = f"{what}: baselines: {SUMMARIES[part]}: {key}"
            try:
                DecoderId.parse(key)
                for group in groups:
                    ModelId.parse(group)
            except ValueError as error:
                raise UsageError(f"{where}: {error}; {fix}") from None
    test_images = metrics["rule_images"]["of"]
    layers = tuple(_read_layer(metrics, stage, what, fix, test_images) for stage in arch.layers)
    for split, image in metrics["images"].items():
        for stage in arch.layers:
            found = field(image, stage.name, dict, what=f"{what}: images: {split}", fix=fix)
            check_metrics(found, [("channels", list, ANY)],
                          f"{what}: images: {split}: {stage.name}", fix)
    return Task3Result(
        arch, layers, decoders, metrics["baselines"], metrics["images"], metrics["layer1_refit"],
        metrics["rules"], metrics["rule_images"], metrics["appearance_reference"],
        metrics["conv1_filters"], metrics["checkpoint"], metrics["permuted_checkpoint"],
        metrics["task2_config"], metrics["config"], metrics["wall_seconds"], metrics["data"],
        metrics["environment"])


def _read_layer(metrics: dict, stage: ConvLayer, what: str, fix: str,
                test_images: int) -> LayerResult:
    """One layer's parts of the file, each checked for exactly that layer's channels."""
    name, count = stage.name, stage.channels
    rows = field(metrics["channels"], name, list, count, count, f"{what}: channels", fix)
    tops = field(metrics["top9"], name, list, count, count, f"{what}: top9", fix)
    means = field(metrics["class_means"], name, list, count, count, f"{what}: class_means", fix)
    cases = field(metrics["controls"], name, dict, 1, None, f"{what}: controls", fix)
    nulls = field(metrics["baselines"]["rules"], name, dict, what=f"{what}: baselines: rules",
                  fix=fix)
    check_metrics(nulls, NULLS, f"{what}: baselines: rules: {name}", fix)
    for k, (row, top, mean) in enumerate(zip(rows, tops, means)):
        at = f"{what}: channels: {name}[{k}]"
        check_metrics(row, ROW, at, fix)
        if row["channel"] != k:
            raise UsageError(f"{at}: channel is {row['channel']}, not {k}; {fix}")
        at = f"{what}: top9: {name}[{k}]"
        check_metrics(top, TOP, at, fix)
        require_items(top["test_indices"], int, 0, test_images - 1, f"{at}: test_indices",
                      "pass the --data-dir and --subset Task 3 read, or " + fix)
        check_boxes(top, stage, at, fix)
        require_items(mean, float, what=f"{what}: class_means: {name}[{k}]", fix=fix)
    for case, value in cases.items():
        check_metrics(value, READING, f"{what}: controls: {name}: {case}", fix)
    return LayerResult(stage, rows, tops, means,
                       {case: Reading(v["label"], v["psnr_db"], v["correlation"])
                        for case, v in cases.items()}, nulls)


def check_boxes(top: dict, stage: ConvLayer, at: str, fix: str) -> None:
    """Each box is the receptive field of one unit of this layer: its corner one of the units'
    corners (a padded net's reach past the border), its side the field's, which in a deep net
    is larger than the image (46 pixels at deep4's z4)."""
    count = len(top["test_indices"])
    boxes = require(top["boxes"], list, count, count, f"{at}: boxes", fix)
    require_items(top["classes"], str, 0, 100, f"{at}: classes", fix)
    require(top["classes"], list, count, count, f"{at}: classes", fix)
    corners = {k * stage.stride - stage.offset for k in range(stage.size)}
    side = stage.receptive_field
    for j, box in enumerate(boxes):
        t, left, found = require_items(require(box, list, 3, 3, f"{at}: boxes[{j}]", fix), int,
                                       min(corners), max(max(corners), side),
                                       f"{at}: boxes[{j}]", fix)
        if t not in corners or left not in corners or found != side:
            raise UsageError(f"{at}: boxes[{j}] is not the receptive field of a {stage.name} "
                             f"unit (side {side}, corners {min(corners)} to {max(corners)}); "
                             f"{fix}")
