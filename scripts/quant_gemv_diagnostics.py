"""Where the int4 kernels' time goes at M = 1 (bench_quant_matmul.py --gemv runs this after its checks).

The CUDA-core GEMV's configs x splits against the read floor and bf16; the mma kernel with and without its
split-K reduction; a kernel that only reads the containers in the GEMV's own tiles and grid (the layout's read
floor); the GEMV with container stride 0 (the instruction stream without the HBM stream); register counts.
Shares the timing helpers and the weight sets of bench_quant_matmul.py.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch
from bench_quant_matmul import SHAPES, Shape, read_floor, time_per_call

from reference_impls.kernels.quant import triton_int4 as t4
from reference_impls.kernels.quant.triton_int4 import BLOCK_K

GEMV_SWEEP = [dict(block_n=bn, num_warps=w, num_stages=st, prefetch=pf) for bn, w, st, pf in [
    (64, 4, 1, 3), (64, 4, 3, 0)]]
GEMV_SPLITS = (0, 4, 8, 16, 28)


def save_registers(fn, out: Path) -> None:
    """Registers and spills of every compiled variant of a Triton kernel, to `out` (the SASS itself is read
    offline: Triton's own ptxas and cuobjdump compile the kernel for sm_90 with no GPU)."""
    lines = []
    for cache, *_ in fn.device_caches.values():
        for key, kern in cache.items():
            lines.append(f"regs={kern.n_regs} spills={kern.n_spills} {str(key)[:400]}")
    out.write_text("\n".join(lines) + "\n")


def read_tiles(kernel, words: list[torch.Tensor], dst: torch.Tensor, grid: tuple[int, int], per_split: int,
               block_n: int, warps: int, stages: int, i: int) -> None:
    kernel[grid](words[i], dst, per_split, words[i].stride(0), BLOCK_C=block_n // 2, num_warps=warps,
                 num_stages=stages)


def gemv_without_stream(kernel, shape: Shape, block_n: int, warps: int, prefetch: int, splits: int, i: int) -> None:
    """The GEMV at M = 1 on symmetric g128 weights with container stride 0: the instruction stream, no HBM stream."""
    n, k, w, x = shape.n, shape.k, shape.int4[0], shape.x[1]
    blocks = math.ceil(k / BLOCK_K)
    ws = torch.empty(splits, 1, n, dtype=torch.float32, device="cuda")
    out = torch.empty(1, n, dtype=torch.bfloat16, device="cuda")
    locks = torch.zeros(n // block_n, dtype=torch.int32, device="cuda")
    kernel[(n // block_n, splits, 1)](
        x, w.qweight.view(torch.int32), w.scale, w.scale, out, ws, locks, 1, n, k, blocks, blocks // splits, splits,
        n // block_n, x.stride(0), 0, w.scale.stride(0), 0, out.stride(0), ws.stride(0), ws.stride(1),
        BLOCK_N=block_n, GROUP_SIZE=128, SYMMETRIC=True, SPLIT=True, PREFETCH=prefetch, EVEN_N=True, EVEN_K=True,
        INTERPRETED=False, num_warps=warps, num_stages=1)


def mma_unreduced(kernel, shape: Shape, cfg: dict, splits: int, reduce: bool, stream: bool, i: int) -> None:
    """The mma kernel at M = 1 on weight set i with `splits` splits, with or without its split-K reduction (without:
    every split stores its own partial into y, a wrong answer, to time the reduction's share); stream=False: the
    container stride is 0, every block re-reads one cached row (the instruction stream without the HBM stream)."""
    n, k, w, x = shape.n, shape.k, shape.int4[i], shape.x[1]
    blocks = math.ceil(k / BLOCK_K)
    ws = torch.empty(splits, 1, n, dtype=torch.float32, device="cuda")
    out = torch.empty(1, n, dtype=torch.bfloat16, device="cuda")
    n_tiles = n // cfg["block_n"]
    locks = t4._locks(x.device, n_tiles)
    kernel[(n_tiles, 1, splits)](
        x, w.qweight, w.scale, w.scale, out, ws, locks, 1, n, k, blocks, blocks // splits, splits, n_tiles,
        x.stride(0), w.qweight.stride(0) if stream else 0, w.scale.stride(0), 0, out.stride(0), ws.stride(0),
        ws.stride(1), BLOCK_M=16, BLOCK_N=cfg["block_n"], GROUP_SIZE=128, SYMMETRIC=True, SLICE_SCALES=False,
        SPLIT=reduce, FP16=False, EVEN_N=True, EVEN_K=True, INTERPRETED=False, num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])


def mma_diagnostics(shape: Shape, rows: list[dict]) -> None:
    """The mma kernel's time with and without the split-K reduction, at M = 1."""
    from reference_impls.kernels.quant import triton_int4_kernels as kernels

    blocks = math.ceil(shape.k / BLOCK_K)
    cfg = t4.default_config("mma", 1)
    for splits in (2, 4, 8, 16):
        if blocks % splits:
            continue
        times = [time_per_call(functools.partial(mma_unreduced, kernels.int4_mma_kernel, shape, cfg, splits, reduce,
                                                 stream), len(shape.int4)) * 1e6
                 for reduce, stream in ((True, True), (False, True), (True, False), (False, False))]
        rows.append({"section": "mma_reduction", "n": shape.n, "k": shape.k, "splits": splits,
                     "reduced_us": times[0], "unreduced_us": times[1], "no_stream_us": times[2],
                     "no_stream_unreduced_us": times[3]})
        print(f"  mma N={shape.n} K={shape.k} splits={splits}: {times[0]:.1f} us with the split-K reduction, "
              f"{times[1]:.1f} us without; container stride 0: {times[2]:.1f} / {times[3]:.1f} us", flush=True)


def gemv_diagnostics(shape: Shape, rows: list[dict]) -> None:
    """Where the GEMV's time goes, at M = 1: (a) a kernel that reads the containers in the GEMV's own tiles and
    grid and does nothing else (the layout's read floor); (b) the GEMV with the container stride set to 0 (every
    block re-reads one row of containers from L1: the instruction stream without the HBM stream)."""
    import triton
    import triton.language as tl

    from reference_impls.kernels.quant import triton_int4_gemv as gemv

    @triton.jit
    def tile_read_kernel(qw_ptr, dst, blocks_per_split, stride, BLOCK_C: tl.constexpr):
        c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        rows = tl.program_id(1) * blocks_per_split * 32 + tl.arange(0, 32)
        ptrs = qw_ptr + rows[:, None].to(tl.int64) * stride + c[None, :]
        acc = tl.zeros([32, BLOCK_C], tl.int32)
        for _ in range(blocks_per_split):
            acc ^= tl.load(ptrs)
            ptrs += 32 * stride
        tl.store(dst + tl.program_id(0) * tl.num_programs(1) + tl.program_id(1), tl.sum(acc, axis=None))

    n, k = shape.n, shape.k
    blocks = math.ceil(k / BLOCK_K)
    words = [w.qweight.view(torch.int32) for w in shape.int4]
    dst = torch.empty(2**16, dtype=torch.int32, device="cuda")
    for block_n, warps, stages in ((64, 4, 1), (64, 4, 3), (128, 4, 3), (256, 8, 3)):
        for splits in (4, 8, 16):
            if blocks % splits:
                continue
            call = functools.partial(read_tiles, tile_read_kernel, words, dst, (n // block_n, splits),
                                     blocks // splits, block_n, warps, stages)
            us = time_per_call(call, len(words)) * 1e6
            rows.append({"section": "tile_read", "n": n, "k": k, "config": f"{block_n}/{warps}/{stages}/{splits}",
                         "time_us": us})
            print(f"  tile read N={n} K={k} block_n={block_n} warps={warps} stages={stages} splits={splits}: "
                  f"{us:.1f} us", flush=True)
    for block_n, warps, prefetch, splits in ((64, 4, 1, 8), (64, 4, 3, 8), (64, 4, 3, 4), (128, 8, 2, 8)):
        call = functools.partial(gemv_without_stream, gemv.int4_gemv_kernel, shape, block_n, warps, prefetch, splits)
        us = time_per_call(call, 1) * 1e6
        rows.append({"section": "compute_only", "n": n, "k": k, "config": f"{block_n}/{warps}/{prefetch}/{splits}",
                     "time_us": us})
        print(f"  compute only (container stride 0) N={n} K={k} block_n={block_n} warps={warps} prefetch={prefetch}"
              f" splits={splits}: {us:.1f} us", flush=True)


def gemv_sweep(rows: list[dict], out: Path) -> None:
    """The read floor, bf16 and the CUDA-core GEMV's configs x splits at M = 1; then GEMV vs mma at M = 1..16."""
    from reference_impls.kernels.quant import triton_int4_gemv as gemv

    for n, k in SHAPES:
        shape = Shape(n, k)
        nbytes = shape.int4[0].nbytes + shape.io_bytes(1)
        t_read = read_floor(nbytes)[0]
        t_bf16 = shape.time_bf16(1)
        rows.append({"section": "floor", "n": n, "k": k, "bytes": nbytes, "read_us": t_read * 1e6,
                     "bf16_us": t_bf16 * 1e6})
        results = []
        for cfg in GEMV_SWEEP:
            for splits in GEMV_SPLITS:
                try:
                    us = shape.time_int4(1, "gemv", **cfg, splits=splits) * 1e6
                except Exception as exc:  # noqa: BLE001
                    print(f"gemv {cfg}: {type(exc).__name__}: {exc}"[:300])
                    break
                results.append((us, json.dumps(cfg | {"splits": splits})))
                rows.append({"section": "gemv_sweep", "n": n, "k": k, "m": 1, "config": results[-1][1],
                             "time_us": us})
        results.sort()
        print(f"gemv N={n} K={k} M=1: read floor {t_read * 1e6:.1f} us, bf16 {t_bf16 * 1e6:.1f} us; best: "
              + "; ".join(f"{us:.1f} {c}" for us, c in results[:5]), flush=True)
        mma_diagnostics(shape, rows)
        gemv_diagnostics(shape, rows)
        best = json.loads(results[0][1])
        for m in (1, 2):
            t_gemv = shape.time_int4(m, "gemv", **{key: v for key, v in best.items() if key != "splits"})
            t_best = shape.time_int4(m, "gemv", **best)
            t_mma, t_b = shape.time_int4(m, "mma"), shape.time_bf16(m)
            rows.append({"section": "gemv_vs_mma", "n": n, "k": k, "m": m, "gemv_us": t_gemv * 1e6,
                         "gemv_best_splits_us": t_best * 1e6, "mma_us": t_mma * 1e6, "bf16_us": t_b * 1e6})
            print(f"  M={m}: gemv(auto splits) {t_gemv * 1e6:.1f} us, gemv(best) {t_best * 1e6:.1f} us, "
                  f"mma {t_mma * 1e6:.1f} us, bf16 {t_b * 1e6:.1f} us", flush=True)
        del shape
        torch.cuda.empty_cache()
    save_registers(gemv.int4_gemv_kernel, out / "gemv_registers.txt")
