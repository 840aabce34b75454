"""Preprocessing defenses as model wrappers (advharness.models.preprocessing): the forward
pass equals ART's preprocessor then the network, exact and BPDA gradients mean what they
say, BPDA restores the attack success the plain attack lost in every library, EOT beats a
single-draw attack on the randomized defense, and the squeezing detector's score separates
adversarial from clean inputs. Digits recipes (8x8), in both frameworks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pytest

from advharness.adapters import get_adapter
from advharness.cells.cell import CellInputs, attack_batch
from advharness.config.spec import AttackSpec, ResolvedSpec
from advharness.core.errors import HarnessError
from advharness.core.seeding import seed_everything
from advharness.models.base import WrappedModel
from advharness.models.layout import to_layout
from advharness.models.preprocess_steps import art_pipeline, parse_defense
from advharness.models.preprocessing import preprocessed_model, squeeze_scores
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe

FRAMEWORKS = ("torch", "tensorflow")
LIBS = ("art", "foolbox", "cleverhans")
DETERMINISTIC = [
    ("feature_squeezing", {"bit_depth": 3, "median_window": 2}),
    ("feature_squeezing", {"bit_depth": 1, "median_window": None}),
    ("feature_squeezing", {"bit_depth": None, "median_window": 3}),
    ("spatial_smoothing", {"window": 3}),
    ("spatial_smoothing", {"window": 4}),
    ("jpeg", {"quality": 50}),
    ("jpeg", {"quality": 10}),
]
IDS = ["bits3-median2", "bits1", "median3", "smooth3", "smooth4", "jpeg50", "jpeg10"]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    ds = load_dataset("digits", "test", n_samples=64)
    return ds.x, ds.y


@pytest.fixture(scope="module", params=FRAMEWORKS)
def net(request: pytest.FixtureRequest) -> WrappedModel:
    return load_recipe("digits_cnn", request.param)


def reference(
    model: WrappedModel, defense: str, params: dict[str, Any]
) -> Callable[[np.ndarray], np.ndarray]:
    """The defense through ART's own classes, on NumPy."""
    return art_pipeline(parse_defense(defense, params, "test"), model, "test")


def preprocess(model: WrappedModel, x: np.ndarray) -> np.ndarray:
    """The wrapper's own preprocessing of ``x`` (model layout), as NumPy."""
    if model.framework == "torch":
        import torch

        with torch.no_grad():
            return np.asarray(model.module.preprocess(model.to_tensor(x)).numpy())  # type: ignore[attr-defined]
    return np.asarray(model.model.preprocess(model.to_tensor(x)))  # type: ignore[attr-defined]


def pgd(eps: float, steps: int) -> ResolvedSpec:
    return AttackSpec(attack="pgd", norm="linf", eps=eps, steps=steps, step_size=eps / 4).resolve()


def attack(
    lib: str, model: WrappedModel, x: np.ndarray, y: np.ndarray, spec: ResolvedSpec, seed: int = 0
) -> tuple[float, np.ndarray]:
    """PGD through the harness's adapter and referee on ``model``: success rate (of the
    samples it classifies correctly) and the adversarials."""
    res = attack_batch(get_adapter(lib), CellInputs(model, x, y, model.predict(x), None), spec, seed, 64, {})
    assert res.x_adv is not None
    return float(res.summary["success_rate"]), res.x_adv


# -- forward ------------------------------------------------------------------------------
@pytest.mark.parametrize(("defense", "params"), DETERMINISTIC, ids=IDS)
def test_forward_is_arts_preprocessor_then_the_network(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray], defense: str, params: dict[str, Any]
) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([to_layout(digits[0], net), rng.random((32, *net.input_shape), np.float32)])
    ref = reference(net, defense, params)(x)
    for gradient in ("exact", "bpda"):
        m = preprocessed_model(net, defense, params, gradient=gradient, name=f"{defense}-{gradient}")
        assert (m.framework, m.input_shape, m.layout, m.bounds, m.nb_classes, m.outputs) == (
            net.framework,
            net.input_shape,
            net.layout,
            net.bounds,
            net.nb_classes,
            net.outputs,
        )
        assert m.randomized is False and (m.defense_info or {})["gradient"] == gradient
        np.testing.assert_allclose(preprocess(m, x), ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(m.predict_logits(x), net.predict_logits(ref), rtol=0, atol=1e-4)
        assert m.parameter_hash() != net.parameter_hash()


@pytest.mark.parametrize(
    ("defense", "params"), [DETERMINISTIC[0], DETERMINISTIC[5]], ids=["squeezing", "jpeg"]
)
def test_jpeg_and_squeezing_change_inputs(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray], defense: str, params: dict[str, Any]
) -> None:
    x = to_layout(digits[0], net)
    m = preprocessed_model(net, defense, params, name=defense)
    changed = np.abs(preprocess(m, x) - x).reshape(len(x), -1).max(axis=1) > 0.05
    assert changed.mean() > 0.9


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_jpeg_on_mnist_sized_inputs(get_model: Callable[[str], WrappedModel], fw: str) -> None:
    """28x28 single-channel images (several JPEG blocks): ART's output, and a change."""
    model = get_model(fw)
    rng = np.random.default_rng(1)
    base = rng.random((8, 1, 7, 7)).astype(np.float32)
    x = to_layout(np.kron(base, np.ones((1, 1, 4, 4), np.float32)), model)  # smooth-ish images
    m = preprocessed_model(model, "jpeg", {"quality": 30}, name="jpeg28")
    out = preprocess(m, x)
    np.testing.assert_allclose(out, reference(model, "jpeg", {"quality": 30})(x), rtol=0, atol=1e-6)
    assert np.abs(out - x).max() > 0.05
    np.testing.assert_allclose(m.predict_logits(x), model.predict_logits(out), rtol=0, atol=1e-4)
    # a query outside the bounds (finite differences) is compressed as its clipped image
    wild = x + rng.normal(0, 0.5, x.shape).astype(np.float32)
    np.testing.assert_array_equal(preprocess(m, wild), preprocess(m, np.clip(wild, 0, 1)))


def test_gaussian_noise_is_random_per_forward_and_reproducible(net: WrappedModel) -> None:
    m = preprocessed_model(net, "gaussian_noise", {"sigma": 0.1}, name="noise")
    assert m.randomized is True and (m.defense_info or {})["randomized"] is True
    x = np.full((64, *net.input_shape), 0.5, np.float32)
    seed_everything(1)
    a, b = preprocess(m, x), preprocess(m, x)
    seed_everything(1)
    c = preprocess(m, x)
    seed_everything(2)
    d = preprocess(m, x)
    assert not np.array_equal(a, b) and not np.array_equal(a, d)
    np.testing.assert_array_equal(a, c)
    assert abs(float((a - x).std()) - 0.1) < 0.01 and abs(float((a - x).mean())) < 0.01
    assert a.min() >= 0.0 and a.max() <= 1.0
    seed_everything(1)
    l1 = m.predict_logits(x[:4])
    seed_everything(1)
    np.testing.assert_array_equal(m.predict_logits(x[:4]), l1)


def test_gaussian_noise_is_reproducible_in_compiled_tensorflow() -> None:
    """Inside a traced tf.function (as CleverHans calls the model) a new seed gives new
    noise and the same seed the same noise, whichever seed was set when it was traced."""
    import tensorflow as tf

    net = load_recipe("digits_cnn", "tensorflow")
    m = preprocessed_model(net, "gaussian_noise", {"sigma": 0.3}, name="noise")
    f = tf.function(lambda t: m.counted(t))
    x = tf.constant(np.full((4, *net.input_shape), 0.5, np.float32))
    outs = []
    for seed in (1, 2, 1):
        seed_everything(seed)
        outs.append(np.asarray(f(x)))
    np.testing.assert_array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0], outs[1])


def test_eot_averages_the_draws(net: WrappedModel) -> None:
    """eot=k: the forward pass is the mean over k draws, so its spread across calls shrinks
    (variance by ~k: asserted by more than 4 for k=16)."""
    x = np.full((8, *net.input_shape), 0.5, np.float32)
    single = preprocessed_model(net, "gaussian_noise", {"sigma": 0.3}, name="one")
    eot = preprocessed_model(net, "gaussian_noise", {"sigma": 0.3}, eot=16, name="eot")
    assert (eot.defense_info or {})["eot"] == 16
    seed_everything(0)
    var_single = np.stack([single.predict_logits(x) for _ in range(32)]).var(axis=0).mean()
    var_eot = np.stack([eot.predict_logits(x) for _ in range(32)]).var(axis=0).mean()
    assert var_eot < var_single / 4


# -- gradients ----------------------------------------------------------------------------
@pytest.mark.parametrize("gradient", ["exact", "bpda"])
def test_gradient_through_the_noise_is_the_networks_at_the_draw(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray], gradient: Literal["exact", "bpda"]
) -> None:
    """One draw: the network's gradient at the noisy input; exact: zero where the noisy
    input was clipped to the bounds (clip's derivative), BPDA: the identity there too."""
    x, y = to_layout(digits[0], net), digits[1]
    m = preprocessed_model(net, "gaussian_noise", {"sigma": 0.3}, gradient=gradient, name="noise")
    seed_everything(5)
    noisy = preprocess(m, x)
    seed_everything(5)  # the same draw again, now with the gradient
    grad = m.input_gradients(x, y)
    want = net.input_gradients(noisy, y)
    clipped = (noisy <= 0.0) | (noisy >= 1.0)
    assert 0.1 < clipped.mean() < 0.9
    if gradient == "exact":
        want = np.where(clipped, 0.0, want)
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)
    assert np.abs(grad[clipped]).max() > 0 if gradient == "bpda" else not np.any(grad[clipped])


@pytest.mark.parametrize(
    ("defense", "params"),
    [DETERMINISTIC[0], DETERMINISTIC[1], DETERMINISTIC[5]],
    ids=["bits+median", "bits", "jpeg"],
)
def test_exact_gradient_is_zero_through_quantisation(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray], defense: str, params: dict[str, Any]
) -> None:
    x, y = to_layout(digits[0], net), digits[1]
    exact = preprocessed_model(net, defense, params, name="exact")
    grad = exact.input_gradients(x, y)
    assert grad.shape == x.shape and not np.any(grad)
    bpda = preprocessed_model(net, defense, params, gradient="bpda", name="bpda")
    want = net.input_gradients(reference(net, defense, params)(x), y)
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(bpda.input_gradients(x, y), want, rtol=1e-4, atol=1e-6)


def test_exact_gradient_through_the_median_selects_the_median(net: WrappedModel) -> None:
    """The exact gradient of the median filter routes each output's gradient to the input
    pixel that is its window's median (distinct random pixels: no ties)."""
    rng = np.random.default_rng(3)
    x = rng.permutation(np.linspace(0.05, 0.95, 8 * 64, dtype=np.float32)).reshape(8, *net.input_shape)
    y = np.arange(8) % 10
    exact = preprocessed_model(net, "spatial_smoothing", {"window": 3}, name="median")
    bpda = preprocessed_model(net, "spatial_smoothing", {"window": 3}, gradient="bpda", name="median-bpda")
    smoothed = reference(net, "spatial_smoothing", {"window": 3})(x)
    g_out = net.input_gradients(smoothed, y)  # the network's gradient at the smoothed input
    np.testing.assert_allclose(bpda.input_gradients(x, y), g_out, rtol=1e-4, atol=1e-6)
    want = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        n = idx[0]
        src = np.argwhere(x[n] == smoothed[idx])  # the pixel the median selected (unique values)
        assert len(src) == 1
        want[(n, *src[0])] += g_out[idx]
    np.testing.assert_allclose(exact.input_gradients(x, y), want, rtol=1e-4, atol=1e-6)
    assert np.abs(want).max() > 1e-3


# -- adaptive attacks ---------------------------------------------------------------------
@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize(
    ("defense", "params"),
    [("feature_squeezing", {"bit_depth": 2, "median_window": None}), ("jpeg", {"quality": 50})],
    ids=["bit-depth", "jpeg"],
)
def test_bpda_restores_the_success_the_plain_attack_lost(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray], lib: str, defense: str, params: dict[str, Any]
) -> None:
    """PGD (L-inf 0.2, 10 steps) succeeds on the undefended model, fails through the exact
    gradient (zero: gradient masking) and succeeds again through BPDA. Success is refereed on
    the attacked wrapper; the BPDA wrapper's forward pass is the deployed (exact) model's."""
    x, y = to_layout(digits[0], net), digits[1]
    spec = pgd(0.2, 10)
    exact = preprocessed_model(net, defense, params, name="deployed")
    bpda = preprocessed_model(net, defense, params, gradient="bpda", name="bpda")
    plain, _ = attack(lib, net, x, y, spec)
    masked, _ = attack(lib, exact, x, y, spec)
    adaptive, x_adv = attack(lib, bpda, x, y, spec)
    np.testing.assert_array_equal(bpda.predict_logits(x_adv), exact.predict_logits(x_adv))
    assert plain > 0.8
    assert masked < 0.1
    assert adaptive > 0.6


@pytest.mark.parametrize("lib", LIBS)
def test_eot_beats_a_single_draw_attack(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray], lib: str
) -> None:
    """Gaussian noise sigma 0.5; PGD L-inf 0.15, 5 steps, through the single-draw wrapper vs
    the EOT wrapper (k=16). Criterion: a sample is fooled when the deployed randomized
    model's expected prediction is wrong, estimated as the argmax of its logits averaged
    over 200 draws (an eot=200 wrapper), on the samples it classifies correctly. Measured:
    single draw ~0.3, EOT ~0.8 of the samples; asserted: EOT ahead by more than 0.2."""
    x, y = to_layout(digits[0], net), digits[1]
    params = {"sigma": 0.5}
    single = preprocessed_model(net, "gaussian_noise", params, name="single")
    eot = preprocessed_model(net, "gaussian_noise", params, eot=16, name="eot")
    judge = preprocessed_model(net, "gaussian_noise", params, eot=200, name="expected")
    seed_everything(123)
    keep = judge.predict(x) == y
    assert keep.mean() > 0.8
    x, y = x[keep], y[keep]
    rates = {}
    for label, model in (("single", single), ("eot", eot)):
        _, x_adv = attack(lib, model, x, y, pgd(0.15, 5))
        seed_everything(7)
        rates[label] = float((judge.predict(x_adv) != y).mean())
    assert rates["eot"] > rates["single"] + 0.2, rates


# -- detector score -----------------------------------------------------------------------
def test_squeeze_scores_are_higher_on_adversarials(
    net: WrappedModel, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Xu et al.'s score (max over squeezers of the L1 distance between softmaxes) on PGD
    adversarials (L-inf 0.1) vs their clean inputs: higher for most successful ones
    (measured ~0.9)."""
    x, y = to_layout(digits[0], net), digits[1]
    res = attack_batch(
        get_adapter("art"), CellInputs(net, x, y, net.predict(x), None), pgd(0.1, 10), 0, 64, {}
    )
    assert res.x_adv is not None and res.records is not None
    fooled = res.records["success"].to_numpy()
    assert fooled.sum() >= 10
    squeezers = [
        ("feature_squeezing", {"bit_depth": 2, "median_window": None}),
        ("feature_squeezing", {"bit_depth": 3, "median_window": None}),
    ]
    clean, adv = squeeze_scores(net, x, squeezers), squeeze_scores(net, res.x_adv, squeezers)
    assert clean.shape == (len(x),) and np.all((clean >= 0) & (clean <= 2))
    assert (adv > clean)[fooled].mean() > 0.75
    one = squeeze_scores(net, x, squeezers[:1])
    assert np.all(clean >= one)  # the maximum over squeezers
    probs = np.exp(net.predict_logits(x).astype(np.float64))
    probs /= probs.sum(axis=1, keepdims=True)
    squeezed = np.exp(net.predict_logits(reference(net, *squeezers[0])(x)).astype(np.float64))
    squeezed /= squeezed.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(one, np.abs(probs - squeezed).sum(axis=1), rtol=1e-6, atol=1e-9)


# -- bad input ----------------------------------------------------------------------------
BAD: list[tuple[str, Any, dict[str, Any], str]] = [
    ("median_filter", {"window": 3}, {}, "unknown preprocessing defense 'median_filter'"),
    ("jpeg", {}, {}, "missing parameter 'quality'"),
    ("jpeg", {"quality": 50, "sigma": 1}, {}, "unknown parameter 'sigma'"),
    ("jpeg", {"quality": 0}, {}, "quality must be between 1 and 100"),
    ("spatial_smoothing", {"window": 2.5}, {}, "window must be an integer"),
    ("feature_squeezing", {"bit_depth": True, "median_window": None}, {}, "bit_depth must be an integer"),
    ("feature_squeezing", {"bit_depth": None, "median_window": None}, {}, "set bit_depth, median_window"),
    ("gaussian_noise", {"sigma": -1.0}, {}, "sigma must be finite and > 0"),
    ("jpeg", {"quality": 50}, {"gradient": "straight"}, "gradient must be one of exact, bpda"),
    ("gaussian_noise", {"sigma": 0.1}, {"eot": 0}, "eot must be an integer >= 1"),
    ("jpeg", {"quality": 50}, {"eot": 4}, "eot=4 needs a randomized defense"),
]


@pytest.mark.parametrize(("defense", "params", "kwargs", "message"), BAD, ids=[b[3][:24] for b in BAD])
def test_bad_input_is_one_line_naming_the_model(
    defense: str, params: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    net = load_recipe("digits_cnn", "torch")
    with pytest.raises(HarnessError, match="model 'defended'") as e:
        preprocessed_model(net, defense, params, name="defended", **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_image_steps_refuse_flat_models_and_randomized_squeezers() -> None:
    import torch

    from advharness.models.torch_model import TorchModel

    flat = TorchModel(torch.nn.Linear(64, 10), input_shape=(64,), nb_classes=10, name="flat")
    with pytest.raises(HarnessError, match="needs image inputs"):
        preprocessed_model(flat, "spatial_smoothing", {"window": 3}, name="defended")
    preprocessed_model(flat, "feature_squeezing", {"bit_depth": 4, "median_window": None}, name="ok")
    x = np.full((2, 64), 0.5, np.float32)
    with pytest.raises(HarnessError, match="squeezers must be deterministic"):
        squeeze_scores(flat, x, [("gaussian_noise", {"sigma": 0.1})])
