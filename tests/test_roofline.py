"""The roofline's link tier: multi-device communication as one more stream beside memory."""

import pytest

from reference_impls.hardware.roofline import roofline


def test_interconnect_is_a_tier_of_half_nvlinks_total():
    from reference_impls.hardware.devices import load_devices

    h200 = load_devices()["h200-141gb"]
    link = h200.tier("interconnect")
    assert link.bandwidth_bytes_per_s.value == 450e9 and "one direction" in link.bandwidth_bytes_per_s.source
    # 1 GB sent per rank over 450 GB/s, beside 4.8 GB of HBM traffic at 4.8 TB/s: the link binds
    floor = roofline(h200, 1e9, {"dram": 4.8e9, "interconnect": 1e9}, "bfloat16", launches=0)
    assert floor.memory_s["interconnect"] == 1e9 / 450e9 and floor.bound == "memory:interconnect"
    assert list(floor.memory_s)[-1] == "interconnect"


def test_a_device_without_a_link_declines_the_prediction():
    from harness.case import Cost
    from harness.prediction import DeviceModels, predict
    from reference_impls.hardware.devices import load_devices

    pi = load_devices()["raspberry-pi-5-8gb"]
    with pytest.raises(ValueError, match="no interconnect figure"):
        pi.tier("interconnect")
    out = predict(Cost(1e6, {"dram": 1e6, "interconnect": 1e5}), 1e-3, DeviceModels(pi, pi))
    assert out == {"no_prediction": out["no_prediction"]} and "no interconnect figure" in out["no_prediction"]
