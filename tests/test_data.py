"""Datasets: IDX parsing, MNIST official split / seeded re-split, digits, and user errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from advharness.core.errors import HarnessError
from advharness.zoo.data import MNIST_RESPLIT_TEST, Dataset, default_mnist_dir, load_dataset, read_idx

MNIST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def idx_bytes(arr: np.ndarray, dtype_code: int = 0x08, zero: int = 0) -> bytes:
    header = struct.pack(">HBB", zero, dtype_code, arr.ndim)
    return header + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def numbered_images(n: int) -> np.ndarray:
    """(n, 2, 2) uint8 images whose four bytes spell the image's index (little-endian)."""
    return np.arange(n, dtype="<u4").view(np.uint8).reshape(n, 2, 2)


def image_ids(x: np.ndarray) -> np.ndarray:
    """Invert :func:`numbered_images` on loaded float images."""
    b = np.rint(x.reshape(len(x), 4) * 255).astype(np.uint8)
    return np.ascontiguousarray(b).view("<u4").ravel().astype(np.int64)


# -- read_idx ------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_images_and_labels(tmp_path: Path, gz: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 5)).astype(np.uint8)
    labels = np.array([7, 0, 9], np.uint8)
    got_images = read_idx(write_idx(tmp_path / "img", images, gz))
    got_labels = read_idx(write_idx(tmp_path / "lab", labels, gz))
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 4, 5)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize(("zero", "dtype_code"), [(0, 0x09), (0, 0x0D), (1, 0x08)])
def test_read_idx_bad_magic(tmp_path: Path, zero: int, dtype_code: int) -> None:
    path = tmp_path / "bad"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8), dtype_code, zero))
    with pytest.raises(HarnessError, match="magic"):
        read_idx(path)


@pytest.mark.parametrize("delta", [-1, 1])
def test_read_idx_header_body_mismatch(tmp_path: Path, delta: int) -> None:
    data = idx_bytes(np.zeros((2, 3, 3), np.uint8))
    path = tmp_path / "mismatch"
    path.write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)
    with pytest.raises(HarnessError, match="header says"):
        read_idx(path)


def test_read_idx_too_short(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"\0\0")
    with pytest.raises(HarnessError, match="too short"):
        read_idx(path)


# -- MNIST splits on synthetic files -------------------------------------------------------
def test_official_split_when_all_four_files_exist(tmp_path: Path) -> None:
    write_idx(tmp_path / TRAIN_IMAGES, numbered_images(7), gz=True)
    write_idx(tmp_path / TRAIN_LABELS, np.arange(7) % 10)
    write_idx(tmp_path / IMAGES, numbered_images(5)[::-1])
    write_idx(tmp_path / LABELS, np.array([3, 1, 4, 1, 5]), gz=True)
    train = load_dataset("mnist", "train", path=tmp_path)
    test = load_dataset("mnist", "test", path=str(tmp_path))
    assert "official" in train.source and "official" in test.source
    assert train.x.shape == (7, 1, 2, 2) and test.x.shape == (5, 1, 2, 2)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    np.testing.assert_array_equal(image_ids(train.x), np.arange(7))  # order kept, / 255
    np.testing.assert_array_equal(image_ids(test.x), np.arange(5)[::-1])
    np.testing.assert_array_equal(test.y, [3, 1, 4, 1, 5])
    assert (train.nb_classes, train.bounds) == (10, (0.0, 1.0))


def test_resplit_when_only_test_files_exist(tmp_path: Path) -> None:
    n = MNIST_RESPLIT_TEST + 25
    write_idx(tmp_path / IMAGES, numbered_images(n), gz=True)
    write_idx(tmp_path / LABELS, np.arange(n) % 10, gz=True)
    write_idx(tmp_path / TRAIN_IMAGES, numbered_images(3))  # train labels missing: unused
    train = load_dataset("mnist", "train", path=tmp_path)
    test = load_dataset("mnist", "test", path=tmp_path)
    assert "re-split" in train.source and "re-split" in test.source
    assert (len(train.x), len(test.x)) == (25, MNIST_RESPLIT_TEST)
    ids_train, ids_test = image_ids(train.x), image_ids(test.x)
    assert not set(ids_train) & set(ids_test)
    assert sorted([*ids_train, *ids_test]) == list(range(n))
    np.testing.assert_array_equal(train.y, ids_train % 10)  # labels stay with their images
    np.testing.assert_array_equal(test.y, ids_test % 10)
    again = load_dataset("mnist", "train", path=tmp_path)
    assert again.fingerprint() == train.fingerprint()


def test_mnist_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx(tmp_path / TRAIN_IMAGES, numbered_images(4))
    write_idx(tmp_path / TRAIN_LABELS, np.arange(4))
    write_idx(tmp_path / IMAGES, numbered_images(2))
    write_idx(tmp_path / LABELS, np.arange(2))
    monkeypatch.setenv("ADVHARNESS_MNIST_DIR", str(tmp_path))
    assert default_mnist_dir() == tmp_path
    assert len(load_dataset("mnist", "train").x) == 4


# -- the real shared MNIST test files --------------------------------------------------------
@pytest.fixture(scope="module")
def real_mnist() -> tuple[Dataset, Dataset]:
    return load_dataset("mnist", "train"), load_dataset("mnist", "test")


def test_real_mnist_resplit_sizes_and_disjoint(real_mnist: tuple[Dataset, Dataset]) -> None:
    train, test = real_mnist
    assert train.x.shape == (8000, 1, 28, 28) and test.x.shape == (2000, 1, 28, 28)
    for ds in (train, test):
        assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0 and ds.x.max() > 0.99
    train_rows = {row.tobytes() for row in train.x.reshape(len(train.x), -1)}
    assert not any(row.tobytes() in train_rows for row in test.x.reshape(len(test.x), -1))


def test_real_mnist_label_counts(real_mnist: tuple[Dataset, Dataset]) -> None:
    train, test = real_mnist
    labels = np.concatenate([train.y, test.y])
    assert np.bincount(labels, minlength=10).tolist() == MNIST_LABEL_COUNTS


def test_n_samples_and_offset_slice(real_mnist: tuple[Dataset, Dataset]) -> None:
    _, test = real_mnist
    part = load_dataset("mnist", "test", n_samples=5, offset=10)
    np.testing.assert_array_equal(part.x, test.x[10:15])
    np.testing.assert_array_equal(part.y, test.y[10:15])
    assert part.fingerprint() != test.fingerprint()


# -- digits --------------------------------------------------------------------------------
def test_digits_shape_bounds_and_split() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.x.shape == (1348, 1, 8, 8) and test.x.shape == (449, 1, 8, 8)
    for ds in (train, test):
        assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert ds.input_shape == (1, 8, 8) and set(ds.y.tolist()) == set(range(10))
    assert load_dataset("digits", "test").fingerprint() == test.fingerprint()


# -- errors --------------------------------------------------------------------------------
def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no MNIST IDX files"):
        load_dataset("mnist", path=tmp_path / "nowhere")


def test_only_train_files_is_an_error(tmp_path: Path) -> None:
    write_idx(tmp_path / TRAIN_IMAGES, numbered_images(3))
    write_idx(tmp_path / TRAIN_LABELS, np.arange(3))
    with pytest.raises(HarnessError, match="t10k-images"):
        load_dataset("mnist", "train", path=tmp_path)


def test_resplit_image_label_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / IMAGES, numbered_images(5))
    write_idx(tmp_path / LABELS, np.arange(4))
    with pytest.raises(HarnessError, match="5 images but 4 labels"):
        load_dataset("mnist", path=tmp_path)


def test_bad_magic_through_load_dataset(tmp_path: Path) -> None:
    (tmp_path / IMAGES).write_bytes(idx_bytes(numbered_images(3), dtype_code=0x0B))
    write_idx(tmp_path / LABELS, np.arange(3))
    with pytest.raises(HarnessError, match=IMAGES):
        load_dataset("mnist", path=tmp_path)


@pytest.mark.parametrize(("n_samples", "offset"), [(450, 0), (1, 449), (0, 0), (5, -1)])
def test_bad_n_samples_or_offset(n_samples: int, offset: int) -> None:
    with pytest.raises(HarnessError):
        load_dataset("digits", "test", n_samples=n_samples, offset=offset)


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(HarnessError, match="known datasets: digits, mnist, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(HarnessError, match="split"):
        load_dataset("digits", "validation")  # type: ignore[arg-type]
