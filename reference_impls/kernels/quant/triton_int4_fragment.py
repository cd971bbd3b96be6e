"""int4 W4A16, v6's fragment layout: triton_int4's containers reordered into mma A-operand fragment order, so that
the Gluon kernel (triton_int4_fragment_kernel.py) loads each lane's m16n8k16 registers straight from memory.

This module holds the layout (FragmentInt4, pack_fragments / unpack_fragments), the kernel's default config and
its checks, and `fragment_unavailable`, why the kernel cannot run on a device. It imports neither triton nor Gluon,
so the packing is usable and testable anywhere (Gluon has no interpreter: the kernel itself needs a Hopper GPU).
The kernel is called through triton_int4_v6.int4_matmul_v6(x, pack_fragments(w), "fragment").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.quant.triton_int4 import BLOCK_K, PackedInt4

CONTAINER_ROWS = 32  # int16 rows of triton_int4's layout per K-block of 128
FRAGMENT_ROWS = 16  # output features per mma fragment tile
FRAGMENT_PAD = 128  # pack_fragments pads N to this (the widest block_n)
TILE = 512  # int16 containers per (16 rows, 128 k) tile: 32 lanes x 16
MAX_M = 8  # largest batch the fragment kernel is meant for (at M = 16 mma is 1.4-2.7x faster: NOTES.md)
FRAGMENT_CONFIG = {"block_n": 64, "block_m": 8, "num_warps": 4, "k_warps": 1, "row_tiles": 1, "splits": 0, "pdl": 1,
                   "zero_by_sum": None,  # None: per weight when symmetric (measured faster), else per block
                   "x_smem": None}  # x staged in shared memory once per program (v7): 0 off, 1 swizzled,
# 2 lane-major, 3 one row (M = 1 only, v9); None: 3 at M = 1 and 1 at M > 1 when k_warps is 1 (each measured faster:
# v6/v7_log.txt, v9/NOTES.md), else 0
MAX_STAGED = 16384  # zero_by_sum 2 / x_smem load at most this many x elements (pow2(K-blocks) x 128 x block_m; x 1
# for x_smem 3's one row) at once per program to stage them (16 blocks at block_m 8, 128 for x_smem 3); past it, a
# launch falls back to the unstaged loop


@dataclass(frozen=True)
class FragmentInt4:
    """An int4 weight with its containers in mma fragment order (pack_fragments): frags int16 [ceil(N / 128) * 8,
    blocks, 512]; tile (t, b) holds rows 16t .. 16t + 15 over K-block b, container of (row g + 8h, kl = 16s + 8u +
    2t' + v) at 64 (4s + 2u + h) + 2 (4g + t') + v: lane 4g + t' of a warp finds its 16 A-operand containers of
    m16n8k16 (rows g, g + 8; k pairs 2t', 2t' + 8 of two k16 steps) as 8 words, each warp-wide load 128 contiguous
    bytes. Nibble j of a container is k = 128b + 32j + kl, as in triton_int4's layout; scales and zeros unchanged."""

    frags: Tensor
    scale: Tensor
    zero: Tensor | None
    in_features: int
    out_features: int
    group_size: int

    @property
    def symmetric(self) -> bool:
        return self.zero is None

    @property
    def nbytes(self) -> int:
        """Bytes held for the weight: containers (N padded to FRAGMENT_PAD), scales and zero points."""
        parts = [self.frags, self.scale] + ([] if self.zero is None else [self.zero])
        return int(sum(t.numel() * t.element_size() for t in parts))


def pack_fragments(w: PackedInt4) -> FragmentInt4:
    """Reorder triton_int4's containers [32 * blocks, N] (row 32b + kl, column n) into FragmentInt4's order."""
    rows, n = w.qweight.shape
    blocks, padded = rows // CONTAINER_ROWS, math.ceil(n / FRAGMENT_PAD) * FRAGMENT_PAD
    q = torch.nn.functional.pad(w.qweight, (0, padded - n))  # zero containers past N: masked at the store
    q = q.view(blocks, 2, 2, 4, 2, padded // FRAGMENT_ROWS, 2, 8)  # [b, s, u, t', v, tile, h, g]
    frags = q.permute(5, 0, 1, 2, 6, 7, 3, 4).contiguous().view(padded // FRAGMENT_ROWS, blocks, TILE)
    return FragmentInt4(frags, w.scale, w.zero, w.in_features, n, w.group_size)


def unpack_fragments(f: FragmentInt4) -> Tensor:
    """The inverse of pack_fragments: containers [32 * blocks, N] in triton_int4's order."""
    tiles, blocks, _ = f.frags.shape
    q = f.frags.view(tiles, blocks, 2, 2, 2, 8, 4, 2).permute(1, 2, 3, 6, 7, 0, 4, 5)  # [b, s, u, t', v, tile, h, g]
    return q.reshape(blocks * CONTAINER_ROWS, tiles * FRAGMENT_ROWS)[:, :f.out_features].contiguous()


def default_fragment_config(m: int) -> dict:
    """FRAGMENT_CONFIG, with x^T spanning two n8 tiles (block_m 16) and x not staged (not measured there) past
    MAX_M rows."""
    return dict(FRAGMENT_CONFIG) | ({"block_m": 16, "x_smem": 0} if m > MAX_M else {})


def gluon_unavailable() -> str | None:
    """Why the Gluon pieces the fragment kernel uses cannot be imported here (None: they can). Imports triton."""
    try:
        from triton.experimental.gluon.language.nvidia.ampere import mma_v2  # noqa: F401
        from triton.language.extra.cuda import gdc_wait  # noqa: F401
    except ImportError as exc:
        return f"the fragment kernel is written in Gluon (triton.experimental.gluon), not importable here: {exc}"
    return None


def fragment_unavailable(device: str | torch.device) -> str | None:
    """Why the fragment kernel cannot run on `device` (None: it can): it needs CUDA (Gluon has no interpreter), a
    Hopper GPU (sm_90: griddepcontrol, measured only there) and Gluon."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the fragment kernel is Gluon, which Triton's interpreter does not run: it needs CUDA, not {device}"
    if not torch.cuda.is_available():
        return "the fragment kernel needs a CUDA GPU, and none is visible"
    major, minor = torch.cuda.get_device_capability(device)
    if major != 9:
        return f"the fragment kernel needs a Hopper GPU (sm_90); this one is sm_{major}{minor}"
    return gluon_unavailable()


def check_fragment_config(cfg: dict, w: FragmentInt4, device: torch.device, m: int) -> None:
    """ValueError naming what the fragment kernel cannot take in cfg (after default_fragment_config) or w for m
    rows of x; fills in zero_by_sum (None: per weight when symmetric, else per block; 2: sum(x) staged per program,
    v7) and x_smem (None: when k_warps is 1, 3 at m = 1 unless zero_by_sum is 2, else 1)."""
    if device.type != "cuda":  # the others are checked on CUDA only: without it the kernel cannot run at all
        raise ValueError("the fragment kernel is Gluon, which Triton's interpreter does not run: it needs CUDA")
    k = w.in_features
    if w.group_size < k and w.group_size % BLOCK_K:
        raise ValueError(f"the fragment kernel takes groups of a multiple of {BLOCK_K} or >= K; got {w.group_size}")
    warps, block_n = int(cfg["num_warps"]), int(cfg["block_n"])
    k_warps, tiles = int(cfg["k_warps"]), int(cfg["row_tiles"])
    if k_warps < 1 or warps % k_warps or tiles not in (1, 2) or block_n > FRAGMENT_PAD or block_n % (
            FRAGMENT_ROWS * warps // k_warps * tiles) or cfg["block_m"] not in (8, 16):
        raise ValueError(f"fragment config needs k_warps dividing num_warps, row_tiles 1 or 2, block_n a multiple "
                         f"of 16 x row_tiles x num_warps / k_warps up to {FRAGMENT_PAD}, block_m 8 or 16; got {cfg}")
    if cfg["zero_by_sum"] is None:
        cfg["zero_by_sum"] = 0 if w.symmetric else 1
    if cfg["x_smem"] is None:
        cfg["x_smem"] = 0 if k_warps != 1 else 3 if m == 1 and cfg["zero_by_sum"] != 2 else 1
    if cfg["zero_by_sum"] not in (0, 1, 2) or cfg["x_smem"] not in (0, 1, 2, 3):
        raise ValueError(f"zero_by_sum takes None, 0 (per weight), 1 (sum(x) by mma per block) or 2 (sum(x) staged "
                         f"once per program); x_smem 0, 1 (swizzled), 2 (lane-major) or 3 (one row, M = 1); got "
                         f"{cfg['zero_by_sum']!r}, {cfg['x_smem']!r}")
    if cfg["x_smem"] == 3 and (m != 1 or cfg["zero_by_sum"] == 2):
        raise ValueError(f"x_smem=3 stages one row of x and no sum(x): it takes M = 1 and zero_by_sum 0 or 1; got "
                         f"M = {m}, zero_by_sum {cfg['zero_by_sum']}")
    if cfg["x_smem"] == 2 and cfg["block_m"] != 8:
        raise ValueError(f"x_smem=2 (lane-major x in shared memory) is laid out for block_m 8, got {cfg['block_m']}")
    if (cfg["zero_by_sum"] == 2 or cfg["x_smem"]) and k_warps != 1:
        raise ValueError(f"zero_by_sum=2 and x_smem=1 stage x per program for one warp slot along K: k_warps must be "
                         f"1, got {k_warps}")
    if not cfg["zero_by_sum"] and not w.symmetric:
        raise ValueError("zero_by_sum=0 (the zero point subtracted per weight) is for symmetric weights only")
