"""Energy of one case: idle power over its latency, plus energy per FLOP and per byte moved in each tier.

    total_j   = idle_power_w x latency_s + energy_j_per_flop[dtype] x flops + sum(energy_j_per_byte[tier] x bytes)
    dynamic_j = total_j - idle_j

membench's measured `energy_j` (NVML or RAPL) is already net of the idle power measured in the same run,
so it compares to `dynamic_j`, not to `total_j`. The coefficients are mostly registry estimates (see each
figure's source); `source` on the prediction lists the kind of every coefficient used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reference_impls.hardware.devices import Device
from reference_impls.hardware.roofline import resolve_bytes


@dataclass(frozen=True)
class EnergyPrediction:
    """Predicted joules of one case, split by where they go."""

    total_j: float
    idle_j: float  # idle power x latency: what membench subtracts from its measurement
    compute_j: float
    memory_j: dict[str, float]  # tier -> joules
    dynamic_j: float  # total_j - idle_j: compare membench's measured energy_j to this
    source: str  # the coefficients used and their kinds

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def missing_coefficients(device: Device, flops: float, bytes_by_tier: dict[str, float], dtype: str) -> list[str]:
    """The coefficients `predict_energy` would need and the registry lacks (empty when it can predict)."""
    missing = [] if device.idle_power_w is not None else ["idle_power_w"]
    if flops > 0:
        try:
            if device.flop_energy(dtype) is None:
                missing.append(f"energy_j_per_flop[{device.resolve_dtype(dtype)}]")
        except ValueError:  # no peak figure usable for dtype, hence no energy figure either
            missing.append(f"energy_j_per_flop[{dtype}]")
    for tier, nbytes in resolve_bytes(device, bytes_by_tier).items():
        if nbytes > 0 and device.tier(tier).energy_j_per_byte is None:
            missing.append(f"energy_j_per_byte[{tier}]")
    return missing


def predict_energy(device: Device, flops: float, bytes_by_tier: dict[str, float], dtype: str,
                   latency_s: float) -> EnergyPrediction | None:
    """Predicted energy of a case that ran `latency_s`, or None when a needed coefficient is missing.

    Needed: idle_power_w always; energy_j_per_flop for `dtype` (after the same fallback as `Device.peak`)
    when flops > 0; energy_j_per_byte of every tier with bytes > 0. `missing_coefficients` names them.
    Byte keys follow `roofline`: "dram"/"main" mean the main tier.
    """
    if not flops >= 0 or not latency_s >= 0:
        raise ValueError(f"flops and latency_s must be non-negative, got {flops!r} and {latency_s!r}")
    if missing_coefficients(device, flops, bytes_by_tier, dtype):
        return None
    idle = device.idle_power_w
    used = [f"idle_power_w={idle.kind}"]
    compute_j = 0.0
    if flops > 0:
        per_flop = device.flop_energy(dtype)
        compute_j = per_flop.value * flops
        used.append(f"energy_j_per_flop[{device.resolve_dtype(dtype)}]={per_flop.kind}")
    memory_j: dict[str, float] = {}
    for tier, nbytes in resolve_bytes(device, bytes_by_tier).items():
        per_byte = device.tier(tier).energy_j_per_byte
        memory_j[tier] = per_byte.value * nbytes if nbytes > 0 else 0.0
        if nbytes > 0:
            used.append(f"energy_j_per_byte[{tier}]={per_byte.kind}")
    idle_j = idle.value * latency_s
    dynamic_j = compute_j + sum(memory_j.values())
    return EnergyPrediction(total_j=idle_j + dynamic_j, idle_j=idle_j, compute_j=compute_j, memory_j=memory_j,
                            dynamic_j=dynamic_j, source=f"{device.name}: " + ", ".join(used))


def predict_calibrated_energy(power: dict, compute_s: float, memory_s: float, launch_s: float,
                              latency_s: float) -> float:
    """Dynamic joules (above idle) from the power this machine drew in calibration (`calibrate.power_profile`).

    The measured time is split in the proportions of the model's compute, memory and launch terms, and each
    share is charged the power of the calibration window doing that kind of work: the bf16 matmul, the large
    copy, and back-to-back tiny kernels. A kernel that keeps the tensor cores busy draws near matmul power
    whatever fraction of peak FLOPs it reaches (FlashAttention-2 at 45% of peak draws ~770 W on an H100), so
    power follows busy time, not useful FLOPs — which Choi's per-FLOP roofline undercounts (28% median
    error against 19% for this model on the published H100 run).
    """
    terms = compute_s + memory_s + launch_s
    if not terms > 0 or not latency_s >= 0:
        raise ValueError(f"model terms must be positive and latency non-negative, got {terms!r}, {latency_s!r}")
    idle = power["idle_w"]
    watts = ((power["matmul_w"] - idle) * compute_s + (power["copy_w"] - idle) * memory_s
             + (power["constant_w"] - idle) * launch_s) / terms
    return max(watts, 0.0) * latency_s
