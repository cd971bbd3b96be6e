"""Every metric declared once, with its unit and direction; reports and the gate read them from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    direction: str  # "lower" or "higher" is better
    label: str
    deterministic: bool = False  # bytes, FLOPs, recall on seeded data: compare exactly, not statistically

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"metric {self.name}: direction must be 'lower' or 'higher', got {self.direction!r}")


_METRICS: dict[str, MetricSpec] = {}


def declare(name: str, unit: str, direction: str, label: str, deterministic: bool = False) -> MetricSpec:
    """Declare a metric; declaring the same name twice with a different meaning is a bug."""
    spec = MetricSpec(name, unit, direction, label, deterministic)
    known = _METRICS.get(name)
    if known is not None and known != spec:
        raise ValueError(f"metric {name!r} already declared as {known}, now as {spec}")
    _METRICS[name] = spec
    return spec


def get(name: str) -> MetricSpec:
    if name not in _METRICS:
        raise KeyError(f"undeclared metric {name!r}; declared: {', '.join(sorted(_METRICS))}")
    return _METRICS[name]


def all_specs() -> dict[str, dict]:
    """Plain dicts for the report, which imports nothing from the harness."""
    return {name: asdict(spec) for name, spec in sorted(_METRICS.items())}


LATENCY = declare("latency_s", "s", "lower", "median latency")
PEAK_MEMORY = declare("peak_memory_bytes", "B", "lower", "peak memory")
PEAK_MEMORY_OVERHEAD = declare("peak_memory_overhead_bytes", "B", "lower", "peak memory over inputs")
ENERGY = declare("energy_j", "J", "lower", "energy per call")
REL_L2_ERROR = declare("quality.rel_l2_error", "1", "lower", "relative L2 error vs float64")
