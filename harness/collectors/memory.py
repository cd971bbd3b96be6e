"""Peak memory of one call: the process's peak RSS on CPU, torch's allocator peak on CUDA.

`peak_memory_overhead_bytes` is the peak minus what was resident just before the call with its inputs
allocated — the quantity the attention-memory papers report. On CPU the worker resets the kernel's RSS
high-water mark (/proc/self/clear_refs, "5") right before the call and reads VmHWM after it, and fixes
glibc's mmap threshold so freed buffers go back to the OS instead of hiding inside the heap.
"""

from __future__ import annotations

import ctypes
import gc
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.case import metric

MEASURE_MMAP_THRESHOLD = 64 * 1024  # every buffer >= 64 KiB is its own mapping, unmapped when freed
STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024  # where glibc's dynamic threshold ends up (its 64-bit maximum)
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1  # glibc mallopt parameter numbers


def configure_allocator(mmap_threshold: int, trim_threshold: int) -> str:
    """Fix glibc's mmap/trim thresholds: for the peak measurement, freed buffers must leave the RSS.

    With the default dynamic threshold, a freed buffer raises the threshold and later buffers of that size
    stay inside the heap after free, so "what was resident before the call" includes garbage and the peak
    of the next call hides in it. Timing runs with the threshold the dynamic rule converges to.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    except OSError:
        return "glibc not found: allocator left as is"
    if not ok:
        return "glibc mallopt refused: allocator left as is"
    return f"glibc M_MMAP_THRESHOLD={mmap_threshold} B, M_TRIM_THRESHOLD={trim_threshold} B"


def _release_free_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_peak(call: Callable[[], Any], isolation: str) -> tuple[Any, dict[str, dict]]:
    """Run `call` once; return its output and the peak/overhead metrics with how they were taken."""
    allocator_note = configure_allocator(MEASURE_MMAP_THRESHOLD, 2 * MEASURE_MMAP_THRESHOLD)
    _release_free_memory()
    if Path("/proc/self/clear_refs").exists() and _reset_high_water_mark():
        baseline = _status_kib("VmRSS") * 1024
        output = call()
        peak, how = _status_kib("VmHWM") * 1024, "VmHWM after resetting it via /proc/self/clear_refs"
    else:
        baseline, (output, peak) = _rss_now(), _sampled_peak(call)
        how = "RSS sampled every 1 ms by a thread (no clear_refs here: may miss short peaks)"
    configure_allocator(STEADY_MMAP_THRESHOLD, 2 * STEADY_MMAP_THRESHOLD)
    source = "isolated_rss" if isolation == "process" else "inline_rss"
    note = f"{how}; {allocator_note}; isolation={isolation}"
    return output, {
        "peak_memory_bytes": metric(peak, "B", source, note=note, baseline_bytes=baseline),
        "peak_memory_overhead_bytes": metric(max(peak - baseline, 0), "B", source, note=note),
    }


def _rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _sampled_peak(call: Callable[[], Any]) -> tuple[Any, int]:
    peak, done = [_rss_now()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_now())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        output = call()
    finally:
        done.set()
        thread.join()
    return output, max(peak[0], _rss_now())


def cuda_peak(call: Callable[[], Any]) -> tuple[Any, dict[str, dict]]:
    """torch.cuda's allocator peak around one call (tensors only; no CUDA context or workspace outside it)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    output = call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    source, note = "torch_cuda_max_memory_allocated", "reset_peak_memory_stats before the call"
    return output, {
        "peak_memory_bytes": metric(peak, "B", source, note=note, baseline_bytes=baseline),
        "peak_memory_overhead_bytes": metric(peak - baseline, "B", source, note=note),
    }
