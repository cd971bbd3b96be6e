"""The device registry: every number sourced, the required devices present, bad entries refused."""

import math
import re

import pytest
import yaml

from reference_impls.hardware.devices import (
    DTYPES,
    KINDS,
    TIER_NAMES,
    Device,
    Figure,
    from_calibration,
    get_device,
    identify,
    load_devices,
)

REQUIRED = [
    "h100-sxm-80gb", "h200-141gb", "a100-sxm-80gb", "l40s", "rtx-4090",
    "jetson-orin-nano-8gb-7w", "jetson-orin-nano-8gb-15w", "jetson-orin-nano-8gb-25w",
    "raspberry-pi-5-8gb", "snapdragon-8-gen3-phone", "apple-m2", "apple-m4", "mcu-256kb-sram", "sambanova-sn40l",
]

PROFILE = {
    "device": "cpu", "name": "AMD EPYC", "measured_at": "2026-11-22T05:00:00Z",
    "copy_bytes_per_s": 1.1e10, "read_bytes_per_s": 1.4e10,
    "matmul_flops_per_s": {"float32": 1.2e11, "bfloat16": 3e10},
    "h2d_bytes_per_s": None, "d2h_bytes_per_s": None, "launch_overhead_s": 2e-6,
    "memory_total_bytes": 25000000000,
    "file_read": [{"chunk_bytes": 4096, "bytes_per_s": 5e8}, {"chunk_bytes": 16777216, "bytes_per_s": 3e9}],
}


def all_figures(device: Device):
    """(path, figure) for every number a device carries."""
    for table in ("peak_flops", "energy_j_per_flop", "extras"):
        for key, fig in getattr(device, table).items():
            yield f"{table}.{key}", fig
    for tier in device.tiers:
        for name in ("capacity_bytes", "bandwidth_bytes_per_s", "energy_j_per_byte"):
            yield f"{tier.name}.{name}", getattr(tier, name)
    for name in ("link_bandwidth_bytes_per_s", "idle_power_w", "peak_power_w", "launch_overhead_s"):
        yield name, getattr(device, name)


@pytest.fixture(scope="module")
def registry():
    return load_devices()


def test_required_devices_present(registry):
    assert set(REQUIRED) <= set(registry)


def test_every_figure_is_sourced_and_kinded(registry):
    for device in registry.values():
        assert device.kind in ("gpu", "cpu", "soc", "mcu", "accelerator")
        assert set(device.peak_flops) <= set(DTYPES) and device.peak_flops
        assert device.main_tier in {t.name for t in device.tiers}
        for path, fig in all_figures(device):
            if fig is None:
                continue
            assert isinstance(fig, Figure), (device.name, path)
            assert fig.kind in KINDS, (device.name, path)
            assert fig.source.strip(), (device.name, path)
            assert fig.value >= 0 and not math.isnan(fig.value), (device.name, path)


def test_tiers_fastest_first_with_known_names(registry):
    for device in registry.values():
        assert all(t.name in TIER_NAMES for t in device.tiers)
        speeds = [t.bandwidth_bytes_per_s.value for t in device.tiers]
        assert speeds == sorted(speeds, reverse=True), device.name


def test_datasheet_figures_of_the_h100(registry):
    h100 = registry["h100-sxm-80gb"]
    assert h100.tier("hbm").bandwidth_bytes_per_s.value == 3.35e12
    assert h100.tier("hbm").bandwidth_bytes_per_s.kind == "spec"
    assert h100.peak("bfloat16").value == pytest.approx(989e12, rel=1e-3)
    assert "dense" in h100.peak("bfloat16").source.lower()
    assert h100.extras["measured_copy_bytes_per_s"].kind == "measured"
    assert h100.tier("l2").capacity_bytes.value == 50e6


def test_sn40l_has_three_tiers(registry):
    sn40l = registry["sambanova-sn40l"]
    assert [t.name for t in sn40l.tiers] == ["sram", "hbm", "ddr"]
    capacities = [t.capacity_bytes.value for t in sn40l.tiers]
    bandwidths = [t.bandwidth_bytes_per_s.value for t in sn40l.tiers]
    assert capacities[0] < capacities[1] < capacities[2]
    assert bandwidths[0] > bandwidths[1] > bandwidths[2]


def test_jetson_modes_differ_in_power(registry):
    modes = [registry[f"jetson-orin-nano-8gb-{w}"] for w in ("7w", "15w", "25w")]
    assert [m.peak_power_w.value for m in modes] == [7, 15, 25]
    assert modes[0].peak("float16").value < modes[1].peak("float16").value < modes[2].peak("float16").value


def test_derived_energy_per_flop_is_an_estimate(registry):
    h100 = registry["h100-sxm-80gb"]
    fig = h100.energy_j_per_flop["bfloat16"]
    assert fig.kind == "estimate"
    assert fig.value == pytest.approx((700 - 70) / 989.4e12)


def test_peak_falls_back_and_says_so(registry):
    h100 = registry["h100-sxm-80gb"]
    assert h100.peak("torch.bfloat16") == h100.peak_flops["bfloat16"]
    pi = registry["raspberry-pi-5-8gb"]
    bf16 = pi.peak("bfloat16")  # the A76 has no BF16: float16 stands in
    assert bf16.value == pi.peak_flops["float16"].value and "using the float16 figure" in bf16.source
    odd = pi.peak("complex64")
    assert odd.value == pi.peak_flops["float32"].value and "float32" in odd.source


def test_tier_lookup(registry):
    h100 = registry["h100-sxm-80gb"]
    assert h100.tier("dram").name == "hbm" and h100.tier("main").name == "hbm"
    with pytest.raises(ValueError, match="l2, hbm"):
        h100.tier("ddr")


def test_identify():
    assert identify("NVIDIA H100 80GB HBM3").name == "h100-sxm-80gb"
    assert identify("nvidia h100 80gb hbm3").name == "h100-sxm-80gb"
    assert identify("AMD EPYC") is None
    assert identify("NVIDIA H100 PCIe") is None  # a different memory system
    assert identify("NVIDIA GeForce RTX 4090").name == "rtx-4090"
    assert identify("NVIDIA GeForce RTX 4090 Laptop GPU") is None
    assert identify("NVIDIA A100-SXM4-80GB").name == "a100-sxm-80gb"
    assert identify("") is None


def test_get_device_suggests():
    assert get_device("l40s").name == "l40s"
    with pytest.raises(ValueError, match="did you mean h100-sxm-80gb") as err:
        get_device("h100")
    assert "sambanova-sn40l" in str(err.value)  # the known names follow


def test_to_json_is_plain_data(registry):
    data = registry["sambanova-sn40l"].to_json()
    assert data["tiers"][0]["name"] == "sram"
    assert data["tiers"][0]["bandwidth_bytes_per_s"]["kind"] == "estimate"
    assert data["idle_power_w"] is None and isinstance(data["match"], list)
    yaml.safe_dump(data)  # nothing but dicts, lists, strings and numbers


# -- malformed registries ------------------------------------------------------------------------------------

GOOD = {
    "label": "Test GPU", "kind": "gpu", "match": [],
    "peak_flops": {"float32": {"value": 1e12, "kind": "spec", "source": "test"}},
    "tiers": [{"name": "hbm", "capacity_bytes": {"value": 1e9, "kind": "spec", "source": "test"},
               "bandwidth_bytes_per_s": {"value": 1e12, "kind": "spec", "source": "test"},
               "energy_j_per_byte": None}],
    "main_tier": "hbm", "link_bandwidth_bytes_per_s": None,
    "idle_power_w": {"value": 10, "kind": "estimate", "source": "test"},
    "peak_power_w": {"value": 100, "kind": "spec", "source": "test"},
    "launch_overhead_s": {"value": 5e-6, "kind": "estimate", "source": "test"},
    "energy_j_per_flop": "derive",
}


def write_registry(tmp_path, entry):
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"devices": {"test-gpu": entry}}))
    return path


def test_a_good_entry_loads(tmp_path):
    device = load_devices(write_registry(tmp_path, GOOD))["test-gpu"]
    assert device.energy_j_per_flop["float32"].value == pytest.approx(90 / 1e12)


@pytest.mark.parametrize("mutate, field", [
    (lambda e: e["peak_flops"]["float32"].pop("source"), "peak_flops.float32"),
    (lambda e: e["idle_power_w"].update(source="  "), "idle_power_w.source"),
    (lambda e: e["tiers"][0]["bandwidth_bytes_per_s"].update(kind="datasheet"), "tiers[0].bandwidth_bytes_per_s.kind"),
    (lambda e: e["tiers"][0].update(name="vram"), "tiers[0].name"),
    (lambda e: e.update(main_tier="dram"), "main_tier"),
    (lambda e: e.pop("launch_overhead_s"), "launch_overhead_s"),
    (lambda e: e["peak_flops"].update(float128={"value": 1, "kind": "spec", "source": "x"}), "peak_flops.float128"),
    (lambda e: e["peak_flops"]["float32"].update(value="fast"), "peak_flops.float32.value"),
    (lambda e: e.update(kind="fpga"), "kind"),
])
def test_a_malformed_entry_names_device_and_field(tmp_path, mutate, field):
    entry = yaml.safe_load(yaml.safe_dump(GOOD))  # deep copy
    mutate(entry)
    with pytest.raises(ValueError, match=re.escape(f"device 'test-gpu', field '{field}'")):
        load_devices(write_registry(tmp_path, entry))


def test_tiers_out_of_order_are_refused(tmp_path):
    entry = yaml.safe_load(yaml.safe_dump(GOOD))
    slow = yaml.safe_load(yaml.safe_dump(entry["tiers"][0]))
    slow["name"] = "ddr"
    slow["bandwidth_bytes_per_s"]["value"] = 1e11
    entry["tiers"].insert(0, slow)
    with pytest.raises(ValueError, match="fastest first"):
        load_devices(write_registry(tmp_path, entry))


# -- calibration -------------------------------------------------------------------------------------------


def test_this_machine_from_calibration():
    device = from_calibration(PROFILE)
    assert device.name == "this-machine" and device.kind == "cpu"
    main = device.tier(device.main_tier)
    assert main.bandwidth_bytes_per_s.value == 1.1e10 and main.bandwidth_bytes_per_s.kind == "measured"
    assert "membench calibrate 2026-11-22T05:00:00Z" in main.bandwidth_bytes_per_s.source
    assert main.capacity_bytes.value == 25e9
    assert device.tier("ssd").bandwidth_bytes_per_s.value == 3e9  # the largest chunk, not the 4 KiB one
    assert device.peak("float32").value == 1.2e11 and device.peak("float32").kind == "measured"
    assert device.peak("bfloat16").value == 3e10
    assert device.launch_overhead_s.value == 2e-6 and device.launch_overhead_s.kind == "measured"
    assert device.link_bandwidth_bytes_per_s is None
    assert device.idle_power_w is None and device.peak_power_w is None


def test_calibration_replaces_base_ceilings():
    base = get_device("h100-sxm-80gb")
    profile = {"device": "gpu", "name": "NVIDIA H100 80GB HBM3", "measured_at": "2026-11-22T06:00:00Z",
               "copy_bytes_per_s": 2.96e12, "matmul_flops_per_s": {"bfloat16": 7.8e14},
               "h2d_bytes_per_s": 5.5e10, "d2h_bytes_per_s": 5.2e10}
    device = from_calibration(profile, base)
    assert device.name == base.name
    assert device.tier("hbm").bandwidth_bytes_per_s == Figure(
        2.96e12, "measured", "membench calibrate 2026-11-22T06:00:00Z: device copy, bytes read + written")
    assert device.peak("bfloat16").value == 7.8e14 and device.peak("bfloat16").kind == "measured"
    assert device.link_bandwidth_bytes_per_s.value == 5.2e10  # min(h2d, d2h)
    # what the profile lacks keeps the datasheet value
    assert device.peak("fp8") == base.peak("fp8")
    assert device.tier("hbm").capacity_bytes == base.tier("hbm").capacity_bytes
    assert device.launch_overhead_s == base.launch_overhead_s
    assert base.tier("hbm").bandwidth_bytes_per_s.value == 3.35e12  # the registry itself is untouched


def test_calibration_without_a_main_ceiling_is_refused():
    with pytest.raises(ValueError, match="copy_bytes_per_s"):
        from_calibration({"device": "cpu", "name": "x"})
