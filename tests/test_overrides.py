"""Command-line overrides (``key=value``), applied before grids and validation."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import errors_of, exp_dict

from advharness.config.experiment import Experiment, load_experiment, parse_experiment
from advharness.config.grid import apply_overrides
from advharness.core.errors import HarnessError

# -- overrides -----------------------------------------------------------------------------
RAW: dict[str, Any] = {
    "name": "o",
    "data": {"dataset": "digits", "n_samples": 8},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "attacks": [
        {"attack": "pgd", "eps": 0.1, "steps": 10},
        {"attack": "fgsm", "eps": 0.1},
        {"attack": "cw"},
        {"attack": "pgd", "eps": 0.3, "norm": "l2"},
    ],
}


@pytest.mark.parametrize(
    ("override", "check"),
    [
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
    ],
    ids=[
        "seeds",
        "nested",
        "by-attack-name",
        "index",
        "list",
        "float",
        "created-mapping",
        "grid",
        "model-index",
        "equals-in-value",
        "created-top-level",
    ],
)
def test_override_syntax(override: str, check: Any) -> None:
    raw = copy.deepcopy(RAW)
    out = apply_overrides(raw, [override])
    assert check(out)
    assert raw == RAW  # a new mapping; the input is untouched


def test_overrides_apply_in_order() -> None:
    out = apply_overrides(RAW, ["seed=1", "attacks[0].steps=5", "seed=2", "attacks.pgd.steps=7"])
    assert out["seed"] == 2 and [a.get("steps") for a in out["attacks"]] == [7, None, None, 7]


def test_overrides_then_grids_then_validation() -> None:
    exp = parse_experiment(
        RAW, "exp.yaml", ["attacks.pgd.eps=[0.1,0.2]", "seeds=[0,1]", "libraries=[art]", "time_limit_s=60"]
    )
    assert [(a.attack, a.eps, a.norm) for a in exp.attacks] == [
        ("pgd", 0.1, None),
        ("pgd", 0.2, None),
        ("fgsm", 0.1, None),
        ("cw", None, None),
        ("pgd", 0.1, "l2"),
        ("pgd", 0.2, "l2"),
    ]
    assert exp.run_seeds == [0, 1] and exp.libraries == ["art"] and exp.time_limit_s == 60
    assert exp.grid_size() == 1 * 6 * 1 * 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
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
        ("seeds=[0,", "value is not valid YAML (line 1, column 4: expected the node content"),
    ],
    ids=[
        "unknown-attack",
        "no-equals",
        "no-path",
        "index-range",
        "not-a-list",
        "not-a-mapping",
        "list-by-key",
        "whole-attack",
        "empty-segment",
        "bad-index",
        "bad-yaml",
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(HarnessError) as e:
        apply_overrides(RAW, [override])
    assert str(e.value).startswith(f"override {override!r}: {message}")
    assert "\n" not in str(e.value)


def test_every_bad_override_is_reported_with_the_source() -> None:
    lines = errors_of(RAW, ("attacks.zzz.steps=3", "seed=1", "foo"))
    assert lines == [
        "override 'attacks.zzz.steps=3': no attack 'zzz' in the experiment",
        "override 'foo': expected path=value",
    ]


def test_overridden_values_are_validated_at_their_location() -> None:
    assert errors_of(RAW, ("attacks[1].eps=-1",)) == ["attacks[1].eps: must be >= 0"]


def test_load_experiment_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: file
        models: [{recipe: digits_mlp, framework: [torch, tensorflow]}]
        attacks:
          - {attack: pgd, eps: [0.1, 0.2], steps: 10}
        """)
    )
    exp = load_experiment(path, ["attacks.pgd.steps=[10, 20]", "data.n_samples=16"])
    assert isinstance(exp, Experiment) and exp.data.n_samples == 16
    assert [(a.eps, a.steps) for a in exp.attacks] == [(0.1, 10), (0.1, 20), (0.2, 10), (0.2, 20)]
    with pytest.raises(HarnessError) as e:
        load_experiment(path, ["attacks.fgsm.eps=1"])
    assert str(e.value) == f"{path}: override 'attacks.fgsm.eps=1': no attack 'fgsm' in the experiment"


def test_the_quick_profile_applies_first_and_renames_the_run() -> None:
    data = exp_dict(quick=["data.n_samples=4", "attacks[0].eps=0.2"])
    full = parse_experiment(data)
    assert (full.name, full.data.n_samples, full.attacks[0].eps) == ("g", 8, 0.1)
    quick = parse_experiment(data, quick=True)
    assert (quick.name, quick.data.n_samples, quick.attacks[0].eps) == ("g-quick", 4, 0.2)
    # the command line still has the last word
    assert parse_experiment(data, overrides=["data.n_samples=3"], quick=True).data.n_samples == 3
    named = parse_experiment(exp_dict(quick=["name=short"]), quick=True)
    assert named.name == "short"


def test_quick_without_a_profile_is_one_line() -> None:
    with pytest.raises(HarnessError, match=r"^exp.yaml: --quick needs a quick profile in the file"):
        parse_experiment(exp_dict(), "exp.yaml", quick=True)
    with pytest.raises(HarnessError, match="quick must be a list of key=value overrides"):
        parse_experiment(exp_dict(quick="data.n_samples=4"), "exp.yaml", quick=True)
