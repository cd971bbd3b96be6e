"""Measure this machine's ceilings: memory bandwidth, matmul FLOP/s per dtype, host↔device links, file
reads by chunk size, and call/launch overhead. The roofline uses them in place of datasheet peaks.

Each measurement is a median of timed repeats after a warm-up, on random data (never zeros), with the
device synchronized before every clock read.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

MATMUL_DTYPES = ("float32", "bfloat16", "float16", "float64")


@dataclass(frozen=True)
class CalibrationSizes:
    """How big and how long: `quick` runs before every suite, `full` is `membench calibrate`."""

    copy_bytes: int
    matmul_n: dict[str, int]
    file_bytes: int
    repeats: int

    @classmethod
    def quick(cls, device: str) -> CalibrationSizes:
        if device == "cuda":
            return cls(1 << 30, {"bfloat16": 8192, "float16": 8192, "float32": 4096, "float64": 2048}, 64 << 20, 5)
        return cls(256 << 20, {"float32": 1024, "bfloat16": 1024, "float64": 512}, 32 << 20, 3)

    @classmethod
    def full(cls, device: str) -> CalibrationSizes:
        if device == "cuda":
            return cls(2 << 30, {"bfloat16": 8192, "float16": 8192, "float32": 8192, "float64": 4096}, 512 << 20, 20)
        return cls(512 << 20, {"float32": 2048, "bfloat16": 1024, "float64": 1024}, 256 << 20, 7)


def median_time(fn: Callable[[], object], sync: Callable[[], None], repeats: int, warmup: int = 2) -> float:
    """Median seconds of `fn` (device synchronized around each call)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def copy_bandwidth(device: str, nbytes: int, repeats: int) -> float:
    """Bytes read + written per second by a large device-to-device copy (how kernels are charged)."""
    src = torch.rand(nbytes // 4, device=device)  # [N] float32, random
    dst = torch.empty_like(src)
    seconds = median_time(lambda: dst.copy_(src), _sync(device), repeats)
    return 2 * src.numel() * 4 / seconds


def read_bandwidth(device: str, nbytes: int, repeats: int) -> float:
    """Bytes read per second by a reduction over a large buffer (one read, a scalar written)."""
    src = torch.rand(nbytes // 4, device=device)
    seconds = median_time(lambda: src.sum(), _sync(device), repeats)
    return src.numel() * 4 / seconds


def matmul_flops(device: str, dtype: str, n: int, repeats: int) -> float | None:
    """2·n³ / median time of an n×n×n product; None if this dtype has no matmul here."""
    torch_dtype = getattr(torch, dtype)
    g = torch.Generator(device=device).manual_seed(0)
    try:
        a = torch.randn(n, n, device=device, generator=g).to(torch_dtype)
        b = torch.randn(n, n, device=device, generator=g).to(torch_dtype)
        seconds = median_time(lambda: a @ b, _sync(device), repeats)
    except RuntimeError:
        return None
    return 2.0 * n**3 / seconds


def exp_throughput(device: str, elements: int = 262144, repeats: int = 5) -> float:
    """exp() results per second on a cache-resident float32 tensor (1 MiB: large enough for every thread,
    small enough for the caches): the transcendental ceiling softmax meets.

    On a GPU torch's exp is bound by memory, not by the special-function units, so only the CPU figure is
    meaningful; GPUs use the registry's figure.
    """
    x = torch.rand(elements, device=device)
    out = torch.empty_like(x)
    batch = 20
    seconds = median_time(lambda: [torch.exp(x, out=out) for _ in range(batch)], _sync(device), repeats)
    return elements * batch / seconds


def host_link_bandwidth(nbytes: int, repeats: int) -> tuple[float, float]:
    """(host→device, device→host) bytes per second with pinned host memory."""
    host = torch.rand(nbytes // 4).pin_memory()
    dev = torch.empty(nbytes // 4, device="cuda")
    h2d = median_time(lambda: dev.copy_(host, non_blocking=True), torch.cuda.synchronize, repeats)
    d2h = median_time(lambda: host.copy_(dev, non_blocking=True), torch.cuda.synchronize, repeats)
    return nbytes / h2d, nbytes / d2h


def call_overhead(device: str, calls: int = 2000) -> float:
    """Seconds per tiny op, launched back to back: the fixed cost every kernel or call pays."""
    x = torch.rand(1, device=device)
    sync = _sync(device)
    for _ in range(100):
        x.add_(1.0)
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        x.add_(1.0)
    sync()
    return (time.perf_counter() - t0) / calls


def graph_launch_overhead(kernels: int = 200, replays: int = 20) -> float:
    """Seconds per tiny kernel replayed from a CUDA graph: the launch cost of a graph-timed case, which skips
    the host's launch path (call_overhead measures that path)."""
    x = torch.rand(1, device="cuda")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        x.add_(1.0)  # warm the kernel outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        for _ in range(kernels):
            x.add_(1.0)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / (replays * kernels)


def file_read_bandwidth(nbytes: int, chunks: tuple[int, ...] = (4096, 65536, 1 << 20, 16 << 20),
                        folder: str | None = None) -> tuple[list[dict], str]:
    """Sequential os.pread throughput by chunk size, the page cache dropped for the file before each pass.

    Returns (rows, method): method says whether the cache could be dropped (posix_fadvise DONTNEED) or the
    numbers are page-cache reads.
    """
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as f:
        f.write(os.urandom(nbytes))
        f.flush()
        os.fsync(f.fileno())
        path = f.name
    rows, method = [], "posix_fadvise(DONTNEED) before each pass"
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            for chunk in chunks:
                if not _drop_cache(fd):
                    method = "page cache (could not drop it)"
                t0 = time.perf_counter()
                for offset in range(0, nbytes, chunk):
                    os.pread(fd, chunk, offset)
                rows.append({"chunk_bytes": chunk, "bytes_per_s": nbytes / (time.perf_counter() - t0)})
        finally:
            os.close(fd)
    finally:
        os.unlink(path)
    return rows, method


def _drop_cache(fd: int) -> bool:
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (AttributeError, OSError):
        return False


def _nvml_energy_j() -> Callable[[], float] | None:
    """NVML total-energy counter of GPU 0 in joules, or None where there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:
        return None
    return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3


def _average_power(read_j: Callable[[], float], fn: Callable[[], object], window_s: float) -> tuple[float, float]:
    """(watts, calls per second) of running `fn` back to back for at least `window_s`."""
    fn()
    torch.cuda.synchronize()
    e0, t0, calls = read_j(), time.perf_counter(), 0
    while time.perf_counter() - t0 < window_s:
        fn()
        calls += 1
        if calls % 8 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return (read_j() - e0) / seconds, calls / seconds


def _copy_power(read_j: Callable[[], float], copy_bytes: int, window_s: float) -> tuple[float, float]:
    src = torch.rand(copy_bytes // 4, device="cuda")
    dst = torch.empty_like(src)
    return _average_power(read_j, lambda: dst.copy_(src), window_s)


def power_profile(copy_bytes: int, matmul_n: int, window_s: float = 2.0) -> dict | None:
    """Energy-roofline coefficients of GPU 0 from NVML: idle and constant power, joules per byte and per FLOP.

    Four windows: idle (sleeping), busy doing nothing (tiny kernels back to back: clocks up, no traffic),
    a large copy (bytes), a bf16 matmul (FLOPs). Each coefficient is the power difference over the rate.
    The idle window follows other work, so the GPU may not have settled; runs subtract their own idle.
    """
    read_j = _nvml_energy_j()
    if read_j is None:
        return None
    e0, t0 = read_j(), time.perf_counter()
    time.sleep(window_s)
    idle_w = (read_j() - e0) / (time.perf_counter() - t0)
    tiny = torch.rand(1, device="cuda")
    constant_w, _ = _average_power(read_j, lambda: tiny.add_(1.0), window_s)
    copy_w, copies_per_s = _copy_power(read_j, copy_bytes, window_s)
    j_per_byte = (copy_w - constant_w) / (copies_per_s * 2 * copy_bytes)
    a, b = (torch.randn(matmul_n, matmul_n, device="cuda").to(torch.bfloat16) for _ in range(2))
    matmul_w, products_per_s = _average_power(read_j, lambda: a @ b, window_s)
    flops_per_s, mm_bytes_per_s = products_per_s * 2.0 * matmul_n**3, products_per_s * 3 * 2 * matmul_n**2
    j_per_flop = (matmul_w - constant_w - j_per_byte * mm_bytes_per_s) / flops_per_s
    return {"idle_w": idle_w, "constant_w": constant_w, "copy_w": copy_w, "matmul_w": matmul_w,
            "j_per_byte": j_per_byte, "j_per_flop": {"bfloat16": j_per_flop}, "window_s": window_s,
            "source": "NVML total-energy counter over membench calibrate's idle, busy, copy and matmul windows"}


def calibrate(device: str, sizes: CalibrationSizes) -> dict:
    """One profile of this machine's ceilings for `device` ("cpu" or "cuda")."""
    started = time.perf_counter()
    profile: dict = {
        "device": device,
        "name": _device_name(device),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "copy_bytes_per_s": copy_bandwidth(device, sizes.copy_bytes, sizes.repeats),
        "read_bytes_per_s": read_bandwidth(device, sizes.copy_bytes, sizes.repeats),
        "matmul_flops_per_s": {d: matmul_flops(device, d, n, sizes.repeats) for d, n in sizes.matmul_n.items()},
        "matmul_sizes": dict(sizes.matmul_n),
        "launch_overhead_s": call_overhead(device),
        "h2d_bytes_per_s": None,
        "d2h_bytes_per_s": None,
    }
    if device == "cuda":
        profile["h2d_bytes_per_s"], profile["d2h_bytes_per_s"] = host_link_bandwidth(256 << 20, sizes.repeats)
        try:
            profile["graph_launch_overhead_s"] = graph_launch_overhead()
        except RuntimeError as exc:  # no graph support in this build/driver: predictions keep the host path
            profile["graph_launch_overhead_s"], profile["graph_launch_error"] = None, str(exc).splitlines()[0]
        props = torch.cuda.get_device_properties(0)
        profile["memory_total_bytes"] = props.total_memory
        profile["llc_bytes"] = getattr(props, "L2_cache_size", None)
        window_s = 2.0 if sizes.repeats > 5 else 1.0
        profile["power"] = power_profile(sizes.copy_bytes, sizes.matmul_n["bfloat16"], window_s)
    else:
        import psutil

        profile["memory_total_bytes"] = psutil.virtual_memory().total
        profile["llc_bytes"] = last_level_cache_bytes()
        profile["special_ops_per_s"] = exp_throughput(device)
    profile["file_read"], profile["file_read_method"] = file_read_bandwidth(sizes.file_bytes)
    profile["copy_buffer_bytes"], profile["seconds"] = sizes.copy_bytes, time.perf_counter() - started
    return profile


def last_level_cache_bytes() -> int | None:
    """Largest CPU cache (sysfs, e.g. "32768K"): working sets below it are served from cache, not DRAM."""
    from pathlib import Path

    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes) if sizes else None


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    from pathlib import Path

    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()
