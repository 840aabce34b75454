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
                        rows.append({"attack": attack, "norm": norm, "library": lib,
                                     "framework": fw, "targeted": targeted,
                                     "supported": reason is None, "reason": reason or ""})
    return pd.DataFrame(rows)


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
            modes = [m for m, t in (("u", False), ("t", True))
                     if bool(sel.loc[sel["targeted"] == t, "supported"].any())]
            cells.append("+".join(modes) if modes else "[dim]-[/dim]")
        table.add_row(f"{attack} {norm}", *cells)
    if not show_reasons:
        return Group(table, Text("advharness list --reasons: why a combination is missing",
                                 style="dim"))
    reasons = matrix.loc[~matrix["supported"], "reason"].drop_duplicates()
    return Group(table, Text("\n".join(f"- {r}" for r in reasons)))
