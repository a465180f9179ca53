"""A seeded fuzz test of the image reader: malformed PNG and JPEG files never crash the process.

1,200 byte-level mutations (bit flips, truncations, inserted chunks of random bytes, huge
dimensions written into the header) of small PNG and JPEG files are decoded by
image_files.read_image in a child process, so that a crash (a signal) is seen as a crash. Every file
must end as a decoded 32x32 RGB image or as the reader's one-line error.
"""
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

MUTATIONS = 1200


def seeds_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    files = []
    for fmt, options in (("PNG", {}), ("JPEG", {"quality": 75}), ("PNG", {"optimize": True})):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt, **options)
        files.append(buffer.getvalue())
    grey = io.BytesIO()
    Image.fromarray(pixels[..., 0]).save(grey, format="PNG")
    files.append(grey.getvalue())
    return files


def huge_dimensions(encoded: bytes, rng: np.random.Generator) -> bytes:
    """The same file with a forged width and height in its header."""
    size = int(rng.choice([0, 1, 33, 20000, 65535, 2 ** 31 - 1]))
    data = bytearray(encoded)
    if data.startswith(b"\x89PNG"):
        data[16:24] = struct.pack(">II", size, int(rng.choice([size, 32])))
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    else:
        marker = data.find(b"\xff\xc0")
        if marker > 0:
            data[marker + 5:marker + 9] = struct.pack(">HH", size % 65536, size % 65536)
    return bytes(data)


def mutate(encoded: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(4)
    data = bytearray(encoded)
    if kind == 0:  # flip bits
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncate
        data = data[:int(rng.integers(1, len(data)))]
    elif kind == 2:  # insert a chunk of random bytes
        at = int(rng.integers(len(data)))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:
        data = bytearray(huge_dimensions(bytes(data), rng))
    return bytes(data)


CHILD = """
import sys
from pathlib import Path
from study.core import image_files
from study.core.common import UsageError
for path in sorted(Path(sys.argv[2]).iterdir()):
    try:
        image = image_files.read_image(path)
        ok = image.shape == (32, 32, 3) and image.dtype.name == "uint8"
        print(path.name, "ok" if ok else "BAD SHAPE", flush=True)
    except UsageError as error:
        print(path.name, "error" if "\\n" not in str(error) else "MULTILINE", flush=True)
"""


@pytest.mark.slow
def test_no_mutated_image_crashes_the_reader(tmp_path):
    rng = np.random.default_rng(2026)
    originals = seeds_files()
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for i in range(MUTATIONS):
        suffix = ".jpg" if i % len(originals) == 1 else ".png"
        (folder / f"{i:04d}{suffix}").write_bytes(mutate(originals[i % len(originals)], rng))
    result = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(folder)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    outcomes = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    last = sorted(outcomes)[-1] if outcomes else "none"
    assert result.returncode == 0, (f"the reader died (exit {result.returncode}) after {last}: "
                                    f"{result.stderr[-500:]}")
    assert len(outcomes) == MUTATIONS
    assert set(outcomes.values()) <= {"ok", "error"}, {v for v in outcomes.values()}
    # the fuzzing reached both outcomes: some damage is harmless, most is refused
    assert 0 < list(outcomes.values()).count("ok") < MUTATIONS


@pytest.mark.parametrize("index", range(4))
def test_the_unmutated_files_decode(index, tmp_path):
    from study.core import image_files
    encoded = seeds_files()[index]
    path = tmp_path / ("a.jpg" if index == 1 else "a.png")
    path.write_bytes(encoded)
    assert image_files.read_image(path).shape == (32, 32, 3)


# --- crafted files: the JSON readers and the checkpoint and training-state loaders ---
#
# Seeded mutations of a metrics file, a checkpoint and a training state, at the level of
# their structure (a value replaced by another type, a huge or deep one, a tensor of another
# dtype, shape or layout, a key removed or of another type) and of their bytes (flips,
# truncation). In a child process, as above: each must end as a usable result (a comparison
# or its reason; weights that load; a state that resumes and takes a training step) or as one
# line of UsageError, never another exception.

FILE_MUTATIONS = {"json": 300, "pth": 60, "state": 60}

FILES_CHILD = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)  # as the scripts run on the CPU; many threads only wait here
import train_classifier, train_deconv
from study.core.common import UsageError
from study.core.readers import read_json
from models import TutorialNet
from study.training.checkpoints import load_weights, read_state_dict
from study.training.state import resume_training_state
import argparse
args = argparse.Namespace(lr=0.001, momentum=0.9)
labels = torch.tensor([0, 1, 2, 3])
for path in sorted(Path(sys.argv[2]).iterdir()):
    kind = path.suffix
    try:
        if kind == ".json":
            read_json(path, "metrics file", "rerun it")
            found = train_deconv.task1_for_comparison(path, {"seed": 0}, labels)
            ok = isinstance(found.get("message", ""), str) and ("task1" in found or "message" in found)
        elif kind == ".pth":
            architecture, state = read_state_dict(path, "checkpoint")
            load_weights(TutorialNet(), state, path, "checkpoint")
            ok = architecture == "TutorialNet"
        else:
            net = TutorialNet()
            optimizer = train_classifier.sgd(net, args)
            done, history = resume_training_state(path, {"model": "TutorialNet", "lr": 0.001}, 3,
                                                  net, [optimizer], torch.Generator(), ("loss",))
            optimizer.zero_grad()
            net(torch.zeros(2, 3, 32, 32)).sum().backward()
            optimizer.step()
            ok = 0 <= done <= 3 and len(history["epoch_loss"]) == done
        print(path.name, "ok" if ok else "BAD RESULT", flush=True)
    except UsageError as error:
        print(path.name, "error" if "\\n" not in str(error) else "MULTILINE", flush=True)
    except Exception as error:
        print(path.name, "CRASH", type(error).__name__, str(error)[:200].replace("\\n", " "),
              flush=True)
"""


def _hostile_value(rng: np.random.Generator, tensors: bool):
    """A value of the wrong kind, size, depth or (for tensors) dtype, shape or layout."""
    choices = [None, True, -1, 2 ** 70, 1e308, "x\x1b[2J", [], {}, [1.5] * 3,
               {"a": 1}, "[" * 3]
    deep: object = 0
    for _ in range(int(rng.integers(20, 60))):
        deep = [deep] if rng.random() < 0.5 else {"k": deep}
    choices.append(deep)
    if tensors:
        shape = tuple(int(d) for d in rng.integers(1, 4, int(rng.integers(0, 3))))
        choices += [torch.zeros(shape), torch.zeros(shape, dtype=torch.int64),
                    torch.zeros(shape, dtype=torch.complex64), torch.full(shape, float("nan")),
                    torch.zeros(shape, device="meta"), torch.eye(3).to_sparse(),
                    torch.zeros(shape, dtype=torch.float16), torch.zeros(shape, dtype=torch.uint8),
                    torch.nn.Parameter(torch.zeros(shape))]
    return choices[int(rng.integers(len(choices)))]


def _mutate_structure(value, rng: np.random.Generator, tensors: bool):
    """A copy of `value` with one randomly chosen place (of any depth) changed."""
    import copy
    value = copy.deepcopy(value)
    places = []

    def walk(node):
        if isinstance(node, dict):
            for key in list(node):
                places.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for i in range(len(node)):
                places.append((node, i))
                walk(node[i])
    walk(value)
    container, key = places[int(rng.integers(len(places)))]
    action = rng.integers(6)
    if action == 5 and isinstance(container[key], torch.Tensor):  # harmless: float64 weights
        container[key] = container[key].double()
    elif action == 0 and isinstance(container, dict):
        del container[key]
    elif action == 1 and isinstance(container, dict):
        container[_hostile_key(rng)] = container.pop(key)
    elif action == 2 and isinstance(container[key], torch.Tensor):
        tensor = container[key]
        container[key] = (tensor.flatten()[:-1] if tensor.numel() > 1
                          else tensor.to(torch.int32))
    else:
        container[key] = _hostile_value(rng, tensors)
    return value


def _hostile_key(rng: np.random.Generator):
    return [7, 2.5, None, "", "x\ny", ("a",)][int(rng.integers(6))]


def _mutate_bytes(encoded: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(encoded)
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    else:
        data = data[:int(rng.integers(1, len(data)))]
    return bytes(data)


def _mutate_json_text(text: str, rng: np.random.Generator) -> bytes:
    kind = rng.integers(4)
    if kind == 0:
        return _mutate_bytes(text.encode(), rng)
    at = int(rng.integers(len(text)))
    insert = ["[" * int(rng.integers(30, 5000)), "9" * int(rng.integers(15, 6000)), "NaN",
              "1e999", "-Infinity", '"\\ud800"', "\xff"][int(rng.integers(7))]
    if kind == 1:  # a number or a bracket put where a value was
        start = text.find(": ", at)
        if start > 0:
            end = min(i for i in (text.find(",", start), text.find("}", start), len(text))
                      if i > 0)
            return (text[:start + 2] + insert + text[end:]).encode("utf-8", "surrogatepass")
    return (text[:at] + insert + text[at:]).encode("utf-8", "surrogatepass")


def _base_state():
    import argparse
    import tempfile

    import train_classifier
    from models import TutorialNet
    from study.training.state import save_training_state
    net = TutorialNet()
    optimizer = train_classifier.sgd(net, argparse.Namespace(lr=0.001, momentum=0.9))
    net(torch.zeros(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    history = {"loss_log": [{"epoch": 1, "step": 2, "loss": 2.3}],
               "epoch_loss": [{"epoch": 1, "loss": 2.29}], "train_seconds": 1.5}
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/state.pth"
        save_training_state(path, {"model": "TutorialNet", "lr": 0.001}, 1, net, [optimizer],
                            torch.Generator().manual_seed(0), history)
        return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_no_crafted_json_checkpoint_or_state_crashes_the_readers(tmp_path):
    import io
    import json

    from models import TutorialNet
    rng = np.random.default_rng(26)
    metrics = {"task": "task1", "config": {"seed": 0, "subset": 1.0, "lr": 0.001},
               "test_accuracy": 50.0, "test_predictions": "0100", "test_labels": "0123",
               "per_class_accuracy": {"cat": 50.0, "dog": 25.0},
               "loss_log": [{"epoch": 1, "step": 2, "loss": 2.3}], "data": {"source": "x"}}
    weights = TutorialNet().state_dict()
    state = _base_state()
    folder = tmp_path / "crafted"
    folder.mkdir()
    for i in range(FILE_MUTATIONS["json"]):
        if i % 2:
            text = json.dumps(_mutate_structure(metrics, rng, tensors=False), default=str,
                              skipkeys=True)
            encoded = text.encode()
        else:
            encoded = _mutate_json_text(json.dumps(metrics), rng)
        (folder / f"{i:04d}.json").write_bytes(encoded)
    for suffix, base in (("pth", weights), ("state", state)):
        for i in range(FILE_MUTATIONS[suffix]):
            buffer = io.BytesIO()
            torch.save(_mutate_structure(base, rng, tensors=True), buffer)
            encoded = buffer.getvalue()
            if i % 3 == 0:
                encoded = _mutate_bytes(encoded, rng)
            (folder / f"{i:04d}.{suffix}").write_bytes(encoded)
    result = subprocess.run([sys.executable, "-c", FILES_CHILD, str(REPO), str(folder)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    outcomes = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert result.returncode == 0, f"the readers died (exit {result.returncode}): {result.stderr[-500:]}"
    assert len(outcomes) == sum(FILE_MUTATIONS.values())
    bad = {name: outcome for name, outcome in outcomes.items() if outcome not in ("ok", "error")}
    assert not bad, bad
    for suffix in FILE_MUTATIONS:  # the fuzzing reached both outcomes for every kind of file
        kinds = {v for k, v in outcomes.items() if k.endswith(suffix)}
        assert kinds == {"ok", "error"}, (suffix, kinds)
