"""PyTorch side of the preprocessing defenses: an ``nn.Module`` that preprocesses its input
and runs the wrapped network, with exact or BPDA gradients and EOT averaging.

Forward forms (each equal to ART's preprocessor, see ``tests/test_preprocessing_defenses.py``):
bit depth and the median filter are torch-native re-implementations (so the exact gradient is
torch's own); JPEG calls ART's ``JpegCompression`` on NumPy inside a ``torch.autograd.Function``;
the Gaussian noise is drawn from torch's generator (seeded by the harness).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch

from advharness.core.errors import HarnessError
from advharness.models.base import WrappedModel
from advharness.models.preprocess_steps import (
    DefendedParameters,
    Step,
    art_preprocessor,
    clipped,
    wrapping_of,
)
from advharness.models.torch_model import TorchModel


class Substitute(torch.autograd.Function):
    """Forward: ``y`` (the caller computed it from ``x``, outside the graph); backward: the
    identity (``straight=True``: BPDA's straight-through estimator) or zero (the exact
    derivative of a piecewise-constant step, e.g. JPEG's quantisation)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, straight: bool) -> torch.Tensor:
        ctx.straight = straight
        return y.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return (grad if ctx.straight else torch.zeros_like(grad)), None, None


def bit_depth(x: torch.Tensor, bits: int, lo: float, hi: float) -> torch.Tensor:
    """ART's ``FeatureSqueezing``: ``rint((x - lo) / (hi - lo) * (2^bits - 1))``, rescaled,
    in float64 like ART (NumPy 2 promotes its float64 ``max_value``); torch's derivative of
    the rounding is zero."""
    m = float(2**bits - 1)
    z = ((x - lo) / (hi - lo)).double()
    return (torch.round(z * m) / m * (hi - lo) + lo).to(x.dtype)


def reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices of SciPy's ``mode="reflect"`` padding (``d c b a | a b c d | d c b a``,
    repeated for pads wider than the image) of an axis of length ``n``."""
    i = np.arange(-before, n + after) % (2 * n)
    return torch.from_numpy(np.where(i < n, i, 2 * n - 1 - i)).to(device)


def median(x: torch.Tensor, window: int, channels_first: bool) -> torch.Tensor:
    """ART's ``SpatialSmoothing`` (``scipy.ndimage.median_filter``, mode ``reflect``, the
    window's centre at the lower right for even sizes, element ``size // 2`` of the sorted
    window) per channel; differentiable: the derivative selects the median element."""
    if not channels_first:
        x = x.permute(0, 3, 1, 2)
    n, c, h, w = x.shape
    top = window // 2
    padded = x.index_select(2, reflect_index(h, top, window - 1 - top, x.device))
    padded = padded.index_select(3, reflect_index(w, top, window - 1 - top, x.device))
    patches = padded.unfold(2, window, 1).unfold(3, window, 1).reshape(n, c, h, w, window * window)
    out = patches.kthvalue(window * window // 2 + 1, dim=-1).values
    return out if channels_first else out.permute(0, 2, 3, 1)


def gaussian_noise(x: torch.Tensor, sigma: float, lo: float, hi: float) -> torch.Tensor:
    """ART's ``GaussianAugmentation(augmentation=False)``: ``x + N(0, sigma^2)``, clipped to
    the bounds; the noise from torch's generator (seeded by the harness)."""
    return (x + sigma * torch.randn_like(x)).clamp(lo, hi)


def make_steps(
    steps: Sequence[Step], model: WrappedModel, where: str
) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Each step as a function of a torch batch in the model's layout (exact gradients)."""
    lo, hi = model.bounds
    channels_first = model.layout == "NCHW"
    fns: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for step in steps:
        v = step.value
        if step.kind == "bit_depth":
            fns.append(functools.partial(bit_depth, bits=int(v), lo=lo, hi=hi))
        elif step.kind == "median":
            fns.append(functools.partial(median, window=int(v), channels_first=channels_first))
        elif step.kind == "noise":
            fns.append(functools.partial(gaussian_noise, sigma=float(v), lo=lo, hi=hi))
        else:  # jpeg: ART on NumPy; its exact derivative is zero (quantised output)
            art = clipped(art_preprocessor(step, model, where), lo, hi)

            def jpeg(x: torch.Tensor, art: Callable[[np.ndarray], np.ndarray] = art) -> torch.Tensor:
                y = art(x.detach().cpu().numpy())
                return cast(
                    torch.Tensor, Substitute.apply(x, torch.from_numpy(y).to(x.device, x.dtype), False)
                )

            fns.append(jpeg)
    return fns


class PreprocessedNet(torch.nn.Module):
    """``net(preprocess(x))``; with ``eot = k > 1`` the mean of the network's outputs over
    ``k`` independent preprocessings of ``x`` (one batched pass of ``k * N`` rows)."""

    def __init__(
        self,
        net: torch.nn.Module,
        steps: list[Callable[[torch.Tensor], torch.Tensor]],
        gradient: str,
        eot: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.steps = steps
        self.bpda = gradient == "bpda"
        self.eot = eot

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """The deployed preprocessing; backward: exact (the steps' own derivatives) or the
        identity (BPDA)."""
        if self.bpda:
            with torch.no_grad():
                y = x.detach()
                for fn in self.steps:
                    y = fn(y)
            return cast(torch.Tensor, Substitute.apply(x, y, True))
        for fn in self.steps:
            x = fn(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.eot == 1:
            return cast(torch.Tensor, self.net(self.preprocess(x)))
        n = x.shape[0]
        out = self.net(self.preprocess(x.repeat(self.eot, *([1] * (x.dim() - 1)))))
        return cast(torch.Tensor, out.reshape(self.eot, n, *out.shape[1:]).mean(0))


class PreprocessedTorchModel(DefendedParameters, TorchModel):
    """A :class:`TorchModel` of a :class:`PreprocessedNet` (see :class:`DefendedParameters`)."""

    def __init__(self, net: PreprocessedNet, base: TorchModel, info: dict[str, Any], name: str) -> None:
        super().__init__(net, **wrapping_of(base), name=name)
        self.adopt(base, info)


def build(
    model: WrappedModel, steps: Sequence[Step], gradient: str, eot: int, name: str, info: dict[str, Any]
) -> WrappedModel:
    """The torch model ``model`` behind the preprocessing ``steps``."""
    if not isinstance(model, TorchModel):
        raise HarnessError(
            f"model {name!r}: a preprocessing defense wraps a torch.nn.Module wrapped by wrap_model "
            f"(TorchModel); got a {type(model).__name__}"
        )
    net = PreprocessedNet(model.module, make_steps(steps, model, f"model {name!r}"), gradient, eot)
    return PreprocessedTorchModel(net, model, info, name)
