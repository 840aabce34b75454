"""Bad experiment files and data are refused before anything runs, each with one located line:
strict YAML (no aliases, no repeated keys, UTF-8), numbers that are numbers, a capped plan,
parameters within the input's size. What a run checks when it starts is in
test_run_preconditions.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import errors_of, exp_dict

from advharness.config.experiment import load_experiment, parse_experiment
from advharness.config.grid import DEFAULT_MAX_CELLS, MAX_GRID_SPECS
from advharness.config.spec import AttackSpec
from advharness.core.errors import HarnessError

#: "Billion laughs": 9 levels of 9 aliases, ~600 bytes; fully expanded, 9**9 strings.
BOMB = (
    "name: bomb\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
    + "models: *a8\nattacks: [{attack: fgsm, eps: 0.1}]\n"
)
GOOD_YAML = "name: x\nmodels: [{recipe: digits_mlp, framework: torch}]\nattacks: [{attack: fgsm, eps: 0.1}]\n"


def _load(tmp_path: Path, body: str | bytes) -> str:
    """The one error line ``load_experiment`` refuses ``body`` with."""
    p = tmp_path / "exp.yaml"
    if isinstance(body, bytes):
        p.write_bytes(body)
    else:
        p.write_text(body)
    with pytest.raises(HarnessError) as e:
        load_experiment(p)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


# -- item 2/3: strict YAML -----------------------------------------------------------------
def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    assert len(BOMB) < 700
    msg = _load(tmp_path, BOMB)
    assert msg.startswith(f"{tmp_path / 'exp.yaml'}: not valid YAML (line 3, column ")
    assert "YAML aliases (*a0) are not supported" in msg


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (GOOD_YAML + "name: y\n", "line 4, column 1: key 'name' is given twice in one mapping"),
        (
            "name: x\nmodels: [{recipe: digits_mlp, framework: torch, framework: tensorflow}]\n"
            "attacks: [{attack: fgsm, eps: 0.1}]\n",
            "line 2, column 49: key 'framework' is given twice",
        ),
    ],
    ids=["top-level", "nested"],
)
def test_repeated_keys_are_refused(tmp_path: Path, body: str, needle: str) -> None:
    assert needle in _load(tmp_path, body)


def test_non_utf8_file_is_one_line(tmp_path: Path) -> None:
    body = GOOD_YAML.replace("name: x", "name: caf\xe9").encode("latin-1")
    msg = _load(tmp_path, body)
    assert msg.endswith("not UTF-8 text (byte 0xe9 on line 1); save the file as UTF-8")


def test_exponent_floats_are_numbers(tmp_path: Path) -> None:
    """PyYAML reads ``1e-3`` as a string (YAML 1.1); strict numbers would refuse it."""
    p = tmp_path / "exp.yaml"
    p.write_text(
        GOOD_YAML.replace("eps: 0.1", "eps: 1e-3, steps: 2E1, attack: pgd").replace("attack: fgsm, ", "")
    )
    exp = load_experiment(p, ["attacks.pgd.step_size=5e-4"])
    assert [(a.eps, a.steps, a.step_size) for a in exp.attacks] == [(0.001, 20, 0.0005)]


def test_overrides_use_the_strict_reader() -> None:
    assert errors_of(exp_dict(), ("data={n_samples: 4, n_samples: 8}",)) == [
        "override 'data={n_samples: 4, n_samples: 8}': value is not valid YAML (line 1, "
        "column 16: key 'n_samples' is given twice in one mapping)"
    ]


# -- item 3: numbers are numbers -------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"attack": "fgsm", "eps": True}, "attacks[2].eps: must be a number, got the boolean True"),
        ({"attack": "fgsm", "eps": "0.1"}, "attacks[2].eps: must be a number, got the string '0.1'"),
        ({"attack": "fgsm", "eps": float("nan")}, "attacks[2].eps: must be a finite number"),
        (
            {"attack": "pgd", "eps": 0.1, "steps": True},
            "attacks[2].steps: must be a number, got the boolean True",
        ),
        (
            {"attack": "pgd", "eps": 0.1, "step_size": "0.01"},
            "attacks[2].step_size: must be a number, got the string '0.01'",
        ),
        (
            {"attack": "pgd", "eps": 0.1, "random_start": "yes"},
            "attacks[2].random_start: must be true or false, got 'yes'",
        ),
        ({"attack": "pgd", "eps": 0.1, "targeted": 1}, "attacks[2].targeted: must be true or false, got 1"),
        ({"attack": "cw", "params": {"c": "1.0"}}, "attacks[2]: params.c must be a number, got '1.0'"),
        ({"attack": "cw", "params": {"c": True}}, "attacks[2]: params.c must be a number, got True"),
        (
            {"attack": "apgd", "eps": 0.1, "params": {"loss": 1}},
            "attacks[2]: params.loss must be a string, got 1",
        ),
    ],
    ids=[
        "eps-bool",
        "eps-string",
        "eps-nan",
        "steps-bool",
        "step-size-string",
        "random-start-string",
        "targeted-int",
        "param-string",
        "param-bool",
        "param-number",
    ],
)
def test_booleans_strings_and_nan_are_not_numbers(entry: dict[str, Any], expected: str) -> None:
    attacks = [{"attack": "fgsm", "eps": 0.1}, {"attack": "pgd", "eps": 0.2}, entry]
    assert errors_of(exp_dict(attacks=attacks)) == [expected]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"seed": True}, "seed: must be a number, got the boolean True"),
        ({"time_limit_s": "60"}, "time_limit_s: must be a number, got the string '60'"),
        (
            {"data": {"dataset": "digits", "n_samples": "8"}},
            "data.n_samples: must be a number, got the string '8'",
        ),
        (
            {"models": [{"recipe": "digits_mlp", "framework": "torch", "epochs": True}]},
            "models[0].epochs: must be a number, got the boolean True",
        ),
    ],
    ids=["seed", "time-limit", "n-samples", "epochs"],
)
def test_experiment_numbers_are_strict(changes: dict[str, Any], expected: str) -> None:
    assert errors_of(exp_dict(**changes))[0].startswith(expected)


def test_python_api_and_overrides_keep_working() -> None:
    spec = AttackSpec(
        attack="pgd",
        eps=np.float32(0.25),  # type: ignore[arg-type]
        steps=np.int64(3),  # type: ignore[arg-type]
        random_start=np.bool_(True),  # type: ignore[arg-type]
        params={},
        budget=None,
    )
    assert (spec.eps, spec.steps, spec.random_start) == (0.25, 3, True)
    assert type(spec.steps) is int and AttackSpec(attack="fgsm", eps=1).eps == 1.0
    assert AttackSpec(attack="cw", params={"c": np.float64(2.0)}).params == {"c": 2.0}
    exp = parse_experiment(
        exp_dict(attacks=[{"attack": "pgd", "eps": 0.1}]),
        overrides=["attacks.pgd.eps=[0.05, 0.2]", "attacks.pgd.steps=7"],
    )
    assert [(a.eps, a.steps) for a in exp.attacks] == [(0.05, 7), (0.2, 7)]


# -- item 2: the whole plan is capped --------------------------------------------------------
def test_the_whole_plan_is_capped_and_the_cap_can_be_raised() -> None:
    # 3 entries of 3,000 specs each, x 2 models x 2 libraries: 36,000 cells (each entry
    # alone is far below the old per-entry cap)
    attacks = [
        {
            "attack": "pgd",
            "eps": [round(0.001 * i, 3) for i in range(1, 101)],
            "steps": list(range(1, 31)),
            "norm": norm,
        }
        for norm in ("linf", "l2")
    ]
    attacks.append(
        {"attack": "bim", "eps": [round(0.001 * i, 3) for i in range(1, 101)], "steps": list(range(1, 31))}
    )
    exp = exp_dict(
        attacks=attacks,
        libraries=["art", "foolbox"],
        models=[{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]}],
    )
    assert errors_of(exp) == [
        f"<experiment>: the plan has 36,000 cells (2 models x 9,000 attack specs x 2 libraries "
        f"x 1 seeds), more than max_cells = {DEFAULT_MAX_CELLS:,}; shrink the grids, or raise "
        "max_cells (in the file, or max_cells=N on the command line)"
    ]
    assert len(parse_experiment(exp, overrides=["max_cells=36000"]).attacks) == 9000


def test_grids_are_counted_before_they_are_built() -> None:
    eps = [round(0.001 * i, 3) for i in range(1, 201)]
    attacks = [
        {"attack": "pgd", "eps": eps, "steps": list(range(1, 401))},  # 80,000
        {"attack": "bim", "eps": eps, "steps": list(range(1, 201))},  # 40,000
        {"attack": "fgsm", "eps": 0.1},
    ]
    assert errors_of(exp_dict(attacks=attacks, max_cells=10**9)) == [
        "attacks: the attack grids expand to 120,001 specs (largest attacks[0]: 80,000, "
        f"attacks[1]: 40,000, attacks[2]: 1), at most {MAX_GRID_SPECS:,} in all"
    ]
    assert errors_of(exp_dict(attacks=attacks[1:])) == [
        "attacks: the attack grids expand to 40,001 specs (largest attacks[0]: 40,000, "
        f"attacks[1]: 1), more than max_cells = {DEFAULT_MAX_CELLS:,} (each is at least one "
        "cell); shrink the grids, or raise max_cells (in the file, or max_cells=N on the "
        "command line)"
    ]


# -- item 5: parameters within the input's size ----------------------------------------------
def test_size_limited_parameters_are_checked_against_the_data() -> None:
    lines = errors_of(
        exp_dict(
            attacks=[
                {"attack": "fgsm", "eps": 0.1},
                {"attack": "zoo"},
                {"attack": "zoo", "params": {"coordinates": [16, 128]}},
                {"attack": "pixel", "params": {"pixels": 65}},
            ]
        )
    )
    assert lines == [
        "attacks[1].params.coordinates: 128 (the default) exceeds the 64 input features of "
        "digits (1x8x8); set params.coordinates <= 64",
        "attacks[2].params.coordinates: 128 (the default) exceeds the 64 input features of "
        "digits (1x8x8); set params.coordinates <= 64 (grid value 128)",
        "attacks[3].params.pixels: 65 exceeds the 64 input pixels of digits (1x8x8); set params.pixels <= 64",
    ]
    ok = parse_experiment(exp_dict(data={"dataset": "mnist"}, attacks=[{"attack": "zoo"}]))
    assert ok.attacks[0].resolve().params["coordinates"] == 128  # 784 features


def test_size_limited_parameters_in_the_python_api() -> None:
    from advharness.execution.api import run_attacks

    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(HarnessError) as e:
        run_attacks(
            [],
            x,
            np.zeros(2, np.int64),
            [{"attack": "fgsm", "eps": 0.1}, {"attack": "zoo", "params": {"coordinates": 65}}],
        )
    assert str(e.value) == (
        "attacks[1]: params.coordinates 65 exceeds the 64 input features of "
        "the inputs (1x8x8); set params.coordinates <= 64"
    )
