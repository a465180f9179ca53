"""The channel explorer for a deep checkpoint: deep4 (four 3x3 stages with padding 1, 32-64-128-256
channels, BatchNorm folded into the convolutions before saving, as train_deconv.py saves it) goes
through build_explorer.py and the page computes in Chromium what PyTorch computes.

The network is trained for a few steps on the tiny synthetic data, in this process (no long
training); the page is built once for the module by the command line, from the checkpoint and the
metrics.json beside it that records its architecture. The expectations come from PyTorch on the
checkpoint's own weights; where the page stores a layer as float16, on those weights rounded to
float16 by torch (read from the page which layers it halved), so the comparison is exact either way.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from test_explorer import (REPO, _axe, _classify, _decode, _pixels, axe_source,  # noqa: F401
                           browser, open_page, wait_until)

from data import load_cifar10, normalize
from models import ARCHITECTURES, DeconvNet, fold_batchnorm, reconstruction_loss
from study.core.files import save_json, save_torch
from study.training.checkpoints import load_model

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DEEP = ARCHITECTURES["deep4"]
PAGE_LIMIT = 4 * 2 ** 20  # the limit for a deep page
TRAIN_STEPS = 5


@pytest.fixture(scope="module")
def deep_page(tmp_path_factory, tiny_cifar):
    """(page file, checkpoint, embedded data) of a deep4 checkpoint built by build_explorer.py."""
    root = tmp_path_factory.mktemp("deep4")
    data = load_cifar10(tiny_cifar, cache_dir=root / "cache", quiet=True)
    torch.manual_seed(0)
    net = DeconvNet(DEEP)
    x, y = normalize(data.train_images), data.train_labels
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(TRAIN_STEPS):  # moves BatchNorm's statistics and scales off their defaults
        logits, reconstruction = net(x)
        loss = F.cross_entropy(logits, y) + 1e-3 * reconstruction_loss(reconstruction, x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    folded = fold_batchnorm(net.eval()).eval()
    run = root / "task2_deep4"
    run.mkdir()
    save_torch(folded.state_dict(), run / "deconv_net.pth")
    save_json({"task": "task2", "model": "DeconvNet", "architecture": folded.arch.describe(),
               "config": {"lambda": 1e-3, "seed": 0, "arch": "deep4"}}, run / "metrics.json")
    out = root / "explorer.html"
    env = dict(os.environ, CIFAR10_CACHE=str(root / "cache"))
    result = subprocess.run([sys.executable, str(REPO / "build_explorer.py"), str(run / "deconv_net.pth"),
                             "--data-dir", str(tiny_cifar), "--out", str(out), "--quiet"],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "1 model, without channel cards" in result.stdout
    embedded = json.loads(re.search(r'id="explorer-data"[^>]*>(.*?)</script>', out.read_text(), re.S).group(1))
    return out, run / "deconv_net.pth", embedded


@pytest.fixture(scope="module")
def deep_models(deep_page):
    """(the checkpoint as saved, the same with every layer the page holds as float16 rounded so)."""
    _, checkpoint, embedded = deep_page
    net = load_model(checkpoint, "DeconvNet", "test").eval()
    assert net.arch == fold_batchnorm(DeconvNet(DEEP)).arch  # built from the metrics.json beside it
    state = net.state_dict()
    for name, layer in embedded["models"][0]["weights"].items():
        for part in ("weight", "bias"):
            if layer[part]["dtype"] == "float16":
                state[f"{name}.{part}"] = state[f"{name}.{part}"].half().float()
    as_stored = DeconvNet(net.arch).eval()
    as_stored.load_state_dict(state)
    return net, as_stored


@pytest.fixture(scope="module")
def deep_session(browser, deep_page):  # noqa: F811 (the fixture imported above)
    page_file, *_ = deep_page
    seen = {"errors": [], "requests": []}
    page = open_page(browser, page_file, seen)
    yield page, seen
    page.close()


def test_the_deep_page_is_small_offline_and_offers_every_layer(deep_session, deep_page):
    page, seen = deep_session
    page_file, _, embedded = deep_page
    size = page_file.stat().st_size
    print(f"deep4 page: {size} bytes ({size / 2 ** 20:.2f} MiB), ready in {seen['ready_seconds']:.1f} s")
    assert size <= PAGE_LIMIT
    assert all(url.startswith(("file:", "data:", "blob:")) for url in seen["requests"]), seen["requests"]
    assert seen["errors"] == []
    assert seen["ready_seconds"] < 60  # about 3 s on an idle 2-core machine
    assert page.evaluate("window.explorer.architecture") == json.loads(json.dumps(
        fold_batchnorm(DeconvNet(DEEP)).arch.describe()))
    # the encoder and the head are float32 (predictions, maps and switches exact); what is halved
    # to fit the page is the decoder only
    dtypes = {name: layer["weight"]["dtype"] for name, layer in embedded["models"][0]["weights"].items()}
    print("stored as:", dtypes)
    assert all(dtypes[f"conv{k}"] == "float32" for k in range(1, 5)) and dtypes["fc1"] == "float32"
    assert set(dtypes) == {*(f"conv{k}" for k in range(1, 5)), *(f"deconv{k}" for k in range(1, 5)), "fc1"}
    # the layer picker lists the four layers with their channel counts
    radios = page.evaluate("[...document.querySelectorAll('input[name=layer]')].map(r => [r.value, r.parentElement.textContent.trim()])")
    assert radios == [[str(L.index), f"{L.name} ({L.channels})"] for L in DEEP.layers]
    if any(dtypes[f"deconv{k}"] == "float16" for k in range(1, 5)):  # the page says so
        assert "decoder's numbers are stored at half precision" in page.evaluate(
            "document.getElementById('decoder-note').textContent")
    about = page.evaluate("document.getElementById('about-text').textContent")
    assert f"through {DEEP.depth} layers" in about and "(the PyTorch CIFAR-10 tutorial's)" not in about


def test_classify_matches_pytorch(deep_session, deep_models):
    page, _ = deep_session
    net, _ = deep_models
    for i in (0, 7, 23, 39):
        got = torch.tensor(page.evaluate(f"window.explorer.classify({i})"), dtype=torch.float64)
        expected = _classify(net, _pixels(page, i))  # the float32 checkpoint itself
        assert (got - expected).abs().max() < 1e-4, i
        assert int(got.argmax()) == int(expected.argmax())


@pytest.mark.parametrize("layer", [1, 2, 3, 4])
def test_decode_matches_pytorch_from_every_layer(deep_session, deep_models, layer):
    page, _ = deep_session
    net, as_stored = deep_models
    channels = DEEP.layer(layer).channels
    worst = 0.0
    for i in (0, 17, 33):
        pixels = _pixels(page, i)
        for keep in ([], list(range(channels)), [channels - 1], [0, 3, channels // 2, channels - 2]):
            got = torch.tensor(page.evaluate(f"window.explorer.decode({i}, {layer}, {keep})"))
            assert got.shape == (3072,)
            assert (got - _decode(as_stored, pixels, layer, keep)).abs().max() < 1e-3, (i, keep)
            worst = max(worst, float((got - _decode(net, pixels, layer, keep)).abs().max()))
    # the float16 decoder against the float32 one: far below one step of an 8-bit picture (2/255)
    print(f"z{layer}: largest difference from the float32 checkpoint's decoder {worst:.2g}")
    assert worst < 2 / 255


def test_switches_break_ties_as_pytorch_does(deep_session, deep_models):
    page, _ = deep_session
    net, _ = deep_models
    for i in (0, 20, 39):
        with torch.no_grad():
            latents = net.encode(normalize(_pixels(page, i)[None]))
        got = page.evaluate(f"window.explorer.latents({i})")
        ties = 0
        for stage in DEEP.layers:
            expected = latents.switches_at(stage.index)[0].flatten()
            assert torch.equal(torch.tensor(got[f"index{stage.index}"]), expected), (i, stage.name)
            assert (torch.tensor(got[stage.name]) - latents.at(stage.index)[0].flatten()).abs().max() < 1e-4
            ties += int((latents.at(stage.index)[0] == 0).sum())
        assert ties > 0


def occlusion_reference(net, pixels, target, size, stride):
    """Zeiler & Fergus's occlusion, one position at a time (zeros in the normalised input); the
    probability of `target` and each last-layer channel's largest value per position."""
    x = normalize(pixels[None])
    side = x.shape[-1]
    probability, channels = [], []
    with torch.no_grad():
        for top in range(0, side - size + 1, stride):
            for left in range(0, side - size + 1, stride):
                occluded = x.clone()
                occluded[:, :, top:top + size, left:left + size] = 0
                last = net.encode(occluded).last
                probability.append(float(torch.softmax(net.head(last), 1)[0, target]))
                channels.append(last[0].flatten(1).max(1).values)
    return torch.tensor(probability, dtype=torch.float64), torch.stack(channels, 1).double()


@pytest.mark.parametrize("i,size,stride", [(3, 8, 4), (39, 5, 3)])
def test_occlusion_matches_pytorch(deep_session, deep_models, i, size, stride):
    page, _ = deep_session
    net, _ = deep_models
    pixels = _pixels(page, i)
    target = page.evaluate("window.explorer.images")[i]["label"]
    got = page.evaluate(f"window.explorer.occlusion({i}, {size}, {stride})")
    probability, channels = occlusion_reference(net, pixels, target, size, stride)
    n = (32 - size) // stride + 1
    assert len(got["probability"]) == n * n and len(got["channels"]) == DEEP.channels[-1]
    assert (torch.tensor(got["probability"], dtype=torch.float64) - probability).abs().max() < 1e-4
    assert (torch.tensor(got["channels"], dtype=torch.float64) - channels).abs().max() < 1e-4


def test_a_cell_whose_field_passes_the_border_is_outlined_inside_the_image(browser, deep_page):  # noqa: F811
    page_file, *_ = deep_page
    seen = {"errors": [], "requests": []}
    page = open_page(browser, page_file, seen, "#test=0&z=4&ch=0")
    last = DEEP.layer(4)
    view = page.locator(".map-view[data-channel='0']").bounding_box()
    page.mouse.move(view["x"] + view["width"] * 0.25, view["y"] + view["height"] * 0.75)  # row 1, column 0
    box, image = page.evaluate("""[document.getElementById('field-box').getBoundingClientRect().toJSON(),
        (() => { const c = document.getElementById('original'), r = c.getBoundingClientRect();
                 return {left: r.left + c.clientLeft, top: r.top + c.clientTop, width: c.clientWidth}; })()]""")
    pixel = image["width"] / DEEP.image_size
    # unit i of z4 sees pixels i*stride - offset .. + receptive_field - 1, cut to the image
    first_row = 1 * last.stride - last.offset
    rows = (max(0, first_row), min(DEEP.image_size - 1, first_row + last.receptive_field - 1))
    columns = (0, min(DEEP.image_size - 1, -last.offset + last.receptive_field - 1))
    assert last.receptive_field > DEEP.image_size  # the case this test is about
    assert abs(box["top"] - image["top"] - rows[0] * pixel) < 1
    assert abs(box["height"] - (rows[1] - rows[0] + 1) * pixel) < 1
    assert abs(box["left"] - image["left"] - columns[0] * pixel) < 1
    assert abs(box["width"] - (columns[1] - columns[0] + 1) * pixel) < 1
    readout = page.inner_text("#cell-readout")
    assert "row 1, column 0" in readout and f"pixels {rows[0]}–{rows[1]} down, {columns[0]}–{columns[1]} across" in readout
    assert "past the border" in readout
    assert seen["errors"] == []
    page.close()


@pytest.mark.parametrize("width,height", [(390, 844), (1920, 1080)])
def test_the_maps_of_256_channels_fit_the_screen(browser, deep_page, width, height):  # noqa: F811
    page_file, *_ = deep_page
    seen = {"errors": [], "requests": []}
    page = open_page(browser, page_file, seen, "", (width, height))
    for layer in (1, 4):
        page.check(f"input[name=layer][value='{layer}']")
        page.evaluate("window.scrollTo(0, 0)")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        maps = page.evaluate("""[...document.querySelectorAll('#maps .map')].map(m => {
            const r = m.getBoundingClientRect(), v = m.querySelector('.map-view').getBoundingClientRect();
            return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, view: v.width}; })""")
        assert len(maps) == DEEP.layer(layer).channels
        for k, box in enumerate(maps):
            assert box["left"] >= 0 and box["right"] <= width + 0.5, (layer, k, box)
            assert box["view"] >= 40, (layer, k, box)  # a map is still a picture to point at
        rows = {}
        for box in maps:  # no two maps overlap: those of one row sit side by side
            rows.setdefault(round(box["top"]), []).append(box)
        for row in rows.values():
            row.sort(key=lambda b: b["left"])
            assert all(a["right"] <= b["left"] + 0.5 for a, b in zip(row, row[1:]))
        tops = sorted(rows)
        assert all(rows[a][0]["bottom"] <= b + 0.5 for a, b in zip(tops, tops[1:]))
        # everything else in the page stays inside the viewport's width too
        wide = page.evaluate(f"""[...document.querySelectorAll('body *')].filter(e => {{
            const r = e.getBoundingClientRect(); return r.width > 0 && (r.left < -0.5 || r.right > {width} + 0.5)
                && !e.closest('[hidden]'); }}).map(e => e.id || e.className || e.tagName).slice(0, 5)""")
        assert wide == [], (layer, wide)
        # the last map can be reached and pointed at, its cell read out
        page.locator(".map-view").last.hover()
        assert f"z{layer} ch {DEEP.layer(layer).channels - 1}, row" in page.inner_text("#cell-readout")
    assert seen["errors"] == []
    page.close()


@pytest.mark.parametrize("width,height", [(390, 844), (1920, 1080)])
def test_axe_finds_no_serious_violation(browser, deep_page, axe_source, width, height):  # noqa: F811
    page_file, *_ = deep_page
    seen = {"errors": [], "requests": []}
    page = open_page(browser, page_file, seen, "", (width, height))
    page.evaluate("document.getElementById('occlusion-stride').value = '4'")  # 7x7 positions, not 13x13
    page.click("#occlusion-panel summary")
    wait_until(page, "document.getElementById('occlusion-status').textContent.includes('done')")
    for layer in (1, 4):
        page.check(f"input[name=layer][value='{layer}']")
        violations = _axe(page, axe_source)
        print(width, height, f"z{layer}", violations)
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert bad == [], bad
    assert seen["errors"] == []
    page.close()
