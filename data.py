"""CIFAR-10 from wherever the user has it, decoded once into uint8 tensors and cached.

Two layouts are recognised under the data folder:
  * image folders `train/<class>/*.png|jpg` and `test/<class>/*` (e.g. ../shared/cifar10);
  * the original python batches `cifar-10-batches-py/`, read by torchvision, which also
    downloads them into an empty (or absent default) folder, as the tutorial does.
Images are kept as uint8 (N, 3, 32, 32) and normalised per mini-batch, which is far cheaper
than the tutorial's per-image PIL -> ToTensor -> Normalize at batch size 4.
"""
import contextlib
import hashlib
import os
import shutil
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from study.core import data_cache
from study.core.common import UsageError, printable, say
from study.core.files import remove_stale_temporaries
from study.core.image_files import read_image
from study.core.text import plural

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")  # folder names; torchvision's index order
DISPLAY_NAMES = ("plane", "car", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")  # as the tutorial prints them
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg"}
# The tutorial's first test batch (its test loader is not shuffled): a cat, two ships, a plane.
TUTORIAL_TEST_BATCH = ("cat", "ship", "ship", "plane")
CACHE_VERSION = 2  # 2: the key holds inode numbers and ctimes; contents verified at load
DEFAULT_DATA_DIR = Path("data")
ARCHIVE = "cifar-10-python.tar.gz"  # what torchvision downloads, and extracts into BATCH_FOLDER
BATCH_FOLDER = "cifar-10-batches-py"
DOWNLOAD_TIMEOUT_S = 60.0  # per network read; $CIFAR10_DOWNLOAD_TIMEOUT overrides it


@dataclass(frozen=True)
class CIFAR10:
    train_images: torch.Tensor  # uint8 (N, 3, 32, 32)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where the images came from
    content_hash: str  # sha256 of the decoded tensors, to tell data sets apart in metrics

    def to(self, device: torch.device) -> "CIFAR10":
        """The same data set with its tensors on `device` (all of CIFAR-10 is ~180 MB as uint8)."""
        return replace(self, train_images=self.train_images.to(device),
                       train_labels=self.train_labels.to(device),
                       test_images=self.test_images.to(device),
                       test_labels=self.test_labels.to(device))

    def describe(self) -> dict:
        return {"source": self.source, "content_sha256": self.content_hash,
                "train_images": len(self.train_labels), "test_images": len(self.test_labels)}


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]: the tutorial's ToTensor then Normalize((0.5,)*3, (0.5,)*3)."""
    return images.float().div_(255).sub_(0.5).div_(0.5)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Normalised images -> [0, 1] for display (clipped, since reconstructions may overshoot)."""
    return (x * 0.5 + 0.5).clamp(0, 1)


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield uint8 mini-batches (images, labels), in a fresh random order when a generator is given.

    The order is drawn on the CPU generator (the same order on every device) and moved to the
    data's device once per epoch. Every image is used; the last batch may be smaller.
    """
    n = len(labels)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(labels.device)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        yield images[index], labels[index]


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a seeded random `fraction` of every class (at least one image per class)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        keep = max(1, round(len(members) * fraction))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


def _environment_path(name: str) -> Path | None:
    """A folder named by an environment variable; unset or empty means none."""
    value = os.environ.get(name, "")
    return Path(value) if value.strip() else None


def default_data_dir() -> Path:
    return _environment_path("CIFAR10_DIR") or DEFAULT_DATA_DIR


def default_cache_dir() -> Path:
    return _environment_path("CIFAR10_CACHE") or DEFAULT_DATA_DIR / "cache"


def download_timeout() -> float:
    """Seconds without an answer before a download gives up: $CIFAR10_DOWNLOAD_TIMEOUT or 60."""
    text = os.environ.get("CIFAR10_DOWNLOAD_TIMEOUT", "").strip()
    if not text:
        return DOWNLOAD_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise UsageError(f"CIFAR10_DOWNLOAD_TIMEOUT={text!r} is not a positive number of seconds; "
                         "set it to e.g. 60 or unset it")
    return value


def load_cifar10(data_dir: str | Path | None = None, subset: float = 1.0, seed: int = 0,
                 cache_dir: str | Path | None = None, quiet: bool = False) -> CIFAR10:
    """Find CIFAR-10 under `data_dir`, decode it (or load the cache), optionally subsample."""
    explicit = data_dir is not None or _environment_path("CIFAR10_DIR") is not None
    if data_dir is not None and not str(data_dir).strip():
        raise UsageError("--data-dir is empty; give the folder holding train/ and test/ "
                         "(e.g. ../shared/cifar10) or leave the flag out")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    remove_stale_temporaries(cache_dir)  # left by a run killed while writing the cache

    layout = _detect_layout(data_dir, explicit)
    if layout == "download":
        _download(data_dir, quiet)
        layout = "batches"
    if layout == "folders":
        train_files, skipped = _list_image_folder(data_dir / "train")
        test_files, skipped_test = _list_image_folder(data_dir / "test")
        skipped += skipped_test
        if skipped:  # warnings are printed even with --quiet, which only hides progress bars
            warn(f"skipped {plural(len(skipped), 'non-image file')} in {data_dir}, "
                f"e.g. {skipped[0]}")
        fingerprint = [(str(p.relative_to(data_dir)), *_stat(p)) for p, _ in train_files + test_files]
    else:
        batch_dir = data_dir / BATCH_FOLDER
        try:
            entries = sorted(batch_dir.iterdir())
        except OSError as error:
            raise UsageError(f"{batch_dir} cannot be read ({error.strerror}); check its "
                             "permissions") from None
        fingerprint = [(p.name, *_stat(p)) for p in entries]

    key = hashlib.sha256(repr((CACHE_VERSION, layout, fingerprint)).encode()).hexdigest()
    source_tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    cache_file = cache_dir / f"cifar10-{source_tag}-{key[:16]}.pt"
    dataset = _read_cache(cache_file)
    if dataset is None:
        # One process decodes, others wait for its cache rather than decode the same again
        with data_cache.lock(cache_file):
            dataset = _read_cache(cache_file, warn_if_damaged=False)  # written while we waited
            if dataset is None:
                if layout == "folders":
                    arrays = (*_decode(train_files, "train", quiet),
                              *_decode(test_files, "test", quiet))
                else:
                    arrays = _read_batches(data_dir)
                dataset = _from_arrays(*arrays, source=str(data_dir))
                data_cache.write(dataset.__dict__, cache_file)
    dataset = replace(dataset, source=f"{data_dir} ({layout})")

    if subset < 1.0:
        train = stratified_subset(dataset.train_labels, subset, seed)
        test = stratified_subset(dataset.test_labels, subset, seed + 1)
        tensors = [dataset.train_images[train], dataset.train_labels[train],
                   dataset.test_images[test], dataset.test_labels[test]]
        # the hash of the data actually used (this subset, drawn with this seed): every cache
        # key and "same data?" check that reads it then tells subsets apart
        dataset = replace(dataset, train_images=tensors[0], train_labels=tensors[1],
                          test_images=tensors[2], test_labels=tensors[3],
                          content_hash=data_cache.content_hash(tensors))
        per_class = len(tensors[3]) / len(CLASSES)
        if per_class < FEW_TEST_IMAGES_PER_CLASS:  # numbers from a handful of images say little
            warn(f"--subset {subset:g} keeps {plural(len(tensors[1]), 'training image')} and "
                 f"{plural(len(tensors[3]), 'test image')} ({per_class:g} per class): an "
                 "accuracy on so few images is mostly chance; a larger --subset gives numbers "
                 "that mean something")
    return dataset


FEW_TEST_IMAGES_PER_CLASS = 10  # below this, --subset gets a warning


def warn(message: str) -> None:
    """One `warning:` line on stderr, names escaped (common.say)."""
    say(f"warning: {message}")


# --- finding the data ---

def _detect_layout(data_dir: Path, explicit: bool) -> str:
    if (data_dir / "train").is_dir() or (data_dir / "test").is_dir():
        for split in ("train", "test"):
            if not (data_dir / split).is_dir():
                raise UsageError(f"{data_dir} has no {split}/ folder; an image-folder copy of "
                                 "CIFAR-10 needs both train/<class>/ and test/<class>/")
        return "folders"
    if (data_dir / BATCH_FOLDER).is_dir():
        return "batches"
    if not data_dir.exists():
        if explicit:
            raise UsageError(f"data folder {data_dir} does not exist; point --data-dir (or "
                             "CIFAR10_DIR) at a CIFAR-10 copy such as ../shared/cifar10, or at an "
                             "empty folder to download into")
        return "download"
    if not data_dir.is_dir():
        raise UsageError(f"data folder {data_dir} is a file, not a folder; pass the folder "
                         "holding train/ and test/ or cifar-10-batches-py/")
    try:
        entries = [p for p in data_dir.iterdir() if p.name != "cache"]
    except OSError as error:
        raise UsageError(f"data folder {data_dir} cannot be read ({error.strerror}); check its "
                         "permissions or pass another --data-dir") from None
    if not entries:
        return "download"
    if {p.name for p in entries if p.is_dir()} & set(CLASSES):
        raise UsageError(f"{data_dir} holds class folders itself: it looks like a train/ or "
                         f"test/ folder; pass its parent ({data_dir.resolve().parent}) as --data-dir")
    raise UsageError(f"{data_dir} holds no CIFAR-10: expected train/<class>/ and test/<class>/ "
                     "image folders or cifar-10-batches-py/; point --data-dir (or CIFAR10_DIR) "
                     "at such a copy")


def _list_image_folder(split_dir: Path) -> tuple[list[tuple[Path, int]], list[Path]]:
    """(image path, class index) pairs in class then file-name order, and skipped files."""
    try:
        found = sorted(p.name for p in split_dir.iterdir()
                       if p.is_dir() and not p.name.startswith("."))
    except OSError as error:
        raise UsageError(f"{split_dir} cannot be read ({error.strerror}); check its "
                         "permissions") from None
    missing = sorted(set(CLASSES) - set(found))
    extra = sorted(set(found) - set(CLASSES))
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"lacks class folder{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if extra:
            problems.append(f"has unexpected folder{'s' if len(extra) > 1 else ''} {', '.join(map(_folder_name, extra))}")
        raise UsageError(f"{split_dir} {' and '.join(problems)}; CIFAR-10 needs exactly the "
                         f"folders {', '.join(CLASSES)}")
    files, skipped = [], []
    for index, name in enumerate(CLASSES):
        found_before = len(files)
        try:
            # hidden files (AppleDouble ._* and the like) are skipped, as hidden folders are
            entries = sorted(p for p in (split_dir / name).iterdir() if not p.name.startswith("."))
        except OSError as error:
            raise UsageError(f"{split_dir / name} cannot be read ({error.strerror}); check its "
                             "permissions") from None
        for path in entries:
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((path, index))
            else:
                skipped.append(path)
        if len(files) == found_before:
            raise UsageError(f"{split_dir / name} holds no images (.png/.jpg)")
    return files, skipped


def _folder_name(name: str) -> str:
    """A folder name quoted, with what makes it differ from a class name that looks alike."""
    shown = printable(repr(name))
    notes = []
    if name != name.strip():
        notes.append("leading or trailing space")
    foreign = [c for c in name if not c.isascii()]
    if foreign:
        notes.append("non-ASCII " + ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(foreign)))
    if not notes and printable(name) == name and " " not in name:
        return name  # nothing to point out: as it is
    return f"{shown} ({'; '.join(notes)})" if notes else shown


def _stat(path: Path) -> tuple[int, int, int, int]:
    """What the cache key knows of a file: size, mtime, ctime and inode number.

    The ctime is set by the kernel on every change (a write, a rename, a restored mtime) and
    cannot be set back by a user, and the inode number changes when another file takes the
    name: so two same-size images swapped with their mtimes kept change the key.
    """
    try:
        info = path.stat()
    except OSError as error:
        link = " (a symbolic link to a missing file)" if path.is_symlink() else ""
        raise UsageError(f"{path} cannot be read ({error.strerror}){link}; fix or remove it, "
                         "or delete the folder to download again") from None
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino


def _decode(files: list[tuple[Path, int]], split: str, quiet: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode image files into (N, 32, 32, 3) uint8; one UsageError for any file that is not
    a readable 32x32 image."""
    from tqdm import tqdm

    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    labels = np.array([label for _, label in files], dtype=np.int64)
    progress = tqdm(files, desc=f"decoding {split}", unit="img", leave=False,
                    disable=quiet or None, file=sys.stderr)
    for i, (path, _) in enumerate(progress):
        images[i] = read_image(path)
    return images, labels


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(data_dir: Path, quiet: bool) -> None:
    """Download with torchvision, as the tutorial does; never hang silently, never leave half."""
    import torchvision

    timeout = download_timeout()
    say(f"downloading CIFAR-10 (163 MB) to {data_dir.resolve()} with torchvision; "
        f"set --data-dir or CIFAR10_DIR to use a local copy instead")
    created = not data_dir.exists()
    archive = data_dir / ARCHIVE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(timeout), open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull if quiet else sys.stderr):
            torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=True)
    except (Exception, KeyboardInterrupt) as error:  # network errors come in many types
        archive.unlink(missing_ok=True)
        shutil.rmtree(data_dir / BATCH_FOLDER, ignore_errors=True)
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        if isinstance(error, KeyboardInterrupt):
            raise
        reason = ("no answer for {:g} s".format(timeout) if isinstance(error, TimeoutError)
                  or "timed out" in str(error) else type(error).__name__)
        raise UsageError(f"could not download CIFAR-10 into {data_dir} ({reason}); "
                         "without internet, point --data-dir or CIFAR10_DIR at a local copy "
                         "such as ../shared/cifar10") from None
    archive.unlink(missing_ok=True)  # extracted; the 163 MB archive is not needed again


def _read_batches(data_dir: Path) -> tuple[np.ndarray, ...]:
    import torchvision

    arrays = []
    for train in (True, False):
        try:
            split = torchvision.datasets.CIFAR10(root=str(data_dir), train=train, download=False)
        except (RuntimeError, OSError, ValueError, EOFError) as error:
            reason = (error.strerror if isinstance(error, OSError) and error.strerror
                      else str(error).splitlines()[0] if str(error) else type(error).__name__)
            raise UsageError(f"{data_dir / 'cifar-10-batches-py'} is incomplete or corrupt "
                             f"({reason}); delete it to download again") from None
        arrays += [np.asarray(split.data, dtype=np.uint8), np.asarray(split.targets, dtype=np.int64)]
    return tuple(arrays)


def _from_arrays(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                 test_labels: np.ndarray, source: str) -> CIFAR10:
    """(N, 32, 32, 3) uint8 arrays -> CIFAR10 with (N, 3, 32, 32) tensors and a content hash."""
    tensors = [torch.from_numpy(np.ascontiguousarray(train_images.transpose(0, 3, 1, 2))),
               torch.from_numpy(train_labels),
               torch.from_numpy(np.ascontiguousarray(test_images.transpose(0, 3, 1, 2))),
               torch.from_numpy(test_labels)]
    return CIFAR10(*tensors, source=source, content_hash=data_cache.content_hash(tensors))


def _read_cache(cache_file: Path, warn_if_damaged: bool = True) -> CIFAR10 | None:
    """The cached data set, or None: decoded again (study/core/data_cache.py checks it whole)."""
    fields = data_cache.read(cache_file, len(CLASSES), warn_if_damaged)
    return None if fields is None else CIFAR10(**fields)


def tutorial_test_batch(labels: torch.Tensor) -> torch.Tensor:
    """Indices of the four test images the tutorial shows, in its order.

    The original test batch opens with a cat, two ships and a plane, each the first of its
    class there, so in any layout that keeps each class's order (the python batches, the image
    folders, a stratified subset) they are the first cat, the first two ships and the first
    plane. A class that a small subset lacks is left out.
    """
    labels = labels.cpu()
    taken, chosen = set(), []
    for name in TUTORIAL_TEST_BATCH:
        members = (labels == DISPLAY_NAMES.index(name)).nonzero().flatten().tolist()
        found = next((i for i in members if i not in taken), None)
        if found is not None:
            taken.add(found)
            chosen.append(found)
    return torch.tensor(chosen, dtype=torch.long)
