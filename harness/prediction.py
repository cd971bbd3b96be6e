"""Join a measured case to the hardware models: roofline floor, calibrated prediction, bound, residual.

The floor uses only the minimum bytes and no launch overhead, under the more optimistic of the datasheet
and the measured ceilings: no correct measurement can beat it, so one that does is invalid — as long as the
working set is larger than the last-level cache (smaller ones are served from cache between repeats). The
prediction uses the implementation's expected traffic and launches under this run's measured ceilings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from harness.case import Cost

FLOOR_SLACK = 0.97  # timers and clocks wobble by a few %: flag only what beats the floor by more


@dataclass(frozen=True)
class DeviceModels:
    """The datasheet entry (None for a machine the registry doesn't know) and the calibrated model."""

    datasheet: object | None
    calibrated: object | None
    cache_bytes: float | None = None  # last-level cache: smaller working sets may never reach main memory
    power: dict | None = None  # measured energy coefficients (calibrate.power_profile), where a counter exists

    @classmethod
    def for_profile(cls, profile: dict | None, run_idle_w: float | None = None) -> DeviceModels:
        """Models from a calibration profile. Measured energy_j is net of the idle power measured at the start
        of the run, so the energy model subtracts that idle power (`run_idle_w`), not calibration's own."""
        if not profile:
            return cls(None, None)
        from reference_impls.hardware import devices

        base = devices.identify(profile.get("name", ""))
        power = profile.get("power")
        if power and run_idle_w is not None:
            power = {**power, "idle_w": run_idle_w}
        return cls(base, devices.from_calibration(profile, base), profile.get("llc_bytes"), power)


def predict(cost: Cost, latency_s: float, models: DeviceModels, graphed: bool = False) -> dict:
    """Model fields for a record: empty when neither a datasheet nor a calibration is available.

    `graphed`: the case was timed from CUDA-graph replays, so each launch costs the calibrated in-graph
    kernel time (graph_launch_overhead_s) rather than the host launch path.
    """
    if models.datasheet is None and models.calibrated is None:
        return {}
    if not cost.hardware_bound:
        return {"no_prediction": "the time is interpreter work (a simulator), not kernels a roofline predicts"}
    try:
        return _predict(cost, latency_s, models, graphed)
    except ValueError as exc:  # the cost names a tier (a link, an SSD) this device's model does not have
        return {"no_prediction": f"no hardware model of this cost here: {exc}"}


def _predict(cost: Cost, latency_s: float, models: DeviceModels, graphed: bool) -> dict:
    from reference_impls.hardware.roofline import phased_roofline, roofline

    out: dict = {}
    floors, prediction = [], None
    for name, device in (("calibrated", models.calibrated), ("datasheet", models.datasheet)):
        if device is None:
            continue
        floor = roofline(device, cost.flops, cost.bytes, cost.dtype, launches=0)
        floors.append(floor.latency_s)
        out[f"{name}_floor_latency_s"] = floor.latency_s
        out[f"{name}_roofline_fraction"] = floor.latency_s / latency_s
    if models.calibrated is not None:
        device = models.calibrated
        in_graph = device.extras.get("graph_launch_overhead_s") if graphed else None
        if in_graph is not None:
            device = replace(device, launch_overhead_s=in_graph)
            out["launch_model"] = "cuda_graph"
        if cost.phases:
            prediction = phased_roofline(device, [asdict(p) for p in cost.phases])
        else:
            prediction = roofline(device, cost.expected_flops, cost.expected_traffic, cost.dtype,
                                  cost.launches, cost.special_ops)
        out.update(device=models.calibrated.name, predicted_latency_s=prediction.latency_s, bound=prediction.bound,
                   arithmetic_intensity=prediction.arithmetic_intensity,
                   residual=latency_s / prediction.latency_s - 1.0,
                   roofline_fraction=out["calibrated_roofline_fraction"],
                   ceilings={"peak_flops": prediction.peak_flops,
                             "bandwidth_bytes_per_s": prediction.bandwidth_bytes_per_s})
    if floors:
        out["floor_latency_s"] = min(floors)
        out["floor_applies"] = models.cache_bytes is None or cost.total_bytes > models.cache_bytes
    out.update(_energy(cost, latency_s, models, prediction))
    return out


def _energy(cost: Cost, latency_s: float, models: DeviceModels, prediction: object | None) -> dict:
    """Dynamic energy (above idle) of one call, comparable to measured energy_j: from the power this machine
    drew in calibration when it has those figures, else from the registry's datasheet estimates."""
    from reference_impls.hardware import energy_model

    if models.power and prediction is not None and "matmul_w" in models.power:
        value = energy_model.predict_calibrated_energy(models.power, prediction.compute_s,
                                                       max(prediction.memory_s.values(), default=0.0),
                                                       prediction.launch_s, latency_s)
        return {"predicted_energy_j": value, "energy_model": "calibrated"}
    device = models.datasheet or models.calibrated
    prediction = energy_model.predict_energy(device, cost.expected_flops, cost.expected_traffic, cost.dtype, latency_s)
    return {} if prediction is None else {"predicted_energy_j": prediction.dynamic_j, "energy_model": "datasheet"}


def floor_violation(model: dict, latency_s: float) -> str | None:
    """A reason when the measurement beats the roofline floor (a wrong answer or a wrong cost, never speed)."""
    floor = model.get("floor_latency_s")
    if floor is not None and model.get("floor_applies", True) and latency_s < FLOOR_SLACK * floor:
        return (f"measured {latency_s:.3g} s is below the roofline floor {floor:.3g} s: the cost model or the "
                "measurement is wrong")
    return None
