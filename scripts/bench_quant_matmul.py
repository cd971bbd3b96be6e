"""W4A16 and W8A8 matmul on one GPU: correctness against float64, then time against bf16 over batch M = 1..256.

    PYTHONPATH=. python scripts/bench_quant_matmul.py --out results/quant-matmul-bench [--tune] [--budget-s 200]
    PYTHONPATH=. python scripts/bench_quant_matmul.py --out DIR --sweep   # checks, read floor, small-M mma configs
    PYTHONPATH=. python scripts/bench_quant_matmul.py --out DIR --gemv    # checks, then quant_gemv_diagnostics.py
    PYTHONPATH=. python scripts/bench_quant_matmul.py --once              # 3 calls per kernel, for ncu
    PYTHONPATH=. python scripts/bench_quant_matmul.py --cpu [--n 4096 --k 4096]

Measures, for (N, K) in (4096, 4096), (14336, 4096), (4096, 14336) (y = x [M, K] @ W^T, W [N, K]):
  copy     a 1 GiB float32 device-to-device copy (bytes read + written / time): the bandwidth ceiling
  check    triton_int4 (gemv and mma kernels, sym and asym, bf16 and fp16, ragged shapes, groups 32..K, split K) and the
           W8A8 torch._int_mm path on fresh random inputs: ||y - ref|| / ||ref|| against the float64 product of
           the same quantized weight must be <= 2 x the error of rounding that product to the dtype (+ 1e-4)
  tune     (--tune) kernel configs for triton_int4 at M in TUNE_BATCHES: the CUDA-core GEMV at M = 1 and the
           tensor-core kernel, then splits of K for the best of each
  table    bf16 F.linear vs triton_int4 (default configs: what the workload runs; and the best tuned config when
           --tune ran) vs W8A8 (per-token int8 quantization of x + torch._int_mm + scaling), M = 1 .. 256
--cpu: on this CPU at M = 1 (float32): the dense matvec, dequantize-then-matmul, LUT GEMV (8- and 4-element
tables) at 2, 3 and 4 bits, and the ternary GEMV, each checked against float64 first, timed in interleaved rounds.
Every timing replays a CUDA graph of calls cycling through weight sets of >= ROTATE_BYTES in all (4x the 50 MB
L2), so weights stream from HBM; the median of 5 replays. GB/s = bytes the implementation must read and write
(packed codes + scales + zero points + x + y) / time. Imports only the quant kernel modules.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from reference_impls.kernels.quant import int8_matmul as i8
from reference_impls.kernels.quant import triton_int4 as t4

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]  # (N, K)
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
GROUP = 128
ROTATE_BYTES = 200 * 2**20
COPY_CEILING_TBS = 2.96  # the brief's H100 copy ceiling; the measured one is printed beside it
GEMV_TUNE = [dict(block_n=bn, num_warps=w, num_stages=st, prefetch=pf) for bn, w, st, pf in [
    (128, 4, 2, True), (64, 2, 2, True)]]
MMA_TUNE = [dict(block_m=bm, block_n=bn, num_warps=w, num_stages=st) for bm, bn, w, st in [
    (16, 64, 4, 3), (16, 128, 4, 3), (16, 128, 8, 3), (16, 256, 8, 3), (16, 128, 4, 4),
    (32, 64, 4, 3), (32, 128, 4, 3), (32, 256, 8, 3), (32, 128, 4, 4), (64, 128, 4, 3)]]
TUNE_BATCHES = (1, 16, 64, 256)
SPLITS = [0, 1, 2, 4, 8, 16, 32]
START = time.perf_counter()


def event_ms(fn: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def time_per_call(call: Callable[[int], object], sets: int) -> float:
    """Seconds per call: a CUDA graph of calls cycling through `sets` input sets (~3 ms of work), median of 5."""
    for i in range(sets):
        call(i)
    torch.cuda.synchronize()
    once = min(event_ms(lambda: call(0)) for _ in range(3))
    reps = max(2 * sets, min(600, math.ceil(3.0 / max(once, 1e-3))))
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        call(0)
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        for i in range(reps):
            call(i % sets)
    graph.replay()
    torch.cuda.synchronize()
    samples = [event_ms(graph.replay) / reps for _ in range(5)]
    del graph
    return statistics.median(samples) / 1e3


def copy_bandwidth() -> float:
    src = torch.rand(2**28, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    ms = statistics.median(event_ms(lambda: [dst.copy_(src) for _ in range(10)]) / 10 for _ in range(5))
    return 2 * 2**30 / (ms / 1e3)


def random_int4(n: int, k: int, symmetric: bool, device: str = "cuda", scale_dtype: torch.dtype = torch.float16,
                group: int = GROUP) -> t4.PackedInt4:
    groups = math.ceil(k / group)
    if symmetric:
        codes, zero = torch.randint(-7, 8, (n, k), dtype=torch.int8, device=device), None
    else:
        codes = torch.randint(0, 16, (n, k), dtype=torch.uint8, device=device)
        zero = torch.randint(0, 16, (n, groups), dtype=torch.uint8, device=device)
    scale = (torch.rand(n, groups, device=device) * 0.02 + 0.002).to(scale_dtype)
    return t4.pack_int4(codes, scale, zero, group)


def lattice_x(m: int, k: int, dtype: torch.dtype, device: str = "cuda") -> torch.Tensor:
    """Random x whose per-token int8 quantization is exact (integers times a power of two, each row reaching
    127), so W8A8 is checked on its arithmetic, not on activation rounding."""
    q = torch.randint(-127, 128, (m, k), device=device, dtype=torch.float32)
    q[:, 0] = 127.0
    return (q * 2.0 ** torch.randint(-9, -5, (m, 1), device=device)).to(dtype)


def rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    y = y.double()
    return float("inf") if not torch.isfinite(y).all() else float((y - ref).norm() / ref.norm())


def check(rows: list[dict]) -> bool:
    """Every kernel against float64 on fresh random inputs; False if any fails."""
    ok = True
    cases = [  # (m, n, k, symmetric, dtype, kernel, group, config)
        (1, 4096, 4096, True, torch.bfloat16, "gemv", GROUP, {}), (1, 4096, 14336, False, torch.bfloat16, "gemv",
                                                                   GROUP, {}),
        (3, 1000, 1000, True, torch.float16, "gemv", 64, {"splits": 3}), (1, 334, 4100, False, torch.bfloat16,
                                                                           "gemv", GROUP, {"splits": 1}),
        (2, 4100, 4104, False, torch.float16, "gemv", 32, {}), (1, 14336, 4096, False, torch.bfloat16, "gemv",
                                                                 GROUP, {"block_n": 128, "num_warps": 4}),
        (4, 1000, 1000, True, torch.bfloat16, "gemv", 1000, {"splits": 2}),
        (1, 4096, 4096, True, torch.bfloat16, "mma", GROUP, {}), (1, 4096, 14336, False, torch.bfloat16, "mma",
                                                                  GROUP, {}),
        (17, 4096, 4096, True, torch.bfloat16, "mma", GROUP, {}), (256, 14336, 4096, False, torch.bfloat16, "mma",
                                                                   GROUP, {}),
        (5, 1000, 1000, True, torch.float16, "mma", 32, {"splits": 3}), (33, 4100, 4104, False, torch.bfloat16,
                                                                          "mma", 64, {}),
        (7, 1000, 1000, False, torch.float16, "mma", 1000, {}), (130, 1000, 1000, True, torch.bfloat16, "mma", 256,
                                                                 {}),
        (64, 4096, 14336, True, torch.bfloat16, "auto", GROUP, {}), (2, 14336, 4096, True, torch.bfloat16, "auto",
                                                                     GROUP, {}),
    ]
    for m, n, k, sym, dtype, kernel, group, cfg in cases:
        w = random_int4(n, k, sym, group=group)
        x = torch.randn(m, k, device="cuda").to(dtype)
        ref = x.double() @ t4.dequantize_int4(w).t()
        y = t4.int4_matmul(x, w, kernel, **cfg)
        again = t4.int4_matmul(x, w, kernel, **cfg)
        err, floor = rel_error(y, ref), rel_error(ref.to(dtype), ref)
        passed = err <= 2 * floor + 1e-4 and torch.equal(y, again)
        ok &= passed
        rows.append({"section": "check", "impl": f"triton_int4/{kernel}/g{group}", "m": m, "n": n, "k": k, "sym": sym,
                     "dtype": str(dtype), "error": err, "dtype_rounding": floor, "passed": passed})
    for m, n, k in [(1, 4096, 4096), (20, 1000, 1004), (64, 4096, 14336)]:
        codes = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
        scale = torch.rand(n, device="cuda") * 0.01 + 0.001
        w = i8.prepare_int8_weight(codes, scale)
        x = lattice_x(m, k, torch.bfloat16)
        ref = x.double() @ (codes.double() * scale.double()[:, None]).t()
        y = i8.int8_linear(x, w)
        err, floor = rel_error(y, ref), rel_error(ref.to(torch.bfloat16), ref)
        passed = err <= 2 * floor + 1e-4
        ok &= passed
        rows.append({"section": "check", "impl": "int8_int_mm", "m": m, "n": n, "k": k, "sym": True,
                     "dtype": "torch.bfloat16", "error": err, "dtype_rounding": floor, "passed": passed})
    for r in rows:
        print(f"check {r['impl']:18s} M={r['m']:<4d} N={r['n']:<6d} K={r['k']:<6d} sym={r['sym']!s:5s} "
              f"{r['dtype']:15s} err={r['error']:.2e} (dtype rounding {r['dtype_rounding']:.2e}) "
              f"{'ok' if r['passed'] else 'FAILED'}", flush=True)
    return ok


class Shape:
    """Rotating weight sets of one (N, K) for each implementation, and x per batch size."""

    def __init__(self, n: int, k: int, symmetric: bool = True) -> None:
        self.n, self.k = n, k
        self.int4 = [random_int4(n, k, symmetric) for _ in range(math.ceil(ROTATE_BYTES / (n * k / 2)))]
        self.bf16 = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
                     for _ in range(math.ceil(ROTATE_BYTES / (n * k * 2)))]
        self.int8 = [i8.prepare_int8_weight(torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda"),
                                            torch.rand(n, device="cuda") * 0.01)
                     for _ in range(math.ceil(ROTATE_BYTES / (n * k)))]
        self.x = {m: torch.randn(m, k, device="cuda", dtype=torch.bfloat16) for m in BATCHES}

    def io_bytes(self, m: int) -> int:
        return 2 * m * (self.k + self.n)

    def time_int4(self, m: int, kernel: str = "auto", **cfg: int) -> float:
        x = self.x[m]
        return time_per_call(lambda i: t4.int4_matmul(x, self.int4[i], kernel, **cfg), len(self.int4))

    def time_bf16(self, m: int) -> float:
        x = self.x[m]
        return time_per_call(lambda i: F.linear(x, self.bf16[i]), len(self.bf16))

    def time_int8(self, m: int) -> float:
        x = self.x[m]
        return time_per_call(lambda i: i8.int8_linear(x, self.int8[i]), len(self.int8))


def tune(shape: Shape, rows: list[dict], budget_s: float) -> dict:
    """Best (seconds, kernel, config) per M: GEMV_TUNE at M <= 4, GEMM_TUNE at every M, then splits for the
    best config of each, until `budget_s` seconds after the script's start."""
    best: dict[int, tuple[float, str, dict]] = {}

    def record(m: int, kernel: str, cfg: dict) -> float:
        if time.perf_counter() - START > budget_s:
            return math.inf
        try:
            seconds = shape.time_int4(m, kernel, **cfg)
        except Exception as exc:  # noqa: BLE001 — a config that fails to compile is reported, not fatal
            print(f"tune N={shape.n} K={shape.k} M={m} {kernel} {cfg}: {type(exc).__name__}: {exc}"[:300])
            return math.inf
        rows.append({"section": "tune", "n": shape.n, "k": shape.k, "m": m, "impl": f"triton_int4/{kernel}",
                     "config": json.dumps(cfg), "time_us": seconds * 1e6})
        if m not in best or seconds < best[m][0]:
            best[m] = (seconds, kernel, dict(cfg))
        return seconds

    for m in TUNE_BATCHES:
        mma_configs = [c for c in MMA_TUNE if (c["block_m"] == 16) == (m <= 16)]
        for kernel, configs in (("gemv", GEMV_TUNE if m == 1 else []), ("mma", mma_configs)):
            timed = [(record(m, kernel, cfg), i) for i, cfg in enumerate(configs)]
            if timed and min(timed)[0] < math.inf:
                top = configs[min(timed)[1]]
                for splits in SPLITS[1:]:
                    record(m, kernel, top | {"splits": splits})
    return best


def table(shape: Shape, best: dict, rows: list[dict]) -> None:
    floor_us = read_floor(shape.int4[0].nbytes + shape.io_bytes(1))[0] * 1e6
    for m in BATCHES:
        t_bf16, t_int8 = shape.time_bf16(m), shape.time_int8(m)
        t_int4 = shape.time_int4(m)
        t_gemv = shape.time_int4(m, "gemv") if m <= 2 else math.nan
        row = {"section": "table", "n": shape.n, "k": shape.k, "m": m, "bf16_us": t_bf16 * 1e6,
               "int4_us": t_int4 * 1e6, "gemv_us": t_gemv * 1e6, "read_floor_us": floor_us,
               "int4_kernel": t4.choose_kernel(m, shape.n), "int8_us": t_int8 * 1e6,
               "int4_bytes": shape.int4[0].nbytes + shape.io_bytes(m), "bf16_bytes": shape.n * shape.k * 2 +
               shape.io_bytes(m), "int8_bytes": shape.int8[0].nbytes + shape.io_bytes(m)}
        if m in best:
            row |= {"int4_best_us": best[m][0] * 1e6, "int4_best": f"{best[m][1]} {json.dumps(best[m][2])}"}
        rows.append(row)
        print(f"table N={shape.n} K={shape.k} M={m}: bf16 {row['bf16_us']:.1f} us, int4 {row['int4_us']:.1f} us "
              f"(read floor {floor_us:.1f} us) "
              f"({t_bf16 / t_int4:.2f}x), int8 {row['int8_us']:.1f} us", flush=True)


def markdown(rows: list[dict], copy_bps: float) -> str:
    lines = [f"measured copy bandwidth {copy_bps / 1e12:.2f} TB/s (brief's ceiling {COPY_CEILING_TBS} TB/s)", "",
             "read floor: a Triton kernel that only reads the int4 bytes (M = 1), timed the same way (graph, rotating"
             " sets); floor x = bf16 / floor, the best any int4 kernel could do against bf16 here", "",
             "| N x K | M | bf16 us | int4 us | int4 x vs bf16 | int4 GB/s | int4 % copy | read floor us | floor x |"
             " int4 / floor | gemv us | best int4 us | best x | int8 us | int8 x vs bf16 | bf16 GB/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["section"] == "table"):
        gbs = r["int4_bytes"] / r["int4_us"] / 1e3
        best_us = r.get("int4_best_us")
        best = f"{best_us:.1f} | {r['bf16_us'] / best_us:.2f}" if best_us else "- | -"
        lines.append(f"| {r['n']}x{r['k']} | {r['m']} | {r['bf16_us']:.1f} | {r['int4_us']:.1f} | "
                     f"{r['bf16_us'] / r['int4_us']:.2f} | {gbs:.0f} | {100 * gbs * 1e9 / copy_bps:.0f}% | "
                     f"{r['read_floor_us']:.1f} | {r['bf16_us'] / r['read_floor_us']:.2f} | "
                     f"{r['int4_us'] / r['read_floor_us']:.2f} | "
                     f"{'-' if math.isnan(r['gemv_us']) else format(r['gemv_us'], '.1f')} | {best} | "
                     f"{r['int8_us']:.1f} | {r['bf16_us'] / r['int8_us']:.2f} | "
                     f"{r['bf16_bytes'] / r['bf16_us'] / 1e3:.0f} |")
    for n, k in SHAPES:
        slower = [r["m"] for r in rows if r["section"] == "table" and (r["n"], r["k"]) == (n, k)
                  and r["int4_us"] >= r["bf16_us"]]
        lines.append(f"\n{n}x{k}: int4 stops being faster than bf16 at M = {min(slower) if slower else '> 256'}")
    return "\n".join(lines)


SWEEP_MMA = [dict(block_m=16, block_n=bn, num_warps=w, num_stages=st) for bn, w, st in [
    (32, 2, 2), (32, 2, 4), (64, 2, 3), (128, 4, 3), (64, 4, 2), (64, 4, 3), (64, 4, 5), (128, 4, 2),
    (128, 4, 4), (128, 8, 3), (256, 8, 2), (256, 8, 3)]]
SWEEP_SPLITS = (0, 1, 2, 4, 8, 16)


@functools.cache
def read_kernel():
    """The Triton kernel behind read_floor: each program reads PER x BLOCK int32, all loads independent (in flight
    at once), and stores their xor. Built on first use, so that importing this script needs no triton."""
    import triton
    import triton.language as tl

    @triton.jit
    def read_kernel(src, dst, n, BLOCK: tl.constexpr, PER: tl.constexpr):
        base = tl.program_id(0).to(tl.int64) * BLOCK * PER
        acc = tl.zeros([BLOCK], tl.int32)
        for i in tl.static_range(PER):
            off = base + i * BLOCK + tl.arange(0, BLOCK)
            acc ^= tl.load(src + off, mask=off < n, other=0)
        tl.store(dst + tl.program_id(0), tl.sum(acc, 0))

    return read_kernel


def read_floor(nbytes: int, block: int = 1024, per: int = 4, warps: int = 4, copy: bool = True) -> tuple[float, float]:
    """Seconds to stream `nbytes` through the GPU, timed like the kernels (graph, rotating sets >= ROTATE_BYTES):
    (a Triton kernel that only reads them, per x block int32 per program, all in flight at once; torch copy of
    nbytes / 2 -> nbytes / 2, the same traffic, or nan when not `copy`)."""
    words = nbytes // 4
    sets = [torch.randint(-2**30, 2**30, (words,), dtype=torch.int32, device="cuda")
            for _ in range(math.ceil(ROTATE_BYTES / nbytes))]
    grid = math.ceil(words / (block * per))
    dst = torch.empty(grid, dtype=torch.int32, device="cuda")
    t_read = time_per_call(lambda i: read_kernel()[(grid,)](sets[i], dst, words, BLOCK=block, PER=per,
                                                          num_warps=warps), len(sets))
    if not copy:
        return t_read, float("nan")
    halves = [s[: words // 2] for s in sets]
    out = torch.empty(words // 2, dtype=torch.int32, device="cuda")
    t_copy = time_per_call(lambda i: out.copy_(halves[i]), len(sets))
    return t_read, t_copy


def small_m_sweep(rows: list[dict]) -> None:
    """The read floor, bf16 and triton_int4 configs (SWEEP_MMA x SWEEP_SPLITS and the GEMV) at M = 1, 4, 16."""
    for n, k in SHAPES:
        shape = Shape(n, k)
        nbytes = shape.int4[0].nbytes + shape.io_bytes(1)
        t_read, t_copy = read_floor(nbytes)
        t_bf16 = shape.time_bf16(1)
        print(f"floor N={n} K={k}: {nbytes / 1e6:.1f} MB read {t_read * 1e6:.1f} us "
              f"({nbytes / t_read / 1e9:.0f} GB/s), copy of the same traffic {t_copy * 1e6:.1f} us; bf16 M=1 "
              f"{t_bf16 * 1e6:.1f} us -> floor ratio {t_bf16 / t_read:.2f}x", flush=True)
        rows.append({"section": "floor", "n": n, "k": k, "bytes": nbytes, "read_us": t_read * 1e6,
                     "copy_us": t_copy * 1e6, "bf16_us": t_bf16 * 1e6})
        for m in (1, 4, 16):
            results = []
            for cfg in SWEEP_MMA + [dict(GEMV_TUNE[1])]:
                kernel = "mma" if "block_m" in cfg else "gemv"
                if kernel == "gemv" and m > 4:
                    continue
                for splits in SWEEP_SPLITS if m == 1 else (0, 2, 8):
                    try:
                        us = shape.time_int4(m, kernel, **cfg, splits=splits) * 1e6
                    except Exception as exc:  # noqa: BLE001
                        print(f"sweep {kernel} {cfg}: {type(exc).__name__}: {exc}"[:200])
                        break
                    results.append((us, kernel, json.dumps(cfg | {"splits": splits})))
                    rows.append({"section": "sweep", "n": n, "k": k, "m": m, "impl": f"triton_int4/{kernel}",
                                 "config": results[-1][2], "time_us": us})
            results.sort()
            print(f"sweep N={n} K={k} M={m}: " + "; ".join(f"{us:.1f} {kern} {c}" for us, kern, c in results[:6]),
                  flush=True)
        del shape
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cpu", action="store_true", help="the CPU LUT / ternary comparison instead")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="read floor + small-M config sweep, then stop")
    parser.add_argument("--once", action="store_true", help="3 calls each of mma and gemv at M = 1, 4096 x 14336 "
                        "(for a profiler: ncu --launch-skip 2 ...), then stop")
    parser.add_argument("--gemv", action="store_true", help="checks + CUDA-core GEMV sweep, then stop")
    parser.add_argument("--budget-s", type=float, default=200.0, help="stop tuning after this many seconds")
    args = parser.parse_args()
    if args.cpu:
        from bench_quant_cpu import cpu_bench  # scripts/ is on sys.path when this script runs

        cpu_bench(args.n, args.k)
        return
    if args.once:
        w, x = random_int4(4096, 14336, True), torch.randn(1, 14336, device="cuda", dtype=torch.bfloat16)
        for kernel in ("mma", "gemv"):
            for _ in range(3):
                t4.int4_matmul(x, w, kernel)
        torch.cuda.synchronize()
        return
    if args.out is None:
        parser.error("--out is required for the GPU benchmark")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
    copy_bps = copy_bandwidth()
    print(f"copy {copy_bps / 1e12:.2f} TB/s", flush=True)
    rows: list[dict] = []
    if not check(rows):
        print("CORRECTNESS FAILED: timings follow but are not results")
    if args.sweep:
        small_m_sweep(rows)
        with open(args.out / "sweep.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted({key for r in rows for key in r}))
            writer.writeheader()
            writer.writerows(rows)
        return
    if args.gemv:
        from quant_gemv_diagnostics import gemv_sweep  # scripts/ is on sys.path when this script runs

        gemv_sweep(rows, args.out)
        with open(args.out / "gemv_sweep.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted({key for r in rows for key in r}))
            writer.writeheader()
            writer.writerows(rows)
        return
    for n, k in SHAPES:
        shape = Shape(n, k)
        best = tune(shape, rows, args.budget_s) if args.tune else {}
        table(shape, best, rows)
        del shape
        torch.cuda.empty_cache()
    keys = sorted({key for r in rows for key in r})
    with open(args.out / "quant_matmul.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows, copy_bps)
    (args.out / "quant_matmul.md").write_text(text + "\n")
    print(text)
    print(f"total {time.perf_counter() - START:.0f} s")


if __name__ == "__main__":
    main()
