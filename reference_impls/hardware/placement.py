"""Multi-tier placement: which bytes live in which tier, and the step time that placement implies.

Models what runtimes do when a model outgrows the fast memory: weights and KV cache fill the fastest
tier with room, straddle into the next, and whatever fits nowhere is spilled. Each decode step then
streams every placed byte `reads_per_step` times; tiers stream in parallel, so the slowest tier's
stream sets the step time (e.g. a 70B model on SN40L: SRAM, HBM, then DDR).

Greedy fastest-first is what a simple runtime does, not the optimum: when streams overlap, moving some
bytes from a saturated fast tier to an idle slower one can shorten the step. The model does not try.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reference_impls.hardware.devices import Device

# Flash is read-only at run time (erase-before-write, limited endurance): only read-only items go there.
# SSDs are written through a filesystem and can hold writable items (e.g. offloaded KV cache).
READ_ONLY_TIERS = ("flash",)


@dataclass(frozen=True)
class Item:
    """Something that must live in memory: weights (read once per decode step), a KV cache, activations."""

    name: str
    bytes: float
    reads_per_step: float = 1.0  # how many times a step streams all of it
    writable: bool = False  # written during the run (KV cache, activations): never placed in flash

    def __post_init__(self) -> None:
        if not self.bytes >= 0 or not self.reads_per_step >= 0:
            raise ValueError(f"item {self.name!r}: bytes and reads_per_step must be non-negative")


@dataclass(frozen=True)
class Placement:
    """Where each item's bytes went, what did not fit, and the step time of streaming them."""

    tiers: dict[str, list[tuple[str, float]]]  # tier -> [(item name, bytes placed there)], fastest first
    spilled_bytes: float  # bytes that fit in no tier
    fits: bool
    step_time_s: float  # max over tiers of placed bytes x reads_per_step / bandwidth; spilled bytes not counted
    bound_tier: str  # the tier that sets step_time_s ("none" when nothing is read)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _hotness(indexed: tuple[int, Item]) -> tuple[float, float, int]:
    """Hottest first: most bytes streamed per byte stored (= reads_per_step), then smaller items, then order."""
    index, item = indexed
    return (-item.reads_per_step, item.bytes, index)


def place(device: Device, items: list[Item], usable_fraction: float = 0.9) -> Placement:
    """Greedy placement of `items` on `device`'s tiers, each usable up to capacity x usable_fraction.

    Items go hottest first into the fastest tier with room, split across tiers when they straddle.
    When `fits` is False, step_time_s is a lower bound: the spilled bytes have no tier to stream from.
    """
    if not 0 < usable_fraction <= 1:
        raise ValueError(f"usable_fraction must be in (0, 1], got {usable_fraction!r}")
    free = {t.name: t.capacity_bytes.value * usable_fraction for t in device.tiers}
    placed: dict[str, list[tuple[str, float]]] = {t.name: [] for t in device.tiers}
    streamed = dict.fromkeys(free, 0.0)  # bytes read from each tier per step
    spilled = 0.0
    for _, item in sorted(enumerate(items), key=_hotness):
        remaining = item.bytes
        for tier in device.tiers:
            if remaining <= 0:
                break
            if item.writable and tier.name in READ_ONLY_TIERS:
                continue
            take = min(remaining, free[tier.name])
            if take > 0:
                placed[tier.name].append((item.name, take))
                free[tier.name] -= take
                streamed[tier.name] += take * item.reads_per_step
                remaining -= take
        spilled += remaining
    times = {t.name: streamed[t.name] / t.bandwidth_bytes_per_s.value for t in device.tiers}
    bound = max(times, key=times.__getitem__)
    return Placement(tiers=placed, spilled_bytes=spilled, fits=spilled == 0, step_time_s=times[bound],
                     bound_tier=bound if times[bound] > 0 else "none")
