"""``advharness list --attack NAME`` prints the attack's defaults, the ones specs resolve to."""

from __future__ import annotations

import pytest

from advharness.cli import main
from advharness.config.catalogue import CATALOGUE
from advharness.config.spec import AttackSpec
from advharness.reporting.support import attack_defaults


def _minimal_spec(name: str) -> AttackSpec:
    """A spec of ``name`` that sets nothing it need not (fixed-budget attacks need eps)."""
    eps = 0.1 if CATALOGUE[name].kind == "fixed" else None
    return AttackSpec(attack=name, eps=eps)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_printed_defaults_are_what_a_spec_resolves_to(name: str) -> None:
    """Every row agrees with :meth:`AttackSpec.resolve` on a spec that leaves the field out."""
    rows = dict(attack_defaults(name))
    resolved = _minimal_spec(name).resolve()
    assert rows["norm"].split()[0] == resolved.norm
    assert rows["steps"] == (str(resolved.steps) if resolved.steps is not None else "-")
    assert rows["threat_model"] == resolved.threat_model
    assert rows["kind"].split()[0] == resolved.kind
    assert rows["targeted"] == "false" and rows["target_mode"] == resolved.target_mode
    if resolved.step_size is not None and name not in ("fgsm", "fgm"):
        steps = resolved.steps or 1
        rule = {"2*eps": 2 * 0.1, "2.5*eps/steps": 2.5 * 0.1 / steps}[rows["step_size"]]
        assert resolved.step_size == pytest.approx(rule)
    if "random_start" in rows:
        assert rows["random_start"].split()[0] == str(resolved.random_start).lower()
    params = {k.removeprefix("params."): v for k, v in rows.items() if k.startswith("params.")}
    assert set(params) == set(resolved.params)
    for k, v in resolved.params.items():
        assert params[k].split(" (")[0] == (repr(v) if isinstance(v, str) else str(v))


def test_list_attack_prints_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI shows the support rows and, below them, every default of the attack."""
    assert main(["list", "--attack", "cw"]) == 0
    out = capsys.readouterr().out
    assert "cw l2" in out  # the support matrix row
    for field, value in attack_defaults("cw"):
        assert field in out and value in out


def test_list_unknown_attack_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--attack", "pgdd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown attack 'pgdd'" in err and "pgd" in err
