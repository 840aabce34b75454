"""matplotlib helpers for the report: figures drawn on an Agg canvas of their own (no
pyplot, so no global backend or figure registry is touched), PNG bytes, colours per
library, and images in a displayable form.

matplotlib is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from advharness.models.layout import from_nchw

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Resolution of every figure (the page scales them to its width).
DPI = 90


def new_figure(
    n_panels: int, ncols: int = 3, panel: tuple[float, float] = (4.2, 3.2)
) -> tuple[Figure, list[Axes]]:
    """A figure of ``n_panels`` axes on a grid ``ncols`` wide (unused cells hidden), on its
    own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    width, height = panel[0] * ncols, panel[1] * nrows
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    # fixed margins in inches (a layout engine measures every text: slow with many panels)
    fig.subplots_adjust(
        left=0.7 / width,
        right=1 - 0.15 / width,
        bottom=0.5 / height,
        top=1 - 0.45 / height,
        wspace=0.85 / (panel[0] - 0.85),
        hspace=1.0 / (panel[1] - 1.0),
    )
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def to_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def colours(libraries: list[str]) -> dict[str, Any]:
    """One colour per library (matplotlib's ``tab10``, in the given order)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {lib: cmap(i % 10) for i, lib in enumerate(libraries)}


def to_hwc(x: np.ndarray, layout: str | None) -> np.ndarray:
    """One sample as ``H x W`` (grey) or ``H x W x 3``: from CHW (``NCHW`` models), HWC
    (``NHWC``), or flat (a square number of pixels, shown as a square). ``layout`` None:
    guessed from the shape (1 or 3 channels first, else last)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        side = math.isqrt(x.size)
        if side * side != x.size:
            return x.reshape(1, -1)  # one row of pixels
        return x.reshape(side, side)
    if x.ndim == 2:
        return x
    if x.ndim != 3:
        raise ValueError(f"cannot show an input of shape {x.shape} as an image")
    if layout == "NCHW" or (layout is None and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3)):
        x = from_nchw(x[None], "NHWC")[0]  # CHW -> HWC
    if x.shape[-1] == 1:
        return x[..., 0]
    if x.shape[-1] != 3:
        return np.asarray(x.mean(axis=-1))  # not RGB: the mean over channels
    return x


def scaled(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Pixel values mapped from ``bounds`` onto [0, 1] (clipped)."""
    lo, hi = bounds
    return np.clip((x - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def signed(delta: np.ndarray) -> np.ndarray:
    """A perturbation as one signed channel: colour images show the channel mean."""
    return delta.mean(axis=-1) if delta.ndim == 3 else delta


def rgb(img: np.ndarray) -> np.ndarray:
    """An image in [0, 1] (grey ``H x W`` or ``H x W x 3``) as ``H x W x 3``."""
    img = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def diverging(delta: np.ndarray, limit: float) -> np.ndarray:
    """A signed ``H x W`` map as ``H x W x 3`` on matplotlib's ``RdBu_r``: blue ``-limit``,
    white 0, red ``+limit``."""
    from matplotlib import colormaps

    unit = np.clip((np.asarray(delta, dtype=np.float64) / limit + 1.0) / 2.0, 0.0, 1.0)
    return np.asarray(colormaps["RdBu_r"](unit))[..., :3]


def mosaic(rows: list[list[tuple[np.ndarray, str]]], tile_px: int = 72) -> Figure:
    """A grid of ``H x W x 3`` tiles, each under its title, drawn as one image on one axes
    (cheap however many tiles). Tiles are enlarged by an integer factor to about
    ``tile_px`` pixels, so each pixel stays a sharp square."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = rows[0][0][0].shape[:2]
    k = max(1, tile_px // max(h, w))
    th, tw, title, pad = h * k, w * k, 14, 4
    ncols = max(len(r) for r in rows)
    height, width = len(rows) * (th + title + pad) + pad, ncols * (tw + pad) + pad
    canvas = np.ones((height, width, 3))
    labels = []
    for i, row in enumerate(rows):
        for j, (img, label) in enumerate(row):
            y, x = pad + i * (th + title + pad) + title, pad + j * (tw + pad)
            canvas[y : y + th, x : x + tw] = img.repeat(k, axis=0).repeat(k, axis=1)
            labels.append((x + tw / 2, y - title / 2, label))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    for x, y, label in labels:
        ax.text(x, y, label, ha="center", va="center", fontsize=6.5)
    return fig


def log_x(ax: Axes) -> None:
    """A log-scaled x axis with labels at the decades only (minor labels overlap)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def style_axes(
    ax: Axes, title: str, xlabel: str, ylabel: str, n_lines: int, *, legend_size: int = 6, title_size: int = 9
) -> None:
    """The house style of a rate panel: y in [0, 1] with a margin, small labels, a light
    grid and a legend while it stays readable (at most 8 lines; none without labelled lines)."""
    ax.set_ylim(-0.04, 1.04)
    ax.set_title(title, fontsize=title_size)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    if n_lines <= 8 and ax.get_legend_handles_labels()[0]:  # no empty legend box
        ax.legend(fontsize=legend_size)
