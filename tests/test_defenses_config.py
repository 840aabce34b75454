"""The defenses section: validation (one located line per problem), what it expands to
(variants, adaptive surrogates, transfer attacks) and how the plan runs them."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import errors_of, exp_dict

from advharness.config.defenses_expand import undefended
from advharness.config.experiment import parse_experiment
from advharness.execution.plan import defense_columns

BASE = "digits_mlp-torch"
JPEG = {"defense": "jpeg", "of": BASE, "params": {"quality": 60}}
NOISE = {"defense": "gaussian_noise", "of": BASE, "params": {"sigma": 0.2}, "evaluations": 4, "eot": 6}
FGSM_RS = {
    "defense": "adversarial_training",
    "of": BASE,
    "params": {"method": "fgsm_rs", "eps": 0.1, "step_size": 0.125, "steps": 1, "ratio": 1.0, "epochs": 2},
}
POOL = [
    {"attack": "fgsm", "eps": 0.1},
    {"attack": "deepfool", "norm": "l2", "steps": 10},
    {"attack": "square", "norm": "linf", "eps": 0.1, "steps": 20},
]


def _exp(defenses: list[dict[str, Any]], **extra: Any) -> Any:
    return parse_experiment(exp_dict(attacks=POOL, defenses=defenses, **extra))


def test_defenses_expand_to_variants_surrogates_and_transfers() -> None:
    stacked = {"defense": "spatial_smoothing", "of": f"{BASE}+jpeg", "params": {"window": 2}}
    exp = _exp([JPEG, NOISE, FGSM_RS, stacked])
    keys = [m.key for m in exp.model_entries()]
    assert keys == [
        BASE,
        f"{BASE}+jpeg",
        f"{BASE}+jpeg@bpda",
        f"{BASE}+gaussian_noise",
        f"{BASE}+gaussian_noise@eot6",
        f"{BASE}+adversarial_training",
        f"{BASE}+jpeg+spatial_smoothing",
        f"{BASE}+jpeg+spatial_smoothing@bpda",
    ]
    assert undefended(exp, f"{BASE}+jpeg+spatial_smoothing") == BASE and undefended(exp, BASE) is None
    # only the white-box fixed-budget FGSM transfers, once per defense, from the undefended model
    transfers = exp.attack_entries()[len(POOL) :]
    assert [(a.attack, a.source, a.target_models) for a in transfers] == [
        ("fgsm", BASE, (d,))
        for d in (f"{BASE}+jpeg", f"{BASE}+gaussian_noise", f"{BASE}+adversarial_training", stacked_key())
    ]
    assert not _exp([JPEG], defense_transfer=False).attack_entries()[len(POOL) :]
    noise = next(d for d in exp.defenses if d.defense == "gaussian_noise")
    assert (noise.resolved_evaluations, noise.resolved_eot, noise.randomized) == (4, 6, True)
    jpeg = exp.defenses[0]
    assert (jpeg.resolved_evaluations, jpeg.randomized) == (1, False)
    # a trained defense's epochs default to None here: the recipe's are filled in when built
    assert exp.defenses[2].resolved_params["epochs"] == 2


def stacked_key() -> str:
    return f"{BASE}+jpeg+spatial_smoothing"


def test_defense_columns_name_the_model_judged_and_the_adaptive_kind() -> None:
    exp = _exp([JPEG, NOISE])
    cols = {m.key: defense_columns(m) for m in exp.model_entries()}
    assert cols[BASE] == {"defense": "", "defended_model": BASE, "adaptive": ""}
    assert cols[f"{BASE}+jpeg@bpda"] == {
        "defense": "jpeg",
        "defended_model": f"{BASE}+jpeg",
        "adaptive": "bpda",
    }
    assert cols[f"{BASE}+gaussian_noise@eot6"]["adaptive"] == "eot6"


def test_surrogates_get_only_white_box_attacks(tmp_path: Any) -> None:
    from advharness.execution.plan import plan_cells
    from advharness.zoo.data import load_dataset

    exp = _exp([JPEG], libraries=["foolbox"])
    ds = load_dataset("digits", "test", 8)
    tasks = plan_cells(exp, ds, {})
    on = {(t.model, t.spec["attack"], t.spec.get("source")) for t in tasks}
    assert (f"{BASE}+jpeg@bpda", "fgsm", None) in on and (f"{BASE}+jpeg@bpda", "deepfool", None) in on
    assert not any(m == f"{BASE}+jpeg@bpda" and a == "square" for m, a, _ in on)
    assert (f"{BASE}+jpeg", "square", None) in on  # the black-box pool runs on the defense
    assert (f"{BASE}+jpeg", "fgsm", BASE) in on  # transfer from the undefended model
    assert not any(m == BASE and s == BASE for m, _, s in on)
    rows = {t.model: t.row for t in tasks}
    assert rows[f"{BASE}+jpeg@bpda"]["defended_model"] == f"{BASE}+jpeg"
    assert exp.grid_size() >= len(tasks)


@pytest.mark.parametrize(
    ("defense", "needle"),
    [
        (
            {"defense": "jpeg", "of": BASE, "params": {"quality": 0}},
            "defenses[0].params: jpeg parameters: quality",
        ),
        ({"defense": "jpeg", "of": BASE, "params": {"q": 50}}, "quality: Field required; q: Extra inputs"),
        (
            {"defense": "jpeg", "of": "nope", "params": {"quality": 50}},
            "defenses[0].of: 'nope' is not one of",
        ),
        ({"defense": "jpeg", "params": {"quality": 50}}, "names the model it defends"),
        ({"defense": "ensemble", "of": BASE}, "an ensemble names its members"),
        ({"defense": "jpeg", "of": BASE, "params": {"quality": 50}, "evaluations": 3}, "for randomized"),
        ({"defense": "feature_squeezing", "of": BASE, "params": {}}, "give bit_depth, median_window or both"),
        ({"defense": "unknown", "of": BASE}, "defenses[0].defense"),
        (
            {**FGSM_RS, "params": {**FGSM_RS["params"], "steps": 3}},  # type: ignore[dict-item]
            "fgsm_rs takes one step",
        ),
    ],
)
def test_bad_defenses_are_one_located_line(defense: dict[str, Any], needle: str) -> None:
    lines = errors_of(exp_dict(defenses=[defense]))
    assert len(lines) == 1 and needle in lines[0], lines


def test_trained_defenses_need_a_recipe_model_and_ensembles_one_framework() -> None:
    substitute = {"recipe": "digits_mlp", "framework": "torch", "substitute_of": BASE, "queries": 100}
    trained = {**FGSM_RS, "of": f"substitute-{BASE}-of-{BASE}"}
    models = [{"recipe": "digits_mlp", "framework": "torch"}, substitute]
    lines = errors_of(exp_dict(models=models, defenses=[trained]))
    assert any("defenses[0].of" in line and "must be a recipe model" in line for line in lines), lines
    both = [
        {"recipe": "digits_mlp", "framework": "torch"},
        {"recipe": "digits_mlp", "framework": "tensorflow"},
    ]
    ens = {"defense": "ensemble", "members": [BASE, "digits_mlp-tensorflow"]}
    assert errors_of(exp_dict(models=both, defenses=[ens])) == [
        "defenses[0].members: members mix frameworks (tensorflow, torch)"
    ]


def test_defense_variants_cannot_be_written_as_models() -> None:
    entry = {"recipe": "digits_mlp", "framework": "torch", "surrogate": True}
    lines = errors_of(exp_dict(models=[entry]))
    assert lines == ["models[0]: defense variants go in the defenses section"]


def test_repeated_defense_keys_are_refused() -> None:
    lines = errors_of(exp_dict(defenses=[JPEG, JPEG]))
    assert any("model names must be unique" in line and "+jpeg" in line for line in lines), lines


def test_an_experiment_with_defenses_round_trips_through_json() -> None:
    exp = _exp([JPEG, NOISE], target_success_rate=0.2)
    again = type(exp).model_validate_json(exp.model_dump_json())
    assert [m.key for m in again.model_entries()] == [m.key for m in exp.model_entries()]
    assert again.target_success_rate == 0.2
