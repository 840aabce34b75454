"""CIFAR-10 from the official python-pickle batches (a small directory in that format, written
here) and RobustBench models (``robustbench:`` entries) with weights from a local file."""

from __future__ import annotations

import pickle
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import errors_of

from advharness.config.experiment import ModelConfig, parse_experiment
from advharness.core.errors import HarnessError
from advharness.zoo.data import load_dataset

PER_BATCH = 4  # images per train batch (x5)
N_TEST = 6
NOT_INSTALLED = "robustbench is not installed: pip install 'advharness[robustbench]'"


def _batch(rng: np.random.Generator, n: int) -> dict[bytes, Any]:
    return {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar(root: Path, seed: int = 0) -> dict[str, dict[bytes, Any]]:
    """The official layout, ``root/cifar-10-batches-py/``, with tiny batches pickled as the
    official ones are (protocol 2, byte-string keys); returns the batches by file name."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _batch(rng, PER_BATCH) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, N_TEST)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def _images(*batches: dict[bytes, Any]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([b[b"data"] for b in batches])
    labels = np.concatenate([b[b"labels"] for b in batches])
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


@pytest.fixture
def cifar(tmp_path: Path) -> tuple[Path, dict[str, dict[bytes, Any]]]:
    root = tmp_path / "cifar"
    return root, write_cifar(root)


# -- the loader ------------------------------------------------------------------------------
def test_the_official_split_comes_out_nchw_in_unit_range(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]],
) -> None:
    root, batches = cifar
    train = load_dataset("cifar10", "train", path=root)
    x_train, y_train = _images(*(batches[f"data_batch_{i}"] for i in range(1, 6)))
    assert train.x.shape == (5 * PER_BATCH, 3, 32, 32) and train.x.dtype == np.float32
    assert train.y.dtype == np.int64 and train.nb_classes == 10 and train.bounds == (0.0, 1.0)
    np.testing.assert_array_equal(train.x, x_train)
    np.testing.assert_array_equal(train.y, y_train)
    assert "official CIFAR-10 train split" in train.source
    test = load_dataset("cifar10", "test", n_samples=4, offset=2, path=root / "cifar-10-batches-py")
    x_test, y_test = _images(batches["test_batch"])
    np.testing.assert_array_equal(test.x, x_test[2:6])
    np.testing.assert_array_equal(test.y, y_test[2:6])
    # the channel-major layout of the official rows: the first 1024 bytes are the red plane
    assert test.x[0, 0, 0, 1] == batches["test_batch"][b"data"][2, 1] / np.float32(255.0)
    assert test.x[0, 1, 0, 0] == batches["test_batch"][b"data"][2, 1024] / np.float32(255.0)


def test_the_directory_comes_from_the_environment_and_the_archive_is_read_in_place(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, batches = cifar
    monkeypatch.setenv("ADVHARNESS_CIFAR10_DIR", str(root))
    from_env = load_dataset("cifar10", "test")
    archived = tmp_path / "archived"
    archived.mkdir()
    with tarfile.open(archived / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    for where in (archived, archived / "cifar-10-python.tar.gz"):
        ds = load_dataset("cifar10", "test", path=where)
        assert ds.fingerprint() == from_env.fingerprint()
        assert "cifar-10-python.tar.gz" in ds.source
    np.testing.assert_array_equal(from_env.x, _images(batches["test_batch"])[0])


def test_missing_directory_and_missing_files_are_named(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]], tmp_path: Path
) -> None:
    root, _ = cifar
    with pytest.raises(HarnessError, match=r"CIFAR-10 directory not found: .*nowhere") as e:
        load_dataset("cifar10", "test", path=tmp_path / "nowhere")
    assert "\n" not in str(e.value)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    (root / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(HarnessError, match=r"train files missing: data_batch_3, data_batch_5") as e:
        load_dataset("cifar10", "train", path=root)
    assert str(root / "cifar-10-batches-py") in str(e.value)
    assert len(load_dataset("cifar10", "test", path=root).x) == N_TEST  # its file is there
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match="test files missing: test_batch"):
        load_dataset("cifar10", "test", path=empty)


def _spoil(batch: dict[bytes, Any], how: str) -> Any:
    if how == "flat":
        return {**batch, b"data": batch[b"data"].reshape(-1)}
    if how == "width":
        return {**batch, b"data": batch[b"data"][:, :3000]}
    if how == "dtype":
        return {**batch, b"data": batch[b"data"].astype(np.float32)}
    if how == "range":
        return {**batch, b"labels": [10, *batch[b"labels"][1:]]}
    if how == "count":
        return {**batch, b"labels": batch[b"labels"][:-1]}
    if how == "keys":
        return {b"images": batch[b"data"]}
    return [batch[b"data"]]  # not a dict


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flat", r"b'data' must be a uint8 array of shape \(N, 3072\), got uint8 \(18432,\)"),
        ("width", r"got uint8 \(6, 3000\)"),
        ("dtype", r"got float32 \(6, 3072\)"),
        ("range", r"labels must lie in 0\.\.9, got \d\.\.10$"),
        ("count", "6 images but 5 labels"),
        ("keys", "expected a dict with keys b'data' and b'labels'"),
        ("list", "expected a dict with keys b'data' and b'labels', got list"),
    ],
)
def test_bad_batches_are_one_line_errors_with_the_file(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]], how: str, message: str
) -> None:
    root, batches = cifar
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps(_spoil(batches["test_batch"], how), protocol=2))
    with pytest.raises(HarnessError, match=message) as e:
        load_dataset("cifar10", "test", path=root)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


class Planted:
    """Unpickling this opens (creates) a file: what a tampered batch could do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.target), "w"))


def test_a_pickle_asking_for_anything_but_arrays_is_refused_unrun(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]], tmp_path: Path
) -> None:
    root, batches = cifar
    marker = tmp_path / "planted"
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({**batches["test_batch"], b"extra": Planted(marker)}, protocol=2))
    with pytest.raises(HarnessError, match=r"refused: the pickle asks for (builtins|__builtin__|io)\.open"):
        load_dataset("cifar10", "test", path=root)
    assert not marker.exists()
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(HarnessError, match="not a readable CIFAR-10 batch"):
        load_dataset("cifar10", "test", path=root)
    # a batch pickled by today's Python (protocol 5, numpy's own reduce) is read as well, and
    # one that names numpy 1's module (as the official files do)
    path.write_bytes(pickle.dumps(batches["test_batch"], protocol=5))
    assert len(load_dataset("cifar10", "test", path=root).x) == N_TEST
    old = pickle.dumps(batches["test_batch"], protocol=2)
    assert b"cnumpy._core.multiarray\n" in old
    path.write_bytes(old.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    np.testing.assert_array_equal(
        load_dataset("cifar10", "test", path=root).x, _images(batches["test_batch"])[0]
    )


def test_batches_meta_must_name_ten_classes(cifar: tuple[Path, dict[str, dict[bytes, Any]]]) -> None:
    root, _ = cifar
    (root / "cifar-10-batches-py" / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2)
    )
    with pytest.raises(HarnessError, match=r"batches\.meta: b'label_names' must list 10 classes"):
        load_dataset("cifar10", "test", path=root)


# -- experiments -----------------------------------------------------------------------------
FACTORY = """\
import torch


def linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
"""

#: A stand-in for the ``robustbench`` package with the same API for what the hook uses
#: (``robustbench.model_zoo.model_dicts`` keyed by its enums, entries with ``model`` and
#: ``gdrive_id``), holding a small architecture: the real one needs torchvision, which does
#: not load with the CPU torch here.
STAND_IN = {
    "robustbench/__init__.py": "",
    "robustbench/model_zoo/enums.py": """\
from enum import Enum


class BenchmarkDataset(Enum):
    cifar_10 = "cifar10"
    cifar_100 = "cifar100"
    imagenet = "imagenet"


class ThreatModel(Enum):
    Linf = "Linf"
    L2 = "L2"
    corruptions = "corruptions"
""",
    "robustbench/model_zoo/__init__.py": """\
from collections import OrderedDict

import torch

from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.fc = torch.nn.Linear(4 * 15 * 15, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


linf = OrderedDict(
    [
        ("Standard", {"model": SmallNet, "gdrive_id": "one"}),
        ("Wong2020Fast", {"model": SmallNet, "gdrive_id": "two"}),
        ("Ensemble2099", {"model": SmallNet, "gdrive_id": ["a", "b"]}),
    ]
)
model_dicts = OrderedDict([(BenchmarkDataset.cifar_10, OrderedDict([(ThreatModel.Linf, linf)]))])
""",
}


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "advh_cifar_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "advh_cifar_factory", raising=False)


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stand-in ``robustbench`` importable (fresh modules for every test)."""
    site = tmp_path / "site"
    for rel, text in STAND_IN.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    monkeypatch.syspath_prepend(str(site))
    for name in [n for n in sys.modules if n == "robustbench" or n.startswith("robustbench.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "robustbench" or n.startswith("robustbench.")]:
        del sys.modules[name]


def _experiment(root: Path, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "cifar",
        "data": {"dataset": "cifar10", "path": str(root), "n_samples": 4},
        "models": models,
        "libraries": ["art", "foolbox"],
        "attacks": [{"attack": "fgsm", "eps": 8 / 255}],
    }


FACTORY_ENTRY = {
    "factory": "advh_cifar_factory:linear",
    "framework": "torch",
    "name": "linear",
    "input_shape": [3, 32, 32],
    "nb_classes": 10,
}


def _save_weights(path: Path, seed: int, prefix: str = "module.") -> Any:
    """A stand-in architecture with seeded weights, saved as RobustBench ships checkpoints."""
    import torch
    from robustbench.model_zoo import SmallNet

    torch.manual_seed(seed)
    net = SmallNet().eval()
    torch.save({"state_dict": {prefix + k: v for k, v in net.state_dict().items()}}, path)
    return net


def test_robustbench_entries_are_validated(tmp_path: Path, factory_module: None) -> None:
    weights = tmp_path / "Standard.pt"
    weights.write_bytes(b"")
    rb = {"robustbench": "Standard", "framework": "torch", "weights": str(weights)}
    exp = parse_experiment(_experiment(tmp_path, [rb, FACTORY_ENTRY]))
    m = exp.models[0]
    assert m.key == "Standard-Linf" and m.input_shape == (3, 32, 32) and m.nb_classes == 10
    assert m.resolved_layout == "NCHW" and m.bounds == (0.0, 1.0) and m.outputs == "logits"
    again = parse_experiment(exp.model_dump(mode="json"))  # a dumped experiment loads again
    assert again.models[0] == m

    def errors(**changes: Any) -> list[str]:
        entry = {k: v for k, v in {**rb, **changes}.items() if v is not None}
        return errors_of(_experiment(tmp_path, [entry]))

    assert errors(framework="tensorflow") == [
        "models[0]: a RobustBench model is a torch model: framework must be torch"
    ]
    assert errors(weights=None) == [
        "models[0]: a RobustBench model needs weights (a local file: nothing is downloaded)"
    ]
    assert errors(input_shape=[3, 64, 64]) == [
        "models[0]: input_shape: a RobustBench model's is [3, 32, 32], got [3, 64, 64]"
    ]
    assert errors(bounds=[0, 255]) == ["models[0]: bounds: a RobustBench model's is [0.0, 1.0], got [0, 255]"]
    assert errors(threat_model="Linf2") == [
        "models[0].threat_model: Input should be 'Linf', 'L2' or 'corruptions'"
    ]
    assert errors(recipe="digits_mlp") == [
        "models[0]: give one of recipe, factory or robustbench, not recipe and robustbench"
    ]
    assert errors_of(
        _experiment(tmp_path, [{"recipe": "digits_mlp", "framework": "torch", "threat_model": "L2"}])
    ) == ["models[0]: threat_model: only for robustbench models"]
    on_digits = {**_experiment(tmp_path, [rb]), "data": {"dataset": "digits", "n_samples": 4}}
    assert errors_of(on_digits) == ["models[0].dataset: a cifar10 model, but data.dataset is digits"]


def test_without_robustbench_its_cells_are_unsupported_rows_naming_the_extra(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]], tmp_path: Path, factory_module: None
) -> None:
    """(robustbench is not installed here: its torchvision cannot load with the CPU torch.)"""
    from advharness.execution.orchestrate import run_experiment
    from advharness.zoo.robustbench import load_robustbench_model

    root, _ = cifar
    weights = tmp_path / "Standard.pt"
    weights.write_bytes(b"")
    rb = {"robustbench": "Standard", "framework": "torch", "weights": str(weights)}
    squeezed = {"defense": "feature_squeezing", "of": "Standard-Linf", "params": {"bit_depth": 4}}
    exp = parse_experiment(
        {**_experiment(root, [rb, FACTORY_ENTRY]), "defenses": [squeezed], "defense_transfer": False}
    )
    with pytest.raises(HarnessError) as e:
        load_robustbench_model(exp.models[0])
    assert str(e.value) == f"model 'Standard-Linf' (RobustBench Standard, cifar10 Linf): {NOT_INSTALLED}"
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    s = res.summary
    rb_rows, others = s[s["model"] != "linear"], s[s["model"] == "linear"]
    # the model, its defended variant and that one's adaptive surrogate: unsupported, naming the extra
    assert len(rb_rows) == 6 and len(set(rb_rows["model"])) == 3, s[["model", "status"]]
    assert set(rb_rows["status"]) == {"unsupported"}
    assert set(rb_rows["reason"]) == {NOT_INSTALLED}
    assert set(others["status"]) == {"ok"}
    assert "official CIFAR-10 test split" in str(res.manifest)


def test_the_hook_builds_robustbench_s_architecture_with_the_local_weights(
    tmp_path: Path, stand_in: None
) -> None:
    import torch

    from advharness.zoo.robustbench import architecture, load_robustbench_model

    path = tmp_path / "Standard.pt"
    saved = _save_weights(path, seed=1)
    cfg = ModelConfig(robustbench="Standard", framework="torch", weights=str(path))
    model = load_robustbench_model(cfg)
    x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        want = saved(torch.from_numpy(x)).numpy()
        untrained = architecture(cfg)(torch.from_numpy(x)).numpy()
    got = model.predict_logits(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.abs(got - untrained).max() > 1e-2  # the weights were loaded, not left as built
    assert model.input_shape == (3, 32, 32) and model.nb_classes == 10 and model.bounds == (0.0, 1.0)
    info = model.recipe_info  # type: ignore[attr-defined]
    assert info["robustbench"] == "Standard" and info["threat_model"] == "Linf"
    torch.save(saved.state_dict(), path)  # a bare state dict works too
    np.testing.assert_allclose(load_robustbench_model(cfg).predict_logits(x), want, rtol=1e-4, atol=1e-5)

    def problem(**changes: Any) -> str:
        with pytest.raises(HarnessError) as e:
            load_robustbench_model(
                ModelConfig(
                    **{"robustbench": "Standard", "framework": "torch", "weights": str(path), **changes}
                )
            )
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "no such model in robustbench's model zoo; similar: Standard" in problem(robustbench="Stand")
    assert "an ensemble of several checkpoints, not supported" in problem(robustbench="Ensemble2099")
    assert "robustbench has no cifar10 L2 models (has: Linf)" in problem(threat_model="L2")
    torch.save({"conv.weight": torch.zeros(1)}, path)
    assert f"cannot load weights {path}" in problem()


def test_an_experiment_runs_on_cifar10_with_a_robustbench_model(
    cifar: tuple[Path, dict[str, dict[bytes, Any]]], tmp_path: Path, stand_in: None, factory_module: None
) -> None:
    from advharness.execution.orchestrate import run_experiment

    root, _ = cifar
    weights = tmp_path / "Wong2020Fast.pt"
    _save_weights(weights, seed=2)
    rb = {"robustbench": "Wong2020Fast", "framework": "torch", "weights": str(weights)}
    exp = parse_experiment(_experiment(root, [rb, FACTORY_ENTRY]))
    res = run_experiment(exp, out_dir=tmp_path / "out", backend="inline")
    s = res.summary
    assert len(s) == 4 and set(s["status"]) == {"ok"}, s[["model", "library", "status", "reason"]]
    assert set(s["model"]) == {"Wong2020Fast-Linf", "linear"}
    # FGSM at 8/255: the referee's median Linf norm of the successes is within eps
    norms = s["median_norm"].dropna()
    assert (norms <= 8 / 255 + 1e-6).all(), s[["model", "library", "median_norm"]]
    assert s["success_rate"].between(0, 1).all()
    other = tmp_path / "other.pt"
    _save_weights(other, seed=3)
    changed = parse_experiment(_experiment(root, [{**rb, "weights": str(other)}, FACTORY_ENTRY]))
    again = run_experiment(changed, out_dir=tmp_path / "out", backend="inline")
    assert again.manifest["cells_run_now"] == 2  # other weights: the RobustBench model's cells re-run
