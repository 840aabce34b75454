"""Black-box means black-box: query-only oracles refuse gradients and hide scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from advharness.core.types import ThreatModel
from advharness.execution.api import run_attacks
from advharness.models.base import ThreatModelViolation, WrappedModel
from advharness.models.layout import to_layout

LIBS = ["art", "foolbox", "cleverhans"]


@pytest.mark.parametrize("fw", ["torch", "tensorflow"])
@pytest.mark.parametrize(
    "attack",
    [{"attack": "fgsm", "eps": 0.1}, {"attack": "pgd", "eps": 0.1, "steps": 3, "step_size": 0.05}],
    ids=["fgsm", "pgd"],
)
def test_gradient_attack_in_score_based_cell_is_a_violation(
    request: pytest.FixtureRequest,
    image_batch: tuple[np.ndarray, np.ndarray],
    fw: str,
    attack: dict[str, Any],
) -> None:
    model = request.getfixturevalue("torch_model" if fw == "torch" else "tf_model")
    x, _ = image_batch
    y = model.predict(to_layout(x[:8], model))
    # white-box first, so any cached library state (ART estimators, CleverHans' tf.function
    # traces) exists before the score-based cell reuses the same model
    specs = [attack, {**attack, "threat_model": "score-based"}, {**attack, "threat_model": "decision-based"}]
    s = run_attacks([model], x[:8], y, specs, LIBS).summary
    white, score, decision = (
        s[s["threat_model"] == t] for t in ("white-box", "score-based", "decision-based")
    )
    assert (white["status"] == "ok").all(), white[["library", "reason"]]
    for rows in (score, decision):
        assert rows["status"].tolist() == ["violation"] * 3, rows[["library", "status", "reason"]]
        assert rows["reason"].str.startswith("threat-model violation").all()
    assert model.access == "white-box" and model.counted.access == "white-box"


@pytest.mark.parametrize("fw", ["torch", "tensorflow"])
def test_decision_based_oracle_reveals_only_the_label(
    request: pytest.FixtureRequest,
    image_batch: tuple[np.ndarray, np.ndarray],
    fw: str,
) -> None:
    from advharness.adapters import get_adapter

    model = request.getfixturevalue("torch_model" if fw == "torch" else "tf_model")
    x, _ = image_batch
    x = to_layout(x, model)
    labels = model.predict(x)
    with model.with_access("decision-based"):
        model.counter.reset()
        direct = np.asarray(model.counted(model.to_tensor(x)))
        art_scores = get_adapter("art").model_form(model).predict(x)
        assert model.counter.read().forward == 2 * len(x)  # oracle queries are counted
    for out in (direct, art_scores):
        assert set(np.unique(out)) <= {0.0, 1.0}
        np.testing.assert_array_equal(out.sum(1), 1.0)
        np.testing.assert_array_equal(out.argmax(1), labels)


@pytest.mark.parametrize("fw", ["torch", "tensorflow"])
def test_score_based_oracle_gives_scores_not_gradients(
    request: pytest.FixtureRequest,
    image_batch: tuple[np.ndarray, np.ndarray],
    fw: str,
) -> None:
    model = request.getfixturevalue("torch_model" if fw == "torch" else "tf_model")
    x, _ = image_batch
    x = to_layout(x[:4], model)
    with model.with_access("score-based"):
        out = model.counted(model.to_tensor(x))
        np.testing.assert_allclose(np.asarray(out), model.predict_logits(x), rtol=1e-5, atol=1e-5)
        with pytest.raises(ThreatModelViolation):
            if fw == "torch":
                model.counted(model.to_tensor(x).requires_grad_(True))
            else:
                import tensorflow as tf

                xt = model.to_tensor(x)
                with tf.GradientTape() as tape:
                    tape.watch(xt)
                    loss = tf.reduce_sum(model.counted(xt))
                tape.gradient(loss, xt)
    assert model.violation is not None and "score-based" in model.violation


@pytest.mark.parametrize("access", ["score-based", "decision-based"])
def test_tf_oracle_paths_answer_and_count_alike(
    tf_model: WrappedModel,
    image_batch: tuple[np.ndarray, np.ndarray],
    access: ThreatModel,
) -> None:
    """Under a ledger the TF oracle answers eagerly in Python, after ART's compiled pass, or
    through tf.py_function (in a graph, under a tape): same answers, every row counted."""
    import tensorflow as tf

    from advharness.adapters import get_adapter
    from advharness.cells.cell import CellInputs, make_ledger
    from advharness.config.spec import AttackSpec

    x = to_layout(image_batch[0][:6], tf_model)
    logits = tf_model.predict_logits(x)
    want = np.eye(10, dtype=np.float32)[logits.argmax(1)] if access == "decision-based" else logits
    spec = AttackSpec(attack="hsj", norm="l2", threat_model="decision-based").resolve()
    ledger = make_ledger(CellInputs(tf_model, x, logits.argmax(1), logits.argmax(1), None), spec)
    with tf_model.with_access(access), tf_model.with_ledger(ledger):
        oracle = tf_model.counted
        tf_model.counter.reset()
        ledger.begin(0)
        xt = tf_model.to_tensor(x)
        with tf.GradientTape():  # a tape recording, no gradient asked for
            taped = oracle(xt)
        answers = {
            "eager": oracle(xt),
            "graph": tf.function(lambda t: oracle(t))(xt),
            "art": get_adapter("art").model_form(tf_model).predict(x),
            "taped": taped,
        }
        ledger.end()
    for name, out in answers.items():
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5, err_msg=name)
    assert ledger.tracks[0].queries == 4 * len(x)
    assert tf_model.counter.read().forward == 4 * len(x)


@pytest.mark.parametrize("training_default", [None, True])
def test_tf_oracle_runs_the_model_in_inference_mode(training_default: bool | None) -> None:
    """The TF oracle leaves out ``training=False`` (slow in eager Keras 3) only where Keras
    would run the model in inference mode anyway; a layer whose ``call`` defaults to
    training mode still gets it. Either way every path answers the inference output."""
    import keras

    from advharness.models.tf_model import TFModel, _inference_kwargs

    class Doubles(keras.layers.Layer):  # training mode doubles its input
        def call(self, x, training=training_default):  # type: ignore[no-untyped-def]
            return x * (2.0 if training else 1.0)

    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    net = keras.Model(inp, Doubles()(keras.layers.Dense(3)(inp)))
    assert _inference_kwargs(net) == ({} if training_default is None else {"training": False})
    assert _inference_kwargs(lambda t: t) == {"training": False}  # not a Keras layer
    model = TFModel(net, input_shape=(4,), nb_classes=3, bounds=(0.0, 1.0), name="doubles")
    x = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    want = np.asarray(net(x, training=False))
    assert not np.allclose(np.asarray(net(x, training=True)), want)  # the layer matters
    # eager, compiled and counted paths may round differently (fused kernels under oneDNN):
    # O(1) weights and inputs round at ~1e-7 absolute, so a logit near 0 needs an atol
    np.testing.assert_allclose(model.predict_logits(x), want, rtol=1e-6, atol=1e-6)
    for access in ("white-box", "score-based"):
        with model.with_access(access):
            np.testing.assert_allclose(np.asarray(model.counted(x)), want, rtol=1e-6, atol=1e-6)
