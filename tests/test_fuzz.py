"""A seeded fuzz test of the image reader: malformed PNG and JPEG files never crash the process.

1,200 byte-level mutations (bit flips, truncations, inserted chunks of random bytes, huge
dimensions written into the header) of small PNG and JPEG files are decoded by
data.read_image in a child process, so that a crash (a signal) is seen as a crash. Every file
must end as a decoded 32x32 RGB image or as the reader's one-line error.
"""
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
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
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import data
from common import UsageError
for path in sorted(Path(sys.argv[2]).iterdir()):
    try:
        image = data.read_image(path)
        ok = image.shape == (32, 32, 3) and image.dtype.name == "uint8"
        print(path.name, "ok" if ok else "BAD SHAPE", flush=True)
    except UsageError as error:
        print(path.name, "error" if "\\n" not in str(error) else "MULTILINE", flush=True)
"""


def test_no_mutated_image_crashes_the_reader(tmp_path):
    rng = np.random.default_rng(2026)
    originals = seeds_files()
    folder = tmp_path / "fuzz"
    folder.mkdir()
    for i in range(MUTATIONS):
        suffix = ".jpg" if i % len(originals) == 1 else ".png"
        (folder / f"{i:04d}{suffix}").write_bytes(mutate(originals[i % len(originals)], rng))
    result = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(folder)],
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
    import data
    encoded = seeds_files()[index]
    path = tmp_path / ("a.jpg" if index == 1 else "a.png")
    path.write_bytes(encoded)
    assert data.read_image(path).shape == (32, 32, 3)
