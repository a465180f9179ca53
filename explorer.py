"""The channel explorer: one offline HTML file in which the trained network runs in the page.

`write_explorer` embeds the Task 2 model's weights (and the layer-1 decoder that Task 3 fits on
the real z1) as float32, a gallery of test images as uint8, and each channel's card from Task 3's
metrics into explorer/explorer.html, together with explorer/explorer.js and explorer/explorer.css,
so the result is a single file that opens from file:// with no network request. The page
computes everything itself (encoder, classifier head, both decoders) in plain JavaScript.
"""
import base64
import json
from pathlib import Path

import torch

from common import atomic_path
from data import DISPLAY_NAMES
from models import DeconvNet

ASSETS = Path(__file__).resolve().parent / "explorer"
IMAGES_PER_CLASS = 10
MAX_BYTES = 3 * 2 ** 20


def _floats(tensor: torch.Tensor) -> dict:
    """A tensor as {shape, base64 of little-endian float32}."""
    array = tensor.detach().cpu().float().contiguous().numpy().astype("<f4")
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _bytes(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.detach().cpu().to(torch.uint8).contiguous().numpy().tobytes()).decode()


def model_weights(net: DeconvNet, layer1_decoder: torch.nn.ConvTranspose2d) -> dict:
    """Every weight the page needs: encoder, head, Task 2's decoder and the refitted deconv1."""
    layers = {"conv1": net.conv1, "conv2": net.conv2, "fc1": net.fc1, "fc2": net.fc2,
              "fc3": net.fc3, "deconv2": net.deconv2, "deconv1": net.deconv1,
              "deconv1_refit": layer1_decoder}
    return {name: {"weight": _floats(layer.weight), "bias": _floats(layer.bias)}
            for name, layer in layers.items()}


def gallery(test_labels: torch.Tensor, per_class: int, extra_test: list[int]) -> list[int]:
    """The first `per_class` test images of each class, plus `extra_test`, in test-set order."""
    labels = test_labels.cpu()
    chosen = set(extra_test)
    for k in range(len(DISPLAY_NAMES)):
        chosen.update((labels == k).nonzero().flatten()[:per_class].tolist())
    return sorted(chosen)


def channel_cards(task3: dict, test_images: torch.Tensor) -> dict:
    """Per layer, per channel: the finding, its numbers and its top-9 patches (uint8, base64)."""
    cards = {}
    for layer in ("z1", "z2"):
        cards[layer] = []
        for row, top in zip(task3["channels"][layer], task3["top9"][layer]):
            patches = [_bytes(test_images[i, :, t:t + s, l:l + s])
                       for i, (t, l, s) in zip(top["test_indices"], top["boxes"])]
            cards[layer].append({
                "channel": row["channel"], "finding": row["finding"], "roles": row["roles"],
                "top_k": row["top_k"], "top_k_classes": row["top_k_classes"],
                "correlations": {"luminance": row["r_luminance"], "R-G": row["r_red_green"],
                                 "B-Y": row["r_blue_yellow"], "gradient": row["r_gradient_energy"]},
                "patch_size": top["boxes"][0][2], "patches": patches,
                "patch_classes": top["classes"]})
    return cards


def page_data(net: DeconvNet, layer1_decoder: torch.nn.ConvTranspose2d, test_images: torch.Tensor,
              test_labels: torch.Tensor, report_images: dict, task3: dict) -> dict:
    """Everything the page embeds, as JSON-ready values."""
    report_test = report_images["test"]["index"]
    indices = gallery(test_labels, IMAGES_PER_CLASS, [report_test])
    images = [{"index": i, "label": int(test_labels[i]), "split": "test",
               "note": "the report's test image" if i == report_test else ""} for i in indices]
    pixels = [test_images[i] for i in indices]
    train = report_images["train"]
    images.append({"index": train["index"], "label": train["label"], "split": "train",
                   "note": "the report's training image"})
    pixels.append(train["pixels"])
    return {"classes": list(DISPLAY_NAMES), "weights": model_weights(net, layer1_decoder),
            "images": images, "pixels": _bytes(torch.stack(pixels)),
            "cards": channel_cards(task3, test_images),
            "receptive_field": {"z1": [6, 2], "z2": [16, 4]},
            "decoders": {"z1": "deconv1 refitted on the real z1 (Task 3)",
                         "z2": "Task 2's decoder"},
            "start": indices.index(report_test)}


def render(data: dict) -> str:
    """explorer.html with its script, style and data inlined: one self-contained page."""
    html = (ASSETS / "explorer.html").read_text()
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (html.replace("/*STYLE*/", (ASSETS / "explorer.css").read_text())
                .replace("/*DATA*/", payload)
                .replace("/*SCRIPT*/", (ASSETS / "explorer.js").read_text()))


def write_explorer(path: Path, net: DeconvNet, layer1_decoder: torch.nn.ConvTranspose2d,
                   test_images: torch.Tensor, test_labels: torch.Tensor, report_images: dict,
                   task3: dict) -> int:
    """Write the page atomically; returns its size in bytes."""
    text = render(page_data(net, layer1_decoder, test_images.cpu(), test_labels.cpu(),
                            report_images, task3))
    encoded = text.encode()
    if len(encoded) > MAX_BYTES:
        raise ValueError(f"explorer.html would be {len(encoded)} bytes, over {MAX_BYTES}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded)
    return len(encoded)
