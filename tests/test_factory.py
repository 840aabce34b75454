"""Models named by import path (``factory:``) with optional weights files."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import errors_of, exp_dict

from advharness.config.experiment import Experiment, parse_experiment
from advharness.core.errors import HarnessError
from advharness.models.layout import from_nchw

# -- factory models ------------------------------------------------------------------------
FACTORIES = """\
import keras
import torch


def torch_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


def keras_net():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10)])


not_callable = 3


class Zoo:
    @staticmethod
    def make():
        return torch_net()
"""


#: Data mapped onto each model's bounds (factory models below declare [0, 255]).
SCALED = {"dataset": "digits", "n_samples": 8, "scale": "model"}


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module ``advh_test_factories`` on sys.path (fresh for every test)."""
    (tmp_path / "advh_test_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "advh_test_factories", raising=False)
    return tmp_path


def _factory_entry(framework: str, **changes: Any) -> dict[str, Any]:
    shape = [1, 8, 8] if framework == "torch" else [8, 8, 1]
    make = "torch_net" if framework == "torch" else "keras_net"
    return {
        "factory": f"advh_test_factories:{make}",
        "framework": framework,
        "name": "mine",
        "input_shape": shape,
        "nb_classes": 10,
        **changes,
    }


def _batch(framework: str) -> np.ndarray:
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    return from_nchw(x, "NCHW" if framework == "torch" else "NHWC")


def _save_perturbed(framework: str, path: Path) -> Any:
    """A factory model with other weights, saved to ``path``: the net whose answers count."""
    import advh_test_factories as f

    if framework == "torch":
        import torch

        net = f.torch_net()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        torch.save(net.state_dict(), path)
        return lambda x: net(torch.from_numpy(x)).detach().numpy()
    net = f.keras_net()
    net.set_weights(
        [w + np.random.default_rng(1).normal(size=w.shape).astype(w.dtype) for w in net.get_weights()]
    )
    net.save_weights(path)
    return lambda x: np.asarray(net(x))


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_factory_model_with_and_without_weights(factories: Path, framework: str) -> None:
    from advharness.zoo.factory import load_factory_model, model_fingerprint

    exp = parse_experiment(exp_dict(models=[_factory_entry(framework)]))
    cfg = exp.models[0]
    assert cfg.key == "mine" and cfg.resolved_layout == ("NCHW" if framework == "torch" else "NHWC")
    fresh = load_factory_model(cfg)
    assert (fresh.name, fresh.family, fresh.framework) == ("mine", "mine", framework)
    assert fresh.recipe_info == {  # type: ignore[attr-defined]
        "factory": cfg.factory,
        "weights": None,
        "weights_sha256": None,
    }
    x = _batch(framework)
    again = load_factory_model(cfg)
    np.testing.assert_array_equal(fresh.predict_logits(x), again.predict_logits(x))

    suffix = ".pt" if framework == "torch" else ".weights.h5"
    weights = factories / f"w{suffix}"
    saved = _save_perturbed(framework, weights)
    cfg_w = parse_experiment(exp_dict(models=[_factory_entry(framework, weights=str(weights))])).models[0]
    loaded = load_factory_model(cfg_w)
    np.testing.assert_allclose(loaded.predict_logits(x), saved(x), rtol=1e-6, atol=1e-6)
    assert not np.allclose(loaded.predict_logits(x), fresh.predict_logits(x))
    info = loaded.recipe_info  # type: ignore[attr-defined]
    assert info["weights"] == str(weights)
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()

    assert model_fingerprint(cfg_w) == model_fingerprint(cfg_w) != model_fingerprint(cfg)
    bounds = parse_experiment(
        exp_dict(data=SCALED, models=[_factory_entry(framework, weights=str(weights), bounds=[0, 255])])
    ).models[0]
    assert model_fingerprint(bounds) != model_fingerprint(cfg_w)
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert model_fingerprint(cfg_w) != model_fingerprint(bounds)


def test_factory_model_runs_attacks(factories: Path) -> None:
    from advharness.execution.api import run_attacks
    from advharness.zoo.data import load_dataset
    from advharness.zoo.factory import load_factory_model

    cfg = parse_experiment(
        exp_dict(models=[_factory_entry("torch", factory="advh_test_factories:Zoo.make", name="zoo")])
    ).models[0]
    ds = load_dataset("digits", n_samples=8)
    res = run_attacks([load_factory_model(cfg)], ds.x, ds.y, [{"attack": "fgsm", "eps": 0.1}], ["foolbox"])
    assert res.summary["status"].tolist() == ["ok"] and res.summary["model"].tolist() == ["zoo"]


def test_factory_of_the_wrong_framework_is_refused(factories: Path) -> None:
    from advharness.zoo.factory import load_factory_model

    cfg = parse_experiment(
        exp_dict(models=[_factory_entry("tensorflow", factory="advh_test_factories:torch_net")])
    ).models[0]
    with pytest.raises(HarnessError, match="returned a Sequential, not a Keras model"):
        load_factory_model(cfg)


def test_weights_that_do_not_fit_are_one_line(factories: Path) -> None:
    from advharness.zoo.factory import load_factory_model

    bad = factories / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cfg = parse_experiment(exp_dict(models=[_factory_entry("torch", weights=str(bad))])).models[0]
    with pytest.raises(HarnessError) as e:
        load_factory_model(cfg)
    assert str(e.value).startswith(f"model 'mine': cannot load weights {bad} (")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"factory": "advh_nowhere.mod:make"},
            "models[0].factory: cannot import 'advh_nowhere.mod': No module named 'advh_nowhere'",
        ),
        (
            {"factory": "advh_test_factories:missing"},
            "models[0].factory: module 'advh_test_factories' has no attribute 'missing'",
        ),
        (
            {"factory": "advh_test_factories:not_callable"},
            "models[0].factory: 'advh_test_factories:not_callable' is not callable",
        ),
        (
            {"factory": "advh_test_factories.torch_net"},
            "models[0].factory: 'advh_test_factories.torch_net' is not an import path of the form "
            "'package.module:function'",
        ),
        ({"weights": "/nonexistent/w.pt"}, "models[0].weights: file not found: /nonexistent/w.pt"),
        ({"name": None, "nb_classes": None}, "models[0]: a factory model needs name, nb_classes"),
        (
            {"recipe": "digits_mlp"},
            "models[0]: give one of recipe, factory or robustbench, not recipe and factory",
        ),
        (
            {"input_shape": [8, 8]},
            "models[0]: input_shape must be (C, H, W), (H, W, C) or (features,), got [8, 8]",
        ),
        ({"layout": "flat"}, "models[0]: layout flat does not fit input_shape [1, 8, 8]"),
        ({"bounds": [1, 0]}, "models[0].bounds: must be finite with low < high, got [1.0, 0.0]"),
        (
            {"substitute_of": "x", "queries": 10},
            "models[0]: a substitute model needs recipe (the architecture it trains)",
        ),
    ],
    ids=[
        "missing-module",
        "missing-attr",
        "not-callable",
        "bad-syntax",
        "missing-weights",
        "missing-facts",
        "recipe-and-factory",
        "bad-shape",
        "bad-layout",
        "bad-bounds",
        "factory-substitute",
    ],
)
def test_bad_factory_entries_are_located(factories: Path, changes: dict[str, Any], expected: str) -> None:
    assert errors_of(exp_dict(models=[_factory_entry("torch", **changes)])) == [expected]


def test_factory_fields_are_refused_on_recipe_models() -> None:
    lines = errors_of(
        exp_dict(
            models=[
                {"recipe": "digits_mlp", "framework": "torch", "nb_classes": 3, "outputs": "probabilities"}
            ]
        )
    )
    assert lines == ["models[0]: nb_classes, outputs: only for factory models (a recipe states its own)"]
    assert errors_of(exp_dict(models=[{"framework": "torch"}])) == [
        "models[0]: a model needs recipe (a built-in), factory ('package.module:function') or "
        "robustbench (a RobustBench model name)"
    ]


def test_factory_module_in_the_working_directory_gets_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "advh_cwd_factory.py").write_text("def make(): pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    lines = errors_of(
        exp_dict(
            models=[
                {
                    "factory": "advh_cwd_factory:make",
                    "framework": "torch",
                    "name": "c",
                    "input_shape": [4],
                    "nb_classes": 2,
                }
            ]
        )
    )
    assert lines == [
        "models[0].factory: cannot import 'advh_cwd_factory': No module named "
        "'advh_cwd_factory' (./advh_cwd_factory is not on sys.path: set PYTHONPATH=.)"
    ]


def test_experiments_survive_a_json_round_trip(factories: Path) -> None:
    """Workers get the experiment as JSON: every default written out must validate again."""
    exp = parse_experiment(
        exp_dict(
            seeds=[1, 2],
            time_limit_s=30,
            workers=2,
            data=SCALED,
            models=[
                {"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]},
                {
                    "recipe": "digits_mlp",
                    "framework": "torch",
                    "substitute_of": "digits_mlp-tensorflow",
                    "queries": 50,
                },
                _factory_entry("torch", bounds=[0, 255], outputs="probabilities"),
            ],
            attacks=[{"attack": "cw", "params": {"c": [1, 2.5]}}, {"attack": "pgd", "eps": 0.1}],
        )
    )
    assert Experiment.model_validate_json(exp.model_dump_json()) == exp
    assert Experiment.model_validate(exp.model_dump(mode="json")) == exp


def test_factory_module_failing_at_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "advh_broken_factory.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = errors_of(
        exp_dict(
            models=[
                {
                    "factory": "advh_broken_factory:make",
                    "framework": "torch",
                    "name": "b",
                    "input_shape": [4],
                    "nb_classes": 2,
                }
            ]
        )
    )
    assert lines == ["models[0].factory: cannot import 'advh_broken_factory': RuntimeError: boom"]


def test_import_paths_resolve_dotted_attributes_and_say_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advharness.adapters import load_adapter_class
    from advharness.core.imports import resolve_factory

    box = "class Box:\n    @staticmethod\n    def make():\n        return 7\n"
    (tmp_path / "advh_paths.py").write_text(box)
    (tmp_path / "advh_attr_broken.py").write_text("import sys\nsys.advh_no_such_thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_factory("advh_paths:Box.make")() == 7
    with pytest.raises(HarnessError) as e:
        resolve_factory("advh_paths:Box.missing")
    assert str(e.value) == "module 'advh_paths' has no attribute 'Box.missing'"
    with pytest.raises(HarnessError) as e:  # an AttributeError while importing is an import error
        resolve_factory("advh_attr_broken:make")
    assert str(e.value) == (
        "cannot import 'advh_attr_broken': AttributeError: module 'sys' has no attribute 'advh_no_such_thing'"
    )
    with pytest.raises(HarnessError) as e:
        load_adapter_class("advh_nowhere.mod:Adapter")
    assert str(e.value) == (
        "library 'advh_nowhere.mod:Adapter': cannot import 'advh_nowhere.mod': No module named 'advh_nowhere'"
    )
    with pytest.raises(HarnessError) as e:
        load_adapter_class("advh_paths:Box")
    assert str(e.value) == "library 'advh_paths:Box' is not an Adapter subclass"


# -- factories that misbehave: hang, exit, end their process ----------------------------------
BAD_FACTORIES = """\
import os
import sys
import time


def hangs():
    time.sleep(600)


def exits():
    sys.exit(4)


def ends_process():
    os._exit(3)
"""


@pytest.fixture
def bad_factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "advh_bad_factories.py").write_text(BAD_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned children inherit sys.path
    return tmp_path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("hangs", "did not return within 3 s (model_build_time_limit_s)"),
        ("exits", "called sys.exit(4) while building the model"),
        ("ends_process", "ended its process while building the model (exit code 3)"),
    ],
)
def test_a_misbehaving_factory_is_one_line_naming_the_model(
    bad_factories: Path, make: str, expected: str
) -> None:
    from advharness.zoo.factory import check_factory_model

    cfg = parse_experiment(
        exp_dict(models=[_factory_entry("torch", factory=f"advh_bad_factories:{make}")])
    ).models[0]
    with pytest.raises(HarnessError) as e:
        check_factory_model(cfg, time_limit_s=3)
    assert str(e.value) == f"model 'mine': factory advh_bad_factories:{make} {expected}"


def test_a_factory_calling_sys_exit_does_not_end_the_cli(
    bad_factories: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from advharness.cli import main

    path = bad_factories / "exp.yaml"
    path.write_text(
        yaml.safe_dump(
            exp_dict(
                models=[_factory_entry("torch", factory="advh_bad_factories:exits")],
                model_build_time_limit_s=60,
            )
        )
    )
    assert main(["run", str(path), "--out", str(bad_factories / "out"), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        "advharness: error: model 'mine': factory advh_bad_factories:exits called sys.exit(4) "
        "while building the model\n"
    )


def test_the_factory_check_builds_working_factories(factories: Path) -> None:
    from advharness.zoo.factory import check_factory_model

    for framework in ("torch", "tensorflow"):
        cfg = parse_experiment(exp_dict(models=[_factory_entry(framework)])).models[0]
        check_factory_model(cfg, time_limit_s=300)  # no error: the model builds in the child
