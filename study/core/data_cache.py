"""The cache of decoded CIFAR-10: one file per source and key, checked whole before it is used.

data.py keys each cache by the source's files (names, sizes, times, inodes), so a changed source
changes the key and a stale cache is never served; here the file is written atomically, read
back only when every tensor has the right type, shape, range and checksum, and built by one
process at a time.
"""
import contextlib
import hashlib
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from study.core.common import UsageError, say
from study.core.files import open_no_follow, save_torch


def content_hash(tensors: list[torch.Tensor]) -> str:
    """sha256 of the tensors' bytes, in order (no copy of contiguous tensors)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(np.ascontiguousarray(tensor.numpy()))
    return digest.hexdigest()


CACHE_FIELDS = ("train_images", "train_labels", "test_images", "test_labels", "source",
                "content_hash")


def check(saved: object, classes: int) -> dict:
    """The cached data set's fields if they are whole and well-formed; else ValueError saying
    what is not.

    Its content_hash is recomputed and compared (about 0.15-0.2 s for all of CIFAR-10), so
    flipped bytes can neither change a pixel or a label unseen nor leave a wrong
    content_sha256 in the metrics; images must be uint8 (N, 3, 32, 32), labels int64 in
    0..classes-1.
    """
    if not isinstance(saved, dict) or set(saved) != set(CACHE_FIELDS):
        raise ValueError("not a cache of this version")
    if not (isinstance(saved["source"], str) and isinstance(saved["content_hash"], str)):
        raise ValueError("its source or checksum is not a text")
    tensors = [saved[name] for name in CACHE_FIELDS[:4]]
    for name, tensor in zip(CACHE_FIELDS, tensors):
        if (not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided
                or tensor.device.type != "cpu"):
            raise ValueError(f"{name} is not a dense tensor")
    for images, labels, split in ((tensors[0], tensors[1], "train"), (tensors[2], tensors[3], "test")):
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (3, 32, 32):
            raise ValueError(f"its {split} images are {images.dtype} {tuple(images.shape)}, "
                             "not uint8 (N, 3, 32, 32)")
        if labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise ValueError(f"its {split} labels do not match its images")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            raise ValueError(f"a {split} label is outside 0..{classes - 1}")
    if content_hash(tensors) != saved["content_hash"]:
        raise ValueError("its contents differ from their checksum")
    return {name: saved[name] for name in CACHE_FIELDS}


def read(cache_file: Path, classes: int, warn_if_damaged: bool = True) -> dict | None:
    """The cached data set's fields, or None (then it is decoded again): a damaged cache is never
    used."""
    try:
        if not cache_file.is_file():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = torch.load(cache_file, map_location="cpu", weights_only=True)
        return check(saved, classes)
    except Exception as error:  # a damaged or unreadable cache is rebuilt, never trusted
        if warn_if_damaged:
            reason = str(error) if isinstance(error, ValueError) else "unreadable"
            say(f"warning: the decoded-data cache {cache_file} is damaged ({reason}); decoding "
                "the images again")
        return None


@contextlib.contextmanager
def lock(cache_file: Path) -> Iterator[None]:
    """Hold a lock beside the cache while it is built, so that two processes starting at once
    decode once: the second waits, then reads the first one's cache. Without a writable cache
    folder there is nothing to share, and no lock."""
    import fcntl

    lock_path = cache_file.parent / f".{cache_file.name.rsplit('-', 1)[0]}.lock"
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        lock = open_no_follow(lock_path, "a")
    except (OSError, UsageError):
        yield
        return
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"note: another process is decoding CIFAR-10 into {cache_file.parent}; "
                "waiting for its cache")
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass  # a file system without locks: each process decodes, renames tolerate a winner
        yield
    finally:
        lock.close()


def write(fields: dict, cache_file: Path) -> None:
    """Keep the decoded data for next time; a cache that cannot be written only costs a warning."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        for old in cache_file.parent.glob(cache_file.name.rsplit("-", 1)[0] + "-*.pt"):
            if old.name != cache_file.name:
                old.unlink(missing_ok=True)  # caches of an earlier version of the same source
        save_torch(fields, cache_file)
        size_mb = cache_file.stat().st_size / 2 ** 20
    except (OSError, UsageError) as error:
        reason = error.strerror if isinstance(error, OSError) else "the disk refused the write"
        say(f"warning: could not cache decoded CIFAR-10 in {cache_file.parent} ({reason}); "
            "it will be decoded again next time (set CIFAR10_CACHE to another folder)")
        return
    say(f"note: cached the decoded images in {cache_file} ({size_mb:.0f} MB, all of CIFAR-10 "
        "whatever --subset is); set CIFAR10_CACHE to keep it elsewhere")
