"""Test-only workload with deliberately broken implementations: each must end as a record, not a crash.

Loaded by suites through `plugins: [membench_test_plugins]` (tests/conftest.py puts this folder on sys.path),
which is also how users register workloads that live outside membench.
"""

from __future__ import annotations

import os
import signal
import time

import torch

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Workload, implementation, register_workload

ALLOCATE_BYTES = 64 * 2**20


@register_workload
class ScaledCopy(Workload):
    name = "scaled_copy"
    family = "testing"
    description = "y = 2x on a random vector: trivial, so every failure is the implementation's."
    sweep_param = "n"
    params = (Param("n", int, 4096, minimum=1), Param("dtype", str, "float32", choices=("float32", "float64")))

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        g = torch.Generator(device=device).manual_seed(seed)
        return {"x": torch.randn(params["n"], generator=g, device=device, dtype=getattr(torch, params["dtype"]))}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return inputs["x"].double() * 2

    def cost(self, params: dict, impl: str) -> Cost:
        element = 4 if params["dtype"] == "float32" else 8
        moved = 1e15 if impl == "overclaimed" else 2.0 * params["n"] * element
        return Cost(float(params["n"]), {"dram": moved}, 2.0 * params["n"] * element, dtype=params["dtype"])


@implementation("scaled_copy", "exact", baseline=True)
def exact(inputs: dict, params: dict) -> torch.Tensor:
    return inputs["x"] * 2


@implementation("scaled_copy", "raises")
def raises(inputs: dict, params: dict) -> torch.Tensor:
    raise RuntimeError("deliberate failure inside the implementation")


@implementation("scaled_copy", "sleeps")
def sleeps(inputs: dict, params: dict) -> torch.Tensor:
    time.sleep(3600)
    return inputs["x"] * 2


@implementation("scaled_copy", "wrong")
def wrong(inputs: dict, params: dict) -> torch.Tensor:
    return inputs["x"] * 2.02


@implementation("scaled_copy", "allocates")
def allocates(inputs: dict, params: dict) -> torch.Tensor:
    """Touches ALLOCATE_BYTES of scratch: the measured overhead must see it."""
    scratch = torch.ones(ALLOCATE_BYTES // 4, dtype=torch.float32)
    return inputs["x"] * 2 + (scratch[0] - 1)


@implementation("scaled_copy", "memory_error")
def memory_error(inputs: dict, params: dict) -> torch.Tensor:
    raise MemoryError("deliberate: could not allocate")


@implementation("scaled_copy", "killed")
def killed(inputs: dict, params: dict) -> torch.Tensor:
    os.kill(os.getpid(), signal.SIGKILL)
    return inputs["x"]


@implementation("scaled_copy", "overclaimed")
def overclaimed(inputs: dict, params: dict) -> torch.Tensor:
    """Right answer, but its workload cost claims a petabyte moved: the measurement beats the roofline floor."""
    return inputs["x"] * 2


COPIED_ELEMENTS = declare("testing.copied_elements", "elements", "higher", "elements copied", deterministic=True)


@register_workload
class CountedCopy(ScaledCopy):
    """scaled_copy whose answer also carries a count: the path simulators and policies report through."""

    name = "counted_copy"
    params = (*ScaledCopy.params, Param("declared", bool, True, doc="False returns an undeclared metric name"))

    def counters(self, output: torch.Tensor, params: dict) -> dict[str, float]:
        name = COPIED_ELEMENTS.name if params["declared"] else "testing.never_declared"
        return {name: float(output.numel())}


@implementation("counted_copy", "exact", baseline=True)
def counted_exact(inputs: dict, params: dict) -> torch.Tensor:
    return inputs["x"] * 2
