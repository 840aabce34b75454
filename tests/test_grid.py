"""Experiment grids, seeds, command-line overrides and factory models (all before any run)."""

from __future__ import annotations

import copy
import itertools
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.experiment import Experiment, load_experiment, parse_experiment
from harness.grid import GRID_FIELDS, apply_overrides, expand_attack

BASE: dict[str, Any] = {
    "name": "g", "data": {"dataset": "digits", "n_samples": 8},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "attacks": [{"attack": "fgsm", "eps": 0.1}],
}


def _exp(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **changes}


def _errors(data: dict[str, Any], overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(HarnessError) as e:
        parse_experiment(data, "exp.yaml", overrides)
    lines = str(e.value).splitlines()
    assert all(line.startswith("exp.yaml: ") for line in lines), lines
    return [line.removeprefix("exp.yaml: ") for line in lines]


# -- grids ---------------------------------------------------------------------------------
def test_grid_is_the_product_in_field_order() -> None:
    exp = parse_experiment(_exp(attacks=[{
        "attack": "pgd", "eps": [0.1, 0.2, 0.3], "steps": [10, 20], "norm": ["linf", "l2"],
        "random_start": [False, True], "step_size": 0.01}]))
    got = [(a.norm, a.eps, a.steps, a.random_start) for a in exp.attacks]
    assert got == list(itertools.product(["linf", "l2"], [0.1, 0.2, 0.3], [10, 20], [False, True]))
    assert {a.step_size for a in exp.attacks} == {0.01}
    assert GRID_FIELDS.index("norm") < GRID_FIELDS.index("eps") < GRID_FIELDS.index("steps")


def test_params_grids_follow_the_fields_in_the_order_given() -> None:
    exp = parse_experiment(_exp(attacks=[
        {"attack": "cw", "steps": [10, 20],
         "params": {"confidence": [0.0, 5.0], "c": [0.1, 1.0], "binary_search_steps": 3}}]))
    got = [(a.steps, a.params["confidence"], a.params["c"]) for a in exp.attacks]
    assert got == list(itertools.product([10, 20], [0.0, 5.0], [0.1, 1.0]))
    assert {a.params["binary_search_steps"] for a in exp.attacks} == {3}


def test_every_gridable_field_expands() -> None:
    exp = parse_experiment(_exp(attacks=[
        {"attack": "pgd", "eps": 0.1, "random_start": True, "restarts": [1, 2],
         "targeted": [False, True], "target_mode": ["random", "least_likely"]},
        {"attack": "square", "eps": 0.1, "threat_model": ["score-based", "decision-based"],
         "budget": [100, 1000]}]))
    assert len(exp.attacks) == 2 * 2 * 2 + 2 * 2
    assert [(a.threat_model, a.budget) for a in exp.attacks[8:]] == list(
        itertools.product(["score-based", "decision-based"], [100, 1000]))


def test_lists_that_are_not_grids_stay_lists() -> None:
    exp = parse_experiment(_exp(
        models=[{"recipe": "digits_mlp", "framework": "torch"},
                {"recipe": "digits_cnn", "framework": "torch"}],
        attacks=[{"attack": "square", "eps": 0.1, "budget": 500, "query_levels": [10, 100]},
                 {"attack": "fgsm", "eps": 0.1, "source": "digits_mlp-torch",
                  "target_models": ["digits_cnn-torch"],
                  "library_options": {"art": {"batch_size": 4}}}]))
    assert len(exp.attacks) == 2
    assert exp.attacks[0].query_levels == (10, 100)
    assert exp.attacks[1].target_models == ("digits_cnn-torch",)


def test_duplicates_after_expansion_are_kept_once() -> None:
    exp = parse_experiment(_exp(attacks=[
        {"attack": "fgsm", "eps": [0.1, 0.2, 0.1]},
        {"attack": "fgsm", "eps": 0.2},
        {"attack": "pgd", "eps": 0.1, "norm": "linf"},
        {"attack": "pgd", "eps": 0.1},  # the same spec once resolved (linf is the default)
        {"attack": "fgsm", "eps": [0.3]}]))
    assert [(a.attack, a.eps) for a in exp.attacks] == [
        ("fgsm", 0.1), ("fgsm", 0.2), ("pgd", 0.1), ("fgsm", 0.3)]


def test_expand_attack_reports_origins() -> None:
    out, problems = expand_attack({"attack": "cw", "steps": [1, 2], "params": {"c": [3, 4]}}, 5)
    assert not problems and len(out) == 4
    concrete, origin = out[1]
    assert concrete == {"attack": "cw", "steps": 1, "params": {"c": 4}}
    assert origin.index == 5 and origin.grid == ((("steps",), 1), (("params", "c"), 4))


def test_model_framework_lists() -> None:
    exp = parse_experiment(_exp(models=[
        {"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]},
        {"recipe": "digits_cnn", "framework": ["tensorflow", "tensorflow"]}]))
    assert [m.key for m in exp.models] == ["digits_mlp-torch", "digits_mlp-tensorflow",
                                           "digits_cnn-tensorflow"]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"attacks": [{"attack": "fgsm", "eps": 0.1}, {"attack": "pgd", "eps": 0.1},
                  {"attack": "pgd", "eps": []}]},
     ["attacks[2].eps: an empty grid"]),
    ({"attacks": [{"attack": "cw", "params": {"c": []}}]}, ["attacks[0].params.c: an empty grid"]),
    ({"attacks": [{"attack": "fgsm", "eps": 0.1}] * 3 + [{"attack": "pgd", "eps": [0.1, -1.0]}]},
     ["attacks[3].eps: must be >= 0 (grid value -1.0)"]),
    ({"attacks": [{"attack": "pgd", "eps": 0.1, "restarts": [1, 3], "steps": [5, 6]}]},
     ["attacks[0]: restarts > 1 needs random_start: true (restarts would be identical) "
      "(grid value restarts=3)"]),
    ({"attacks": [{"attack": "pgd", "eps": 0.1, "norm": ["linf", "l0"], "steps": [5, 6]}]},
     ["attacks[0]: pgd supports norms ['linf', 'l2'], not 'l0' (grid value norm='l0')"]),
    ({"attacks": [{"attack": "cw", "params": {"c": [1.0, -2.0]}}]},
     ["attacks[0]: params.c must be > 0 (grid value params.c=-2.0)"]),
    ({"attacks": [{"attack": "cw", "params": {"c": [1.0, [2.0]]}}]},
     ["attacks[0].params.c: must be a number, string or boolean (grid value [2.0])"]),
    ({"attacks": [{"attack": "pgd", "eps": 0.1, "step_size": [0.01, float("inf")]},
                  {"attack": "cw", "params": {"confidence": float("nan")}}]},
     ["attacks[0].step_size: must be a finite number (grid value inf)",
      "attacks[1].params.confidence: must be a finite number"]),
    ({"attacks": [{"attack": "pgd", "eps": 0.1, "steps": [[1, 2]]}]},
     ["attacks[0].steps: Input should be a valid integer (grid value [1, 2])"]),
    ({"models": [{"recipe": "digits_mlp", "framework": []}]}, ["models[0].framework: an empty grid"]),
    ({"models": [{"recipe": "digits_mlp", "framework": ["torch", "jax"]}]},
     ["models[0].framework: Input should be 'torch' or 'tensorflow' (grid value 'jax')"]),
], ids=["empty-grid", "empty-params-grid", "grid-value", "shared-grid-value", "grid-norm",
        "params-grid-value", "nested-params-list", "non-finite", "nested-list", "empty-framework-grid",
        "framework-grid-value"])
def test_grid_problems_are_located(changes: dict[str, Any], expected: list[str]) -> None:
    assert _errors(_exp(**changes)) == expected


def test_problems_of_every_spec_are_reported_once() -> None:
    lines = _errors(_exp(attacks=[{"attack": "nope", "eps": [0.1, 0.2, 0.3]}]))
    assert len(lines) == 1 and lines[0].startswith("attacks[0]: unknown attack 'nope'")


def test_name_with_a_framework_list_is_refused() -> None:
    lines = _errors(_exp(models=[{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"],
                                  "name": "m"}]))
    assert lines == ["models[0].name: one name cannot name one model per framework: drop name "
                     "(keys are <recipe>-<framework>) or list one framework"]


def test_all_problems_are_collected_in_file_order() -> None:
    lines = _errors(_exp(libraries=["art", "nope"], models=[
        {"recipe": "digits_mlp", "framework": []}, {"recipe": "resnet", "framework": "torch"}],
        attacks=[{"attack": "pgd", "eps": []}, {"attack": "fgsm", "eps": -1}]))
    assert lines == [
        "models[0].framework: an empty grid",
        "models[1].recipe: unknown recipe 'resnet'; known: digits_cnn, digits_mlp, mnist_cnn",
        "attacks[0].eps: an empty grid",
        "attacks[1].eps: must be >= 0",
        "libraries: unknown library 'nope'; known: art, foolbox, cleverhans "
        "(or module:Class for an Adapter subclass)",
    ]


def test_huge_grids_are_refused() -> None:
    lines = _errors(_exp(attacks=[{"attack": "pgd", "eps": list(range(1000)),
                                   "steps": list(range(1, 1001))}]))
    assert lines == ["attacks[0]: the grid has 1,000,000 specs; at most 100,000 per entry"]


def test_grid_size() -> None:
    exp = parse_experiment(_exp(
        models=[{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]}],
        libraries=["art", "foolbox", "cleverhans"], seeds=[0, 1],
        attacks=[{"attack": "fgsm", "eps": [0.1, 0.2]}, {"attack": "cw"}]))
    assert exp.grid_size() == 2 * 3 * 3 * 2
    assert exp.grid_size(n_libraries_override=1) == 2 * 3 * 1 * 2


# -- seeds, time limit, workers ------------------------------------------------------------
def test_seeds_time_limit_and_workers() -> None:
    exp = parse_experiment(_exp())
    assert exp.run_seeds == [0] and exp.seeds is None
    assert exp.time_limit_s is None and exp.workers is None
    assert parse_experiment(_exp(seed=7)).run_seeds == [7]
    exp = parse_experiment(_exp(seeds=[3, 1, 2], time_limit_s=60, workers=4))
    assert exp.run_seeds == [3, 1, 2] and exp.time_limit_s == 60.0 and exp.workers == 4
    assert parse_experiment(_exp(seed=0, seeds=[5])).run_seeds == [5]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"seed": 1, "seeds": [1, 2]}, "seeds: give seed or seeds, not both"),
    ({"seeds": []}, "seeds: List should have at least 1 item after validation, not 0"),
    ({"seeds": [1, 1]}, "seeds: seeds are listed more than once"),
    ({"seeds": [0.5]}, "seeds[0]: Input should be a valid integer"),
    ({"time_limit_s": 0}, "time_limit_s: must be > 0"),
    ({"time_limit_s": float("inf")}, "time_limit_s: Input should be a finite number"),
    ({"workers": 0}, "workers: must be >= 1"),
], ids=["seed-and-seeds", "empty-seeds", "repeated-seeds", "float-seed", "zero-time-limit",
        "infinite-time-limit", "no-workers"])
def test_bad_seeds_time_limit_workers(changes: dict[str, Any], expected: str) -> None:
    assert expected in _errors(_exp(**changes))[0]


# -- overrides -----------------------------------------------------------------------------
RAW: dict[str, Any] = {
    "name": "o", "data": {"dataset": "digits", "n_samples": 8},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "attacks": [{"attack": "pgd", "eps": 0.1, "steps": 10}, {"attack": "fgsm", "eps": 0.1},
                {"attack": "cw"}, {"attack": "pgd", "eps": 0.3, "norm": "l2"}],
}


@pytest.mark.parametrize(("override", "check"), [
    ("seeds=[0,1]", lambda d: d["seeds"] == [0, 1]),
    ("data.n_samples=32", lambda d: d["data"] == {"dataset": "digits", "n_samples": 32}),
    ("attacks.pgd.steps=100", lambda d: [a.get("steps") for a in d["attacks"]] == [100, None, None, 100]),
    ("attacks[2].eps=0.3", lambda d: d["attacks"][2] == {"attack": "cw", "eps": 0.3}),
    ("libraries=[art,foolbox]", lambda d: d["libraries"] == ["art", "foolbox"]),
    ("time_limit_s=60", lambda d: d["time_limit_s"] == 60),
    ("attacks.cw.params.c=1", lambda d: d["attacks"][2] == {"attack": "cw", "params": {"c": 1}}),
    ("attacks.fgsm.eps=[0.1, 0.2]", lambda d: d["attacks"][1]["eps"] == [0.1, 0.2]),
    ("models[0].framework=tensorflow", lambda d: d["models"][0]["framework"] == "tensorflow"),
    ("name=with=equals", lambda d: d["name"] == "with=equals"),
    ("new.nested.key=x", lambda d: d["new"] == {"nested": {"key": "x"}}),
], ids=["seeds", "nested", "by-attack-name", "index", "list", "float", "created-mapping",
        "grid", "model-index", "equals-in-value", "created-top-level"])
def test_override_syntax(override: str, check: Any) -> None:
    raw = copy.deepcopy(RAW)
    out = apply_overrides(raw, [override])
    assert check(out)
    assert raw == RAW  # a new mapping; the input is untouched


def test_overrides_apply_in_order() -> None:
    out = apply_overrides(RAW, ["seed=1", "attacks[0].steps=5", "seed=2", "attacks.pgd.steps=7"])
    assert out["seed"] == 2 and [a.get("steps") for a in out["attacks"]] == [7, None, None, 7]


def test_overrides_then_grids_then_validation() -> None:
    exp = parse_experiment(RAW, "exp.yaml", ["attacks.pgd.eps=[0.1,0.2]", "seeds=[0,1]",
                                            "libraries=[art]", "time_limit_s=60"])
    assert [(a.attack, a.eps, a.norm) for a in exp.attacks] == [
        ("pgd", 0.1, None), ("pgd", 0.2, None), ("fgsm", 0.1, None), ("cw", None, None),
        ("pgd", 0.1, "l2"), ("pgd", 0.2, "l2")]
    assert exp.run_seeds == [0, 1] and exp.libraries == ["art"] and exp.time_limit_s == 60
    assert exp.grid_size() == 1 * 6 * 1 * 2


@pytest.mark.parametrize(("override", "message"), [
    ("attacks.zzz.steps=3", "no attack 'zzz' in the experiment"),
    ("foo", "expected path=value"),
    ("=3", "expected path=value"),
    ("attacks[9].eps=1", "index 9 out of range (attacks has 4 entries)"),
    ("models[0][1]=1", "models[0] is not a list"),
    ("name.x=1", "name is not a mapping"),
    ("models.framework=torch", "models is a list: index it, e.g. models[0].framework"),
    ("attacks.pgd=1", "name a field of the attack, e.g. attacks.pgd.steps"),
    ("a..b=1", "bad path segment '' (expected key or key[index])"),
    ("attacks[x].eps=1", "bad path segment 'attacks[x]' (expected key or key[index])"),
    ("seeds=[0,", "value is not valid YAML (while parsing"),
], ids=["unknown-attack", "no-equals", "no-path", "index-range", "not-a-list", "not-a-mapping",
        "list-by-key", "whole-attack", "empty-segment", "bad-index", "bad-yaml"])
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(HarnessError) as e:
        apply_overrides(RAW, [override])
    assert str(e.value).startswith(f"override {override!r}: {message}")
    assert "\n" not in str(e.value)


def test_every_bad_override_is_reported_with_the_source() -> None:
    lines = _errors(RAW, ("attacks.zzz.steps=3", "seed=1", "foo"))
    assert lines == ["override 'attacks.zzz.steps=3': no attack 'zzz' in the experiment",
                     "override 'foo': expected path=value"]


def test_overridden_values_are_validated_at_their_location() -> None:
    assert _errors(RAW, ("attacks[1].eps=-1",)) == ["attacks[1].eps: must be >= 0"]


def test_load_experiment_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent("""\
        name: file
        models: [{recipe: digits_mlp, framework: [torch, tensorflow]}]
        attacks:
          - {attack: pgd, eps: [0.1, 0.2], steps: 10}
        """))
    exp = load_experiment(path, ["attacks.pgd.steps=[10, 20]", "data.n_samples=16"])
    assert isinstance(exp, Experiment) and exp.data.n_samples == 16
    assert [(a.eps, a.steps) for a in exp.attacks] == [(0.1, 10), (0.1, 20), (0.2, 10), (0.2, 20)]
    with pytest.raises(HarnessError) as e:
        load_experiment(path, ["attacks.fgsm.eps=1"])
    assert str(e.value) == f"{path}: override 'attacks.fgsm.eps=1': no attack 'fgsm' in the experiment"


# -- factory models ------------------------------------------------------------------------
FACTORIES = '''\
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
'''


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
    return {"factory": f"advh_test_factories:{make}", "framework": framework, "name": "mine",
            "input_shape": shape, "nb_classes": 10, **changes}


def _batch(framework: str) -> np.ndarray:
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    return x if framework == "torch" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


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
    net.set_weights([w + np.random.default_rng(1).normal(size=w.shape).astype(w.dtype)
                     for w in net.get_weights()])
    net.save_weights(path)
    return lambda x: np.asarray(net(x))


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_factory_model_with_and_without_weights(factories: Path, framework: str) -> None:
    from harness.factory import load_factory_model, model_fingerprint

    exp = parse_experiment(_exp(models=[_factory_entry(framework)]))
    cfg = exp.models[0]
    assert cfg.key == "mine" and cfg.resolved_layout == ("NCHW" if framework == "torch" else "NHWC")
    fresh = load_factory_model(cfg)
    assert (fresh.name, fresh.family, fresh.framework) == ("mine", "mine", framework)
    assert fresh.recipe_info == {"factory": cfg.factory, "weights": None,  # type: ignore[attr-defined]
                                 "weights_sha256": None}
    x = _batch(framework)
    again = load_factory_model(cfg)
    np.testing.assert_array_equal(fresh.predict_logits(x), again.predict_logits(x))

    suffix = ".pt" if framework == "torch" else ".weights.h5"
    weights = factories / f"w{suffix}"
    saved = _save_perturbed(framework, weights)
    cfg_w = parse_experiment(_exp(models=[_factory_entry(framework, weights=str(weights))])).models[0]
    loaded = load_factory_model(cfg_w)
    np.testing.assert_allclose(loaded.predict_logits(x), saved(x), rtol=1e-6, atol=1e-6)
    assert not np.allclose(loaded.predict_logits(x), fresh.predict_logits(x))
    info = loaded.recipe_info  # type: ignore[attr-defined]
    assert info["weights"] == str(weights) and len(info["weights_sha256"]) == 64

    assert model_fingerprint(cfg_w) == model_fingerprint(cfg_w) != model_fingerprint(cfg)
    bounds = parse_experiment(_exp(models=[_factory_entry(framework, weights=str(weights),
                                                           bounds=[0, 255])])).models[0]
    assert model_fingerprint(bounds) != model_fingerprint(cfg_w)
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert model_fingerprint(cfg_w) != model_fingerprint(bounds)


def test_factory_model_runs_attacks(factories: Path) -> None:
    from harness.data import load_dataset
    from harness.factory import load_factory_model
    from harness.runner import run_attacks

    cfg = parse_experiment(_exp(models=[_factory_entry("torch", factory="advh_test_factories:Zoo.make",
                                                       name="zoo")])).models[0]
    ds = load_dataset("digits", n_samples=8)
    res = run_attacks([load_factory_model(cfg)], ds.x, ds.y, [{"attack": "fgsm", "eps": 0.1}],
                      ["foolbox"])
    assert res.summary["status"].tolist() == ["ok"] and res.summary["model"].tolist() == ["zoo"]


def test_factory_of_the_wrong_framework_is_refused(factories: Path) -> None:
    from harness.factory import load_factory_model

    cfg = parse_experiment(_exp(models=[_factory_entry("tensorflow",
                                                       factory="advh_test_factories:torch_net")])).models[0]
    with pytest.raises(HarnessError, match="returned a Sequential, not a Keras model"):
        load_factory_model(cfg)


def test_weights_that_do_not_fit_are_one_line(factories: Path) -> None:
    from harness.factory import load_factory_model

    bad = factories / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cfg = parse_experiment(_exp(models=[_factory_entry("torch", weights=str(bad))])).models[0]
    with pytest.raises(HarnessError) as e:
        load_factory_model(cfg)
    assert str(e.value).startswith(f"model 'mine': cannot load weights {bad} (")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"factory": "advh_nowhere.mod:make"},
     "models[0].factory: cannot import 'advh_nowhere.mod': No module named 'advh_nowhere'"),
    ({"factory": "advh_test_factories:missing"},
     "models[0].factory: module 'advh_test_factories' has no attribute 'missing'"),
    ({"factory": "advh_test_factories:not_callable"},
     "models[0].factory: 'advh_test_factories:not_callable' is not callable"),
    ({"factory": "advh_test_factories.torch_net"},
     "models[0].factory: 'advh_test_factories.torch_net' is not an import path of the form "
     "'package.module:function'"),
    ({"weights": "/nonexistent/w.pt"}, "models[0].weights: file not found: /nonexistent/w.pt"),
    ({"name": None, "nb_classes": None}, "models[0]: a factory model needs name, nb_classes"),
    ({"recipe": "digits_mlp"}, "models[0]: give recipe or factory, not both"),
    ({"input_shape": [8, 8]},
     "models[0]: input_shape must be (C, H, W), (H, W, C) or (features,), got [8, 8]"),
    ({"layout": "flat"}, "models[0]: layout flat does not fit input_shape [1, 8, 8]"),
    ({"bounds": [1, 0]}, "models[0].bounds: must be finite with low < high, got [1.0, 0.0]"),
    ({"substitute_of": "x", "queries": 10},
     "models[0]: a substitute model needs recipe (the architecture it trains)"),
], ids=["missing-module", "missing-attr", "not-callable", "bad-syntax", "missing-weights",
        "missing-facts", "recipe-and-factory", "bad-shape", "bad-layout", "bad-bounds",
        "factory-substitute"])
def test_bad_factory_entries_are_located(factories: Path, changes: dict[str, Any],
                                         expected: str) -> None:
    assert _errors(_exp(models=[_factory_entry("torch", **changes)])) == [expected]


def test_factory_fields_are_refused_on_recipe_models() -> None:
    lines = _errors(_exp(models=[{"recipe": "digits_mlp", "framework": "torch", "nb_classes": 3,
                                  "outputs": "probabilities"}]))
    assert lines == ["models[0]: nb_classes, outputs: only for factory models (a recipe states "
                     "its own)"]
    assert _errors(_exp(models=[{"framework": "torch"}])) == [
        "models[0]: a model needs recipe (a built-in) or factory ('package.module:function')"]


def test_factory_module_in_the_working_directory_gets_a_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "advh_cwd_factory.py").write_text("def make(): pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    lines = _errors(_exp(models=[{"factory": "advh_cwd_factory:make", "framework": "torch",
                                  "name": "c", "input_shape": [4], "nb_classes": 2}]))
    assert lines == ["models[0].factory: cannot import 'advh_cwd_factory': No module named "
                     "'advh_cwd_factory' (./advh_cwd_factory is not on sys.path: set PYTHONPATH=.)"]


def test_experiments_survive_a_json_round_trip(factories: Path) -> None:
    """Workers get the experiment as JSON: every default written out must validate again."""
    exp = parse_experiment(_exp(
        seeds=[1, 2], time_limit_s=30, workers=2,
        models=[{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]},
                {"recipe": "digits_mlp", "framework": "torch", "substitute_of": "digits_mlp-tensorflow",
                 "queries": 50},
                _factory_entry("torch", bounds=[0, 255], outputs="probabilities")],
        attacks=[{"attack": "cw", "params": {"c": [1, 2.5]}}, {"attack": "pgd", "eps": 0.1}]))
    assert Experiment.model_validate_json(exp.model_dump_json()) == exp
    assert Experiment.model_validate(exp.model_dump(mode="json")) == exp


def test_factory_module_failing_at_import_is_one_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "advh_broken_factory.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = _errors(_exp(models=[{"factory": "advh_broken_factory:make", "framework": "torch",
                                  "name": "b", "input_shape": [4], "nb_classes": 2}]))
    assert lines == ["models[0].factory: cannot import 'advh_broken_factory': RuntimeError: boom"]
