"""Roofline: the fastest a case can run on a device, given its FLOPs and the bytes it moves per tier.

The floor is max(compute time, each tier's transfer time) + launch overhead: compute and every memory
stream are assumed to overlap perfectly, and launches are not hidden. A measured latency above the
floor says how far a kernel is from the hardware; one below it says a figure (or the cost) is wrong.
An implementation made of several kernels in sequence is predicted phase by phase (phased_roofline): the
sum of each kernel's own roofline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from reference_impls.hardware.devices import INTERCONNECT, Device


@dataclass(frozen=True)
class Roofline:
    """The roofline floor of one case and the terms it is made of."""

    latency_s: float  # max(compute_s, max over tiers of memory_s) + launch_s
    compute_s: float
    memory_s: dict[str, float]  # tier -> bytes / bandwidth, fastest tier first
    launch_s: float
    bound: str  # "compute", "memory:<tier>" or "launch": the largest term
    arithmetic_intensity: float  # FLOPs per main-tier byte (inf without main-tier bytes)
    peak_flops: float  # the compute ceiling used
    bandwidth_bytes_per_s: float  # the main tier's bandwidth

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        if math.isinf(self.arithmetic_intensity):
            data["arithmetic_intensity"] = None  # inf is not JSON
        return data


def resolve_bytes(device: Device, bytes_by_tier: dict[str, float]) -> dict[str, float]:
    """Bytes per device tier, fastest first: "dram"/"main" are the main tier; unknown tiers raise ValueError."""
    traffic: dict[str, float] = {}
    for key, nbytes in bytes_by_tier.items():
        name = device.tier(key).name
        value = float(nbytes)
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"bytes for tier {key!r} must be a non-negative number, got {nbytes!r}")
        traffic[name] = traffic.get(name, 0.0) + value
    ordered = {t.name: traffic[t.name] for t in device.tiers if t.name in traffic}
    return ordered | ({INTERCONNECT: traffic[INTERCONNECT]} if INTERCONNECT in traffic else {})


def roofline(device: Device, flops: float, bytes_by_tier: dict[str, float], dtype: str,
             launches: int = 1, special_ops: float = 0.0) -> Roofline:
    """The roofline floor of `flops` in `dtype` plus `bytes_by_tier` of traffic, over `launches` launches.

    `special_ops` (exp and other transcendental evaluations) run on the special-function units at the
    device's `special_ops_per_s` (an extras figure) and are added to the compute time, not overlapped with
    it — softmax's exp between two matmuls, as FlashAttention-2 schedules it. Devices without the figure
    ignore the term.
    """
    if not flops >= 0 or not launches >= 0:
        raise ValueError(f"flops and launches must be non-negative, got {flops!r} and {launches!r}")
    peak = device.peak(dtype).value
    traffic = resolve_bytes(device, bytes_by_tier)
    memory_s = {name: nbytes / device.tier(name).bandwidth_bytes_per_s.value for name, nbytes in traffic.items()}
    special = device.extras.get("special_ops_per_s")
    compute_s = flops / peak + (special_ops / special.value if special and special_ops > 0 else 0.0)
    launch_s = launches * device.launch_overhead_s.value
    terms = [("compute", compute_s), *((f"memory:{name}", s) for name, s in memory_s.items()), ("launch", launch_s)]
    bound = max(terms, key=lambda term: term[1])[0]  # a tie goes to the term listed first
    main_bytes = traffic.get(device.main_tier, 0.0)
    return Roofline(latency_s=max([compute_s, *memory_s.values()]) + launch_s,
                    compute_s=compute_s, memory_s=memory_s, launch_s=launch_s, bound=bound,
                    arithmetic_intensity=flops / main_bytes if main_bytes > 0 else math.inf,
                    peak_flops=peak, bandwidth_bytes_per_s=device.tier(device.main_tier).bandwidth_bytes_per_s.value)


def ridge_point(device: Device, dtype: str) -> float:
    """FLOPs per main-tier byte at which compute time equals main-memory time."""
    return device.peak(dtype).value / device.tier(device.main_tier).bandwidth_bytes_per_s.value


def attainable_flops(device: Device, dtype: str, intensity: float) -> float:
    """The roofline itself: min(peak, intensity x main-tier bandwidth), for drawing charts."""
    if not intensity >= 0:
        raise ValueError(f"arithmetic intensity must be non-negative, got {intensity!r}")
    bandwidth = device.tier(device.main_tier).bandwidth_bytes_per_s.value
    return min(device.peak(dtype).value, intensity * bandwidth)


def phased_roofline(device: Device, phases: list[dict]) -> Roofline:
    """Kernels that run one after another: each phase's roofline time, summed (nothing overlaps across them).

    `phases` are dicts with flops, bytes (main memory), dtype and optionally launches and special_ops. The
    bound named is the term that contributes the most time over all phases; the compute and memory fields
    are the sums of each phase's own terms.
    """
    if not phases:
        raise ValueError("phased_roofline needs at least one phase")
    parts = [roofline(device, p["flops"], {device.main_tier: p["bytes"]}, p["dtype"], p.get("launches", 1),
                      p.get("special_ops", 0.0)) for p in phases]
    time_by_bound: dict[str, float] = {}
    for part in parts:
        time_by_bound[part.bound] = time_by_bound.get(part.bound, 0.0) + part.latency_s
    flops, main_bytes = sum(p["flops"] for p in phases), sum(p["bytes"] for p in phases)
    memory_s = {device.main_tier: sum(part.memory_s.get(device.main_tier, 0.0) for part in parts)}
    return Roofline(latency_s=sum(part.latency_s for part in parts), compute_s=sum(p.compute_s for p in parts),
                    memory_s=memory_s, launch_s=sum(p.launch_s for p in parts),
                    bound=max(time_by_bound, key=time_by_bound.__getitem__),
                    arithmetic_intensity=flops / main_bytes if main_bytes > 0 else math.inf,
                    peak_flops=parts[0].peak_flops, bandwidth_bytes_per_s=parts[0].bandwidth_bytes_per_s)
