"""What to run (Case), what it costs on paper (Cost) and what happened (Record): the types that flow everywhere."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped", "timeout", "oom")


@dataclass(frozen=True)
class Param:
    """One typed workload parameter: its default and what values are allowed."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    choices: tuple | None = None
    minimum: float | None = None
    doc: str = ""

    def allowed(self) -> str:
        if self.choices is not None:
            return ", ".join(repr(c) for c in self.choices)
        bound = f" >= {self.minimum}" if self.minimum is not None else ""
        return f"any {self.kind.__name__}{bound}"

    def validate(self, value: Any) -> Any:
        """Return the value in this param's type, or raise ValueError saying what is allowed."""
        ok_type = isinstance(value, self.kind) and not (self.kind is not bool and isinstance(value, bool))
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok_type = float(value), True
        if not ok_type:
            raise ValueError(f"expected {self.kind.__name__}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not allowed; allowed: {self.allowed()}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{value!r} is below the minimum {self.minimum}")
        return value


@dataclass(frozen=True)
class Phase:
    """One kernel, or a run of like kernels, of a multi-kernel implementation.

    Kernels run one after another, so such an implementation takes the *sum* of each phase's own roofline
    time, not one roofline over its totals: an fp32 matmul (compute-bound) followed by a softmax
    (memory-bound) overlaps nothing. `bytes` is main-memory traffic; `dtype` the dtype whose peak applies.
    """

    name: str
    flops: float
    bytes: float
    dtype: str
    launches: int = 1
    special_ops: float = 0.0

    def __post_init__(self) -> None:
        if not (self.flops >= 0 and self.bytes >= 0 and self.launches >= 0 and self.special_ops >= 0):
            raise ValueError(f"phase cost must be non-negative: {self}")


@dataclass(frozen=True)
class Cost:
    """Analytic cost of one call.

    `bytes` is the minimum traffic per memory level (each input read once, each output written once): with
    `flops` it gives the roofline floor no implementation can beat. `traffic_bytes` is what this
    implementation is expected to move (materialized intermediates included), used for the prediction;
    None means the minimum. `executed_flops` likewise is what the implementation computes (a causal kernel
    that does not skip masked blocks computes all of them); None means `flops`. Level "dram" means the
    device's main memory (HBM on a GPU).
    """

    flops: float
    bytes: dict[str, float]
    footprint_bytes: float | None = None
    dtype: str = "float32"  # the dtype whose peak FLOP/s applies
    traffic_bytes: dict[str, float] | None = None
    launches: int = 1  # kernel launches or framework calls per call: each pays the launch overhead
    executed_flops: float | None = None
    special_ops: float = 0.0  # exp and other transcendental evaluations, which run on slower units than FMAs
    phases: tuple[Phase, ...] = ()  # when given, the prediction sums per-phase rooflines (see Phase)
    hardware_bound: bool = True  # False: the time is interpreter work (a simulator), which no roofline predicts

    @classmethod
    def from_phases(cls, flops: float, bytes: dict[str, float], footprint_bytes: float | None, dtype: str,
                    phases: tuple[Phase, ...]) -> Cost:
        """A cost whose expected traffic, launches, executed FLOPs and special ops are its phases' totals."""
        return cls(flops, bytes, footprint_bytes, dtype, traffic_bytes={"dram": sum(p.bytes for p in phases)},
                   launches=sum(p.launches for p in phases), executed_flops=sum(p.flops for p in phases),
                   special_ops=sum(p.special_ops for p in phases), phases=tuple(phases))

    def __post_init__(self) -> None:
        traffic = (self.traffic_bytes or {}).values()
        if not (self.flops >= 0 and all(b >= 0 for b in [*self.bytes.values(), *traffic]) and self.launches >= 0):
            raise ValueError(f"cost must be non-negative: {self}")

    @property
    def total_bytes(self) -> float:
        return float(sum(self.bytes.values()))

    @property
    def expected_traffic(self) -> dict[str, float]:
        return dict(self.traffic_bytes) if self.traffic_bytes is not None else dict(self.bytes)

    def to_json(self) -> dict:
        return {"flops": self.flops, "bytes": dict(self.bytes), "footprint_bytes": self.footprint_bytes,
                "dtype": self.dtype, "traffic_bytes": self.expected_traffic, "launches": self.launches,
                "executed_flops": self.expected_flops, "special_ops": self.special_ops,
                **({"phases": [asdict(p) for p in self.phases]} if self.phases else {}),
                **({} if self.hardware_bound else {"hardware_bound": False})}

    @property
    def expected_flops(self) -> float:
        return self.executed_flops if self.executed_flops is not None else self.flops


@dataclass(frozen=True)
class Case:
    """workload × implementation × params × device (+ seed). Frozen, hashable, JSON-able."""

    family: str
    workload: str
    impl: str
    params: tuple[tuple[str, Any], ...]  # in the workload's declared order
    device: str
    seed: int = 0

    @property
    def id(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.family}/{self.workload}/{self.impl}[{inner}]@{self.device}"

    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def to_json(self) -> dict:
        return {"family": self.family, "workload": self.workload, "impl": self.impl,
                "params": self.param_dict(), "device": self.device, "seed": self.seed}

    @classmethod
    def from_json(cls, data: dict) -> Case:
        return cls(data["family"], data["workload"], data["impl"], tuple(data["params"].items()),
                   data["device"], int(data.get("seed", 0)))


def metric(value: float, unit: str, source: str, **detail: Any) -> dict:
    """A measured number with its unit and provenance; NaN or inf is a bug, not a measurement."""
    if value is None or not math.isfinite(value):
        raise ValueError(f"metric from {source} is not a finite number: {value!r}")
    return {"value": float(value), "unit": unit, "source": source, **detail}


@dataclass
class Record:
    """One finished case: one JSON line in records.jsonl."""

    run: str
    case: str
    family: str
    workload: str
    impl: str
    params: dict
    device: str
    seed: int
    status: str
    error: str | None = None
    metrics: dict[str, dict] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)  # metric -> why it is absent
    model: dict = field(default_factory=dict)
    validity: dict = field(default_factory=lambda: {"ok": True, "reasons": []})
    workload_version: str = ""
    device_state: dict = field(default_factory=dict)
    started_at: str = ""
    wall_s: float = 0.0
    ranks: list[dict] = field(default_factory=list)  # a multi-rank case: one summary per rank (else empty)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def for_case(cls, run: str, case: Case, status: str, **fields: Any) -> Record:
        return cls(run=run, case=case.id, family=case.family, workload=case.workload, impl=case.impl,
                   params=case.param_dict(), device=case.device, seed=case.seed, status=status, **fields)


def one_line(text: str, limit: int = 300) -> str:
    """Errors are stored as one line a human can read in a table."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
