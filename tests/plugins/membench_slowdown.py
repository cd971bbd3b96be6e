"""Test-only regression switch: makes registered implementations slower by a calibrated fraction.

Loaded like any plugin (`membench gate --plugin membench_slowdown`, with tests/plugins on PYTHONPATH), it does
nothing unless MEMBENCH_INJECT_SLOWDOWN is set. With MEMBENCH_INJECT_SLOWDOWN=0.2 every implementation whose
"workload/impl" matches MEMBENCH_INJECT_MATCH (a regular expression, default: all) is wrapped so that each call
times itself and then does 0.2 × its own duration of extra torch work: a 20% slowdown on whatever machine runs
it, with the case id, the answer and the workload version unchanged — what a real regression in an
implementation looks like to the gate. No production code reads these variables.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from typing import Any

from harness.registry import REGISTRY

SLOWDOWN_ENV = "MEMBENCH_INJECT_SLOWDOWN"
MATCH_ENV = "MEMBENCH_INJECT_MATCH"
BURN_ELEMENTS = 1 << 15  # about 10 µs per add on a laptop-class core: the slowdown's granularity
_SCRATCH = None


def slowed(fn: Callable[[Any, dict], Any], fraction: float) -> Callable[[Any, dict], Any]:
    """fn, followed by `fraction` × the call's own duration of extra torch work (see burn)."""

    def wrapper(inputs: Any, params: dict) -> Any:
        start = time.perf_counter()
        out = fn(inputs, params)
        burn(fraction * (time.perf_counter() - start))
        return out

    wrapper.__doc__ = fn.__doc__
    return wrapper


def burn(seconds: float) -> None:
    """Extra work for `seconds`: small in-place adds through torch's own thread pool, like a kernel that moves
    more bytes. A Python spin loop or a sleep leaves torch's worker threads idle between calls; on the loaded
    2-core machine that turned a 0.15 ms call plus 20% into 20-90 ms (waking them costs scheduler ticks)."""
    import torch

    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = torch.zeros(BURN_ELEMENTS)
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        _SCRATCH.add_(1.0)


def inject(fraction: float, pattern: str = "") -> list[str]:
    """Wrap every matching registered implementation; returns the "workload/impl" names it slowed."""
    if not fraction > 0.0:
        raise ValueError(f"{SLOWDOWN_ENV} must be a positive fraction such as 0.2, got {fraction}")
    compiled = re.compile(pattern)
    slowed_names = []
    for workload, impls in REGISTRY.impls.items():
        for name, impl in list(impls.items()):
            if compiled.search(f"{workload}/{name}"):
                impls[name] = dataclasses.replace(impl, fn=slowed(impl.fn, fraction))
                slowed_names.append(f"{workload}/{name}")
    if not slowed_names:
        raise ValueError(f"{MATCH_ENV}={pattern!r} matches no registered implementation (load this plugin after "
                         "the plugins that register them)")
    return slowed_names


def _from_environment() -> list[str]:
    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return []
    try:
        fraction = float(raw)
    except ValueError:
        raise ValueError(f"{SLOWDOWN_ENV}={raw!r} is not a number; use a fraction such as 0.2") from None
    REGISTRY.load()  # wrap the workloads' implementations, which are imported first
    return inject(fraction, os.environ.get(MATCH_ENV, ""))


SLOWED = _from_environment()
