"""KV-cache allocation: how much serving memory holds tokens, under four allocators (PagedAttention P091, vAttention
P026).

A discrete-event simulation of continuous batching over a seeded request trace (reference_impls.kernels:
request_traces, kv_allocator, kv_simulator). The answer is the simulator's tally, not a time: waste (internal
fragmentation and reserved-but-unused, time-averaged as % of allocated KV bytes and at peak as % of the KV
memory), the most requests running at once, allocation operations, preemptions and completions, all reported
as counted metrics. `check` compares the tally field by field with an independent recount (kv_recount) that
derives every byte from closed forms instead of the allocators' free lists and books.

For "how many Llama-3.1-8B requests fit on an 80 GB device", see kv_simulator.max_concurrency.
"""

from __future__ import annotations

import dataclasses
from functools import cache

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.kernels.kv_allocator import KVMemory
from reference_impls.kernels.kv_recount import recount
from reference_impls.kernels.kv_simulator import AllocationTally, SimulationSpec, simulate
from reference_impls.kernels.request_traces import LENGTH_MODELS, RequestTrace, SharedPrefix, synthetic_trace

GIB = 1 << 30
SYSTEM_PROMPTS = 4  # distinct shared system prompts in a trace
OPS_PER_REQUEST_STEP = 10  # Python-level integer updates per running request per step (the simulator's own work)

_PCT = "% of allocated KV bytes, time-averaged over busy steps"
_PEAK = "% of KV memory, at the worst step"
METRICS = {
    "kv_alloc.waste_pct": declare("kv_alloc.waste_pct", "%", "lower", f"KV waste ({_PCT})", True),
    "kv_alloc.internal_frag_pct": declare("kv_alloc.internal_frag_pct", "%", "lower",
                                          f"internal fragmentation ({_PCT})", True),
    "kv_alloc.reserved_unused_pct": declare("kv_alloc.reserved_unused_pct", "%", "lower",
                                            f"reserved but unused ({_PCT})", True),
    "kv_alloc.waste_peak_pct": declare("kv_alloc.waste_peak_pct", "%", "lower", f"peak KV waste ({_PEAK})", True),
    "kv_alloc.internal_frag_peak_pct": declare("kv_alloc.internal_frag_peak_pct", "%", "lower",
                                               f"peak internal fragmentation ({_PEAK})", True),
    "kv_alloc.reserved_unused_peak_pct": declare("kv_alloc.reserved_unused_peak_pct", "%", "lower",
                                                 f"peak reserved but unused ({_PEAK})", True),
    "kv_alloc.max_concurrent": declare("kv_alloc.max_concurrent", "requests", "higher",
                                       "most requests running at once", True),
    "kv_alloc.mean_concurrent": declare("kv_alloc.mean_concurrent", "requests", "higher",
                                        "mean requests running per busy step", True),
    "kv_alloc.alloc_ops": declare("kv_alloc.alloc_ops", "ops", "lower", "allocation operations", True),
    "kv_alloc.preemptions": declare("kv_alloc.preemptions", "requests", "lower", "preemptions (recompute)", True),
    "kv_alloc.completed": declare("kv_alloc.completed", "requests", "higher", "requests completed", True),
    "kv_alloc.steps": declare("kv_alloc.steps", "steps", "lower", "busy decode steps to finish the trace", True),
}


def spec_from(params: dict) -> SimulationSpec:
    memory = KVMemory(int(params["memory_gib"] * GIB), params["bytes_per_token"], params["max_seq_len"])
    return SimulationSpec(memory, params["block_size"], params["page_kib"] * 1024, params["kv_buffers"])


def trace_from(params: dict, seed: int) -> RequestTrace:
    prefix = SharedPrefix(params["shared_prefix"], SYSTEM_PROMPTS, params["prefix_tokens"])
    return synthetic_trace(params["requests"], seed, params["trace"], params["rate"], params["max_seq_len"], prefix)


class Recounts:
    """The reference: one independent recount per allocator, computed when `check` first asks for it."""

    def __init__(self, trace: RequestTrace, spec: SimulationSpec) -> None:
        self._get = cache(lambda allocator: recount(trace, allocator, spec))

    def __getitem__(self, allocator: str) -> AllocationTally:
        return self._get(allocator)


@register_workload
class KVAllocation(Workload):
    name = "kv_allocation"
    family = "long_context"
    description = ("KV-cache allocators under continuous batching of a synthetic request trace: static max-length "
                   "reservation, paged blocks (with and without shared-prefix copy-on-write), vAttention-style "
                   "virtual memory with physical pages. Counted: waste %, peak concurrency, allocation ops.")
    sweep_param = "block_size"
    primary_metric = "kv_alloc.waste_pct"
    params = (
        Param("trace", str, "sharegpt", choices=tuple(LENGTH_MODELS), doc="length model (request_traces)"),
        Param("requests", int, 200, minimum=1),
        Param("rate", float, 1.0, minimum=1e-6, doc="arrivals per decode step (Poisson)"),
        Param("shared_prefix", float, 0.25, minimum=0.0, doc="fraction of requests with a shared system prompt"),
        Param("prefix_tokens", int, 256, minimum=1, doc="tokens of each shared system prompt"),
        Param("memory_gib", float, 2.0, minimum=1e-6, doc="KV memory (after weights)"),
        Param("bytes_per_token", int, 131072, minimum=1, doc="KV bytes per token (Llama-3.1-8B bf16: 131072)"),
        Param("kv_buffers", int, 64, minimum=1, doc="separately mapped KV tensors (2 x layers)"),
        Param("max_seq_len", int, 2048, minimum=2, doc="longest request; the static reservation"),
        Param("block_size", int, 16, choices=(8, 16, 32, 64, 128, 256), doc="paged: tokens per block"),
        Param("page_kib", int, 64, choices=(64, 128, 256, 2048), doc="virtual: physical page size"),
    )
    contract_params = {"requests": 40, "memory_gib": 0.5, "rate": 2.0}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        """The trace, plus its length tensors listed flat (arrival > 0, lengths >= 1) for generic tooling."""
        trace = trace_from(params, seed)
        return {"trace": trace, "arrival": trace.arrival, "prompt_tokens": trace.prompt_tokens,
                "output_tokens": trace.output_tokens}

    def reference(self, inputs: dict, params: dict) -> Recounts:
        return Recounts(inputs["trace"], spec_from(params))

    def cost(self, params: dict, impl: str) -> Cost:
        """The simulator's own work, not the served model's: ~OPS_PER_REQUEST_STEP integer updates per running
        request per step (expected output tokens x requests), and the trace read once. Only the tally is the
        answer here; the time is the cost of asking."""
        model = LENGTH_MODELS[params["trace"]]
        request_steps = params["requests"] * model.output_mean
        return Cost(flops=OPS_PER_REQUEST_STEP * request_steps, bytes={"dram": 4.0 * 8 * params["requests"]},
                    dtype="int64", hardware_bound=False)

    def check(self, output: AllocationTally, reference: Recounts, baseline_error: float | None) -> Check:
        """Exact: every field of the tally equals the independent recount's (error = fields that differ)."""
        expected = reference[output.allocator]
        wrong = [f.name for f in dataclasses.fields(output) if getattr(output, f.name) != getattr(expected, f.name)]
        return Check(not wrong, float(len(wrong)), 0.0, "every counted field equals the independent recount")

    def quality(self, output: AllocationTally, reference: Recounts) -> dict[str, float]:
        return {}

    def counters(self, output: AllocationTally, params: dict) -> dict[str, float]:
        t = output
        return {"kv_alloc.waste_pct": t.waste_pct, "kv_alloc.internal_frag_pct": t.internal_pct,
                "kv_alloc.reserved_unused_pct": t.reserved_pct,
                "kv_alloc.waste_peak_pct": t.peak_pct_of_memory(t.peak_waste_bytes),
                "kv_alloc.internal_frag_peak_pct": t.peak_pct_of_memory(t.peak_internal_bytes),
                "kv_alloc.reserved_unused_peak_pct": t.peak_pct_of_memory(t.peak_reserved_bytes),
                "kv_alloc.max_concurrent": float(t.max_concurrent), "kv_alloc.mean_concurrent": t.mean_concurrent,
                "kv_alloc.alloc_ops": float(t.alloc_ops),
                "kv_alloc.preemptions": float(t.preemptions), "kv_alloc.completed": float(t.completed),
                "kv_alloc.steps": float(t.steps)}

    def wrong_answers(self, output: AllocationTally) -> list[AllocationTally]:
        bump = output.memory_bytes // max(1, output.steps)  # a visible slice of memory, never zero
        return [dataclasses.replace(output, alloc_ops=output.alloc_ops + 1),
                dataclasses.replace(output, internal_byte_steps=output.internal_byte_steps + max(1, bump)),
                dataclasses.replace(output, completed=output.completed - 1),
                dataclasses.replace(output, max_concurrent=output.max_concurrent + 1)]

    def input_bytes(self, inputs: dict) -> int:
        return super().input_bytes({k: v for k, v in inputs.items() if k != "trace"})


def _simulate(allocator: str, inputs: dict, params: dict) -> AllocationTally:
    return simulate(inputs["trace"], allocator, spec_from(params))


@implementation("kv_allocation", "static", devices=("cpu",), baseline=True)
def static(inputs: dict, params: dict) -> AllocationTally:
    """max_seq_len reserved per request at admission (pre-vLLM serving systems)."""
    return _simulate("static", inputs, params)


@implementation("kv_allocation", "paged", devices=("cpu",))
def paged(inputs: dict, params: dict) -> AllocationTally:
    """PagedAttention: blocks of block_size tokens allocated as the last one fills."""
    return _simulate("paged", inputs, params)


@implementation("kv_allocation", "paged_shared", devices=("cpu",))
def paged_shared(inputs: dict, params: dict) -> AllocationTally:
    """Paged, with shared system-prompt blocks stored once (reference counted, copy-on-write)."""
    return _simulate("paged_shared", inputs, params)


@implementation("kv_allocation", "virtual", devices=("cpu",))
def virtual(inputs: dict, params: dict) -> AllocationTally:
    """vAttention: virtually contiguous reservation, physical pages of page_kib mapped per KV buffer on demand."""
    return _simulate("virtual", inputs, params)
