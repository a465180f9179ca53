"""The explorer page itself: the models' weights, the gallery, the channel cards and the
architecture as one JSON block, put into explorer/explorer.html with its JavaScript and CSS as
one offline file (`write_explorer`); build_explorer.py is its command line.

`write_explorer` embeds the Task 2 model's weights (and the layer-1 decoder that Task 3 fits on
the real z1) as float32, optional models to compare with (their fully connected layers as
float16, convolutions and decoder float32), a gallery of test images as uint8, the
architecture (`net.arch.describe()`: every map shape, padding, channel count and receptive
field the page uses) and each channel's card from Task 3's metrics. The page computes
everything itself (encoder, classifier head, the decoder of every layer, occlusion maps) in
plain JavaScript, for a network of any depth of the kind models.py describes.
"""
import base64
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from data import DISPLAY_NAMES
from models import ARCHITECTURES, Architecture, DeconvNet
from study.analysis.evidence import crop
from study.analysis.task3_result import LayerResult, Task3Result
from study.core.files import atomic_path
from study.core.ids import ModelId

ASSETS = Path(__file__).resolve().parents[2] / "explorer"
IMAGES_PER_CLASS = 10
# The page's limit. A deep network's float32 weights alone pass it (a deep4 page with float32
# weights measured 4,457,910 bytes): such a default model keeps its encoder and head float32 and
# stores its decoder as float16 (see write_explorer).
MAX_BYTES = 4 * 2 ** 20  # a page of weights and gallery (a deep net's decoder at half precision)
# with channel cards (Task 3's statistics and the test images of their top patches): deep4's
# 480 cards take 5.55 MB on the full data (the top patches of z3 and z4 come from some 1,400
# distinct test images, each embedded once; 1.35 MB on 2 % of it) beside 3.2 MB of float32
# encoder, float16 decoder and gallery: 9.2 MB in all
MAX_BYTES_WITH_CARDS = 10 * 2 ** 20
DEFAULT_ID = "trained"
DEFAULT_LABEL = "trained model (Task 2)"
# What the page says about a model comes from its kind (the plain words live in explorer.js):
# "trained" (the default), "lambda" (the same protocol, another weight of the reconstruction
# loss), "random" (the layers in "randomised" re-initialised, decoders refitted), "permuted"
# (trained on shuffled labels) or "other".
MODEL_KINDS = ("trained", "lambda", "random", "permuted", "other")
ID_LENGTH = 64
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}$" % (ID_LENGTH - 1))
PAGE_MARK = 'id="explorer-data"'  # the data script of every page written here


def _floats(tensor: torch.Tensor, dtype: str = "float32") -> dict:
    """A tensor as {shape, dtype, base64 of its little-endian float32 or float16 bytes}."""
    array = tensor.detach().cpu().float().contiguous().numpy()
    array = array.astype("<f2" if dtype == "float16" else "<f4")
    if not torch.from_numpy(array.astype("<f4")).isfinite().all():
        finite = bool(tensor.detach().float().isfinite().all())
        raise ValueError(f"a weight does not fit {dtype} (over its range)" if finite else
                         "a weight is NaN or infinite (the run that wrote it diverged)")
    return {"shape": list(array.shape), "dtype": dtype,
            "data": base64.b64encode(array.tobytes()).decode()}


def _bytes(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.detach().cpu().to(torch.uint8).contiguous().numpy().tobytes()).decode()


def model_weights(net: DeconvNet, layer1_decoder: torch.nn.ConvTranspose2d | None,
                  head_dtype: str = "float32", decoder_dtype: str = "float32") -> dict:
    """Every weight the page needs: encoder, head, Task 2's decoder and (if given) the refitted
    deconv1 that decodes z1 (without it, z1 is decoded by the model's own deconv1).

    `head_dtype` "float16" halves the fully connected layers, which hold nine tenths of the
    tutorial net's weights; `decoder_dtype` "float16" halves the decoder (the deconvs), half of
    a deep net's weights. The encoder's convolutions always stay float32, so the maps and the
    max-pool switches stay exact (a float16 conv would flip near-tied switches).
    """
    stages = net.arch.depth
    encoder = {f"conv{k}": getattr(net, f"conv{k}") for k in range(1, stages + 1)}
    head = {f"fc{k}": getattr(net, f"fc{k}") for k in range(1, len(net.arch.hidden) + 2)}
    decoder = {f"deconv{k}": getattr(net, f"deconv{k}") for k in range(1, stages + 1)}
    if layer1_decoder is not None:
        decoder["deconv1_refit"] = layer1_decoder
    weights = {}
    for layers, dtype in ((encoder, "float32"), (decoder, decoder_dtype), (head, head_dtype)):
        weights.update({name: {"weight": _floats(layer.weight, dtype),
                               "bias": _floats(layer.bias, dtype)} for name, layer in layers.items()})
    return weights


def decoder_notes(refit: bool, arch: Architecture) -> dict:
    """Which decoder reads each latent of a net of `arch`, in words (shown in the page)."""
    notes = {}
    for stage in arch.layers:
        if stage.index == 1 and refit:
            notes[stage.name] = "deconv1 refitted on the real z1 (Task 3)"
        elif stage.index == arch.depth:
            notes[stage.name] = "this model's Task 2 decoder"
        else:
            notes[stage.name] = (f"this model's Task 2 decoder from {stage.name} down (trained "
                                 "only on the outputs of the layer above)")
    return notes


def gallery(test_labels: torch.Tensor, per_class: int, extra_test: list[int]) -> list[int]:
    """The first `per_class` test images of each class, plus `extra_test`, in test-set order."""
    labels = test_labels.cpu()
    chosen = set(extra_test)
    for k in range(len(DISPLAY_NAMES)):
        chosen.update((labels == k).nonzero().flatten()[:per_class].tolist())
    return sorted(chosen)


def _cut_by_page(layer: LayerResult, image_size: int) -> bool:
    """Whether the page cuts this layer's patches from whole test images (fields wider than half
    the image, a deep net's: nine patches would cost more than their images) rather than embed
    the patches themselves (the tutorial's 6- and 14-pixel fields)."""
    return layer.stage.receptive_field > image_size // 2


def card_images(task3: Task3Result) -> list[int]:
    """The test images the page cuts patches from (layers of wide fields), each once, in order."""
    side = task3.architecture.image_size
    return sorted({i for layer in task3.layers if _cut_by_page(layer, side)
                   for top in layer.top9 for i in top["test_indices"]})


def channel_cards(task3: Task3Result, test_images: torch.Tensor, images: list[int]) -> dict:
    """Per layer, per channel: the finding, its numbers and its top-9 patches: each patch as
    uint8 pixels (base64), or for a layer of wide fields as [the position of its test image in
    `images`, top, left] of a `patch_size` square that the page cuts itself; zeros where a padded
    network's field reaches past the border."""
    position = {index: k for k, index in enumerate(images)}
    cards = {}
    for layer in task3.layers:
        cards[layer.name] = []
        for row, top in zip(layer.channels, layer.top9):
            boxes = list(zip(top["test_indices"], top["boxes"]))
            patches = ([[position[i], t, l] for i, (t, l, _) in boxes]
                       if _cut_by_page(layer, task3.architecture.image_size)
                       else [_bytes(crop(test_images[i], box)) for i, box in boxes])
            cards[layer.name].append({
                "channel": row["channel"], "finding": row["finding"], "roles": row["roles"],
                "top_k": row["top_k"], "top_k_classes": row["top_k_classes"],
                "correlations": {"luminance": row["r_luminance"], "R-G": row["r_red_green"],
                                 "B-(R+G)/2": row["r_blue_yellow"],
                                 "gradient energy": row["r_gradient_energy"]},
                "patch_size": top["boxes"][0][2], "patches": patches,
                "patch_classes": top["classes"],
                # each claim against its null distributions (Holm-corrected), per question of
                # the report: did training make it (random networks), is it a single channel's
                # (rotations of the trained layer); the card's badge names what survived which
                "claims": [{"rule": claim["rule"], "survives": bool(claim.get("survives")),
                            "p_holm": claim.get("p_holm"),
                            **{question: bool((claim.get("questions") or {}).get(question, {})
                                              .get("survives", claim.get("survives")))
                               for question in ("learned", "single_channel")}}
                           for claim in _claims_of(row.get("baseline_claims") or {})]})
    return cards


def _claims_of(judged: dict) -> list[dict]:
    """A channel's tested claims (Task 3's baseline_claims): its class share, then the rest."""
    share = judged.get("class_share")
    return ([share] if isinstance(share, dict) else []) + [
        claim for claim in judged.get("claims", []) if isinstance(claim, dict)]


def _extra_model(entry: dict) -> dict:
    """One model to compare with, as the page embeds it (float16 fully connected layers)."""
    missing = {"id", "label", "net"} - set(entry)
    if missing:
        raise ValueError(f"an extra model needs {sorted(missing)} (given {sorted(entry)})")
    if isinstance(entry["id"], str) and len(entry["id"]) > ID_LENGTH:
        raise ValueError(f"extra model id {entry['id']!r} is {len(entry['id'])} characters "
                         f"long, over the limit of {ID_LENGTH} (it goes into the page's links)")
    if not isinstance(entry["id"], str) or not ID_PATTERN.match(entry["id"]):
        raise ValueError(f"extra model id {entry['id']!r} must be letters, digits, '_', '.' or "
                         "'-' (it goes into the page's links)")
    decoder = entry.get("layer1_decoder")
    return {"id": entry["id"], "label": str(entry["label"]), "precision": "float16 head",
            "weights": model_weights(entry["net"], decoder, "float16"),
            "decoders": decoder_notes(decoder is not None, entry["net"].arch), **model_meta(entry)}


def page_kind(model: ModelId) -> dict:
    """{kind, randomised, lambda} of a model as the page reads them, from what it is."""
    return {"kind": model.kind, "randomised": [f"conv{k}" for k in model.stages],
            "lambda": model.lam}


def model_meta(entry: dict) -> dict:
    """A model's kind, λ and randomised layers as the page reads them (its labels and notes)."""
    if isinstance(entry.get("model"), ModelId):
        entry = {**page_kind(entry["model"]), **{k: v for k, v in entry.items() if v is not None}}
    kind = entry.get("kind", "other")
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r} is not one of {MODEL_KINDS}")
    lam = entry.get("lambda")
    randomised = [str(name) for name in entry.get("randomised", [])]
    return {"kind": kind, "lambda": None if lam is None else float(lam), "randomised": randomised}


@dataclass(frozen=True)
class PageContent:
    """What one page shows.

    The default model: `net`, the `layer1_decoder` that decodes its z1 (None: its own deconv1),
    its `model_label` and `model_info` (optional "kind", "lambda", "randomised"). The data:
    `test_images` and `test_labels` (the gallery), `report_images` ({"test": {"index"},
    "train": {"index", "label", "pixels"} or absent}) and `task3` (Task 3's result, for the
    channel cards; None for a page without them; of `net`'s architecture). `extra_models`:
    models to switch to, each {"id": stable link-safe id, "label": display text, "net": a
    DeconvNet, "layer1_decoder": a ConvTranspose2d or None; optional "model" (a ModelId),
    "kind", "lambda", "randomised"}.
    """

    net: DeconvNet
    layer1_decoder: torch.nn.ConvTranspose2d | None
    test_images: torch.Tensor
    test_labels: torch.Tensor
    report_images: dict
    task3: Task3Result | None = None
    extra_models: tuple[dict, ...] = ()
    model_label: str = DEFAULT_LABEL
    model_info: dict | None = None


def page_data(content: PageContent, decoder_dtype: str = "float32") -> dict:
    """Everything the page embeds, as JSON-ready values (the default model's decoder as
    `decoder_dtype`)."""
    net, layer1_decoder, task3 = content.net, content.layer1_decoder, content.task3
    test_images, test_labels = content.test_images.cpu(), content.test_labels.cpu()
    report_images, model_label, model_info = (content.report_images, content.model_label,
                                              content.model_info)
    report_test = report_images["test"]["index"]
    indices = gallery(test_labels, IMAGES_PER_CLASS, [report_test])
    images = [{"index": i, "label": int(test_labels[i]), "split": "test",
               "note": "the report's test image" if i == report_test else ""} for i in indices]
    pixels = [test_images[i] for i in indices]
    shown = card_images(task3) if task3 else []
    train = report_images.get("train")
    if train is not None:
        images.append({"index": train["index"], "label": train["label"], "split": "train",
                       "note": "the report's training image"})
        pixels.append(train["pixels"])
    precision = "float32" if decoder_dtype == "float32" else f"{decoder_dtype} decoder"
    models = [{"id": DEFAULT_ID, "label": model_label, "precision": precision,
               "weights": model_weights(net, layer1_decoder, decoder_dtype=decoder_dtype),
               "decoders": decoder_notes(layer1_decoder is not None, net.arch),
               **model_meta({"kind": "trained", **(model_info or {})})}]
    for entry in content.extra_models:
        models.append(_extra_model(entry))
    ids = [m["id"] for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError(f"model ids must be unique (and not {DEFAULT_ID!r}): {ids}")
    return {"architecture": net.arch.describe(), "network": network_name(net.arch),
            "classes": list(DISPLAY_NAMES),
            "models": models, "images": images, "pixels": _bytes(torch.stack(pixels)),
            "cards": channel_cards(task3, test_images, shown) if task3 else None,
            "card_images": _bytes(test_images[shown]) if shown else None,
            "start": indices.index(report_test)}


def _parts(data: dict) -> str:
    """What takes a page's room, in words: 'weights 3,165,494 bytes, channel cards 1,352,000'."""
    cards = len(json.dumps(data["cards"])) + len(data["card_images"] or "") if data["cards"] else 0
    weights = len(json.dumps(data["models"]))
    return f"weights {weights:,} bytes" + (f", channel cards {cards:,}" if cards else "")


def network_name(arch: Architecture) -> str | None:
    """The name of `arch` in models.ARCHITECTURES ("tutorial", "deep4", ...), BatchNorm folded
    or not (the page says which network it runs); None for an architecture without a name."""
    unfolded = replace(arch, batchnorm=False)
    return next((name for name, known in ARCHITECTURES.items()
                 if replace(known, batchnorm=False) == unfolded), None)


def render(data: dict) -> str:
    """explorer.html with its script, style and data inlined: one self-contained page."""
    html = (ASSETS / "explorer.html").read_text()
    # No '<' (nor '>', '&') of any embedded text reaches the HTML parser: `</script>` and `<!--`
    # would end or hide the script. JSON reads the escapes back as the same characters.
    payload = (json.dumps(data, separators=(",", ":"), ensure_ascii=False)
               .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    return (html.replace("/*STYLE*/", (ASSETS / "explorer.css").read_text())
                .replace("/*DATA*/", payload)
                .replace("/*SCRIPT*/", (ASSETS / "explorer.js").read_text()))


def write_explorer(path: Path, content: PageContent) -> int:
    """Write the page atomically; returns its size in bytes.

    The extra models are embedded with float16 fully connected layers (convolutions and
    decoders float32, so their maps and reconstructions are exact). The default model is
    float32 throughout, unless its weights alone would take the page over its limit (a deep
    net): then its decoder is float16 (its encoder and head stay float32, so its predictions,
    maps and switches are still exact). The page stays <= MAX_BYTES, or <= MAX_BYTES_WITH_CARDS
    with channel cards (ValueError otherwise, naming what takes the room).
    """
    extra_models = tuple(content.extra_models)
    limit = MAX_BYTES_WITH_CARDS if content.task3 is not None else MAX_BYTES

    def page(models: tuple[dict, ...], decoder_dtype: str, cards: bool = True) -> bytes:
        return render(page_data(replace(content, extra_models=models, task3=content.task3 if cards
                                        else None), decoder_dtype)).encode()

    # the default model's decoder at half precision when its weights alone overfill a page (a
    # page within MAX_BYTES as it is needs no second look)
    dtype, encoded = "float32", page(extra_models, "float32")
    if len(encoded) > MAX_BYTES and len(page((), "float32", cards=False)) > MAX_BYTES:
        dtype, encoded = "float16", page(extra_models, "float16")
    if len(encoded) > limit:
        half = " even with this network's decoder at half precision" if dtype == "float16" else ""
        raise ValueError(f"explorer.html would be {len(encoded):,} bytes, over the {limit:,} a "
                         f"page may take{half} ({_parts(page_data(content, dtype))})"
                         + ("; embed fewer models" if extra_models else ""))
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded)
    return len(encoded)
