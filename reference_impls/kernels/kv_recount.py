"""An independent recount of the KV simulation: the exact answer the allocators' books are checked against.

WHY: the allocators in kv_allocator keep incremental books (free lists, block tables, reference counts, running
byte totals); a leak or a wrong count there would silently skew every waste figure. This module replays the same
schedule (kv_simulator's docstring) without any of that machinery: how much memory a request holds is a closed
form of its current length (one max-length slot; ceil(L / block) blocks; ceil(L / tokens_per_page) pages in
every buffer), and every admission or growth decision re-adds the whole pool from scratch. It is slow on purpose
(a full recount per decision that crosses a unit boundary) and meant for small traces.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .kv_allocator import ALLOCATORS
from .kv_simulator import AllocationTally, SimulationSpec
from .request_traces import RequestTrace


@dataclass(frozen=True)
class _Units:
    """One allocator as arithmetic: unit size, pool size, and units a request of L tokens holds."""

    name: str
    unit_bytes: int
    unit_tokens: int  # tokens per unit (static: the whole reservation)
    ops_per_unit: int
    total_units: int
    shares_prefix: bool

    def private_units(self, tokens: int, shared: int) -> int:
        if self.name == "static":
            return 1
        return -(-(tokens - shared) // self.unit_tokens)

    def shared_tokens(self, prefix: int, group: int) -> int:
        """Tokens of the request held in its group's shared units (full blocks of the prefix only)."""
        return (prefix // self.unit_tokens) * self.unit_tokens if self.shares_prefix and group >= 0 else 0


def _units(name: str, spec: SimulationSpec) -> _Units:
    m = spec.memory
    if name == "static":
        size = m.max_seq_len * m.bytes_per_token
        return _Units(name, size, m.max_seq_len, 1, m.memory_bytes // size, False)
    if name in ("paged", "paged_shared"):
        size = spec.block_size * m.bytes_per_token
        return _Units(name, size, spec.block_size, 1, m.memory_bytes // size, name == "paged_shared")
    if name == "virtual":
        size = spec.page_bytes * spec.kv_buffers
        tokens = spec.page_bytes // (m.bytes_per_token // spec.kv_buffers)
        return _Units(name, size, tokens, spec.kv_buffers, m.memory_bytes // size, False)
    raise ValueError(f"unknown allocator {name!r}; known: {', '.join(ALLOCATORS)}")


class _Pool:
    """Running requests and their lengths; every total is recomputed from them when asked."""

    def __init__(self, units: _Units, trace: RequestTrace) -> None:
        self.u = units
        self.group = trace.prefix_group.tolist()
        self.shared_of = [units.shared_tokens(trace.shared_tokens(r), self.group[r]) for r in range(len(trace))]
        self.length: dict[int, int] = {}  # running request -> tokens, in admission order
        self.ops = 0

    def shared(self, rid: int) -> int:
        return self.shared_of[rid]

    def group_units(self, requests: list[int]) -> int:
        live = {self.group[r]: self.shared(r) for r in requests if self.shared(r)}
        return sum(tokens // self.u.unit_tokens for tokens in live.values())

    def units_in_use(self, lengths: dict[int, int]) -> int:
        private = sum(self.u.private_units(tokens, self.shared(r)) for r, tokens in lengths.items())
        return private + self.group_units(list(lengths))

    def try_set(self, rid: int, tokens: int) -> bool:
        """Give `rid` room for `tokens` tokens if the pool, recounted with the change, still fits."""
        if rid in self.length and self.u.private_units(tokens, self.shared(rid)) == \
                self.u.private_units(self.length[rid], self.shared(rid)):
            self.length[rid] = tokens  # same units as before: nothing to allocate, nothing to recount
            return True
        trial = {**self.length, rid: tokens}
        before, after = self.units_in_use(self.length), self.units_in_use(trial)
        if after > self.u.total_units:
            return False
        self.ops += (after - before) * self.u.ops_per_unit
        self.length[rid] = tokens
        return True

    def allocated_bytes(self) -> int:
        return self.units_in_use(self.length) * self.u.unit_bytes

    def capacity(self, rid: int) -> int:
        shared = self.shared(rid)
        return self.u.private_units(self.length[rid], shared) * self.u.unit_tokens + shared


def recount(trace: RequestTrace, allocator: str, spec: SimulationSpec) -> AllocationTally:
    """The tally kv_simulator.simulate must produce, recounted from closed forms."""
    u = _units(allocator, spec)
    pool = _Pool(u, trace)
    total_tokens, prompt = trace.total_tokens.tolist(), trace.prompt_tokens.tolist()
    for rid, tokens in enumerate(total_tokens):
        reservation_ok = tokens <= spec.memory.max_seq_len if allocator in ("static", "virtual") else True
        if not reservation_ok or pool.units_in_use({rid: tokens}) > u.total_units:
            raise ValueError(f"request {rid} ({tokens} tokens) cannot fit in the KV memory even alone under "
                             f"allocator {allocator!r}")
    bpt = spec.memory.bytes_per_token
    steps_of = [int(-(-a // 1)) or 1 for a in trace.arrival.tolist()]
    generated = [0] * len(trace)
    queue: deque[int] = deque()
    sums = dict.fromkeys(("steps", "request_steps", "completed", "preemptions", "max_concurrent",
                          "allocated_byte_steps", "used_byte_steps", "reserved_byte_steps", "internal_byte_steps",
                          "peak_allocated_bytes", "peak_reserved_bytes", "peak_internal_bytes", "peak_waste_bytes"), 0)
    t, arrived = 0, 0
    while sums["completed"] < len(trace):
        t = t + 1 if (pool.length or queue) else max(t + 1, steps_of[arrived])
        while arrived < len(trace) and steps_of[arrived] <= t:
            queue.append(arrived)
            arrived += 1
        for rid in list(pool.length):  # oldest admission first
            if rid not in pool.length:
                continue
            while not pool.try_set(rid, pool.length[rid] + 1):
                victim = list(pool.length)[-1]
                del pool.length[victim]
                queue.appendleft(victim)
                sums["preemptions"] += 1
                if victim == rid:
                    break
            if rid in pool.length:
                generated[rid] += 1
                if pool.length[rid] == total_tokens[rid]:
                    del pool.length[rid]
                    sums["completed"] += 1
        while queue and pool.try_set(queue[0], prompt[queue[0]] + generated[queue[0]]):
            queue.popleft()
        if pool.length:
            _tally_step(sums, pool, total_tokens, bpt)
    return AllocationTally(allocator, spec.memory.memory_bytes, alloc_ops=pool.ops, **sums)


def _tally_step(sums: dict[str, int], pool: _Pool, total_tokens: list[int], bpt: int) -> None:
    """Per request: used L, reserved min(C, F) - L; shared prefix tokens counted once per live group."""
    requests = list(pool.length)
    duplicates = sum(pool.shared(r) for r in requests) - pool.group_units(requests) * pool.u.unit_tokens
    used = (sum(pool.length.values()) - duplicates) * bpt
    reserved = sum(min(pool.capacity(r), total_tokens[r]) - pool.length[r] for r in requests) * bpt
    allocated = pool.allocated_bytes()
    internal = allocated - used - reserved
    sums["steps"] += 1
    sums["request_steps"] += len(requests)
    for key, value in (("allocated_byte_steps", allocated), ("used_byte_steps", used),
                       ("reserved_byte_steps", reserved), ("internal_byte_steps", internal)):
        sums[key] += value
    for key, value in (("peak_allocated_bytes", allocated), ("peak_reserved_bytes", reserved),
                       ("peak_internal_bytes", internal), ("peak_waste_bytes", reserved + internal),
                       ("max_concurrent", len(requests))):
        sums[key] = max(sums[key], value)
