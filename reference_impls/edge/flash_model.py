"""Modeled time per token of flash-offloaded FFN loading on a device profile: reads x latency + bytes / bandwidth.

WHY: flash throughput depends on the chunk read (LLM in a flash, Fig. 2): each read pays a fixed access latency
before streaming at the tier's sequential bandwidth, so the effective bandwidth of a chunk c is
c / (latency + c / bandwidth). The bandwidth comes from the device registry (the device's ssd or flash tier);
the access latency is a per-device estimate kept here. Reads are issued one at a time (queue depth 1, as
flash_offload does); compute is the roofline of the gathered rows on the same device, added after the reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_impls.hardware.devices import Device, get_device
from reference_impls.hardware.roofline import roofline


@dataclass(frozen=True)
class FlashProfile:
    tier: str  # the registry tier the weights are read from
    read_latency_s: float
    source: str


FLASH_PROFILES: dict[str, FlashProfile] = {
    "raspberry-pi-5-8gb": FlashProfile("ssd", 100e-6, "estimate: NVMe 4 KiB random read at queue depth 1 is ~70-100 "
                                                       "us; the Pi's single PCIe 2.0 lane adds little at this size"),
    "jetson-orin-nano-8gb-25w": FlashProfile("ssd", 80e-6, "estimate: NVMe 4 KiB random read at queue depth 1, "
                                                           "~70-90 us on PCIe Gen3 drives"),
    "snapdragon-8-gen3-phone": FlashProfile("flash", 100e-6, "estimate: UFS 4.0 4 KiB random read at queue depth 1, "
                                                             "~80-120 us (vendor random-read IOPS are at QD32)"),
}


def profile_of(device: Device) -> FlashProfile:
    if device.name not in FLASH_PROFILES:
        raise ValueError(f"no flash read profile for {device.name!r}; known: {', '.join(FLASH_PROFILES)}")
    return FLASH_PROFILES[device.name]


def effective_bandwidth(device: Device, chunk_bytes: float) -> float:
    """Bytes/s of reads of `chunk_bytes` each: chunk / (latency + chunk / bandwidth)."""
    if not chunk_bytes > 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    profile = profile_of(device)
    bandwidth = device.tier(profile.tier).bandwidth_bytes_per_s.value
    return chunk_bytes / (profile.read_latency_s + chunk_bytes / bandwidth)


def seconds_per_token(device_name: str, reads_per_token: float, bytes_per_token: float, flops_per_token: float,
                      touched_bytes_per_token: float) -> float:
    """reads x latency + bytes / flash bandwidth + roofline(flops, resident bytes touched) on the device."""
    device = get_device(device_name)
    profile = profile_of(device)
    bandwidth = device.tier(profile.tier).bandwidth_bytes_per_s.value
    io = reads_per_token * profile.read_latency_s + bytes_per_token / bandwidth
    compute = roofline(device, flops_per_token, {"dram": touched_bytes_per_token}, "float32").latency_s
    return io + compute
