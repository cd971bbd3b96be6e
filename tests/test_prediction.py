"""The hardware model joined to cases: calibration profiles, predictions, residuals, the roofline floor."""

import datetime as dt
import json
import platform

import pytest
import torch

from harness import calibration
from harness.case import Cost
from harness.prediction import DeviceModels, floor_violation, predict
from harness.registry import REGISTRY
from harness.runner import open_store, run_suite
from harness.store import read_records
from harness.suite import load_suite
from reference_impls.hardware import energy_model


def profile(name="AMD EPYC", device="cpu", copy=40e9, fp32=2e11, measured_at=None):
    return {"device": device, "name": name, "measured_at": measured_at or dt.datetime.now(dt.timezone.utc).isoformat(),
            "torch": torch.__version__, "host": platform.node(), "mode": "quick",
            "copy_bytes_per_s": copy, "read_bytes_per_s": copy, "launch_overhead_s": 2e-6,
            "matmul_flops_per_s": {"float32": fp32, "bfloat16": 4 * fp32}, "matmul_sizes": {"float32": 1024},
            "h2d_bytes_per_s": None, "d2h_bytes_per_s": None, "memory_total_bytes": 24e9,
            "file_read": [{"chunk_bytes": 4096, "bytes_per_s": 1e9}], "file_read_method": "test",
            "llc_bytes": 32 << 20}


def test_cpu_profile_gives_a_calibrated_model_without_datasheet():
    models = DeviceModels.for_profile(profile())
    assert models.datasheet is None and models.calibrated.name == "this-machine"
    assert models.calibrated.peak("float32").value == 2e11 and models.calibrated.peak("float32").kind == "measured"


def test_memory_bound_prediction_residual_and_fraction_are_exact():
    models = DeviceModels.for_profile(profile(copy=40e9))
    cost = Cost(flops=1e6, bytes={"dram": 4e9})  # 0.1 s of memory, 5 µs of compute
    out = predict(cost, latency_s=0.125, models=models)
    assert out["bound"] == "memory:dram" and out["predicted_latency_s"] == pytest.approx(0.1 + 2e-6)
    assert out["residual"] == pytest.approx(0.125 / (0.1 + 2e-6) - 1)
    assert out["roofline_fraction"] == pytest.approx(0.1 / 0.125)
    assert out["floor_latency_s"] == pytest.approx(0.1) and floor_violation(out, 0.125) is None
    assert "below the roofline floor" in floor_violation(out, 0.05)
    cached = predict(cost, 0.125, DeviceModels(models.datasheet, models.calibrated, cache_bytes=8e9))
    assert not cached["floor_applies"] and floor_violation(cached, 0.05) is None  # 4 GB fit in an 8 GB cache


def test_prediction_uses_expected_traffic_and_flops_but_floor_uses_minimum():
    models = DeviceModels.for_profile(profile(copy=40e9, fp32=2e11))
    cost = Cost(flops=2e11, bytes={"dram": 1e6}, traffic_bytes={"dram": 8e10}, executed_flops=4e11, launches=10)
    out = predict(cost, latency_s=3.0, models=models)
    assert out["floor_latency_s"] == pytest.approx(1.0)  # 2e11 FLOP at 2e11 FLOP/s
    assert out["predicted_latency_s"] == pytest.approx(2.0 + 10 * 2e-6)  # both 8e10 B and 4e11 FLOP take 2 s


def test_gpu_profile_keeps_the_datasheet_and_predicts_dynamic_energy():
    models = DeviceModels.for_profile(profile("NVIDIA H100 80GB HBM3", "cuda", copy=2.96e12, fp32=5e13))
    assert models.datasheet.name == "h100-sxm-80gb" and models.calibrated.name == "h100-sxm-80gb"
    out = predict(Cost(flops=1e12, bytes={"dram": 1e9}, dtype="bfloat16"), latency_s=0.01, models=models)
    assert out["datasheet_floor_latency_s"] == pytest.approx(1e12 / models.datasheet.peak("bfloat16").value, rel=0.01)
    assert out["predicted_energy_j"] > 0


def test_no_profile_no_prediction():
    assert predict(Cost(1.0, {"dram": 1.0}), 1.0, DeviceModels.for_profile(None)) == {}


SUITE = """
name: predicted
settings: {warmup_s: 0.0, min_repeats: 3, min_time_s: 0.0, timeout_s: 30, isolation: inline}
plugins: [membench_test_plugins]
cases:
  - workload: scaled_copy
    impls: [exact, overclaimed]
    grid: {n: [65536]}
"""


def test_records_carry_the_prediction_and_a_floor_violation_is_invalid(write_suite, tmp_path):
    suite = load_suite(str(write_suite(SUITE)), REGISTRY)
    store = open_store(suite, tmp_path / "run", resume=False)
    run_suite(suite, store, calibrations={"cpu": profile()})
    records = {r["impl"]: r for r in read_records(tmp_path / "run")}
    exact, over = records["exact"], records["overclaimed"]
    assert exact["model"]["device"] == "this-machine" and exact["model"]["predicted_latency_s"] > 0
    assert exact["validity"]["ok"] and "residual" in exact["model"]
    assert over["status"] == "ok" and not over["validity"]["ok"]
    assert "below the roofline floor" in over["validity"]["reasons"][0]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["calibration"]["cpu"]["name"] == "AMD EPYC"


def test_stored_profile_is_reused_only_while_fresh_and_from_the_same_torch(tmp_path):
    calibration.save(profile(), tmp_path)
    assert calibration.load_fresh("cpu", tmp_path)["copy_bytes_per_s"] == 40e9
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).isoformat()
    calibration.save(profile(measured_at=old), tmp_path)
    assert calibration.load_fresh("cpu", tmp_path) is None
    calibration.save({**profile(), "torch": "0.0.1"}, tmp_path)
    assert calibration.load_fresh("cpu", tmp_path) is None


def test_quick_cpu_calibration_measures_real_ceilings(tmp_path):
    measured = calibration.ensure("cpu", tmp_path)
    assert measured["copy_bytes_per_s"] > 1e9 and measured["read_bytes_per_s"] > 1e9
    assert measured["matmul_flops_per_s"]["float32"] > 1e9 and 0 < measured["launch_overhead_s"] < 1e-3
    assert measured["special_ops_per_s"] > 1e7 and measured["llc_bytes"] > 0  # ~1e9 alone; 2 busy cores: less
    machine = DeviceModels.for_profile(measured).calibrated
    assert machine.extras["special_ops_per_s"].value == measured["special_ops_per_s"]
    assert [r["chunk_bytes"] for r in measured["file_read"]] == [4096, 65536, 1 << 20, 16 << 20]
    assert calibration.ensure("cpu", tmp_path)["reused_from"].endswith(".json")


def test_calibrated_energy_charges_each_share_of_time_the_power_of_its_calibration_window():
    power = {"idle_w": 70.0, "constant_w": 90.0, "copy_w": 370.0, "matmul_w": 670.0}
    gpu = {**profile("NVIDIA H100 80GB HBM3", "cuda", copy=2.9e12, fp32=5e13), "power": power}
    models = DeviceModels.for_profile(gpu)
    compute_bound = Cost(flops=5e13, bytes={"dram": 1e6}, dtype="float32", launches=0)  # 1 s of fp32 compute
    out = predict(compute_bound, latency_s=2.0, models=models)
    assert out["energy_model"] == "calibrated"
    share = 1.0 / (1.0 + 1e6 / 2.9e12)  # compute's share of the model's terms
    assert out["predicted_energy_j"] == pytest.approx(2.0 * (600.0 * share + 300.0 * (1 - share)))
    memory_bound = Cost(flops=1.0, bytes={"dram": 2.9e12}, dtype="float32", launches=0)
    assert predict(memory_bound, 1.0, models)["predicted_energy_j"] == pytest.approx(300.0, rel=1e-9)
    half = Cost(flops=5e13, bytes={"dram": 2.9e12}, dtype="float32", launches=0)  # equal terms: the mean power
    assert predict(half, 1.0, models)["predicted_energy_j"] == pytest.approx(450.0)
    with pytest.raises(ValueError, match="model terms must be positive"):
        energy_model.predict_calibrated_energy(power, 0.0, 0.0, 0.0, 1.0)


def test_a_graph_timed_case_pays_the_in_graph_launch_cost_not_the_host_path():
    gpu = {**profile("NVIDIA H100 80GB HBM3", "cuda", copy=3e12, fp32=5e13), "launch_overhead_s": 10e-6,
           "graph_launch_overhead_s": 1e-6}
    models = DeviceModels.for_profile(gpu)
    assert models.calibrated.extras["graph_launch_overhead_s"].kind == "measured"
    tiny = Cost(flops=1e6, bytes={"dram": 3e6}, dtype="float32", launches=4)  # 1 µs of traffic, 4 kernels
    eager, graphed = predict(tiny, 20e-6, models), predict(tiny, 20e-6, models, graphed=True)
    assert eager["predicted_latency_s"] == pytest.approx(1e-6 + 4 * 10e-6)
    assert graphed["predicted_latency_s"] == pytest.approx(1e-6 + 4 * 1e-6)
    assert graphed["launch_model"] == "cuda_graph" and "launch_model" not in eager
    cpu = predict(tiny, 20e-6, DeviceModels.for_profile(profile()), graphed=True)  # no graph figure: host path
    assert "launch_model" not in cpu


def test_a_simulators_interpreter_time_gets_no_roofline_prediction():
    simulated = Cost(flops=1e6, bytes={"dram": 1e3}, dtype="int64", hardware_bound=False)
    out = predict(simulated, 0.02, DeviceModels.for_profile(profile()))
    assert "predicted_latency_s" not in out and "residual" not in out and "interpreter" in out["no_prediction"]
    assert simulated.to_json()["hardware_bound"] is False
