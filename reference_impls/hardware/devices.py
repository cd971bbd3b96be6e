"""Device registry as data: every figure a hardware model uses carries its kind and its source.

A prediction is only as good as the numbers under it, so each number says whether it is a datasheet
`spec`, a `measured` value (whose, where) or an `estimate` (how derived). The registry lives in
devices.yaml; `from_calibration` turns a `membench calibrate` profile into measured ceilings.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEVICES_YAML = Path(__file__).with_name("devices.yaml")
KINDS = ("spec", "measured", "estimate")
DEVICE_KINDS = ("gpu", "cpu", "soc", "mcu", "accelerator")
DTYPES = ("float64", "float32", "tf32", "bfloat16", "float16", "fp8", "int8", "int4")
TIER_NAMES = ("sram", "l2", "hbm", "dram", "unified", "ddr", "flash", "ssd")
MAIN_ALIASES = ("dram", "main")  # a workload's Cost says "dram" for "the device's main memory"
INTERCONNECT = "interconnect"  # a Cost's bytes sent to a peer device per call, over one direction of its link
# A dtype the device lists no figure for runs in the format it would be computed in on that device; an
# unknown dtype uses float32. float64 -> float32 overstates devices without FP64 units (the source says so).
FALLBACKS = {"float16": ("bfloat16", "float32"), "bfloat16": ("float16", "float32"), "tf32": ("float32",),
             "fp8": ("bfloat16", "float16", "float32"), "int8": ("bfloat16", "float16", "float32"),
             "int4": ("int8", "bfloat16", "float16", "float32"), "float64": ("float32",)}
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32",
                 "fp64": "float64", "double": "float64", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8"}


@dataclass(frozen=True)
class Figure:
    """One number and where it comes from."""

    value: float
    kind: str  # "spec", "measured" or "estimate"
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"figure kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not str(self.source).strip():
            raise ValueError("figure source is empty: every number must say where it comes from")

    def to_json(self) -> dict:
        value = self.value if math.isfinite(self.value) else None  # inf is not JSON; the source says why
        return {"value": value, "kind": self.kind, "source": self.source}


@dataclass(frozen=True)
class Tier:
    """A level of the memory hierarchy: how much it holds, how fast it streams, what a byte costs."""

    name: str
    capacity_bytes: Figure
    bandwidth_bytes_per_s: Figure
    energy_j_per_byte: Figure | None


@dataclass(frozen=True)
class Device:
    """Ceilings and coefficients of one device; tiers are ordered fastest first."""

    name: str
    label: str
    kind: str
    peak_flops: dict[str, Figure]
    tiers: tuple[Tier, ...]
    main_tier: str
    link_bandwidth_bytes_per_s: Figure | None
    idle_power_w: Figure | None
    peak_power_w: Figure | None
    launch_overhead_s: Figure
    energy_j_per_flop: dict[str, Figure]
    match: tuple[str, ...] = ()
    match_exclude: tuple[str, ...] = ()
    extras: dict[str, Figure] = field(default_factory=dict)

    def tier(self, name: str) -> Tier:
        """The tier called `name`; "dram" and "main" mean main_tier, as in a workload's cost."""
        if name == INTERCONNECT:
            return self.interconnect()
        wanted = self.main_tier if name in MAIN_ALIASES else name
        for tier in self.tiers:
            if tier.name == wanted:
                return tier
        known = ", ".join(t.name for t in self.tiers)
        raise ValueError(f"device {self.name!r} has no tier {name!r}; its tiers are {known} "
                         f"('dram' or 'main' mean {self.main_tier})")

    def interconnect(self) -> Tier:
        """The link to a peer device as a streaming tier (one direction): a multi-device case's communication.

        From extras `interconnect_bandwidth_bytes_per_s` when given, else half of NVLink's both-directions total.
        """
        figure = self.extras.get("interconnect_bandwidth_bytes_per_s")
        nvlink = self.extras.get("nvlink_bandwidth_bytes_per_s")
        if figure is None and nvlink is not None:
            figure = Figure(nvlink.value / 2, nvlink.kind, f"one direction, half the total of: {nvlink.source}")
        if figure is None:
            raise ValueError(f"device {self.name!r} has no interconnect figure (extras "
                             "interconnect_bandwidth_bytes_per_s or nvlink_bandwidth_bytes_per_s)")
        return Tier(INTERCONNECT, Figure(math.inf, "spec", "a link holds no data"), figure, None)

    def resolve_dtype(self, dtype: str) -> str:
        """The dtype whose figures stand in for `dtype` here: itself, else its fallback, else float32."""
        name = canonical_dtype(dtype)
        for candidate in (name, *FALLBACKS.get(name, ("float32",))):
            if candidate in self.peak_flops:
                return candidate
        raise ValueError(f"device {self.name!r} lists no figure usable for {dtype!r}; "
                         f"it has {', '.join(self.peak_flops)}")

    def peak(self, dtype: str) -> Figure:
        """Peak FLOP/s for `dtype`; a fallback figure says in its source which dtype it used."""
        used = self.resolve_dtype(dtype)
        figure = self.peak_flops[used]
        if used == canonical_dtype(dtype):
            return figure
        fp64 = canonical_dtype(dtype) == "float64"
        caveat = " (an upper bound: a device without FP64 units runs float64 far slower)" if fp64 else ""
        return Figure(figure.value, figure.kind,
                      f"no {dtype} figure for {self.name}; using the {used} figure{caveat}: {figure.source}")

    def flop_energy(self, dtype: str) -> Figure | None:
        """Energy per FLOP for the dtype `peak` would use, or None when the registry has none."""
        return self.energy_j_per_flop.get(self.resolve_dtype(dtype))

    def to_json(self) -> dict:
        """Plain data for the report: figures as {value, kind, source}, tuples as lists."""
        return _plain(self)


def canonical_dtype(dtype: Any) -> str:
    """'torch.bfloat16', 'bf16' and 'bfloat16' all name bfloat16."""
    name = str(dtype).strip().lower().removeprefix("torch.")
    return DTYPE_ALIASES.get(name, name)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Figure):
        return obj.to_json()
    if isinstance(obj, Tier | Device):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    return [_plain(x) for x in obj] if isinstance(obj, tuple | list) else obj


# Loading and validating devices.yaml: a bad entry raises ValueError naming the device and the field.

_REQUIRED = ("label", "kind", "peak_flops", "tiers", "main_tier", "link_bandwidth_bytes_per_s", "idle_power_w",
             "peak_power_w", "launch_overhead_s", "energy_j_per_flop")
_OPTIONAL = ("match", "match_exclude", "extras")
_TIER_FIELDS = ("name", "capacity_bytes", "bandwidth_bytes_per_s", "energy_j_per_byte")


def _bad(device: str, where: str, problem: str) -> ValueError:
    return ValueError(f"device {device!r}, field {where!r}: {problem}")


def _figure(device: str, where: str, raw: Any, nullable: bool = False, positive: bool = False) -> Figure | None:
    """A validated Figure from its YAML mapping (PyYAML reads 3.35e12 as a string; it is converted)."""
    if raw is None and nullable:
        return None
    if not isinstance(raw, dict) or set(raw) != {"value", "kind", "source"}:
        missing = sorted({"value", "kind", "source"} - set(raw)) if isinstance(raw, dict) else []
        detail = f"missing {', '.join(missing)}" if missing else "expected exactly {value, kind, source}"
        raise _bad(device, where, f"{detail}; got {raw!r}")
    try:
        value = float(raw["value"]) if not isinstance(raw["value"], bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise _bad(device, f"{where}.value", f"expected a {'positive' if positive else 'non-negative'} number, "
                                             f"got {raw['value']!r}")
    if raw["kind"] not in KINDS:
        raise _bad(device, f"{where}.kind", f"{raw['kind']!r} is not one of {', '.join(KINDS)}")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise _bad(device, f"{where}.source", "empty: every number must say where it comes from")
    return Figure(value, raw["kind"], raw["source"].strip())


def _tiers(device: str, raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad(device, "tiers", "expected a non-empty list, fastest tier first")
    tiers: list[Tier] = []
    for i, entry in enumerate(raw):
        where = f"tiers[{i}]"
        if not isinstance(entry, dict) or set(entry) != set(_TIER_FIELDS):
            raise _bad(device, where, f"expected exactly the keys {', '.join(_TIER_FIELDS)}; got {entry!r}")
        if entry["name"] not in TIER_NAMES or any(t.name == entry["name"] for t in tiers):
            raise _bad(device, f"{where}.name", f"{entry['name']!r} is not a new tier name out of "
                                                f"{', '.join(TIER_NAMES)}")
        tiers.append(Tier(entry["name"], _figure(device, f"{where}.capacity_bytes", entry["capacity_bytes"],
                                                 positive=True),
                          _figure(device, f"{where}.bandwidth_bytes_per_s", entry["bandwidth_bytes_per_s"],
                                  positive=True),
                          _figure(device, f"{where}.energy_j_per_byte", entry["energy_j_per_byte"], nullable=True)))
        if i and tiers[-1].bandwidth_bytes_per_s.value > tiers[-2].bandwidth_bytes_per_s.value:
            raise _bad(device, f"{where}.bandwidth_bytes_per_s", "tiers must be ordered fastest first")
    return tuple(tiers)


def _table(device: str, where: str, raw: Any, keys: tuple[str, ...] | None) -> dict[str, Figure]:
    if not isinstance(raw, dict):
        raise _bad(device, where, f"expected a mapping, got {raw!r}")
    for key in raw:
        if keys is not None and key not in keys:
            raise _bad(device, f"{where}.{key}", f"unknown name; expected one of {', '.join(keys)}")
    return {str(k): _figure(device, f"{where}.{k}", v, positive=where == "peak_flops") for k, v in raw.items()}


def _derived_flop_energy(peaks: dict[str, Figure], idle: Figure | None, peak: Figure | None) -> dict[str, Figure]:
    """(peak power - idle power) / peak FLOP/s per dtype: all dynamic power charged to arithmetic."""
    if idle is None or peak is None:
        return {}
    dynamic = max(peak.value - idle.value, 0.0)
    return {dt: Figure(dynamic / fig.value, "estimate",
                       f"(peak_power_w - idle_power_w) / peak_flops[{dt}] = ({peak.value:g} - {idle.value:g}) W / "
                       f"{fig.value:.4g} FLOP/s; an upper bound: all dynamic power charged to arithmetic at peak")
            for dt, fig in peaks.items()}


def _device(name: str, raw: Any) -> Device:
    if not isinstance(raw, dict):
        raise _bad(name, "-", f"expected a mapping, got {raw!r}")
    for key in raw:
        if key not in _REQUIRED + _OPTIONAL:
            raise _bad(name, key, "unknown field")
    for key in _REQUIRED:
        if key not in raw:
            raise _bad(name, key, "missing")
    if raw["kind"] not in DEVICE_KINDS:
        raise _bad(name, "kind", f"{raw['kind']!r} is not one of {', '.join(DEVICE_KINDS)}")
    tiers = _tiers(name, raw["tiers"])
    if raw["main_tier"] not in {t.name for t in tiers}:
        raise _bad(name, "main_tier", f"{raw['main_tier']!r} is not one of this device's tiers")
    peaks = _table(name, "peak_flops", raw["peak_flops"], DTYPES)
    if not peaks:
        raise _bad(name, "peak_flops", "lists no dtype")
    idle = _figure(name, "idle_power_w", raw["idle_power_w"], nullable=True)
    peak = _figure(name, "peak_power_w", raw["peak_power_w"], nullable=True)
    energy = raw["energy_j_per_flop"]
    energy = _derived_flop_energy(peaks, idle, peak) if energy == "derive" else _table(
        name, "energy_j_per_flop", energy, DTYPES)
    for key in ("match", "match_exclude"):
        if not all(isinstance(s, str) and s for s in raw.get(key) or []):
            raise _bad(name, key, "expected a list of non-empty strings")
    return Device(name=name, label=str(raw["label"]), kind=raw["kind"], peak_flops=peaks, tiers=tiers,
                  main_tier=raw["main_tier"], idle_power_w=idle, peak_power_w=peak, energy_j_per_flop=energy,
                  link_bandwidth_bytes_per_s=_figure(name, "link_bandwidth_bytes_per_s",
                                                     raw["link_bandwidth_bytes_per_s"], nullable=True),
                  launch_overhead_s=_figure(name, "launch_overhead_s", raw["launch_overhead_s"]),
                  match=tuple(raw.get("match") or ()), match_exclude=tuple(raw.get("match_exclude") or ()),
                  extras=_table(name, "extras", raw.get("extras") or {}, None))


def load_devices(path: Path | None = None) -> dict[str, Device]:
    """Every device in the registry (devices.yaml beside this file unless `path`), validated."""
    path = Path(path) if path is not None else DEVICES_YAML
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise ValueError(f"{path}: expected a top-level 'devices' mapping")
    return {str(name): _device(str(name), raw) for name, raw in data["devices"].items()}


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, Device]:
    return load_devices()


def get_device(name: str) -> Device:
    """The registry device called `name`; an unknown name gets suggestions and the known names."""
    registry = _registry()
    if name in registry:
        return registry[name]
    query = name.strip().lower()
    near = [n for n in registry if query and query in n] + difflib.get_close_matches(query, list(registry), 3, 0.4)
    hint = f"; did you mean {', '.join(dict.fromkeys(near[:3]))}?" if near else "."
    raise ValueError(f"unknown device {name!r}{hint} Known devices: {', '.join(registry)}")


def identify(device_name: str) -> Device | None:
    """The registry device a torch/NVML/OS device name denotes (longest matching pattern), or None."""
    text = device_name.strip().lower()
    best, best_len = None, 0
    for device in _registry().values() if text else ():
        if any(x.lower() in text for x in device.match_exclude):
            continue
        for pattern in device.match:
            if pattern.lower() in text and len(pattern) > best_len:
                best, best_len = device, len(pattern)
    return best


# Calibration: measured ceilings from a `membench calibrate` profile.


def _measured(profile: dict) -> dict[str, Any]:
    """The profile's numbers as measured Figures; a missing or null key gives None (or no dtype)."""
    stamp = f"membench calibrate {profile.get('measured_at', '(no timestamp)')}"

    def fig(value: Any, what: str) -> Figure | None:
        return None if value is None else Figure(float(value), "measured", f"{stamp}: {what}")

    flops = {canonical_dtype(dt): fig(v, f"{dt} matmul") for dt, v in (profile.get("matmul_flops_per_s") or {}).items()
             if v is not None and canonical_dtype(dt) in DTYPES}
    reads = [r for r in profile.get("file_read") or [] if r.get("bytes_per_s") is not None]
    largest = max(reads, key=lambda r: r["chunk_bytes"], default=None)
    links = [v for v in (profile.get("h2d_bytes_per_s"), profile.get("d2h_bytes_per_s")) if v is not None]
    read = fig(profile.get("read_bytes_per_s"), "read-only streaming")
    return {
        "flops": flops,
        "main_bw": fig(profile.get("copy_bytes_per_s"), "device copy, bytes read + written"),
        "capacity": fig(profile.get("memory_total_bytes"), "total memory reported"),
        "storage_bw": largest and fig(largest["bytes_per_s"], f"file read in {largest['chunk_bytes']} B chunks, "
                                                              f"{profile.get('file_read_method', 'method unstated')}"),
        "link": fig(min(links), "min(host-to-device, device-to-host) copy") if links else None,
        "launch": fig(profile.get("launch_overhead_s"), "empty-call overhead"),
        "extras": {key: value for key, value in (
            ("measured_read_bytes_per_s", read),
            ("special_ops_per_s", fig(profile.get("special_ops_per_s"), "exp() on a cache-resident float32 tensor")),
            ("graph_launch_overhead_s", fig(profile.get("graph_launch_overhead_s"),
                                            "tiny kernels replayed from a CUDA graph")),
        ) if value is not None},
    }


def _this_machine(profile: dict, m: dict[str, Any]) -> Device:
    kind = {"cuda": "gpu"}.get(profile.get("device"), profile.get("device"))
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"calibration profile 'device' must be 'cpu' or 'gpu', got {profile.get('device')!r}")
    if m["main_bw"] is None:
        raise ValueError("calibration profile lacks copy_bytes_per_s: no main-memory ceiling to model with")
    unbounded = Figure(math.inf, "estimate", "not in the calibration profile; treated as unbounded")
    tiers = [Tier("dram", m["capacity"] or unbounded, m["main_bw"], None)]
    if m["storage_bw"] is not None:
        tiers.append(Tier("ssd", unbounded, m["storage_bw"], None))
    tiers.sort(key=lambda t: -t.bandwidth_bytes_per_s.value)
    default_launch = 5e-6 if kind == "gpu" else 1e-6
    launch = m["launch"] or Figure(default_launch, "estimate", "not in the calibration profile; a typical value")
    return Device(name="this-machine", label=f"This machine ({profile.get('name', 'unnamed')})", kind=kind,
                  peak_flops=m["flops"], tiers=tuple(tiers), main_tier="dram", link_bandwidth_bytes_per_s=m["link"],
                  idle_power_w=None, peak_power_w=None, launch_overhead_s=launch, energy_j_per_flop={},
                  extras=m["extras"])


def from_calibration(profile: dict, base: Device | None = None) -> Device:
    """This machine from a calibration profile, or `base` with its measured ceilings replacing the datasheet's.

    Main-tier bandwidth comes from copy_bytes_per_s (bytes read + written, as kernels are charged); the
    storage tier (base's first ssd/flash tier) from the largest-chunk file read; the link from
    min(h2d, d2h). Keys the profile lacks keep the base value. this-machine has no power figures, so
    the energy model declines it; a recalibrated base keeps its datasheet-derived energy coefficients.
    """
    m = _measured(profile)
    if base is None:
        return _this_machine(profile, m)
    storage = next((t.name for t in base.tiers if t.name in ("ssd", "flash")), None)
    tiers = []
    for tier in base.tiers:
        if tier.name == base.main_tier:
            tier = dataclasses.replace(tier, bandwidth_bytes_per_s=m["main_bw"] or tier.bandwidth_bytes_per_s,
                                       capacity_bytes=m["capacity"] or tier.capacity_bytes)
        elif tier.name == storage and m["storage_bw"] is not None:
            tier = dataclasses.replace(tier, bandwidth_bytes_per_s=m["storage_bw"])
        tiers.append(tier)
    tiers.sort(key=lambda t: -t.bandwidth_bytes_per_s.value)
    when = f" {profile['measured_at']}" if profile.get("measured_at") else ""
    return dataclasses.replace(
        base, label=f"{base.label} (calibrated{when})",
        peak_flops={**base.peak_flops, **m["flops"]}, tiers=tuple(tiers),
        link_bandwidth_bytes_per_s=m["link"] or base.link_bandwidth_bytes_per_s,
        launch_overhead_s=m["launch"] or base.launch_overhead_s, extras={**base.extras, **m["extras"]})
