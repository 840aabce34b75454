"""Experiment grids (attack and model fields), seeds, time limit and workers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import errors_of, exp_dict

from advharness.config.experiment import parse_experiment
from advharness.config.grid import GRID_FIELDS, expand_attack


# -- grids ---------------------------------------------------------------------------------
def test_grid_is_the_product_in_field_order() -> None:
    exp = parse_experiment(
        exp_dict(
            attacks=[
                {
                    "attack": "pgd",
                    "eps": [0.1, 0.2, 0.3],
                    "steps": [10, 20],
                    "norm": ["linf", "l2"],
                    "random_start": [False, True],
                    "step_size": 0.01,
                }
            ]
        )
    )
    got = [(a.norm, a.eps, a.steps, a.random_start) for a in exp.attacks]
    assert got == list(itertools.product(["linf", "l2"], [0.1, 0.2, 0.3], [10, 20], [False, True]))
    assert {a.step_size for a in exp.attacks} == {0.01}
    assert GRID_FIELDS.index("norm") < GRID_FIELDS.index("eps") < GRID_FIELDS.index("steps")


def test_params_grids_follow_the_fields_in_the_order_given() -> None:
    exp = parse_experiment(
        exp_dict(
            attacks=[
                {
                    "attack": "cw",
                    "steps": [10, 20],
                    "params": {"confidence": [0.0, 5.0], "c": [0.1, 1.0], "binary_search_steps": 3},
                }
            ]
        )
    )
    got = [(a.steps, a.params["confidence"], a.params["c"]) for a in exp.attacks]
    assert got == list(itertools.product([10, 20], [0.0, 5.0], [0.1, 1.0]))
    assert {a.params["binary_search_steps"] for a in exp.attacks} == {3}


def test_every_gridable_field_expands() -> None:
    exp = parse_experiment(
        exp_dict(
            attacks=[
                {
                    "attack": "pgd",
                    "eps": 0.1,
                    "random_start": True,
                    "restarts": [1, 2],
                    "targeted": [False, True],
                    "target_mode": ["random", "least_likely"],
                },
                {
                    "attack": "square",
                    "eps": 0.1,
                    "threat_model": ["score-based", "decision-based"],
                    "budget": [100, 1000],
                },
            ]
        )
    )
    assert len(exp.attacks) == 2 * 2 * 2 + 2 * 2
    assert [(a.threat_model, a.budget) for a in exp.attacks[8:]] == list(
        itertools.product(["score-based", "decision-based"], [100, 1000])
    )


def test_lists_that_are_not_grids_stay_lists() -> None:
    exp = parse_experiment(
        exp_dict(
            models=[
                {"recipe": "digits_mlp", "framework": "torch"},
                {"recipe": "digits_cnn", "framework": "torch"},
            ],
            attacks=[
                {"attack": "square", "eps": 0.1, "budget": 500, "query_levels": [10, 100]},
                {
                    "attack": "fgsm",
                    "eps": 0.1,
                    "source": "digits_mlp-torch",
                    "target_models": ["digits_cnn-torch"],
                    "library_options": {"art": {"batch_size": 4}},
                },
            ],
        )
    )
    assert len(exp.attacks) == 2
    assert exp.attacks[0].query_levels == (10, 100)
    assert exp.attacks[1].target_models == ("digits_cnn-torch",)


def test_duplicates_after_expansion_are_kept_once() -> None:
    exp = parse_experiment(
        exp_dict(
            attacks=[
                {"attack": "fgsm", "eps": [0.1, 0.2, 0.1]},
                {"attack": "fgsm", "eps": 0.2},
                {"attack": "pgd", "eps": 0.1, "norm": "linf"},
                {"attack": "pgd", "eps": 0.1},  # the same spec once resolved (linf is the default)
                {"attack": "fgsm", "eps": [0.3]},
            ]
        )
    )
    assert [(a.attack, a.eps) for a in exp.attacks] == [
        ("fgsm", 0.1),
        ("fgsm", 0.2),
        ("pgd", 0.1),
        ("fgsm", 0.3),
    ]


def test_expand_attack_reports_origins() -> None:
    out, problems = expand_attack({"attack": "cw", "steps": [1, 2], "params": {"c": [3, 4]}}, 5)
    assert not problems and len(out) == 4
    concrete, origin = out[1]
    assert concrete == {"attack": "cw", "steps": 1, "params": {"c": 4}}
    assert origin.index == 5 and origin.grid == ((("steps",), 1), (("params", "c"), 4))


def test_model_framework_lists() -> None:
    exp = parse_experiment(
        exp_dict(
            models=[
                {"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]},
                {"recipe": "digits_cnn", "framework": ["tensorflow", "tensorflow"]},
            ]
        )
    )
    assert [m.key for m in exp.models] == [
        "digits_mlp-torch",
        "digits_mlp-tensorflow",
        "digits_cnn-tensorflow",
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {
                "attacks": [
                    {"attack": "fgsm", "eps": 0.1},
                    {"attack": "pgd", "eps": 0.1},
                    {"attack": "pgd", "eps": []},
                ]
            },
            ["attacks[2].eps: an empty grid"],
        ),
        ({"attacks": [{"attack": "cw", "params": {"c": []}}]}, ["attacks[0].params.c: an empty grid"]),
        (
            {"attacks": [{"attack": "fgsm", "eps": 0.1}] * 3 + [{"attack": "pgd", "eps": [0.1, -1.0]}]},
            ["attacks[3].eps: must be >= 0 (grid value -1.0)"],
        ),
        (
            {"attacks": [{"attack": "pgd", "eps": 0.1, "restarts": [1, 3], "steps": [5, 6]}]},
            [
                "attacks[0]: restarts > 1 needs random_start: true (restarts would be identical) "
                "(grid value restarts=3)"
            ],
        ),
        (
            {"attacks": [{"attack": "pgd", "eps": 0.1, "norm": ["linf", "l0"], "steps": [5, 6]}]},
            ["attacks[0]: pgd supports norms ['linf', 'l2'], not 'l0' (grid value norm='l0')"],
        ),
        (
            {"attacks": [{"attack": "cw", "params": {"c": [1.0, -2.0]}}]},
            ["attacks[0]: params.c must be > 0 (grid value params.c=-2.0)"],
        ),
        (
            {"attacks": [{"attack": "cw", "params": {"c": [1.0, [2.0]]}}]},
            ["attacks[0].params.c: must be a number, string or boolean (grid value [2.0])"],
        ),
        (
            {
                "attacks": [
                    {"attack": "pgd", "eps": 0.1, "step_size": [0.01, float("inf")]},
                    {"attack": "cw", "params": {"confidence": float("nan")}},
                ]
            },
            [
                "attacks[0].step_size: must be a finite number (grid value inf)",
                "attacks[1].params.confidence: must be a finite number",
            ],
        ),
        (
            {"attacks": [{"attack": "pgd", "eps": 0.1, "steps": [[1, 2]]}]},
            ["attacks[0].steps: Input should be a valid integer (grid value [1, 2])"],
        ),
        ({"models": [{"recipe": "digits_mlp", "framework": []}]}, ["models[0].framework: an empty grid"]),
        (
            {"models": [{"recipe": "digits_mlp", "framework": ["torch", "jax"]}]},
            ["models[0].framework: Input should be 'torch' or 'tensorflow' (grid value 'jax')"],
        ),
    ],
    ids=[
        "empty-grid",
        "empty-params-grid",
        "grid-value",
        "shared-grid-value",
        "grid-norm",
        "params-grid-value",
        "nested-params-list",
        "non-finite",
        "nested-list",
        "empty-framework-grid",
        "framework-grid-value",
    ],
)
def test_grid_problems_are_located(changes: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(exp_dict(**changes)) == expected


def test_problems_of_every_spec_are_reported_once() -> None:
    lines = errors_of(exp_dict(attacks=[{"attack": "nope", "eps": [0.1, 0.2, 0.3]}]))
    assert len(lines) == 1 and lines[0].startswith("attacks[0]: unknown attack 'nope'")


def test_name_with_a_framework_list_is_refused() -> None:
    lines = errors_of(
        exp_dict(models=[{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"], "name": "m"}])
    )
    assert lines == [
        "models[0].name: one name cannot name one model per framework: drop name "
        "(keys are <recipe>-<framework>) or list one framework"
    ]


def test_all_problems_are_collected_in_file_order() -> None:
    lines = errors_of(
        exp_dict(
            libraries=["art", "nope"],
            models=[{"recipe": "digits_mlp", "framework": []}, {"recipe": "resnet", "framework": "torch"}],
            attacks=[{"attack": "pgd", "eps": []}, {"attack": "fgsm", "eps": -1}],
        )
    )
    assert lines == [
        "models[0].framework: an empty grid",
        "models[1].recipe: unknown recipe 'resnet'; known: digits_cnn, digits_mlp, mnist_cnn, mnist_softmax",
        "attacks[0].eps: an empty grid",
        "attacks[1].eps: must be >= 0",
        "libraries: unknown library 'nope'; known: art, foolbox, cleverhans "
        "(or module:Class for an Adapter subclass)",
    ]


def test_huge_grids_are_refused() -> None:
    lines = errors_of(
        exp_dict(attacks=[{"attack": "pgd", "eps": list(range(1000)), "steps": list(range(1, 1001))}])
    )
    assert lines == ["attacks[0]: the grid has 1,000,000 specs; at most 100,000 in all"]


def test_grid_size() -> None:
    exp = parse_experiment(
        exp_dict(
            models=[{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]}],
            libraries=["art", "foolbox", "cleverhans"],
            seeds=[0, 1],
            attacks=[{"attack": "fgsm", "eps": [0.1, 0.2]}, {"attack": "cw"}],
        )
    )
    assert exp.grid_size() == 2 * 3 * 3 * 2


# -- seeds, time limit, workers ------------------------------------------------------------
def test_seeds_time_limit_and_workers() -> None:
    exp = parse_experiment(exp_dict())
    assert exp.run_seeds == [0] and exp.seeds is None
    assert exp.time_limit_s is None and exp.workers is None
    assert parse_experiment(exp_dict(seed=7)).run_seeds == [7]
    exp = parse_experiment(exp_dict(seeds=[3, 1, 2], time_limit_s=60, workers=4))
    assert exp.run_seeds == [3, 1, 2] and exp.time_limit_s == 60.0 and exp.workers == 4
    assert parse_experiment(exp_dict(seed=0, seeds=[5])).run_seeds == [5]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"seed": 1, "seeds": [1, 2]}, "seeds: give seed or seeds, not both"),
        ({"seeds": []}, "seeds: List should have at least 1 item after validation, not 0"),
        ({"seeds": [1, 1]}, "seeds: seeds are listed more than once"),
        ({"seeds": [0.5]}, "seeds[0]: Input should be a valid integer"),
        ({"time_limit_s": 0}, "time_limit_s: must be > 0"),
        ({"time_limit_s": float("inf")}, "time_limit_s: must be a finite number"),
        ({"workers": 0}, "workers: must be >= 1"),
    ],
    ids=[
        "seed-and-seeds",
        "empty-seeds",
        "repeated-seeds",
        "float-seed",
        "zero-time-limit",
        "infinite-time-limit",
        "no-workers",
    ],
)
def test_bad_seeds_time_limit_workers(changes: dict[str, Any], expected: str) -> None:
    assert expected in errors_of(exp_dict(**changes))[0]
