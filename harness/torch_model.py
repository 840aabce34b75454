"""PyTorch side of model wrapping: a counting, float32-casting ``nn.Module``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.models import Counts, Layout, Outputs, QueryCounter, WrappedModel


class TorchCounter(QueryCounter):
    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0

    def read(self) -> Counts:
        return Counts(self.forward, self.backward)

    def reset(self) -> None:
        self.forward = 0
        self.backward = 0


class CountingModule(torch.nn.Module):
    """Wraps the user's module for the libraries.

    * casts inputs to float32 (ART on numpy 2 feeds float64: ART #2475);
    * counts forward rows, and backward rows through a hook on the output (fires once per
      backward pass that reaches the output, whichever library asks for the gradient);
    * for declared probability models returns ``log(p)``, which are valid logits.
    """

    def __init__(self, inner: torch.nn.Module, counter: TorchCounter, probabilities: bool) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            x = x.float()
        rows = int(x.shape[0])
        self.counter.forward += rows
        out = self.inner(x)
        if self.probabilities:
            out = torch.log(out.clamp_min(1e-30))
        if out.requires_grad:
            counter = self.counter

            def _count(grad: torch.Tensor) -> None:
                counter.backward += rows

            out.register_hook(_count)
        return out

    def train(self, mode: bool = True) -> CountingModule:
        """Libraries toggle train/eval (ART does); the wrapped model always stays in eval."""
        super().train(False)
        return self


class TorchModel(WrappedModel):
    framework = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        input_shape: tuple[int, ...],
        nb_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        layout: Layout | None = None,
        outputs: Outputs = "logits",
        name: str = "torch-model",
    ) -> None:
        layout = layout or ("NCHW" if len(input_shape) == 3 else "flat")
        super().__init__(input_shape=input_shape, nb_classes=nb_classes, bounds=bounds,
                         layout=layout, outputs=outputs, name=name)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        params = list(module.parameters())
        self._device = params[0].device if params else torch.device("cpu")
        self._counter = TorchCounter()
        self._counted = CountingModule(module, self._counter, outputs == "probabilities")
        self._counted.eval()

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def torch_device(self) -> torch.device:
        return self._device

    @property
    def counter(self) -> TorchCounter:
        return self._counter

    @property
    def counted(self) -> CountingModule:
        return self._counted

    def _raw_forward(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self._device))
        return out.detach().cpu().numpy()

    def to_tensor(self, x: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self._device)
