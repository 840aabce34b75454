"""PyTorch side of white-box path recording (see :mod:`advharness.judging.path`): the
originals and the best rows seen stay on the model's device; per forward pass one small
host copy (distances, row statistics, logits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from advharness.judging.path import PathOps
from advharness.judging.referee import L0_ATOL
from advharness.models.host_path import EXACT_SEPARATION_MAX, l2_separation_bound

#: Element budget of one chunk of a pairwise distance computation.
_CHUNK_ELEMENTS = 1 << 24


def _attr_p(norm: str) -> float:
    """``torch.cdist``'s p for the attribution metric (L0: the exact count of changes)."""
    return {"l0": 0.0, "l1": 1.0, "l2": 2.0, "linf": float("inf")}[norm]


def row_norms(delta: torch.Tensor, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Attribution distance and spec norm of each row of ``delta`` (B, D)."""
    if norm == "l2":
        d = torch.linalg.vector_norm(delta, 2, dim=1)
        return d, d
    if norm == "linf":
        d = delta.abs().amax(dim=1) if delta.shape[1] else delta.new_zeros(len(delta))
        return d, d
    if norm == "l1":
        d = delta.abs().sum(dim=1)
        return d, d
    return (delta != 0).sum(dim=1).to(delta.dtype), (delta.abs() > L0_ATOL).sum(dim=1).to(delta.dtype)


class TorchPathOps(PathOps):
    """The cell's originals ``x`` (model layout) on ``device``; distances in ``norm``.
    ``separation``: precomputed separations (cached by the model per batch and norm)."""

    def __init__(
        self,
        x: np.ndarray,
        norm: str,
        device: torch.device,
        separation: np.ndarray | None = None,
        remember: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        super().__init__(separation, remember)
        self.n = len(x)
        self.shape = x.shape[1:]
        self.norm = norm
        self.device = device
        self._orig = torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(self.n, -1)).to(device)
        self._best: torch.Tensor | None = None

    @staticmethod
    def _flat(x: torch.Tensor) -> torch.Tensor:
        return x.detach().reshape(len(x), -1).float()

    def summarize(self, x: Any, logits: Any, offset: int | None) -> np.ndarray:
        with torch.no_grad():
            flat = self._flat(x)
            b = len(flat)
            if offset is None:
                dist = flat.new_full((b, 2), float("nan"))
            else:
                dist = torch.stack(row_norms(flat - self._orig[offset : offset + b], self.norm), dim=1)
            stats = torch.stack([flat.amin(dim=1), flat.amax(dim=1), flat.sum(dim=1)], dim=1)
            out = torch.cat([dist, stats, logits.detach().float()], dim=1)
            return out.cpu().numpy().astype(np.float64)

    def positional(self, x: Any, offset: int) -> np.ndarray:
        with torch.no_grad():
            flat = self._flat(x)
            d = row_norms(flat - self._orig[offset : offset + len(flat)], self.norm)
            return torch.stack(d, dim=1).cpu().numpy().astype(np.float64)

    def _pairwise(self, a: torch.Tensor, p: float) -> torch.Tensor:
        """(len(a), n) attribution distances to every original, chunked."""
        step = max(1, _CHUNK_ELEMENTS // max(1, len(a) * self._orig.shape[1]))
        parts = [
            torch.cdist(a, self._orig[j : j + step], p=p, compute_mode="donot_use_mm_for_euclid_dist")
            for j in range(0, self.n, step)
        ]
        return torch.cat(parts, dim=1)

    def nearest(self, x: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            a = self._flat(x)[torch.as_tensor(rows, device=self.device)]
            d = self._pairwise(a, _attr_p(self.norm))
            if self.n == 1:
                only = np.zeros((len(rows), 2), np.int64)
                dist = np.column_stack([d[:, 0].cpu().numpy(), np.full(len(rows), np.inf)])
                return only, dist
            vals, idx = torch.topk(d, 2, dim=1, largest=False)
            return idx.cpu().numpy(), vals.cpu().numpy().astype(np.float64)

    def norms_to(self, x: Any, rows: np.ndarray, samples: np.ndarray, exact: bool) -> np.ndarray:
        with torch.no_grad():
            a = self._flat(x)[torch.as_tensor(rows, device=self.device)]
            o = self._orig[torch.as_tensor(samples, device=self.device)]
            if exact and a.device.type != "mps":  # float64: as the referee measures
                a, o = a.double(), o.double()
            return row_norms(a - o, self.norm)[1].cpu().numpy().astype(np.float64)

    def _separations(self) -> np.ndarray:
        with torch.no_grad():
            if self.n > EXACT_SEPARATION_MAX:
                return self._l2_bound()
            out = []
            step = max(1, _CHUNK_ELEMENTS // max(1, self.n * self._orig.shape[1]))
            for i in range(0, self.n, step):
                d = self._pairwise(self._orig[i : i + step], _attr_p(self.norm))
                d[torch.arange(len(d)), torch.arange(i, i + len(d))] = float("inf")
                out.append(d.amin(dim=1))
            return torch.cat(out).cpu().numpy().astype(np.float64)

    def _l2_bound(self) -> np.ndarray:
        return l2_separation_bound(self._orig.cpu().numpy(), self.norm)

    def keep(self, x: Any, rows: np.ndarray, samples: np.ndarray) -> None:
        with torch.no_grad():
            if self._best is None:
                self._best = self._orig.clone()
            r = torch.as_tensor(rows, device=self.device)
            self._best[torch.as_tensor(samples, device=self.device)] = self._flat(x)[r]

    def best(self) -> np.ndarray:
        best = self._orig if self._best is None else self._best
        return best.cpu().numpy().reshape(self.n, *self.shape).copy()
