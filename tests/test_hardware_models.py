"""Roofline, multi-tier placement and the energy model, checked against numbers worked out by hand."""

import math

import pytest

from reference_impls.hardware.devices import from_calibration, get_device
from reference_impls.hardware.energy_model import missing_coefficients, predict_energy
from reference_impls.hardware.placement import Item, place
from reference_impls.hardware.roofline import attainable_flops, ridge_point, roofline

GB = 1e9


@pytest.fixture(scope="module")
def h100():
    return get_device("h100-sxm-80gb")


# -- roofline ----------------------------------------------------------------------------------------------


def test_gemm_8192_is_compute_bound(h100):
    n = 8192
    flops, nbytes = 2 * n**3, 3 * n * n * 2
    r = roofline(h100, flops, {"dram": nbytes}, "bfloat16")
    assert r.bound == "compute"
    assert r.compute_s == pytest.approx(flops / 989.4e12)
    assert r.latency_s == pytest.approx(flops / 989e12 + 5e-6, rel=1e-3)
    assert r.launch_s == 5e-6
    assert r.arithmetic_intensity == pytest.approx(flops / nbytes)
    assert r.memory_s["hbm"] == pytest.approx(nbytes / 3.35e12) and r.memory_s["hbm"] < r.compute_s


def test_copy_of_1gb_is_memory_bound(h100):
    r = roofline(h100, 0, {"dram": 2 * GB}, "bfloat16")  # 1 GB read + 1 GB written
    assert r.bound == "memory:hbm"
    assert r.memory_s == {"hbm": pytest.approx(2 * GB / 3.35e12)}
    assert r.latency_s == pytest.approx(2 * GB / 3.35e12 + 5e-6)
    assert r.compute_s == 0 and r.arithmetic_intensity == 0
    assert r.bandwidth_bytes_per_s == 3.35e12 and r.peak_flops == 989.4e12


def test_bound_switches_at_the_ridge_point(h100):
    ridge = ridge_point(h100, "bfloat16")
    assert ridge == pytest.approx(989.4e12 / 3.35e12)
    nbytes = 10 * GB  # large enough that launch overhead is negligible
    above = roofline(h100, 1.05 * ridge * nbytes, {"dram": nbytes}, "bfloat16")
    below = roofline(h100, 0.95 * ridge * nbytes, {"dram": nbytes}, "bfloat16")
    assert above.bound == "compute" and below.bound == "memory:hbm"
    assert attainable_flops(h100, "bfloat16", ridge) == pytest.approx(989.4e12)
    assert attainable_flops(h100, "bfloat16", ridge / 2) == pytest.approx(989.4e12 / 2)
    assert attainable_flops(h100, "bfloat16", 10 * ridge) == 989.4e12


def test_dram_and_main_map_to_the_main_tier(h100):
    r = roofline(h100, 0, {"dram": GB, "main": GB, "hbm": GB}, "float32")
    assert r.memory_s == {"hbm": pytest.approx(3 * GB / 3.35e12)}
    pi = get_device("raspberry-pi-5-8gb")
    assert roofline(pi, 0, {"dram": GB}, "float32").bound == "memory:dram"


def test_several_tiers_overlap(h100):
    r = roofline(h100, 0, {"l2": 10 * GB, "dram": GB}, "bfloat16")
    assert list(r.memory_s) == ["l2", "hbm"]  # fastest first
    assert r.bound == "memory:l2"
    assert r.latency_s == pytest.approx(10 * GB / 5.5e12 + 5e-6)
    assert r.arithmetic_intensity == 0


def test_unknown_tier_raises(h100):
    with pytest.raises(ValueError, match="its tiers are l2, hbm"):
        roofline(h100, 1.0, {"ddr": GB}, "bfloat16")
    with pytest.raises(ValueError):
        roofline(h100, 1.0, {"dram": -1}, "bfloat16")


def test_launch_bound_and_no_bytes(h100):
    r = roofline(h100, 1e6, {}, "bfloat16", launches=4)
    assert r.bound == "launch" and r.launch_s == pytest.approx(20e-6)
    assert r.arithmetic_intensity == math.inf and r.to_json()["arithmetic_intensity"] is None


def test_dtype_fallback_in_the_roofline():
    a100 = get_device("a100-sxm-80gb")  # no fp8 tensor cores: fp8 runs at the bf16 rate
    assert roofline(a100, 312e12, {}, "fp8", launches=0).compute_s == pytest.approx(1.0)


# -- placement ---------------------------------------------------------------------------------------------


def test_140gb_on_sn40l_spills_to_ddr():
    sn40l = get_device("sambanova-sn40l")
    p = place(sn40l, [Item("weights", 140 * GB)])
    sram, hbm = 0.9 * 520e6, 0.9 * 64 * GB
    assert p.tiers["sram"] == [("weights", pytest.approx(sram))]
    assert p.tiers["hbm"] == [("weights", pytest.approx(hbm))]
    assert p.tiers["ddr"] == [("weights", pytest.approx(140 * GB - sram - hbm))]
    assert p.fits and p.spilled_bytes == 0
    assert p.bound_tier == "ddr"
    assert p.step_time_s == pytest.approx((140 * GB - sram - hbm) / 2e11)


def test_hottest_item_takes_the_fastest_tier():
    sn40l = get_device("sambanova-sn40l")
    p = place(sn40l, [Item("weights", 100 * GB), Item("kv", 0.4 * GB, reads_per_step=2, writable=True)])
    assert p.tiers["sram"] == [("kv", 0.4 * GB), ("weights", pytest.approx(0.9 * 520e6 - 0.4 * GB))]


def test_1mb_does_not_fit_a_256kb_mcu():
    mcu = get_device("mcu-256kb-sram")
    mib = 1024 * 1024
    activations = place(mcu, [Item("activations", mib, writable=True)])  # flash cannot take writes
    assert not activations.fits
    assert activations.spilled_bytes == pytest.approx(mib - 0.9 * 256 * 1024)
    assert activations.tiers["flash"] == []
    weights = place(mcu, [Item("weights", 2 * mib)])  # more than SRAM and flash together
    assert not weights.fits and weights.spilled_bytes == pytest.approx(2 * mib - 0.9 * (256 + 1024) * 1024)
    in_place = place(mcu, [Item("weights", mib)])  # read-only weights may straddle SRAM and flash
    assert in_place.fits and in_place.bound_tier == "flash"


def test_a_phone_model_spills_from_dram_to_flash():
    phone = get_device("snapdragon-8-gen3-phone")
    p = place(phone, [Item("weights", 16 * GB)])
    assert p.fits and p.bound_tier == "flash"
    assert p.step_time_s == pytest.approx((16 - 0.9 * 12) * GB / 4.2e9)


def test_placement_arguments_are_checked(h100):
    with pytest.raises(ValueError):
        place(h100, [Item("x", GB)], usable_fraction=0)
    with pytest.raises(ValueError):
        Item("x", -1)
    empty = place(h100, [])
    assert empty.fits and empty.step_time_s == 0 and empty.bound_tier == "none"


# -- energy ------------------------------------------------------------------------------------------------


def test_energy_adds_idle_compute_and_memory(h100):
    flops, nbytes, latency = 1e12, 2 * GB, 1e-3
    e = predict_energy(h100, flops, {"dram": nbytes}, "bfloat16", latency)
    idle_j = 70 * latency  # registry: idle 70 W, peak 700 W, bf16 989.4 TFLOP/s, HBM 3.1e-11 J/B
    compute_j = (700 - 70) / 989.4e12 * flops
    memory_j = 3.1e-11 * nbytes
    assert e.idle_j == pytest.approx(idle_j)
    assert e.compute_j == pytest.approx(compute_j)
    assert e.memory_j == {"hbm": pytest.approx(memory_j)}
    assert e.total_j == pytest.approx(idle_j + compute_j + memory_j)
    assert e.dynamic_j == pytest.approx(compute_j + memory_j)
    assert "idle_power_w=estimate" in e.source and "energy_j_per_byte[hbm]=estimate" in e.source


def test_energy_is_none_without_coefficients(h100):
    sn40l = get_device("sambanova-sn40l")  # no published idle power, no per-byte SRAM energy
    assert predict_energy(sn40l, 1e12, {"sram": GB}, "bfloat16", 1e-3) is None
    assert missing_coefficients(sn40l, 1e12, {"sram": GB}, "bfloat16") == [
        "idle_power_w", "energy_j_per_flop[bfloat16]", "energy_j_per_byte[sram]"]
    assert predict_energy(h100, 0, {"l2": GB}, "bfloat16", 1e-3) is None  # no per-byte L2 figure
    machine = from_calibration({"device": "cpu", "name": "x", "copy_bytes_per_s": 1e10,
                                "matmul_flops_per_s": {"float32": 1e11}})
    assert predict_energy(machine, 1e9, {"dram": GB}, "float32", 1e-2) is None


def test_energy_with_only_idle(h100):
    e = predict_energy(h100, 0, {}, "bfloat16", 2.0)
    assert e.total_j == pytest.approx(140) and e.dynamic_j == 0 and e.memory_j == {}


def test_special_function_term_adds_to_compute_time_where_the_device_has_it():
    h100 = get_device("h100-sxm-80gb")
    plain = roofline(h100, 2e12, {"dram": 1e8}, "bfloat16", launches=0)
    with_exp = roofline(h100, 2e12, {"dram": 1e8}, "bfloat16", launches=0, special_ops=3.9e9)
    assert with_exp.compute_s == pytest.approx(plain.compute_s + 1e-3)  # 3.9e9 exp at 3.9e12/s
    mcu = get_device("mcu-256kb-sram")  # no special-function figure: the term is ignored
    assert roofline(mcu, 1e6, {"dram": 1e3}, "int8", special_ops=1e9).compute_s == roofline(
        mcu, 1e6, {"dram": 1e3}, "int8").compute_s


def test_phased_roofline_sums_each_kernels_own_roofline():
    from reference_impls.hardware.roofline import phased_roofline

    h100 = get_device("h100-sxm-80gb")
    matmul = {"flops": 1e12, "bytes": 1e8, "dtype": "float32", "launches": 1}  # compute-bound
    softmax = {"flops": 1e9, "bytes": 1e11, "dtype": "float32", "launches": 1}  # memory-bound
    both = phased_roofline(h100, [matmul, softmax])
    parts = [roofline(h100, p["flops"], {"dram": p["bytes"]}, "float32", 1) for p in (matmul, softmax)]
    assert both.latency_s == pytest.approx(parts[0].latency_s + parts[1].latency_s)
    together = roofline(h100, 1.001e12, {"dram": 1.001e11}, "float32", 2)  # one roofline over the totals
    assert both.latency_s > together.latency_s  # no overlap across kernels
    assert both.bound == max(("compute", parts[0].latency_s), ("memory:hbm", parts[1].latency_s),
                             key=lambda t: t[1])[0]
    with pytest.raises(ValueError, match="at least one phase"):
        phased_roofline(h100, [])
