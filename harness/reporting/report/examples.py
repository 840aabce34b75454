"""Example adversarial images per library, with their perturbations, from the cells'
stored adversarials (``save_adversarials: true``: ``cells/<key>.adv.npz``).

The clean inputs are not stored with a run: they are reloaded from the dataset the
manifest names (``experiment.data``: dataset, split, n_samples, offset, path), checked
against the cells' ``data_sha256``, and mapped onto each model's bounds and layout as the
run did. When that fails (no manifest, the data changed or cannot be found), the section
shows the adversarials alone and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from advharness.core.errors import HarnessError
from advharness.reporting.report.base import Fragment, Image, ReportContext, figure, heading, paragraph
from advharness.reporting.report.figures import diverging, mosaic, rgb, scaled, signed, to_hwc, to_png
from advharness.reporting.store import CellStore

log = logging.getLogger(__name__)

#: At most this many settings (table row and model) get a grid, of this many samples each.
MAX_SETTINGS = 6
MAX_SAMPLES = 6


@dataclass(frozen=True)
class CleanData:
    """The run's clean inputs (NCHW in [0, 1], as loaded) and their hash, or why not."""

    x: np.ndarray | None
    sha256: str | None
    note: str


def load_clean(ctx: ReportContext) -> CleanData:
    """Reload the run's clean inputs from the dataset its manifest names."""
    from advharness.zoo.data import load_dataset

    data = ctx.manifest.get("experiment", {}).get("data")
    if not data:
        return CleanData(None, None, f"no manifest.json with the experiment's data in {ctx.results_dir}")
    try:
        ds = load_dataset(
            data.get("dataset", "digits"),
            data.get("split", "test"),
            data.get("n_samples"),
            int(data.get("offset") or 0),
            data.get("path"),
        )
    except HarnessError as e:
        log.warning("report: the clean inputs cannot be reloaded: %s", e)
        return CleanData(None, None, f"the dataset cannot be reloaded ({e})")
    where = f"{ds.name} {ds.split} split, {len(ds.x)} samples from offset {data.get('offset') or 0}"
    return CleanData(ds.x, ds.fingerprint(), where)


def clean_for(clean: CleanData, row: pd.Series, x_adv: np.ndarray, layout: str | None) -> np.ndarray | None:
    """The cell's clean inputs as its model got them (bounds, layout), or None when the cell
    ran on other data or the shapes disagree."""
    from advharness.zoo.data import to_bounds

    if clean.x is None or str(row.get("data_sha256")) != clean.sha256:
        return None
    x = to_bounds(clean.x, (float(row["bounds_low"]), float(row["bounds_high"])))
    if layout == "NHWC" and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    elif layout == "flat":
        x = x.reshape(len(x), -1)
    return x if x.shape == x_adv.shape else None


def displayable(a: np.ndarray, layout: str | None, clean: CleanData) -> tuple[np.ndarray, str | None]:
    """A batch in a layout :func:`~advharness.reporting.report.figures.to_hwc` shows as
    images: flat inputs in the dataset's NCHW shape when it is known."""
    if layout == "flat" and clean.x is not None and a[0].size == clean.x[0].size:
        return a.reshape(len(a), *clean.x.shape[1:]), "NCHW"
    return a, layout


def build_examples(ctx: ReportContext) -> Fragment:
    """Per setting (table row and model): the clean samples, and per library its
    adversarials and perturbations ``x_adv - x``."""
    s = ctx.summary
    store = CellStore(ctx.results_dir)
    ok = s[s["status"] == "ok"].drop_duplicates("cell_key") if len(s) else s
    stored = ok[[store.adversarials_path(str(k)).is_file() for k in ok["cell_key"]]] if len(ok) else ok
    if stored.empty:
        return Fragment.unavailable(
            "no adversarial examples are stored (run the experiment with save_adversarials: true)"
        )
    stored = stored.assign(setting=[ctx.key_labels[str(k)] for k in stored["cell_key"]])
    groups = list(stored.groupby(["setting", "model"], sort=False))
    clean = load_clean(ctx)
    layouts = {str(m.get("name")): m.get("layout") for m in ctx.manifest.get("models", [])}
    out = Fragment("", "")
    several_seeds = stored["run_seed"].nunique() > 1 if "run_seed" in stored else False
    for i, ((setting, model), g) in enumerate(groups[:MAX_SETTINGS]):
        if several_seeds:  # one seed's cells: one row per library
            g = g[g["run_seed"] == g["run_seed"].iloc[0]]
        cells = [(r, store.read_adversarials(str(r["cell_key"]))) for _, r in g.iterrows()]
        grid, note = _grid(ctx, cells, clean, layouts.get(str(model)))
        seed = f" (seed {g['run_seed'].iloc[0]})" if several_seeds else ""
        out.extend(heading(f"{setting} — {model}{seed}", level=3))
        out.extend(figure(Image(f"examples-{i + 1}", to_png(grid), f"adversarial examples: {setting}"), note))
    intro = (
        f"Clean inputs: reloaded ({clean.note}) and verified against each cell's data_sha256."
        if clean.x is not None
        else f"Clean inputs: not recoverable ({clean.note}); adversarials only."
    )
    if len(groups) > MAX_SETTINGS:
        intro += f" Only the first {MAX_SETTINGS} of {len(groups)} settings are shown."
    head = paragraph(intro)
    head.extend(out)
    return head


def _grid(
    ctx: ReportContext, cells: list[tuple[pd.Series, np.ndarray | None]], clean: CleanData, layout: str | None
) -> tuple[Any, str]:
    """The figure for one setting and its caption."""
    have = [(r, xa) for r, xa in cells if xa is not None]
    recs = ctx.samples
    per_cell = {
        str(r["cell_key"]): recs[recs["cell_key"] == r["cell_key"]].set_index("sample") if len(recs) else None
        for r, _ in have
    }
    xs = [clean_for(clean, r, xa, layout) for r, xa in have]
    picks = _pick(per_cell, len(have[0][1]))
    pairs = [(x, xa) for x, (_, xa) in zip(xs, have, strict=True) if x is not None]
    with_clean = len(pairs) == len(have)
    first = have[0][0]
    bounds = (float(first["bounds_low"]), float(first["bounds_high"]))

    def image(batch: np.ndarray, j: int) -> np.ndarray:
        shown, how = displayable(batch, layout, clean)
        return rgb(scaled(to_hwc(shown[j], how), bounds))

    rows: list[list[tuple[np.ndarray, str]]] = []
    if with_clean:
        rows.append([(image(pairs[0][0], j), _title(per_cell, first, j, clean=True)) for j in picks])
    deltas = [displayable(xa - x, layout, clean) for x, xa in pairs] if with_clean else []
    limit = max((_largest(d[picks]) for d, _ in deltas), default=0.0) or 1e-12
    for n, (row, xa) in enumerate(have):
        rows.append([(image(xa, j), _title(per_cell, row, j)) for j in picks])
        if with_clean:
            d, how = deltas[n]
            lib = str(row["library"])
            rows.append([(diverging(signed(to_hwc(d[j], how)), limit), f"{lib} delta") for j in picks])
    if with_clean:
        caption = (
            "Top row: the clean samples (# index, y = label); then per library its adversarials "
            "(predicted class; * = refereed success) and their perturbations x_adv - x "
            f"(blue -{limit:.3g}, white 0, red +{limit:.3g}, in model input units)."
        )
    else:
        why = clean.note if clean.x is None else f"their data_sha256 or input shape differs from {clean.note}"
        caption = (
            "Per library its adversarials (predicted class; * = refereed success); the clean "
            f"inputs are not recoverable for these cells ({why}), so no perturbation is shown."
        )
    return mosaic(rows), caption


def _largest(a: np.ndarray) -> float:
    """The largest finite magnitude in ``a`` (0 where none)."""
    finite = np.abs(a[np.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


def _pick(per_cell: dict[str, pd.DataFrame | None], n: int) -> list[int]:
    """Up to :data:`MAX_SAMPLES` samples, those some library succeeded on first."""
    hit: set[int] = set()
    for recs in per_cell.values():
        if recs is not None and "success" in recs:
            hit |= {int(i) for i in recs.index[recs["success"].astype(bool)]}
    order = sorted(range(n), key=lambda i: (i not in hit, i))
    return order[: min(MAX_SAMPLES, n)]


def _title(per_cell: dict[str, pd.DataFrame | None], row: pd.Series, j: int, clean: bool = False) -> str:
    recs = per_cell.get(str(row["cell_key"]))
    if recs is None or j not in recs.index:
        return f"#{j}" if clean else f"{row['library']}"
    label, pred, success = (recs.at[j, c] for c in ("label", "adv_pred", "success"))
    if clean:
        return f"#{j} y={label!s}"
    return f"{row['library']}: {pred!s}{' *' if bool(success) else ''}"
