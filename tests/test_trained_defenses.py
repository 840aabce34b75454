"""Training-time and architecture defenses (cached model variants) and logit ensembles, in
torch and TF: build, cache, record; the documented effect of adversarial training, defensive
distillation and bounded ReLU, measured with the harness's own adapters and referee."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advharness.adapters import ADAPTERS
from advharness.cells.cell import CellInputs, attack_batch
from advharness.config.catalogue import RECIPES
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel
from advharness.models.layout import to_layout
from advharness.zoo import defense_training, recipes
from advharness.zoo.data import Dataset, load_dataset
from advharness.zoo.trained_defenses import DEFENSES, ensemble_model, train_defended

FRAMEWORKS = ("torch", "tensorflow")
#: Short runs of each defense (2 epochs: the build/cache/record checks only).
QUICK: dict[str, dict[str, Any]] = {
    "adversarial_training": {
        "method": "fgsm_rs",
        "eps": 0.1,
        "step_size": 0.125,
        "steps": 1,
        "ratio": 0.5,
        "epochs": 2,
    },
    "gaussian_augmentation": {"sigma": 0.1, "ratio": 0.5, "epochs": 2},
    "label_smoothing": {"max_value": 0.9, "epochs": 2},
    "distillation": {"temperature": 10.0, "epochs": 2},
    "bounded_relu": {"cap": 0.5, "epochs": 2},
}
PGD_TRAINING = {**QUICK["adversarial_training"], "method": "pgd", "steps": 2, "step_size": 0.05}
#: Clean accuracy may drop by at most this much (absolute) under adversarial training.
CLEAN_MARGIN = 0.10
N_EVAL = 150  # digits test images attacked


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("defended")


@pytest.fixture(scope="module")
def digits_test() -> Dataset:
    return load_dataset("digits", "test")


def undefended(name: str, framework: str, epochs: int) -> WrappedModel:
    """The recipe trained by its own loop for ``epochs`` (the baseline of the same budget)."""
    recipe = dataclasses.replace(RECIPES[name], epochs=epochs)
    backend = recipes.BACKENDS[framework]
    return backend.wrap(backend.train(recipe, load_dataset("digits", "train")), recipe)


def success_rate(model: WrappedModel, test: Dataset, spec: AttackSpec, library: str = "foolbox") -> float:
    """Share of the first :data:`N_EVAL` test images the attack fools, refereed by the harness
    (an image the model already misclassifies is no success)."""
    x, y = to_layout(test.x[:N_EVAL], model), test.y[:N_EVAL]
    inputs = CellInputs(model, x, y, model.predict(x), None)
    res = attack_batch(ADAPTERS[library](), inputs, spec.resolve(), 0, N_EVAL, {})
    assert res.records is not None and res.summary["status"] == "ok"
    return float(res.records["success"].mean())


def accuracy(model: WrappedModel, test: Dataset) -> float:
    return float(np.mean(model.predict(to_layout(test.x, model)) == test.y))


# -- build, cache, record -------------------------------------------------------------------
CASES = [(d, p) for d, p in QUICK.items()] + [("adversarial_training", PGD_TRAINING)]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(("defense", "params"), CASES, ids=[*QUICK, "adversarial_training-pgd"])
def test_each_defense_builds_caches_and_records(
    cache: Path,
    digits_test: Dataset,
    monkeypatch: pytest.MonkeyPatch,
    framework: str,
    defense: str,
    params: dict[str, Any],
) -> None:
    model = train_defended("digits_mlp", framework, defense, params, cache_dir=cache)
    info: dict[str, Any] = model.recipe_info  # type: ignore[attr-defined]
    assert model.name == f"digits_mlp-{framework}+{defense}" and model.family == "digits_mlp"
    assert model.framework == framework and (model.nb_classes, model.bounds) == (10, (0.0, 1.0))
    assert info["from_cache"] is False and info["defense"] == defense and info["params"] == params
    assert info["recipe"] == "digits_mlp" and info["hyperparameters"]["epochs"] == 2
    assert info["recipe_hyperparameters"] == RECIPES["digits_mlp"].hyperparameters()
    assert info["train_time_s"] > 0 and info["test_accuracy"] == pytest.approx(accuracy(model, digits_test))
    assert info["test_accuracy"] > 0.3  # learned something in 2 epochs (chance: 0.1)
    assert isinstance(info["art"], dict) and info["art"]
    weights = Path(info["weights_path"])
    sidecar = weights.with_name(weights.name.removesuffix(recipes.BACKENDS[framework].suffix) + ".json")
    assert weights.is_file() and sidecar.is_file()
    # The second call loads: training it again would fail.
    monkeypatch.setitem(defense_training.TRAINERS, defense, _no_training)
    again = train_defended("digits_mlp", framework, defense, params, cache_dir=cache)
    again_info: dict[str, Any] = again.recipe_info  # type: ignore[attr-defined]
    assert again_info["from_cache"] is True and again_info["train_time_s"] == info["train_time_s"]
    assert again_info["art"] == info["art"] and again_info["weights_path"] == info["weights_path"]
    x = to_layout(digits_test.x[:64], model)
    np.testing.assert_array_equal(again.predict_logits(x), model.predict_logits(x))
    # Other parameters are another variant (another cache entry), trained anew.
    with pytest.raises(RuntimeError, match="trained"):
        train_defended("digits_mlp", framework, defense, {**params, "epochs": 3}, cache_dir=cache)


def _no_training(*_: Any) -> Any:
    raise RuntimeError("trained although cached")


def test_the_art_record_names_the_classes_and_arguments(cache: Path) -> None:
    art = train_defended(
        "digits_mlp", "torch", "adversarial_training", QUICK["adversarial_training"], cache_dir=cache
    )
    record: dict[str, Any] = art.recipe_info["art"]  # type: ignore[attr-defined]
    assert record["trainer"] == {"class": "art.defences.trainer.AdversarialTrainer", "kwargs": {"ratio": 0.5}}
    kwargs = record["attack"]["kwargs"]
    assert record["attack"]["class"] == "art.attacks.evasion.ProjectedGradientDescent"
    assert (kwargs["max_iter"], kwargs["num_random_init"], kwargs["eps"], kwargs["eps_step"]) == (
        1,
        1,
        0.1,
        0.125,
    )
    brelu = train_defended("digits_mlp", "torch", "bounded_relu", QUICK["bounded_relu"], cache_dir=cache)
    assert brelu.recipe_info["art"]["used"] is None and "ART has no" in brelu.recipe_info["art"]["reason"]  # type: ignore[attr-defined]


def test_fgsm_rs_is_art_pgd_with_one_step_because_art_fgm_ignores_eps_step(digits_test: Dataset) -> None:
    """Why FGSM-RS is ART's PGD(max_iter=1, num_random_init=1): ART's FGM with a random
    start steps by eps whatever eps_step says; PGD steps by eps_step (same start, same draw)."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    from advharness.core.seeding import seed_everything

    recipe = RECIPES["digits_mlp"]
    seed_everything(0)
    _, clf, _ = defense_training.CLASSIFIERS["torch"](recipe, None)
    x, y = digits_test.x[:32], digits_test.y[:32]
    eps = 0.1

    def run(attack: Any) -> np.ndarray:
        seed_everything(1)
        return np.asarray(attack.generate(x, y=y))

    common = {"eps": eps, "num_random_init": 1, "batch_size": 32}
    fgm = run(FastGradientMethod(clf, norm=np.inf, eps_step=eps / 4, **common))
    pgd_eps = run(ProjectedGradientDescent(clf, eps_step=eps, max_iter=1, verbose=False, **common))
    pgd_quarter = run(ProjectedGradientDescent(clf, eps_step=eps / 4, max_iter=1, verbose=False, **common))
    assert np.mean(np.isclose(fgm, pgd_eps, atol=1e-6)) > 0.99  # FGM stepped by eps, not eps / 4
    assert np.mean(np.isclose(fgm, pgd_quarter, atol=1e-6)) < 0.9


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_adversarial_training_is_deterministic(tmp_path: Path, framework: str) -> None:
    params = {**QUICK["adversarial_training"], "epochs": 1}
    a = train_defended("digits_mlp", framework, "adversarial_training", params, cache_dir=tmp_path / "a")
    b = train_defended("digits_mlp", framework, "adversarial_training", params, cache_dir=tmp_path / "b")
    assert [n for n, _ in a.parameter_arrays()] == [n for n, _ in b.parameter_arrays()]
    for (_, wa), (_, wb) in zip(a.parameter_arrays(), b.parameter_arrays(), strict=True):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize(
    ("defense", "params", "message"),
    [
        ("dropout", {}, "unknown defense 'dropout'; known: adversarial_training"),
        ("label_smoothing", {"max_value": 0.9}, "missing parameter(s) epochs"),
        ("label_smoothing", {"max_value": 0.9, "epochs": 2, "alpha": 1}, "unknown parameter(s) alpha"),
        ("bounded_relu", {"cap": "big", "epochs": 2}, "cap must be a finite number"),
        ("distillation", {"temperature": 10.0, "epochs": 0}, "epochs must be a whole number >= 1"),
        (
            "adversarial_training",
            {**QUICK["adversarial_training"], "steps": 3},
            "steps must be 1 for method fgsm_rs",
        ),
        ("adversarial_training", {**QUICK["adversarial_training"], "method": "bim"}, "method must be one of"),
        ("adversarial_training", {**QUICK["adversarial_training"], "ratio": 1.5}, "ratio must be in (0, 1]"),
    ],
)
def test_bad_defense_parameters_are_one_line_errors(
    cache: Path, defense: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(HarnessError) as e:
        train_defended("digits_mlp", "torch", defense, params, cache_dir=cache)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert set(DEFENSES) == set(QUICK)


# -- documented effects ----------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fgsm_rs_adversarial_training_lowers_fgsm_success_at_its_eps(
    cache: Path, digits_test: Dataset, framework: str
) -> None:
    """FGSM-RS training (Wong et al.: step 1.25 eps) at eps 0.2 against FGSM at eps 0.2, vs the
    recipe trained by its own loop for the same 5 epochs: success falls by over a fifth
    (absolute; ~1/3 measured), clean accuracy stays within :data:`CLEAN_MARGIN`."""
    eps, epochs = 0.2, 5
    params = {
        "method": "fgsm_rs",
        "eps": eps,
        "step_size": 1.25 * eps,
        "steps": 1,
        "ratio": 1.0,
        "epochs": epochs,
    }
    defended = train_defended("digits_cnn", framework, "adversarial_training", params, cache_dir=cache)
    base = undefended("digits_cnn", framework, epochs)
    fgsm = AttackSpec(attack="fgsm", eps=eps)
    before, after = success_rate(base, digits_test, fgsm), success_rate(defended, digits_test, fgsm)
    assert before > 0.5, before  # the undefended model is fooled often at this eps
    assert after < before - 0.2, (before, after)
    assert accuracy(defended, digits_test) > accuracy(base, digits_test) - CLEAN_MARGIN


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_distillation_stops_fgsm_but_not_carlini_wagner(
    cache: Path, digits_test: Dataset, framework: str
) -> None:
    """At T = 100 the deployed logits are ~100x larger: the softmax saturates, the loss
    gradient FGSM follows vanishes, but C&W (margin of the logits) is unaffected."""
    params = {"temperature": 100.0, "epochs": 20}
    distilled = train_defended("digits_cnn", framework, "distillation", params, cache_dir=cache)
    base = undefended("digits_cnn", framework, 20)
    fgsm = AttackSpec(attack="fgsm", eps=0.2)
    before, after = success_rate(base, digits_test, fgsm), success_rate(distilled, digits_test, fgsm)
    assert before > 0.6 and after < 0.15, (before, after)
    cw = AttackSpec(attack="cw", steps=50, params={"binary_search_steps": 3, "learning_rate": 0.05, "c": 1.0})
    clean = float(
        np.mean(distilled.predict(to_layout(digits_test.x[:N_EVAL], distilled)) == digits_test.y[:N_EVAL])
    )
    assert clean > 0.8
    assert success_rate(distilled, digits_test, cw) > 0.9 * clean  # fools nearly every correct image


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bounded_relu_caps_every_activation(cache: Path, digits_test: Dataset, framework: str) -> None:
    cap = 0.5
    model = train_defended(
        "digits_cnn", framework, "bounded_relu", {"cap": cap, "epochs": 2}, cache_dir=cache
    )
    acts = activations(model, to_layout(digits_test.x[:64], model))
    assert len(acts) == 2  # both ReLUs of digits_cnn were replaced
    for a in acts:
        assert a.min() >= 0.0 and a.max() == pytest.approx(cap)  # reached, never exceeded


def activations(model: WrappedModel, x: np.ndarray) -> list[np.ndarray]:
    """The outputs of the network's bounded-ReLU layers on ``x``."""
    if model.framework == "torch":
        import torch

        net: torch.nn.Module = model.module  # type: ignore[attr-defined]
        out: list[np.ndarray] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, o: out.append(o.detach().numpy()))
            for m in net.modules()
            if isinstance(m, torch.nn.Hardtanh)
        ]
        assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
        with torch.no_grad():
            net(torch.from_numpy(x))
        for h in hooks:
            h.remove()
        return out
    import keras

    knet: Any = model.model  # type: ignore[attr-defined]
    relus = [layer for layer in knet.layers if isinstance(layer, keras.layers.ReLU)]
    assert all(layer.max_value == cap_of(model) for layer in relus)
    probe = keras.Model(knet.inputs, [layer.output for layer in relus])
    return [np.asarray(a) for a in probe([x])]


def cap_of(model: WrappedModel) -> float:
    return float(model.recipe_info["params"]["cap"])  # type: ignore[attr-defined]


# -- ensembles --------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_ensemble_averages_its_members_logits_and_gradients(
    cache: Path, digits_test: Dataset, framework: str
) -> None:
    members = [
        train_defended("digits_mlp", framework, "label_smoothing", QUICK["label_smoothing"], cache_dir=cache),
        train_defended("digits_cnn", framework, "bounded_relu", {"cap": 0.5, "epochs": 2}, cache_dir=cache),
        # the same recipe again (in Keras, a second network of the same name)
        train_defended("digits_mlp", framework, "bounded_relu", QUICK["bounded_relu"], cache_dir=cache),
    ]
    ens = ensemble_model(members, name="three")
    first = members[0]
    assert (ens.name, ens.framework, ens.layout, ens.input_shape) == (
        "three",
        framework,
        first.layout,
        first.input_shape,
    )
    x = to_layout(digits_test.x[:32], ens)
    mean = np.mean([m.predict_logits(x) for m in members], axis=0)
    np.testing.assert_allclose(ens.predict_logits(x), mean, rtol=1e-5, atol=1e-5)
    grads = [logit_sum_gradient(m, x) for m in members]
    assert all(np.abs(g).max() > 0 for g in grads)
    np.testing.assert_allclose(logit_sum_gradient(ens, x), np.mean(grads, axis=0), rtol=1e-4, atol=1e-6)
    assert [m["name"] for m in ens.recipe_info["members"]] == [m.name for m in members]  # type: ignore[attr-defined]


def logit_sum_gradient(model: WrappedModel, x: np.ndarray) -> np.ndarray:
    """d(sum of the logits)/dx through the network the libraries see."""
    if model.framework == "torch":
        import torch

        xt = torch.from_numpy(x).requires_grad_(True)
        model.counted(xt).sum().backward()
        assert xt.grad is not None
        return xt.grad.numpy()
    import tensorflow as tf

    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        total = tf.reduce_sum(model.counted(xt))
    return np.asarray(tape.gradient(total, xt))


def test_mismatched_ensemble_members_are_one_line_errors(cache: Path) -> None:
    torch_m = train_defended(
        "digits_mlp", "torch", "label_smoothing", QUICK["label_smoothing"], cache_dir=cache
    )
    tf_m = train_defended(
        "digits_mlp", "tensorflow", "label_smoothing", QUICK["label_smoothing"], cache_dir=cache
    )
    import torch

    from advharness.models.torch_model import TorchModel

    other = TorchModel(torch.nn.Linear(64, 3), input_shape=(64,), nb_classes=3, name="lin")
    for members, what in (
        ([torch_m, tf_m], "framework"),
        ([torch_m, other], "input_shape"),
        ([torch_m], "needs at least 2 members"),
    ):
        with pytest.raises(HarnessError) as e:
            ensemble_model(members, name="bad")
        assert what in str(e.value) and "\n" not in str(e.value) and "'bad'" in str(e.value)


def test_plain_fgsm_training_starts_from_the_clean_input(cache: Path) -> None:
    """Goodfellow et al.'s FGSM training: one step of ``step_size``, no random start."""
    params = {**QUICK["adversarial_training"], "method": "fgsm", "step_size": 0.1}
    model = train_defended("digits_mlp", "torch", "adversarial_training", params, cache_dir=cache)
    record: dict[str, Any] = model.recipe_info["art"]  # type: ignore[attr-defined]
    kwargs = record["attack"]["kwargs"]
    assert (kwargs["max_iter"], kwargs["num_random_init"], kwargs["eps_step"]) == (1, 0, 0.1)
    assert "Goodfellow" in record["note"]
