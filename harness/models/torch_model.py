"""PyTorch side of model wrapping: a counting, float32-casting ``nn.Module``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import numpy as np
import torch

from advharness.core.types import Layout, Outputs, ThreatModel
from advharness.judging.ledger import QueryLedger
from advharness.judging.path import PathOps
from advharness.models.base import Counts, QueryCounter, WrappedModel

#: Whether an oracle on a CPU network takes the device path too (it always does off the
#: CPU): tests set it to check that both paths give the same ledger results.
FORCE_DEVICE_PATH = False


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

    * casts inputs to float32 (ART on numpy 2 feeds float64: ART #2475), and outputs to
      float32; a network whose floating parameters and buffers are all of another dtype
      (e.g. float64) gets its inputs in that dtype, so every library sees a float32 model;
    * counts forward rows, and backward rows through a hook on the output (fires once per
      backward pass that reaches the output, whichever library asks for the gradient);
    * for declared probability models returns ``log(p)``, which are valid logits;
    * as a query-only oracle (``access`` not white-box) refuses inputs that require a
      gradient (a threat-model violation) and, decision-based, returns one-hot top-1 labels;
    * white-box, hands each forward pass to the owner's path recorder, if a cell set one
      (:mod:`advharness.judging.path`).
    """

    def __init__(
        self,
        inner: torch.nn.Module,
        counter: TorchCounter,
        probabilities: bool,
        owner: WrappedModel | None = None,
        access: ThreatModel = "white-box",
    ) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter
        self.probabilities = probabilities
        self.access = access
        self._owner = [owner]  # a list: not registered as a submodule
        self._one_hot = access == "decision-based"  # answers are one-hot top-1 labels
        self._eye = torch.eye(0)  # rows of one-hot answers, sized on first use
        params = list(inner.parameters())
        self._on_cpu = not params or params[0].device.type == "cpu"
        self._device_path = FORCE_DEVICE_PATH or not self._on_cpu
        self._dtype = network_dtype(inner)

    def _inner(self, x: torch.Tensor) -> torch.Tensor:
        """The network on float32 ``x`` (cast to its own dtype), as float32."""
        out = cast(torch.Tensor, self.inner(x if self._dtype == torch.float32 else x.to(self._dtype)))
        return out if out.dtype == torch.float32 else out.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            x = x.float()
        rows = int(x.shape[0])
        if self.access != "white-box":
            return self._oracle(x, rows)
        self.counter.forward += rows
        out = self._inner(x)
        if self.probabilities:
            out = torch.log(out.clamp_min(1e-30))
        owner = self._owner[0]
        if owner is not None and owner.recorder is not None:
            owner.recorder.observe(x, out)
        if out.requires_grad:
            counter = self.counter

            def _count(grad: torch.Tensor) -> None:
                counter.backward += rows

            out.register_hook(_count)
        return out

    def _oracle(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        owner = self._owner[0]
        if x.requires_grad:
            if owner is not None:
                owner.report_violation("a gradient with respect to the input was requested")
            x = x.detach()
        self.counter.forward += rows
        out = self._inner(x)  # builds no graph: neither x nor (once wrapped) the weights need one
        if out.requires_grad:  # weights a user made trainable again
            out = out.detach()
        if self.probabilities:
            out = torch.log(out.clamp_min(1e-30))
        ledger = owner.ledger if owner is not None else None
        if ledger is None:
            return self._answer(out, out.argmax(1)) if self._one_hot else out
        if self._device_path:
            return self._device_oracle(x, out, rows, ledger)
        if not 0 < rows <= ledger.room:
            # off the hot path (a sample's first query, buffer full, budget): via NumPy
            answer = ledger.answer(x.cpu().numpy(), out.cpu().numpy(), self._one_hot)
            return torch.from_numpy(answer).to(x.device)
        # the hot path: the rows and their top-1 labels go straight into the ledger's buffer
        views = ledger.views
        if views is None:  # once per ledger (its buffer exists once room > 0)
            views = ledger.views = (torch.from_numpy(ledger.buf_x), torch.from_numpy(ledger.buf_pred))
        b = ledger.reserve(rows)
        views[0][b : b + rows] = x
        return self._answer(out, torch.argmax(out, 1, out=views[1][b : b + rows]))

    def _device_oracle(
        self, x: torch.Tensor, out: torch.Tensor, rows: int, ledger: QueryLedger
    ) -> torch.Tensor:
        """The oracle off the CPU: the answer (logits, or one-hot labels) is made and stays
        on the device. Copied to the host per query: the ``rows`` top-1 labels (int64) and,
        on the per-sample hot path, only the rows that reach the sample's goal (the only
        ones the ledger judges; the others are never read). Every row is copied on a
        sample's first query, at its budget and in batched cells, whose ledger attributes
        each row by its distance to the originals on the host. No logits are copied."""
        pred = out.argmax(1)
        labels = pred.cpu().numpy()
        if 0 < rows <= ledger.room:
            b = ledger.reserve(rows)
            ledger.buf_pred[b : b + rows] = labels
            goal = ledger.goal_rows(labels)
            assert ledger.buf_x is not None  # allocated by the sample's first query
            if goal.size == rows:
                ledger.buf_x[b : b + rows] = x.cpu().numpy()
            elif goal.size:
                picked = x.index_select(0, torch.from_numpy(goal).to(x.device))
                ledger.buf_x[b + goal] = picked.cpu().numpy()
        else:
            ledger.take(x.detach().cpu().numpy(), labels)
        return self._answer(out, pred)

    def _answer(self, out: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The logits, or (decision-based) the one-hot top-1 labels ``pred``."""
        if not self._one_hot:
            return out
        if self._eye.shape[0] != out.shape[1] or self._eye.device != out.device:
            self._eye = torch.eye(out.shape[1], device=out.device)
        return self._eye.index_select(0, pred)

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
        super().__init__(
            input_shape=input_shape,
            nb_classes=nb_classes,
            bounds=bounds,
            layout=layout,
            outputs=outputs,
            name=name,
        )
        self._found = (module.training, [(p, p.requires_grad) for p in module.parameters()])
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        params = list(module.parameters())
        self._device = params[0].device if params else torch.device("cpu")
        self._dtype = network_dtype(module)
        self._counter = TorchCounter()

    def release(self) -> None:
        training, flags = self._found
        self.module.train(training)
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)

    @property
    def device(self) -> str:
        return str(self._device)

    def place(self, device: str) -> None:
        """Move the network to ``device`` (``module.to``): the libraries' queries and the
        harness's forward passes run there. Before the library forms are made."""
        from advharness.core.frameworks import check_device

        self._device = torch.device(check_device(device))
        self.module.to(self._device)
        self._counted_by_access.clear()  # each oracle notes its device when made
        self._library_forms.clear()

    def device_scope(self) -> AbstractContextManager[None]:
        """On a GPU, ``torch.cuda.device``: the current CUDA device is the model's during a
        library call (ART's ``PyTorchClassifier`` puts the model on the current one)."""
        if self._device.type != "cuda":
            return nullcontext()
        return cast(AbstractContextManager[None], torch.cuda.device(self._device))

    @property
    def torch_device(self) -> torch.device:
        return self._device

    @property
    def counter(self) -> TorchCounter:
        return self._counter

    def _make_counted(self, access: ThreatModel) -> CountingModule:
        m = CountingModule(self.module, self._counter, self.outputs == "probabilities", self, access)
        return m.eval()

    def _raw_forward(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self._device, self._dtype))
        return cast(np.ndarray, out.detach().cpu().float().numpy())  # float32 whatever the network's dtype

    def parameter_arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        for name, t in self.module.state_dict().items():
            if not isinstance(t, torch.Tensor):  # a module's extra state
                yield name, np.frombuffer(repr(t).encode(), np.uint8)
                continue
            t = t.detach().cpu()
            if t.layout != torch.strided:  # sparse
                t = t.to_dense()
            if t.is_quantized:  # scale and zero point count through the values
                t = t.dequantize()
            t = t.contiguous()
            try:
                yield name, t.numpy()
            except TypeError:  # a dtype NumPy lacks (bfloat16, float8...): its bytes
                yield f"{name}:{t.dtype}", t.reshape(-1).view(torch.uint8).numpy()

    def to_tensor(self, x: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self._device)

    def _make_path_ops(
        self,
        x: np.ndarray,
        norm: str,
        separation: np.ndarray | None,
        remember: Callable[[np.ndarray], None],
    ) -> PathOps:
        from advharness.models.torch_path import TorchPathOps

        return TorchPathOps(x, norm, self._device, separation, remember)

    def input_gradients(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self._device, self._dtype)
        xt.requires_grad_(True)
        with torch.enable_grad():
            out = self.module(xt).double()
            if self.outputs == "probabilities":
                out = torch.log(out.clamp_min(1e-30))
            loss = torch.nn.functional.cross_entropy(
                out, torch.from_numpy(np.asarray(y, np.int64)).to(self._device), reduction="sum"
            )
            (grad,) = torch.autograd.grad(loss, xt, allow_unused=True)
        if grad is None:  # the output does not depend on the input
            return np.zeros_like(np.asarray(x, np.float32))
        return grad.detach().cpu().float().numpy()


def network_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype the network computes in: that of its floating parameters and buffers when
    they all share one, else float32 (a network of mixed dtypes casts for itself)."""
    dtypes = {
        t.dtype for t in itertools.chain(module.parameters(), module.buffers()) if t.is_floating_point()
    }
    return dtypes.pop() if len(dtypes) == 1 else torch.float32
