"""CIFAR-10 from the official python-pickle batches in a directory the user names.

The directory (``data.path`` or ``$ADVHARNESS_CIFAR10_DIR``) is ``cifar-10-batches-py``
itself, its parent, or a folder holding the official ``cifar-10-python.tar.gz`` (read in
place, not extracted); a path to that archive works too. ``train`` is ``data_batch_1`` ...
``data_batch_5`` (50,000 images), ``test`` is ``test_batch`` (10,000): the official split.
Only the requested split's files are needed; ``batches.meta``, when present, must name 10
classes. Nothing is downloaded.

The batches are pickles. They are read with a restricted unpickler that builds only dicts,
lists, bytes, numbers and numpy arrays (:class:`BatchUnpickler`): any other object a file
asks for (a class, a function to call) is refused with a one-line error, so a tampered or
foreign file cannot run code. Images come out as (N, 3, 32, 32) float32 in [0, 1], labels
int64 in 0..9.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from advharness.core.errors import HarnessError

BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
NB_CLASSES = 10

#: The globals an official batch (numpy arrays; Python 2 or 3 pickles) may name.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    }
)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and numpy arrays only; any other global is a
    :class:`HarnessError` (``where``: the file, for the message)."""

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise HarnessError(
                f"{self.where}: refused: the pickle asks for {module}.{name}; a CIFAR-10 batch "
                "holds only arrays, lists and bytes (not an official batch file?)"
            )
        with warnings.catch_warnings():  # numpy 2 reads numpy.core names through a shim that warns
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def default_cifar10_dir() -> Path:
    """``$ADVHARNESS_CIFAR10_DIR``, else ``../shared/data/cifar10`` beside the repository."""
    env = os.environ.get("ADVHARNESS_CIFAR10_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10"  # <repo>/harness/zoo/


def read_batch_bytes(data: bytes, where: str) -> Any:
    """Unpickle one batch file's bytes with :class:`BatchUnpickler`."""
    try:
        return BatchUnpickler(io.BytesIO(data), where).load()
    except HarnessError:
        raise
    except Exception as e:  # truncated, not a pickle, a Python 2 string it cannot decode
        raise HarnessError(f"{where}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})") from None


def _reader(path: Path, names: tuple[str, ...]) -> tuple[dict[str, bytes], str]:
    """The bytes of each of ``names`` (missing ones left out) and where they were found."""
    if path.is_file() and path.name.endswith(".tar.gz"):
        return _from_archive(path, names), str(path)
    if not path.is_dir():
        raise HarnessError(
            f"CIFAR-10 directory not found: {path} (set data.path or ADVHARNESS_CIFAR10_DIR to the "
            f"folder holding {BATCHES_DIR} or {ARCHIVE})"
        )
    for directory in (path / BATCHES_DIR, path):
        found = {n: (directory / n).read_bytes() for n in names if (directory / n).is_file()}
        if found:
            return found, str(directory)
    if (path / ARCHIVE).is_file():
        return _from_archive(path / ARCHIVE, names), str(path / ARCHIVE)
    return {}, str(path)


def _from_archive(archive: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for n in names:
                try:
                    member = tar.extractfile(f"{BATCHES_DIR}/{n}")
                except KeyError:
                    continue
                if member is not None:
                    out[n] = member.read()
    except (OSError, tarfile.TarError, EOFError) as e:
        raise HarnessError(f"{archive}: cannot read the archive ({e})") from None
    return out


def _check_batch(batch: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch's images (N, 3, 32, 32) uint8 and labels (N,) int64, validated."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise HarnessError(f"{where}: expected a dict with keys b'data' and b'labels', got {keys}")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise HarnessError(f"{where}: b'data' must be a uint8 array of shape (N, 3072), got {got}")
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError):
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise HarnessError(f"{where}: b'labels' must be a list of whole numbers")
    if len(y) != len(data):
        raise HarnessError(f"{where}: {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= NB_CLASSES):
        raise HarnessError(f"{where}: labels must lie in 0..{NB_CLASSES - 1}, got {y.min()}..{y.max()}")
    return data.reshape(len(data), *IMAGE_SHAPE), y.astype(np.int64)


def _check_meta(meta: Any, where: str) -> None:
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != NB_CLASSES:
        raise HarnessError(f"{where}: b'label_names' must list {NB_CLASSES} classes")


def load_cifar10(split: str, path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The official ``split`` (``train`` or ``test``): images (N, 3, 32, 32) float32 in [0, 1],
    labels (N,) int64, and a line saying where they came from."""
    directory = Path(path) if path is not None else default_cifar10_dir()
    wanted = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    found, where = _reader(directory, (*wanted, META))
    missing = [n for n in wanted if n not in found]
    if missing:
        raise HarnessError(
            f"{where}: CIFAR-10 {split} files missing: {', '.join(missing)} (expected the official "
            f"python batches in {BATCHES_DIR}; set data.path or ADVHARNESS_CIFAR10_DIR)"
        )
    if META in found:
        _check_meta(read_batch_bytes(found[META], f"{where}/{META}"), f"{where}/{META}")
    parts = [_check_batch(read_batch_bytes(found[n], f"{where}/{n}"), f"{where}/{n}") for n in wanted]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    x = images.astype(np.float32) / np.float32(255.0)
    return x, labels, f"official CIFAR-10 {split} split ({', '.join(wanted)}) from {where}"
