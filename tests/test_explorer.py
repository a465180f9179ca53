"""The channel explorer in a real browser: offline, and in agreement with PyTorch.

Chromium comes from Debian (`apt-get install -y chromium`; .ci/run installs it) and is driven by
Playwright from pip. The expectations are computed here with PyTorch from the same checkpoint
and the pixels the page holds.
"""
import os
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

from data import normalize
from models import load_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no chromium here (apt-get install -y chromium); CI installs it",
                allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else \
    __import__("playwright.sync_api", fromlist=["sync_playwright"])


def wait_until(page, expression, seconds=120):
    """Poll a JavaScript expression (wait_for_function would need eval, which the page's
    Content-Security-Policy forbids)."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(f"Boolean({expression})"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def page_session(study_outputs, tmp_path_factory):
    """The explorer of the tiny study opened in Chromium; console errors and requests recorded."""
    page_file = study_outputs / "task3" / "explorer.html"
    assert page_file.is_file()
    seen = {"errors": [], "requests": []}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(120_000)  # a loaded CI machine is slow, not broken
        page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.on("request", lambda r: seen["requests"].append(r.url))
        page.goto(page_file.as_uri())
        wait_until(page, "window.explorer && window.explorer.ready")
        yield page, seen, study_outputs, tmp_path_factory.mktemp("explorer")
        browser.close()


@pytest.fixture(scope="module")
def models(study_outputs):
    net = load_model(study_outputs / "task2" / "deconv_net.pth", "DeconvNet", "test").eval()
    refit = load_model(study_outputs / "task2" / "deconv_net.pth", "DeconvNet", "test").eval()
    cache = torch.load(study_outputs / "task2" / "layer1_decoder.pth", weights_only=True)
    refit.deconv1.load_state_dict(cache["state"])
    return net, refit


def _pixels(page, i):
    return torch.tensor(page.evaluate(f"window.explorer.pixels({i})"), dtype=torch.uint8).view(3, 32, 32)


def test_the_page_is_one_small_offline_file(page_session):
    page, seen, outputs, _ = page_session
    size = (outputs / "task3" / "explorer.html").stat().st_size
    assert size <= 3 * 2 ** 20
    assert all(url.startswith(("file:", "data:", "blob:")) for url in seen["requests"]), seen["requests"]
    assert seen["errors"] == []


def test_the_gallery_holds_every_test_image_of_each_class_up_to_ten(page_session, tiny_cifar):
    page, *_ = page_session
    images = page.evaluate("window.explorer.images")
    test = [im for im in images if im["split"] == "test"]
    # the tiny data has 4 test images per class: all of them are in the gallery
    assert sorted(im["index"] for im in test) == list(range(40))
    assert sum(im["split"] == "train" for im in images) == 1
    # pixels are the test images as written: image 0 is airplane/0000.png
    expected = torch.from_numpy(np.array(
        Image.open(tiny_cifar / "test" / "airplane" / "0000.png"))).permute(2, 0, 1)
    assert test[0]["index"] == 0 and test[0]["label"] == 0
    assert torch.equal(_pixels(page, 0), expected)


def test_classify_matches_pytorch(page_session, models):
    page, *_ = page_session
    net, _ = models
    for i in (0, 7, 23, 39, 40):
        x = normalize(_pixels(page, i)[None])
        with torch.no_grad():
            expected = torch.softmax(net(x)[0], 1)[0]
        got = torch.tensor(page.evaluate(f"window.explorer.classify({i})"), dtype=torch.float64)
        assert (got - expected.double()).abs().max() < 1e-4


@pytest.mark.parametrize("layer,channels", [(1, []), (1, [0, 1, 2, 3, 4, 5]), (1, [2]),
                                            (1, [0, 4]), (2, []), (2, list(range(16))),
                                            (2, [3]), (2, [1, 5, 11, 15])])
def test_decode_matches_pytorch(page_session, models, layer, channels):
    page, *_ = page_session
    net, refit = models
    model = refit if layer == 1 else net
    for i in (0, 17, 33):
        x = normalize(_pixels(page, i)[None])
        with torch.no_grad():
            latents = model.encode(x)
            z = latents.at(layer).clone()
            mask = torch.zeros(z.shape[1], dtype=torch.bool)
            mask[channels] = True
            z[:, ~mask] = 0
            expected = model.decode(latents.with_map(layer, z), layer)[0].flatten()
        got = torch.tensor(page.evaluate(f"window.explorer.decode({i}, {layer}, {channels})"))
        assert got.shape == (3072,)
        assert (got - expected).abs().max() < 1e-3


def _canvas(page, element_id):
    return page.evaluate(f"document.getElementById('{element_id}').toDataURL()")


def test_a_channel_toggle_changes_the_reconstruction_and_the_link(page_session):
    page, seen, _, folder = page_session
    page.click("#gallery canvas[data-i='5']")
    before = _canvas(page, "selected-decode")
    page.click(".map canvas[data-channel='2']")
    after = _canvas(page, "selected-decode")
    assert before != after
    assert "img=5" in page.url and "ch=0,1,3,4,5" in page.url
    page.check("input[name=layer][value='2']")
    page.click("#no-channels")
    page.click(".map button >> nth=3")  # only channel 3
    assert page.url.endswith("#img=5&z=2&ch=3")
    page.screenshot(path=str(folder / "explorer.png"), full_page=True)
    assert seen["errors"] == []


def test_an_own_image_is_classified(page_session, models, tmp_path):
    page, seen, _, folder = page_session
    net, _ = models
    pixels = torch.zeros(32, 32, 3, dtype=torch.uint8)
    pixels[:, :, 2] = 220  # a blue square with a red bar
    pixels[10:20, :, 0] = 200
    path = tmp_path / "own.png"
    Image.fromarray(pixels.numpy()).save(path)
    page.set_input_files("#own-file", str(path))
    wait_until(page, "window.explorer.own() !== null")
    own = page.evaluate("window.explorer.own()")
    assert torch.equal(torch.tensor(own["pixels"], dtype=torch.uint8).view(3, 32, 32),
                       pixels.permute(2, 0, 1))
    with torch.no_grad():
        expected = torch.softmax(net(normalize(pixels.permute(2, 0, 1)[None]))[0], 1)[0]
    assert (torch.tensor(own["probabilities"]) - expected).abs().max() < 1e-4
    top = page.inner_text("#top3 li >> nth=0")
    assert f"{100 * expected.max():.1f} %" in top
    assert page.inner_text("#image-title") == "your image"
    page.screenshot(path=str(folder / "explorer_own.png"), full_page=True)
    assert seen["errors"] == [] and all(
        url.startswith(("file:", "data:", "blob:")) for url in seen["requests"])


def test_switches_break_ties_as_pytorch_does(page_session, models):
    """Windows of equal values (zeros after the ReLU are common) keep PyTorch's first maximum."""
    page, *_ = page_session
    net, _ = models
    for i in (0, 20, 40):
        with torch.no_grad():
            latents = net.encode(normalize(_pixels(page, i)[None]))
        got = page.evaluate(f"window.explorer.latents({i})")
        ties = 0
        for z, index, field in (("z1", "index1", "indices1"), ("z2", "index2", "indices2")):
            expected = getattr(latents, field)[0].flatten()
            assert torch.equal(torch.tensor(got[index]), expected), index
            assert (torch.tensor(got[z]) - getattr(latents, z)[0].flatten()).abs().max() < 1e-4
            ties += int((getattr(latents, z)[0] == 0).sum())
        assert ties > 0  # there were tied (all-zero) windows to break
