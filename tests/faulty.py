"""A test adapter whose FGSM misbehaves on purpose, chosen by ``eps`` (fault injection).

Named in experiments as ``faulty:FaultyAdapter`` (this directory is on ``sys.path`` in the
tests, and spawned pool workers inherit it). eps 0.01: raises; 0.02: returns NaN; 0.03: hangs
(sleeps); 0.04: kills its own process (SIGKILL, like the OOM killer); 0.05: calls
``sys.exit(4)``; 0.06: raises ``KeyboardInterrupt``; 0.07: exits its process with code 3
(``os._exit``); 0.5: a well-behaved step after 2 s (slow cells); anything else: a
well-behaved random-sign step of size eps.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import numpy as np

from advharness.adapters.base import Adapter, AttackOutput, AttackRequest, Impl, LibraryCall
from advharness.models.base import WrappedModel


def _raise(x: np.ndarray) -> np.ndarray:
    raise ValueError("injected failure")


def _nan(x: np.ndarray) -> np.ndarray:
    return np.full_like(x, np.nan)


def _hang(x: np.ndarray) -> np.ndarray:
    time.sleep(3600)
    return x


def _die(x: np.ndarray) -> np.ndarray:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def _exit(x: np.ndarray) -> np.ndarray:
    sys.exit(4)


def _interrupt(x: np.ndarray) -> np.ndarray:
    raise KeyboardInterrupt


def _exit_process(x: np.ndarray) -> np.ndarray:
    os._exit(3)


def _slow(x: np.ndarray) -> np.ndarray:
    time.sleep(2)
    return x


FAULTS: dict[float, Any] = {
    0.01: _raise,
    0.02: _nan,
    0.03: _hang,
    0.04: _die,
    0.05: _exit,
    0.06: _interrupt,
    0.07: _exit_process,
    0.5: _slow,
}


def _fgsm(request: AttackRequest) -> AttackOutput:
    eps = float(request.spec.eps or 0.0)
    x = request.x
    fault = FAULTS.get(round(eps, 4))
    if fault is not None:
        x_adv = fault(x)
    else:
        sign = np.sign(np.random.default_rng(request.seed).standard_normal(x.shape))
        lo, hi = request.model.bounds
        x_adv = np.clip(x + eps * sign, lo, hi).astype(np.float32)
    return AttackOutput(x_adv, LibraryCall("tests.faulty", {"eps": eps}))


class FaultyAdapter(Adapter):
    name = "faulty"
    package = "advharness"
    IMPLS = {"fgsm": Impl(("linf",), _fgsm)}

    def convert(self, model: WrappedModel) -> Any:
        return model
