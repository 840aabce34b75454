"""Cells on defended models: a randomized defense judged on every one of its evaluations,
adaptive surrogates judged on the deployed defense, the feature-squeezing detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advharness.cells.cell import clean_predictions
from advharness.config.experiment import parse_experiment
from advharness.core.seeding import seed_everything
from advharness.execution.orchestrate import run_experiment
from advharness.judging.referee import worst_of_evaluations
from advharness.models.layout import to_layout
from advharness.models.preprocessing import preprocessed_model
from advharness.zoo.data import load_dataset
from advharness.zoo.recipes import load_recipe

FRAMEWORKS = ["torch", "tensorflow"]


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_clean_predictions_of_a_randomized_model_take_any_evaluation_that_errs(fw: str) -> None:
    base = load_recipe("digits_cnn", fw)
    noisy = preprocessed_model(base, "gaussian_noise", {"sigma": 0.6}, name="noisy")
    ds = load_dataset("digits", "test", 64)
    x = to_layout(ds.x, base)
    logits = noisy.predict_logits(x)
    assert (clean_predictions(noisy, x, ds.y, logits) == logits.argmax(1)).all()  # one evaluation
    noisy.evaluations = 8
    seed_everything(3)
    got = clean_predictions(noisy, x, ds.y, logits)
    seed_everything(3)
    draws = np.stack([noisy.predict(x) for _ in range(8)])
    np.testing.assert_array_equal(got, worst_of_evaluations(draws, ds.y))
    # robust only if every evaluation is right: fewer correct than any single evaluation
    assert (got == ds.y).sum() < min((d == ds.y).sum() for d in draws)


def test_every_cell_on_a_randomized_defense_judges_on_the_same_evaluations(tmp_path: Path) -> None:
    exp = parse_experiment(
        {
            "name": "noise",
            "data": {"dataset": "digits", "n_samples": 32},
            "models": [{"recipe": "digits_cnn", "framework": "torch"}],
            "libraries": ["foolbox", "art"],
            "attacks": [{"attack": "fgsm", "eps": 0.1}],
            "defenses": [
                {
                    "defense": "gaussian_noise",
                    "of": "digits_cnn-torch",
                    "params": {"sigma": 0.4},
                    "evaluations": 5,
                    "eot": 4,
                }
            ],
        }
    )
    res = run_experiment(exp, tmp_path, backend="inline")
    s, r = res.summary, res.records
    mine = s[s["defended_model"] == "digits_cnn-torch+gaussian_noise"]
    assert set(mine["model"]) == {"digits_cnn-torch+gaussian_noise", "digits_cnn-torch+gaussian_noise@eot4"}
    assert set(mine["threat_model"]) == {"white-box", "transfer"} and (mine["status"] == "ok").all()
    recs = r[r["cell"].isin(mine["cell"])]
    assert (recs["evaluations"] == 5).all()
    correct = recs.pivot_table(index="sample", columns="cell", values="correct", aggfunc="first")
    assert correct.nunique(axis=1).eq(1).all()  # the same clean verdicts in every cell
    assert mine["clean_accuracy"].nunique() == 1
    assert mine["clean_accuracy"].iloc[0] < s.loc[s["model"] == "digits_cnn-torch", "clean_accuracy"].iloc[0]
    models = {m["name"]: m for m in res.manifest["models"]}
    info: dict[str, Any] = models["digits_cnn-torch+gaussian_noise"]["defense"]
    assert info["evaluations"] == 5 and info["seconds_per_input"] > 0
    assert models["digits_cnn-torch+gaussian_noise@eot4"]["defense"]["eot"] == 4


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_the_squeezing_detector_flags_most_pgd_examples_at_its_false_positive_rate(
    fw: str, tmp_path: Path
) -> None:
    base = f"digits_cnn-{fw}"
    exp = parse_experiment(
        {
            "name": "detector",
            "data": {"dataset": "digits", "n_samples": 64},
            "models": [{"recipe": "digits_cnn", "framework": fw}],
            "libraries": ["foolbox"],
            "attacks": [{"attack": "pgd", "norm": "linf", "eps": 0.1, "steps": 20, "step_size": 0.02}],
            "defenses": [
                {"defense": "squeeze_detector", "of": base, "params": {"bit_depth": 2, "fpr": 0.05}}
            ],
            "defense_transfer": False,
        }
    )
    res = run_experiment(exp, tmp_path, backend="inline")
    s = res.summary.set_index("model")
    det = s.loc[f"{base}+squeeze_detector"]
    assert det["detection_rate"] > 0.5  # a majority of the PGD examples that fool the classifier
    assert det["false_positive_rate"] <= 0.15  # calibrated at 5 % on other clean images
    assert det["success_rate"] < s.loc[base, "success_rate"]  # flagged inputs are no successes
    recs = res.records[res.records["model"] == f"{base}+squeeze_detector"]
    fooled_flagged = recs["fooled"] & recs["detected"]
    assert not (recs["success"] & recs["detected"]).any() and fooled_flagged.any()
    info = {m["name"]: m for m in res.manifest["models"]}[f"{base}+squeeze_detector"]["defense"]["detector"]
    assert info["fpr"] == 0.05 and "clean images not evaluated" in info["calibration"]
    assert recs["clean_detected"].mean() == pytest.approx(det["false_positive_rate"])


def test_a_defense_stacked_on_a_randomized_one_is_evaluated_as_often(tmp_path: Path) -> None:
    from advharness.zoo.build import build_models

    noise = {
        "defense": "gaussian_noise",
        "of": "digits_mlp-torch",
        "params": {"sigma": 0.2},
        "evaluations": 6,
    }
    exp = parse_experiment(
        {
            "name": "stack",
            "data": {"dataset": "digits", "n_samples": 8},
            "models": [{"recipe": "digits_mlp", "framework": "torch"}],
            "attacks": [{"attack": "fgsm", "eps": 0.1}],
            "defenses": [
                noise,
                {"defense": "jpeg", "of": "digits_mlp-torch+gaussian_noise", "params": {"quality": 50}},
                {
                    "defense": "squeeze_detector",
                    "of": "digits_mlp-torch+gaussian_noise",
                    "params": {"bit_depth": 3, "fpr": 0.1},
                },
            ],
        }
    )
    models = build_models(exp, load_dataset("digits", "test", 8))
    jpeg = models["digits_mlp-torch+gaussian_noise+jpeg"]
    assert jpeg.randomized and jpeg.evaluations == 6
    detected = models["digits_mlp-torch+gaussian_noise+squeeze_detector"]
    assert detected.randomized and detected.evaluations == 6
    # the stacked surrogate skips both preprocessings: BPDA over the noise's EOT surrogate
    surrogate = models["digits_mlp-torch+gaussian_noise+jpeg@bpda"]
    assert surrogate.deployed is jpeg
    assert getattr(surrogate, "base", None) is models["digits_mlp-torch+gaussian_noise@eot6"]
