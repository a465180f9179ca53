"""data.py: layouts, cache, subsets, normalisation."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import data
from conftest import write_image_folders
from study.core.common import UsageError


def test_normalize_matches_tutorial_and_round_trips():
    images = torch.tensor([0, 51, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    x = data.normalize(images)
    assert x.min() == -1 and x.max() == 1
    assert torch.allclose(x, (images / 255 - 0.5) / 0.5)
    assert torch.allclose(data.denormalize(x) * 255, images.float(), atol=1e-4)


def test_denormalize_clips_reconstructions():
    assert data.denormalize(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]


def test_image_folders_load_with_sorted_class_indices(tiny_cifar, tmp_path):
    dataset = data.load_cifar10(tiny_cifar, cache_dir=tmp_path, quiet=True)
    assert dataset.train_images.shape == (120, 3, 32, 32)
    assert dataset.train_images.dtype == torch.uint8
    assert dataset.test_images.shape == (40, 3, 32, 32)
    assert torch.equal(dataset.train_labels.bincount(), torch.full((10,), 12))
    first_frog = Image.open(tiny_cifar / "train" / "frog" / "0000.png")
    index = 6 * 12  # frog is class 6; files are in class then name order
    assert dataset.train_labels[index] == data.CLASSES.index("frog") == 6
    assert torch.equal(dataset.train_images[index].permute(1, 2, 0),
                       torch.from_numpy(np.array(first_frog)))
    assert len(dataset.content_hash) == 64


@pytest.mark.slow
def test_jpeg_folders_load(tmp_path):
    root = write_image_folders(tmp_path / "jpg", 2, 1, fmt="jpg")
    dataset = data.load_cifar10(root, cache_dir=tmp_path / "cache", quiet=True)
    assert len(dataset.train_labels) == 20


def test_cache_is_reused_then_invalidated_when_the_source_changes(tmp_path, monkeypatch):
    root = write_image_folders(tmp_path / "src", 2, 1)
    cache = tmp_path / "cache"
    first = data.load_cifar10(root, cache_dir=cache, quiet=True)
    assert len(list(cache.glob("*.pt"))) == 1

    def must_not_decode(*_):
        raise AssertionError("decoded again although the cache is valid")
    with monkeypatch.context() as patch:
        patch.setattr(data, "_decode", must_not_decode)
        again = data.load_cifar10(root, cache_dir=cache, quiet=True)
    assert torch.equal(first.train_images, again.train_images)

    changed = root / "train" / "cat" / "0000.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(changed)
    fresh = data.load_cifar10(root, cache_dir=cache, quiet=True)
    cat = data.CLASSES.index("cat") * 2
    assert fresh.train_images[cat].sum() == 0 != first.train_images[cat].sum()
    assert fresh.content_hash != first.content_hash
    assert len(list(cache.glob("*.pt"))) == 1  # the stale cache was replaced


def test_unwritable_cache_only_warns(tmp_path, capsys):
    root = write_image_folders(tmp_path / "src", 1, 1)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    dataset = data.load_cifar10(root, cache_dir=blocker / "cache")
    assert len(dataset.train_labels) == 10
    assert "could not cache" in capsys.readouterr().err


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_stratified_subset_keeps_the_fraction_of_every_class(fraction):
    labels = torch.arange(10).repeat_interleave(40)
    chosen = data.stratified_subset(labels, fraction, seed=3)
    assert torch.equal(labels[chosen].bincount(), torch.full((10,), round(40 * fraction)))
    assert torch.equal(chosen, data.stratified_subset(labels, fraction, seed=3))
    assert not torch.equal(chosen, data.stratified_subset(labels, fraction, seed=4))


def test_subset_applies_to_train_and_test(tiny_cifar, tmp_path):
    dataset = data.load_cifar10(tiny_cifar, subset=0.5, cache_dir=tmp_path, quiet=True)
    assert torch.equal(dataset.train_labels.bincount(), torch.full((10,), 6))
    assert torch.equal(dataset.test_labels.bincount(), torch.full((10,), 2))


def test_batches_cover_everything_once_and_shuffle_with_a_generator():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2)
    labels = torch.arange(10)
    ordered = [y.tolist() for _, y in data.batches(images, labels, 4)]
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = torch.cat([y for _, y in data.batches(images, labels, 4, torch.Generator().manual_seed(0))])
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    x, y = next(data.batches(images, labels, 4))
    assert x.dtype == torch.uint8 and torch.equal(x, images[y])  # normalised inside the step


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10, which would check and download real files."""
    calls = []

    def __init__(self, root, train, download):
        FakeCIFAR10.calls.append((root, train, download))
        n = 20 if train else 10
        rng = np.random.default_rng(int(train))
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]


def test_python_batches_are_read_through_torchvision(tmp_path, monkeypatch):
    import torchvision
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    FakeCIFAR10.calls.clear()
    dataset = data.load_cifar10(tmp_path, cache_dir=tmp_path / "cache", quiet=True)
    assert dataset.train_images.shape == (20, 3, 32, 32)
    expected = torch.from_numpy(FakeCIFAR10(None, True, False).data[3]).permute(2, 0, 1)
    assert torch.equal(dataset.train_images[3], expected)
    assert dataset.test_labels.tolist() == [i % 10 for i in range(10)]
    assert all(download is False for _, _, download in FakeCIFAR10.calls[:2])


def test_empty_folder_downloads_like_the_tutorial(tmp_path, monkeypatch):
    import torchvision

    def fake_download(root, train, download):
        if download:
            (tmp_path / "empty" / "cifar-10-batches-py").mkdir(exist_ok=True)
        return FakeCIFAR10(root, train, download)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    FakeCIFAR10.calls.clear()
    (tmp_path / "empty").mkdir()
    dataset = data.load_cifar10(tmp_path / "empty", cache_dir=tmp_path / "cache", quiet=True)
    assert len(dataset.train_labels) == 20
    assert (str(tmp_path / "empty"), True, True) in FakeCIFAR10.calls


def test_failed_download_is_a_usage_error(tmp_path, monkeypatch):
    import torchvision

    def offline(**_):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda root, train, download: offline())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="could not download"):
        data.load_cifar10(tmp_path / "empty", cache_dir=tmp_path / "cache", quiet=True)


def test_stray_files_are_skipped_with_one_warning(tmp_path, capsys):
    root = write_image_folders(tmp_path / "src", 2, 1)
    (root / "train" / "cat" / "README.txt").write_text("hello")
    (root / "train" / "dog" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / ".DS_Store").write_bytes(b"\0")
    dataset = data.load_cifar10(root, cache_dir=tmp_path / "cache")
    assert len(dataset.train_labels) == 20
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    # hidden files (.DS_Store) are skipped silently, like hidden folders; README.txt is named
    assert len(warnings) == 1 and "skipped 1 non-image" in warnings[0]


def test_grey_images_are_converted_to_rgb(tmp_path):
    root = write_image_folders(tmp_path / "src", 1, 1)
    Image.fromarray(np.full((32, 32), 77, np.uint8), mode="L").save(root / "train" / "cat" / "0000.png")
    dataset = data.load_cifar10(root, cache_dir=tmp_path / "cache", quiet=True)
    assert dataset.train_images[3].unique().tolist() == [77]


# --- every broken copy of the data: one UsageError naming the problem (scripts turn it into
# one line and exit 2; test_bad_input.py checks that once per script) ---

def _missing_dir(root):
    return root / "does-not-exist"


def _no_layout(root):
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "notes.txt").write_text("no images here")
    return root / "elsewhere"


def _missing_class(root):
    shutil.rmtree(root / "train" / "cat")
    return root


def _extra_class(root):
    shutil.copytree(root / "train" / "dog", root / "train" / "unicorn")
    return root


def _corrupt_image(root):
    path = root / "test" / "bird" / "0000.png"
    path.write_bytes(path.read_bytes()[:40])
    return root


def _wrong_size(root):
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(root / "train" / "ship" / "0000.png")
    return root


def _empty_class(root):
    for image in (root / "test" / "frog").iterdir():
        image.unlink()
    return root


def _data_is_a_file(root):
    (root / "file").write_text("x")
    return root / "file"


def _missing_test_split(root):
    shutil.rmtree(root / "test")
    return root


BROKEN_DATA = {
    "missing dir": (_missing_dir, "does not exist"),
    "no layout": (_no_layout, "holds no CIFAR-10"),
    "missing class": (_missing_class, "lacks class folder cat"),
    "extra class": (_extra_class, "unexpected folder unicorn"),
    "corrupt image": (_corrupt_image, "0000.png is not a readable image"),
    "not 32x32": (_wrong_size, "is 48x64, not 32x32"),
    "data is a file": (_data_is_a_file, "is a file, not a folder"),
    "empty class": (_empty_class, "test/frog holds no images"),
    "missing test split": (_missing_test_split, "has no test/ folder"),
}


@pytest.mark.parametrize("case", BROKEN_DATA)
def test_broken_data_is_one_usage_error(case, tmp_path):
    make, fragment = BROKEN_DATA[case]
    data_dir = make(write_image_folders(tmp_path / "data", 1, 1))
    with pytest.raises(UsageError) as error:
        data.load_cifar10(data_dir, cache_dir=tmp_path / "cache", quiet=True)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_same_size_edit_with_a_new_modification_time_invalidates_the_cache(tmp_path):
    """Size alone would miss this edit: the file keeps its length, only its bytes and mtime change."""
    root = tmp_path / "src"
    write_image_folders(root, 1, 1, fmt="png")
    cache = tmp_path / "cache"
    data.load_cifar10(root, cache_dir=cache, quiet=True)
    target = root / "train" / "cat" / "0000.png"
    size = target.stat().st_size
    # change one pixel and keep the edit whose PNG has exactly the old file's length
    rng = np.random.default_rng(5)
    original = np.asarray(Image.open(target))
    for _ in range(200):
        candidate = original.copy()
        candidate[rng.integers(32), rng.integers(32)] = rng.integers(0, 256, 3)
        trial = tmp_path / "trial.png"
        Image.fromarray(candidate).save(trial)
        if trial.stat().st_size == size and not np.array_equal(candidate, original):
            break
    else:
        pytest.fail("no same-size edit found")
    stat = target.stat()
    target.write_bytes(trial.read_bytes())
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert target.stat().st_size == size
    fresh = data.load_cifar10(root, cache_dir=cache, quiet=True)
    cat = data.CLASSES.index("cat")
    assert torch.equal(fresh.train_images[fresh.train_labels == cat][0],
                       torch.from_numpy(candidate).permute(2, 0, 1))


def test_the_tutorials_first_test_batch_is_found_in_any_class_ordered_layout():
    """The original test batch starts cat, ship, ship, plane (indices 0..3 there); in a layout
    sorted by class with each class's order kept, the same images are the first cat, the
    first two ships and the first plane."""
    from data import DISPLAY_NAMES, tutorial_test_batch

    batch_order = torch.tensor([DISPLAY_NAMES.index(n) for n in
                                ("cat", "ship", "ship", "plane", "frog", "ship", "cat", "plane")])
    assert tutorial_test_batch(batch_order).tolist() == [0, 1, 2, 3]
    by_class = torch.sort(batch_order, stable=True)  # folders: class by class, order kept
    picked = by_class.indices[tutorial_test_batch(by_class.values)].tolist()
    assert picked == [0, 1, 2, 3]  # the same four original images, in the tutorial's order
    no_plane = torch.tensor([DISPLAY_NAMES.index(n) for n in ("ship", "cat", "ship")])
    assert tutorial_test_batch(no_plane).tolist() == [1, 0, 2]


def test_a_subset_that_keeps_a_handful_of_images_says_so(tiny_cifar, tmp_path, capsys):
    """Round six, case 17: --subset 1e-9 trained on a handful of images without a word."""
    from data import load_cifar10
    data = load_cifar10(tiny_cifar, subset=1e-9, cache_dir=tmp_path / "cache", quiet=True)
    err = capsys.readouterr().err
    assert f"keeps {len(data.train_labels)} training images and {len(data.test_labels)} test images" in err
    assert len(data.test_labels) == 10  # one per class: stratified, never empty
    load_cifar10(tiny_cifar, subset=1.0, cache_dir=tmp_path / "cache", quiet=True)
    assert "keeps" not in capsys.readouterr().err
