"""int4 W4A16 v8, the stream kernel's plan (issue 5, batch 1 on an H100): persistent programs that each stream one
contiguous run of the fragment-ordered weight through a ring of asynchronous copies, with no second kernel.

Why: the fragment kernel (v6/v7) loads each warp's next K-block into registers one step ahead, so a warp has about
1 KB in flight and waits a DRAM round trip per block; an ncu profile at 4096 x 14336 showed half its stall cycles
waiting on those loads, 64% of DRAM peak, and its partial kernel alone 2.2 us over a plain read of the same bytes
(results/published/h100-quant-matmul/v8/). Here the copies land in shared memory (cp.async, `ring` stages of
`num_warps` KB each in flight per program), so the bytes in flight no longer cost registers.

The work: FragmentInt4's containers [tiles, blocks, 512] are one contiguous array of units (16 output rows x one
K-block of 128, 1 KB), tile-major. A stage is `num_warps` consecutive units of one tile (warp w takes unit w).
Program c of `grid` takes stages [c S / grid, (c + 1) S / grid) of the S = tiles x stages_per_tile in all, so
programs differ by at most one stage. A tile wholly inside a program is summed across its warps and stored. A tile
split between programs (at most two per program: its first and its last) is finished by whichever contributor
arrives last at the tile's counter: each stores its float32 partial, bumps the counter (acq_rel), and the last
adds the partials in program order (deterministic), stores y and resets the counter to 0 for the next call. No
program waits on another, so there is no co-residency assumption.

This module holds the plan, its checks and the counters; it imports neither triton nor Gluon (the kernel is
triton_int4_stream_kernel.py), so the schedule is tested on CPU (tests/test_quant_int4_stream.py).
"""

from __future__ import annotations

import math

import torch

from reference_impls.kernels.quant.triton_int4 import BLOCK_K
from reference_impls.kernels.quant.triton_int4_fragment import FRAGMENT_ROWS, MAX_M, FragmentInt4

STREAM_CONFIG = {"num_warps": 8, "ring": 8, "ctas_per_sm": 2, "pdl": 1,
                 "probe": 0}  # probe (timing only, wrong results): 1 no split-tile protocol, 2 no x / scale loads
UNIT_BYTES = 1024  # one tile's K-block: 16 rows x 128 k x 4 bits
_COUNTERS: dict[tuple, torch.Tensor] = {}


def stream_plan(n: int, k: int, num_warps: int, ctas_per_sm: int, sms: int) -> dict:
    """Tiles (16 rows holding output rows), stages per tile, stages in all and programs (at most one per stage)."""
    blocks = math.ceil(k / BLOCK_K)
    tiles = math.ceil(n / FRAGMENT_ROWS)
    per_tile = blocks // num_warps
    stages = tiles * per_tile
    return {"tiles": tiles, "blocks": blocks, "stages_per_tile": per_tile, "stages": stages,
            "grid": max(1, min(stages, sms * ctas_per_sm))}


def stage_range(program: int, stages: int, grid: int) -> tuple[int, int]:
    """Stages [lo, hi) of one program (the kernel computes the same)."""
    return program * stages // grid, (program + 1) * stages // grid


def stage_owner(stage: int, stages: int, grid: int) -> int:
    """The program whose range holds `stage`: the largest c with c * stages // grid <= stage."""
    return ((stage + 1) * grid - 1) // stages


def tile_contributors(tile: int, per_tile: int, stages: int, grid: int) -> range:
    """Programs holding a part of `tile`, in the order the last of them adds their partials."""
    return range(stage_owner(tile * per_tile, stages, grid), stage_owner((tile + 1) * per_tile - 1, stages, grid) + 1)


def partial_slot(program: int, tile: int, per_tile: int, stages: int, grid: int) -> int:
    """Where a program keeps its partial of a split tile: 0 for its first tile, 1 for its last."""
    return 0 if stage_range(program, stages, grid)[0] // per_tile == tile else 1


def stream_unavailable(m: int, n: int, k: int, group_size: int, cfg: dict) -> str | None:
    """Why the stream kernel cannot take this call (None: it can): its tile is one n8 column block of x (M <= 8),
    and a stage must not cross a tile (K-blocks a multiple of num_warps)."""
    warps = int(cfg["num_warps"])
    blocks = math.ceil(k / BLOCK_K)
    if m > MAX_M:
        return f"the stream kernel takes at most {MAX_M} rows of x (one n8 mma column block); got M = {m}"
    if k % BLOCK_K or blocks % warps:
        return (f"the stream kernel needs K a multiple of {BLOCK_K} x num_warps = {BLOCK_K * warps} (a stage of "
                f"num_warps K-blocks stays in one tile); got K = {k}")
    if group_size < k and group_size % BLOCK_K:
        return f"the stream kernel takes groups of a multiple of {BLOCK_K} or >= K; got {group_size}"
    return None


def check_stream_config(cfg: dict, w: FragmentInt4, m: int, device: torch.device) -> None:
    """ValueError naming what the stream kernel cannot take (cfg after STREAM_CONFIG's defaults, w, M)."""
    if device.type != "cuda":
        raise ValueError("the stream kernel is Gluon, which Triton's interpreter does not run: it needs CUDA")
    warps, ring, per_sm = int(cfg["num_warps"]), int(cfg["ring"]), int(cfg["ctas_per_sm"])
    if warps not in (4, 8, 16) or ring < 2 or per_sm < 1:
        raise ValueError(f"stream config needs num_warps 4, 8 or 16, ring >= 2 and ctas_per_sm >= 1; got {cfg}")
    reason = stream_unavailable(m, w.out_features, w.in_features, w.group_size, cfg)
    if reason:
        raise ValueError(reason)


def counters(device: torch.device, tiles: int) -> torch.Tensor:
    """int32 [tiles] zeros, one per device and tile count, reused across calls: every kernel leaves them at 0.
    Calls sharing one must not run concurrently (two streams at once); a call's own stream orders it."""
    key = (device.index, tiles)
    if key not in _COUNTERS:
        _COUNTERS[key] = torch.zeros(tiles, dtype=torch.int32, device=device)
    return _COUNTERS[key]
