"""The support matrix: which (attack, norm, library, framework, targeted) combinations run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from advharness.config.catalogue import CATALOGUE, FRAMEWORKS, SHORT


def support_matrix() -> pd.DataFrame:
    """One row per combination, with ``supported`` and the ``reason`` when it is not.

    Built from the adapters' declarations: no library is imported.
    """
    from advharness.adapters import ADAPTERS

    rows = []
    for attack, d in CATALOGUE.items():
        for norm in d.norms:
            for lib, cls in ADAPTERS.items():
                adapter = cls()
                for fw in FRAMEWORKS:
                    for targeted in (False, True):
                        reason = adapter.unsupported_reason(attack, norm, fw, targeted)
                        rows.append(
                            {
                                "attack": attack,
                                "norm": norm,
                                "library": lib,
                                "framework": fw,
                                "targeted": targeted,
                                "supported": reason is None,
                                "reason": reason or "",
                            }
                        )
    return pd.DataFrame(rows)


#: What each optional framework is for, in ``advharness list``.
FRAMEWORK_USES = {
    "torch": "PyTorch models: their cells are unsupported rows without it",
    "tensorflow": "TensorFlow/Keras models: their cells are unsupported rows without it",
    "ray": "the Ray backend, --backend ray",
}


def framework_status() -> list[dict[str, Any]]:
    """One entry per optional framework (an extra of the package): ``framework``, ``installed``,
    ``version`` (its distribution's, when known), ``use`` and ``reason`` (what to install when it
    is missing). Nothing is imported."""
    from importlib.metadata import PackageNotFoundError, version

    from advharness.core.frameworks import OPTIONAL_FRAMEWORKS, missing_framework_reason

    out = []
    for name in OPTIONAL_FRAMEWORKS:
        reason = missing_framework_reason(name)
        try:
            found = version(name) if reason is None else ""
        except PackageNotFoundError:  # installed under another distribution name
            found = ""
        out.append(
            {
                "framework": name,
                "installed": reason is None,
                "version": found,
                "use": FRAMEWORK_USES.get(name, ""),
                "reason": reason or "",
            }
        )
    return out


def framework_lines(status: list[dict[str, Any]]) -> str:
    """:func:`framework_status` as lines: the frameworks installed, then one line per missing
    one saying what to install (the cells that need it are ``unsupported`` rows)."""
    installed = [f"{s['framework']} {s['version']}".strip() for s in status if s["installed"]]
    lines = [f"frameworks installed: {', '.join(installed) or 'none'}"]
    lines += [f"{s['reason']} (for {s['use']})" for s in status if not s["installed"]]
    return "\n".join(lines)


def support_table(matrix: pd.DataFrame, show_reasons: bool = False) -> Any:
    """A rich table: per (library, framework) ``u`` untargeted, ``t`` targeted, ``-`` neither."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    groups = list(dict.fromkeys(zip(matrix["library"], matrix["framework"], strict=True)))
    table = Table(title="support matrix (u = untargeted, t = targeted)")
    table.add_column("attack", no_wrap=True)
    for lib, fw in groups:
        table.add_column(f"{lib}\n{SHORT.get(fw, fw)}", justify="center")
    for (attack, norm), rows in matrix.groupby(["attack", "norm"], sort=False):
        cells = []
        for lib, fw in groups:
            sel = rows[(rows["library"] == lib) & (rows["framework"] == fw)]
            modes = [
                m
                for m, t in (("u", False), ("t", True))
                if bool(sel.loc[sel["targeted"] == t, "supported"].any())
            ]
            cells.append("+".join(modes) if modes else "[dim]-[/dim]")
        table.add_row(f"{attack} {norm}", *cells)
    if not show_reasons:
        return Group(table, Text("advharness list --reasons: why a combination is missing", style="dim"))
    reasons = matrix.loc[~matrix["supported"], "reason"].drop_duplicates()
    return Group(table, Text("\n".join(f"- {r}" for r in reasons)))


def attack_defaults(name: str) -> list[tuple[str, str]]:
    """``(field, value)``: what a spec of attack ``name`` resolves to when it leaves a field
    out (the catalogue's defaults, as :meth:`harness.spec.AttackSpec.resolve` applies them)."""
    from advharness.core.errors import HarnessError

    if name not in CATALOGUE:
        raise HarnessError(f"unknown attack {name!r}; known: {', '.join(sorted(CATALOGUE))}")
    d = CATALOGUE[name]
    steps = "1" if name in ("fgsm", "fgm") else str(d.default_steps) if d.default_steps else "-"
    if name in ("fgsm", "fgm"):
        step_size = "eps (one step)"
    elif "step_size" in d.common:
        step_size = "2*eps" if name == "apgd" else "2.5*eps/steps"
    else:
        step_size = "-"
    eps = "eps required" if d.kind == "fixed" else "eps optional: a reporting radius"
    rows = [
        ("description", d.description),
        ("kind", f"{d.kind} ({eps})"),
        ("threat_model", d.threat_model),
        ("norm", f"{d.norms[0]} (supported: {', '.join(d.norms)})"),
        ("steps", steps),
        ("step_size", step_size),
    ]
    if name == "apgd":
        rows.append(("random_start", "true (always)"))
    elif "random_start" in d.common:
        rows.append(("random_start", "false"))
    if "restarts" in d.common:
        rows.append(("restarts", "1"))
    rows += [("targeted", "false"), ("target_mode", "random")]
    if d.threat_model != "white-box":
        from advharness.config.catalogue import DEFAULT_QUERY_LEVELS

        rows += [("budget", "none (unlimited)"), ("query_levels", ", ".join(map(str, DEFAULT_QUERY_LEVELS)))]
    for k, v in d.params.items():
        limit = f" (at most the input's {d.size_limits[k]})" if k in d.size_limits else ""
        rows.append((f"params.{k}", (repr(v) if isinstance(v, str) else str(v)) + limit))
    return rows


def defaults_table(name: str) -> Any:
    """A rich table of :func:`attack_defaults`."""
    from rich.table import Table

    table = Table(title=f"{name}: defaults (what a spec that leaves a field out gets)")
    table.add_column("field", no_wrap=True)
    table.add_column("default")
    for field, value in attack_defaults(name):
        table.add_row(field, value)
    return table
