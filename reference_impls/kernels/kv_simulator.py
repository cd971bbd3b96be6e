"""Discrete-event simulation of continuous batching over a request trace, under one KV allocator.

The schedule (shared with the independent recount in kv_recount, which must agree with it exactly):
  * time advances in decode steps t = 1, 2, ...; a request arriving at time a joins the FCFS queue at step
    ceil(a);
  * each step, every running request, oldest admission first, generates one token and its KV grows by one;
    when the allocator cannot grow it, the most recently admitted running request is preempted (its memory
    freed, it returns to the front of the queue and will recompute its KV: prompt plus tokens generated so
    far), repeated until the growth fits or the growing request itself was preempted;
  * a request whose KV reaches prompt + output tokens completes and frees its memory;
  * then the queue head is admitted (prefill: its prompt, plus generated tokens after a preemption) while the
    allocator can hold it; FCFS, no skipping;
  * then the step is tallied. Steps with nothing running are skipped (they hold no memory).

Per step, with L a request's current tokens, F its final length (prompt + output) and C the tokens its
allocation holds: used = L (shared prefix tokens once), reserved-but-unused = min(C, F) - L (slots the request
will fill later), internal fragmentation = allocated - used - reserved (slots it will never fill: beyond F in
its last block or page, or its max-length reservation, plus page-rounding bytes). This follows the waste
categories of the vLLM paper (Kwon et al. 2023, Fig. 2); external fragmentation does not arise here (every
allocator hands out equal-size units).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .kv_allocator import ALLOCATORS, KVMemory, make_allocator
from .request_traces import RequestTrace


@dataclass(frozen=True)
class SimulationSpec:
    """The KV pool and each allocator's granularity."""

    memory: KVMemory
    block_size: int = 16  # tokens per block (paged)
    page_bytes: int = 64 * 1024  # physical page (virtual): vAttention uses 64 KiB to 2 MiB
    kv_buffers: int = 64  # separately mapped KV tensors: K and V per layer (Llama-3.1-8B: 2 x 32)


@dataclass(frozen=True)
class AllocationTally:
    """What one simulation counted: exact integers, compared field by field against the recount."""

    allocator: str
    memory_bytes: int
    steps: int = 0  # busy decode steps
    request_steps: int = 0  # sum over steps of running requests (mean batch = request_steps / steps)
    completed: int = 0
    preemptions: int = 0
    alloc_ops: int = 0
    max_concurrent: int = 0
    allocated_byte_steps: int = 0  # sums over steps of bytes held ...
    used_byte_steps: int = 0  # ... holding tokens
    reserved_byte_steps: int = 0  # ... reserved for tokens still to come
    internal_byte_steps: int = 0  # ... that will never hold a token
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    peak_internal_bytes: int = 0
    peak_waste_bytes: int = 0

    def _pct(self, part: int) -> float:
        return 100.0 * part / self.allocated_byte_steps if self.allocated_byte_steps else 0.0

    @property
    def internal_pct(self) -> float:
        """Time-averaged internal fragmentation, % of allocated KV bytes."""
        return self._pct(self.internal_byte_steps)

    @property
    def reserved_pct(self) -> float:
        return self._pct(self.reserved_byte_steps)

    @property
    def waste_pct(self) -> float:
        return self._pct(self.internal_byte_steps + self.reserved_byte_steps)

    @property
    def mean_concurrent(self) -> float:
        return self.request_steps / self.steps if self.steps else 0.0

    def peak_pct_of_memory(self, peak_bytes: int) -> float:
        return 100.0 * peak_bytes / self.memory_bytes


@dataclass
class _Books:
    """Running sums for AllocationTally."""

    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("allocated_byte_steps", "used_byte_steps", "reserved_byte_steps", "internal_byte_steps", "steps",
         "request_steps",
         "peak_allocated_bytes", "peak_reserved_bytes", "peak_internal_bytes", "peak_waste_bytes",
         "max_concurrent"), 0))

    def add_step(self, allocated: int, used: int, reserved: int, running: int) -> None:
        internal = allocated - used - reserved
        s = self.sums
        s["steps"] += 1
        s["request_steps"] += running
        s["allocated_byte_steps"] += allocated
        s["used_byte_steps"] += used
        s["reserved_byte_steps"] += reserved
        s["internal_byte_steps"] += internal
        for key, value in (("peak_allocated_bytes", allocated), ("peak_reserved_bytes", reserved),
                           ("peak_internal_bytes", internal), ("peak_waste_bytes", reserved + internal),
                           ("max_concurrent", running)):
            s[key] = max(s[key], value)


def check_fits(trace: RequestTrace, fits_alone: Callable[[int, int], bool], name: str) -> None:
    """Every request must fit in the empty pool, else the FCFS schedule could never finish it."""
    total = trace.total_tokens.tolist()
    for rid, tokens in enumerate(total):
        if not fits_alone(tokens, trace.shared_tokens(rid)):
            raise ValueError(f"request {rid} ({tokens} tokens) cannot fit in the KV memory even alone under "
                             f"allocator {name!r}: raise memory_bytes or lower max_seq_len")


def simulate(trace: RequestTrace, allocator: str, spec: SimulationSpec) -> AllocationTally:
    """Run the schedule in the module docstring with the named allocator; return its tally."""
    kv = make_allocator(allocator, spec.memory, spec.block_size, spec.page_bytes, spec.kv_buffers)
    check_fits(trace, kv.fits_alone, allocator)
    bpt = spec.memory.bytes_per_token
    arrival_step = [max(1, -int(-a // 1)) for a in trace.arrival.tolist()]  # ceil, at least step 1
    prompt, final = trace.prompt_tokens.tolist(), trace.total_tokens.tolist()
    groups = trace.prefix_group.tolist()
    shared = [trace.shared_tokens(rid) for rid in range(len(trace))]
    length = [0] * len(trace)  # KV tokens held now
    generated = [0] * len(trace)
    queue: deque[int] = deque()
    running: list[int] = []
    books, completed, preemptions, next_arrival, t = _Books(), 0, 0, 0, 0
    while completed < len(trace):
        t = t + 1 if running or queue else max(t + 1, arrival_step[next_arrival])
        while next_arrival < len(trace) and arrival_step[next_arrival] <= t:
            queue.append(next_arrival)
            next_arrival += 1
        kept: list[int] = []  # processed this step and still running, in admission order
        i = 0
        while i < len(running):  # preemption pops from the tail, which is never before i
            rid = running[i]
            i += 1
            grown = kv.grow(rid, length[rid] + 1)
            while not grown:
                victim = running.pop()
                kv.release(victim)
                length[victim] = 0
                queue.appendleft(victim)
                preemptions += 1
                if victim == rid:
                    break
                grown = kv.grow(rid, length[rid] + 1)
            if not grown:
                continue
            length[rid] += 1
            generated[rid] += 1
            if length[rid] == final[rid]:
                kv.release(rid)
                completed += 1
            else:
                kept.append(rid)
        running = kept
        while queue:
            rid = queue[0]
            tokens = prompt[rid] + generated[rid]
            if not kv.admit(rid, tokens, groups[rid], shared[rid]):
                break
            queue.popleft()
            running.append(rid)
            length[rid] = tokens
        if not running:
            if queue:
                raise RuntimeError(f"request {queue[0]} cannot be admitted into an empty pool")  # check_fits missed it
            continue
        used = sum(length[r] for r in running) - kv.duplicate_tokens()
        reserved = sum(min(kv.capacity(r), final[r]) - length[r] for r in running)
        books.add_step(kv.allocated_bytes, used * bpt, reserved * bpt, len(running))
    return AllocationTally(allocator, spec.memory.memory_bytes, completed=completed, preemptions=preemptions,
                           alloc_ops=kv.alloc_ops, **books.sums)


def simulate_all(trace: RequestTrace, spec: SimulationSpec,
                 allocators: tuple[str, ...] = ALLOCATORS) -> dict[str, AllocationTally]:
    return {name: simulate(trace, name, spec) for name in allocators}


@dataclass(frozen=True)
class ServingShape:
    """A model on a device, as the KV pool sees it: what is left after the weights, and its KV shape."""

    device_bytes: int
    weight_bytes: int
    bytes_per_token: int
    kv_buffers: int  # K and V per layer

    @property
    def kv_memory_bytes(self) -> int:
        return self.device_bytes - self.weight_bytes


def llama31_8b_on(device_bytes: int = 80 * 10**9) -> ServingShape:
    """Llama-3.1-8B in bf16 (weights 16.06 GB, KV 131072 B/token over 2 x 32 buffers) on `device_bytes`."""
    from reference_impls.hardware.transformer import Precision, kv_bytes_per_token, load_config, weight_bytes

    config, precision = load_config("llama-3.1-8b"), Precision()
    return ServingShape(device_bytes, int(weight_bytes(config, precision)["total"]),
                        int(kv_bytes_per_token(config, precision)), 2 * config.num_layers)


def max_concurrency(trace: RequestTrace, shape: ServingShape, max_seq_len: int, block_size: int = 16,
                    page_bytes: int = 64 * 1024,
                    allocators: tuple[str, ...] = ALLOCATORS) -> dict[str, int]:
    """Most requests running at once over the trace, per allocator, with the KV pool the weights leave.

    Send the whole trace at once (a high arrival rate) to ask "how many fit", as the vLLM paper's batch-size
    comparison does; with a slow rate the answer is bounded by the load instead.
    """
    if shape.kv_memory_bytes < 1:
        raise ValueError(f"weights ({shape.weight_bytes} B) leave no memory for KV on {shape.device_bytes} B")
    spec = SimulationSpec(KVMemory(shape.kv_memory_bytes, shape.bytes_per_token, max_seq_len), block_size,
                          page_bytes, shape.kv_buffers)
    return {name: simulate(trace, name, spec).max_concurrent for name in allocators}
