"""Datasets: scikit-learn digits (embedded), MNIST from IDX files in a directory, CIFAR-10
from the official python-pickle batches in a directory (:mod:`advharness.zoo.cifar`).

All images come out as float32 NCHW in [0, 1] with int64 labels; :func:`to_bounds` maps
them onto a model's bounds (experiment files: ``data.scale``).

MNIST splits: with all four official IDX files in the directory, the official 60k/10k split
is used. With only the two test files (``t10k-*``), the 10,000 test images are re-split with
a fixed seed (:data:`MNIST_RESPLIT_SEED`) into 8,000 ``train`` and 2,000 ``test`` images.
Digits (1,797 images of 8x8) are split the same way: 25 % ``test``, the rest ``train``.
CIFAR-10 always uses its official 50k/10k split.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from advharness.core.errors import HarnessError

Split = Literal["train", "test"]
MNIST_RESPLIT_SEED = 0
MNIST_RESPLIT_TEST = 2000
DIGITS_SPLIT_SEED = 0
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Dataset:
    name: str
    split: str
    x: np.ndarray  # float32, NCHW, in bounds
    y: np.ndarray  # int64
    nb_classes: int
    bounds: tuple[float, float]
    source: str  # how the split was made, for the manifest

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def fingerprint(self) -> str:
        """sha256 of the exact inputs and labels."""
        return fingerprint(self.x, self.y)


def fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the exact bytes of a batch and its labels."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def to_bounds(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Images in [0, 1] mapped linearly onto ``bounds`` (float32, clipped to them);
    ``x`` itself for (0, 1)."""
    lo, hi = float(bounds[0]), float(bounds[1])
    if (lo, hi) == (0.0, 1.0):
        return x
    scaled = lo + x.astype(np.float64) * (hi - lo)
    return np.clip(scaled, lo, hi).astype(np.float32)


def default_mnist_dir() -> Path:
    """``$ADVHARNESS_MNIST_DIR``, else ``../shared/data/mnist`` beside the repository."""
    env = os.environ.get("ADVHARNESS_MNIST_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"  # <repo>/harness/zoo/


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array, validating its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise HarnessError(f"{path}: cannot read ({e})") from None
    if len(data) < 4:
        raise HarnessError(f"{path}: not an IDX file (too short)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if len(data) < 4 + 4 * ndim:
        raise HarnessError(f"{path}: truncated IDX header")
    if zero != 0 or dtype != 0x08:
        raise HarnessError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise HarnessError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_mnist(split: Split, path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    directory = Path(path) if path is not None else default_mnist_dir()
    found = {k: [_find(directory, s) for s in v] for k, v in _MNIST_FILES.items()}
    if all(p is not None for p in found["train"] + found["test"]):
        img, lab = found[split]
        assert img is not None and lab is not None
        images, labels = _pair(img, lab)
        return images, labels, f"official MNIST {split} split from {directory}"
    img, lab = found["test"]
    if img is None or lab is None:
        raise HarnessError(
            f"no MNIST IDX files in {directory} (need t10k-images-idx3-ubyte[.gz] and "
            "t10k-labels-idx1-ubyte[.gz]; set ADVHARNESS_MNIST_DIR or data.path)"
        )
    images, labels = _pair(img, lab)
    if len(images) <= MNIST_RESPLIT_TEST:
        raise HarnessError(
            f"{directory}: only {len(images)} t10k images; the re-split needs more than {MNIST_RESPLIT_TEST}"
        )
    order = np.random.default_rng(MNIST_RESPLIT_SEED).permutation(len(images))
    idx = order[:MNIST_RESPLIT_TEST] if split == "test" else order[MNIST_RESPLIT_TEST:]
    source = (
        f"MNIST t10k re-split (seed {MNIST_RESPLIT_SEED}, {MNIST_RESPLIT_TEST} test / "
        f"{len(images) - MNIST_RESPLIT_TEST} train) from {directory}"
    )
    return images[idx], labels[idx], source


def _pair(img: Path, lab: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) scaled to [0, 1] and labels (N,), checked against each other."""
    images, labels = read_idx(img), read_idx(lab)
    if images.ndim != 3 or labels.ndim != 1:
        raise HarnessError(
            f"{img}: expected (N, H, W) images and (N,) labels, got {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise HarnessError(f"{img.parent}: {len(images)} images but {len(labels)} labels")
    return (images.astype(np.float32) / 255.0), labels


def _load_digits(split: Split) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    n_test = len(images) // 4
    idx = order[:n_test] if split == "test" else order[n_test:]
    return images[idx], d.target[idx], f"sklearn load_digits, seeded split (seed {DIGITS_SPLIT_SEED})"


def load_dataset(
    name: str,
    split: Split = "test",
    n_samples: int | None = None,
    offset: int = 0,
    path: str | Path | None = None,
) -> Dataset:
    """Load ``digits``, ``mnist`` or ``cifar10``; take ``n_samples`` images starting at ``offset``."""
    if split not in ("train", "test"):
        raise HarnessError(f"split must be 'train' or 'test', got {split!r}")
    if name == "digits":
        images, labels, source = _load_digits(split)
    elif name == "mnist":
        images, labels, source = _load_mnist(split, Path(path) if path else None)
    elif name == "cifar10":
        from advharness.zoo.cifar import load_cifar10

        images, labels, source = load_cifar10(split, Path(path) if path else None)
    else:
        raise HarnessError(f"unknown dataset {name!r}; known datasets: digits, mnist, cifar10")
    x = images.astype(np.float32)
    if x.ndim == 3:  # grey images (N, H, W): one channel
        x = x.reshape(len(x), 1, *x.shape[1:])
    y = labels.astype(np.int64)
    if offset < 0 or (n_samples is not None and n_samples < 1):
        raise HarnessError("n_samples must be >= 1 and offset >= 0")
    end = len(x) if n_samples is None else offset + n_samples
    if offset >= len(x) or end > len(x):
        raise HarnessError(
            f"{name} {split} has {len(x)} images; cannot take {n_samples} from offset {offset}"
        )
    return Dataset(name, split, x[offset:end], y[offset:end], 10, (0.0, 1.0), source)
