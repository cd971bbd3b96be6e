"""Packed int4 weight-only matmul in Triton (W4A16): y = x @ dequant(W)^T with x bf16/fp16 [M, K], W [N, K].

Layout (`pack_int4`): K is cut into blocks of 128 (the last one padded with zero codes); block b is 32 rows
of int16 containers, and nibble j (bits 4j .. 4j + 3) of container (32b + r, n) holds the code of k = 128b +
32j + r of output n. So nibble plane j of a block is a plain [32, N] tile of W^T, which a kernel turns into
32 x BLOCK_N weights with no reshape, and a warp's loads of a row are 16-byte vectors over neighbouring columns.
  qweight  int16 [32 * ceil(K / 128), N]; codes are unsigned nibbles, sym codes c in [-7, 7] stored as c + 8
  scale    [G, N] float16 or bfloat16, G = ceil(K / group_size); zero uint8 [G, N] (asym) or None (sym)
  w[n, k] = (code[n, k] - zero[k // group_size, n]) * scale[k // group_size, n]
group_size: 32 or 64 (a scale per 32-k slice), or a multiple of 128, or >= K (one group per row).

Kernels (`choose_kernel`; tile configs by M, MMA_CONFIGS):
  mma   tensor cores: each nibble plane becomes a 16-bit tile of OFFSET + code with no int-to-float conversion
        (OR-ed into the bits of OFFSET = 128.0 in bf16 / 1024.0 in fp16, whose mantissa unit is 1.0), two
        weights per instruction in inline PTX (a shift and a lop3 per 32-bit pair); tl.dot multiplies x by it,
        and a second tl.dot by ones gives sum(x), so the zero point comes off the float32 sums once per block
        (s * (x @ (OFFSET + q) - (OFFSET + z) * sum x)) instead of per weight (v5; groups of 32 / 64 still
        subtract it per weight, one packed fma per two). Group size, N and K divisibility are compile-time
        constants (no division, no masks on even shapes). Serves M = 1 too (rows past M repeat row M - 1).
  gemv  CUDA cores (kernel="gemv", triton_int4_gemv.py, v5): reads the containers as int32 pairs (N even) and
        makes float32 M_j + code with one lop3 per weight (plus 3 shifts / permutes per 8), chains 4 FFMAs per
        container onto -(sum_j (M_j + zero) x_j), and scales once per 4 weights: ~2.7 essential instructions
        per weight, ~4.2 counted in the sm_90 SASS of the loop (v1: 6.5). On an H100 at M = 1 it is ~1 us
        slower than mma (4096 x 14336: 18.9 vs 17.6 us): it is instruction-bound (with its containers re-read
        from cache it still takes ~16 us; reading its tiles alone takes 11.7). At M >= 2 each row re-reads the
        weights (from L2), so `auto` never picks it (GEMV_MAX_M).
Both split K when the output tiles alone cannot fill the GPU: partials go to a float32 workspace and the last
split of a tile to arrive (an atomic counter) sums them in split order, in the same launch — deterministic.
Default configs were measured on an H100 by scripts/bench_quant_matmul.py.

Triton is imported lazily; on a CPU machine set TRITON_INTERPRET=1 before the first call to run the kernels in
Triton's interpreter (how the tests run them). The interpreter runs plain-op twins of the inline PTX.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

BLOCK_K = 128  # k per block: 32 int16 rows x 4 nibbles
GEMV_MAX_M = 0  # largest batch `auto` gives the CUDA-core GEMV: 0, it was not faster than mma at any M measured
H100_SMS = 132  # streaming multiprocessors assumed where no GPU is asked (the interpreter, cost models)
TARGET_PROGRAMS_PER_SM = 4  # split K until tiles x splits reach this many programs per SM ...
MIN_BLOCKS_PER_SPLIT = 4  # ... but never below this many K-blocks per split
# Configs by batch size, the best (or within 5% of the best) of scripts/bench_quant_matmul.py's sweep on an H100
# for (N, K) = (4096, 4096), (14336, 4096), (4096, 14336): see results/published/h100-quant-matmul/.
GEMV_CONFIG = {"block_n": 64, "num_warps": 4, "num_stages": 1, "prefetch": 3, "splits": 0}  # prefetch: blocks ahead
MMA_CONFIGS = (  # (largest M, config)
    (16, {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 3, "splits": 0}),
    (64, {"block_m": 32, "block_n": 64, "num_warps": 4, "num_stages": 3, "splits": 0}),
    (None, {"block_m": 32, "block_n": 128, "num_warps": 4, "num_stages": 3, "splits": 0}),
)
ACTIVATION_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class PackedInt4:
    """An int4 weight [N, K] in the layout above (see the module docstring)."""

    qweight: Tensor  # int16 [32 * ceil(K / 128), N]
    scale: Tensor  # [G, N] float16 | bfloat16
    zero: Tensor | None  # uint8 [G, N], None when symmetric
    in_features: int  # K
    group_size: int  # elements per group along K (>= K: one group per row)

    @property
    def out_features(self) -> int:
        return self.qweight.shape[1]

    @property
    def symmetric(self) -> bool:
        return self.zero is None

    @property
    def nbytes(self) -> int:
        """Bytes the kernels read for the weight: packed codes, scales and zero points."""
        parts = [self.qweight, self.scale] + ([] if self.zero is None else [self.zero])
        return int(sum(t.numel() * t.element_size() for t in parts))


def check_activation(x: Tensor, in_features: int, weight_device: torch.device) -> None:
    """x fits a packed W4A16 weight: its K, a 16-bit dtype, the weight's device; else a ValueError saying which."""
    if x.shape[-1] != in_features:
        raise ValueError(f"x has K = {x.shape[-1]}, the weight has {in_features} input features")
    if x.dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"x must be bfloat16 or float16 (W4A16), got {x.dtype}")
    if weight_device != x.device:
        raise ValueError(f"x is on {x.device}, the weight on {weight_device}")


def check_group_size(group_size: int, k: int) -> None:
    if not isinstance(group_size, int) or group_size < 1 or (
            group_size < k and group_size not in (32, 64) and group_size % BLOCK_K):
        raise ValueError(f"triton_int4 needs group_size 32, 64, a multiple of {BLOCK_K}, or >= K = {k} (one group "
                         f"per row); got {group_size!r}")


def pack_int4(codes: Tensor, scale: Tensor, zero: Tensor | None, group_size: int) -> PackedInt4:
    """Pack RTN codes [N, K] (int8 in [-7, 7] when zero is None, else uint8 in [0, 15]) with scale [N, G]
    (float16/bfloat16) and zero [N, G] uint8 into PackedInt4."""
    if codes.dim() != 2 or scale.dim() != 2 or scale.shape[0] != codes.shape[0]:
        raise ValueError(f"expected codes [N, K] and scale [N, G]; got {tuple(codes.shape)}, {tuple(scale.shape)}")
    rows, k = codes.shape
    check_group_size(group_size, k)
    groups = math.ceil(k / group_size)
    if scale.shape[1] != groups:
        raise ValueError(f"scale has {scale.shape[1]} groups; K = {k} in groups of {group_size} needs {groups}")
    if scale.dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"scale must be float16 or bfloat16, got {scale.dtype}")
    wide = codes.to(torch.int32)
    low, high = (-7, 7) if zero is None else (0, 15)
    if wide.numel() and (int(wide.min()) < low or int(wide.max()) > high):
        raise ValueError(f"{'symmetric' if zero is None else 'asymmetric'} int4 codes must lie in [{low}, {high}]")
    if zero is None:
        wide = wide + 8
    elif zero.shape != scale.shape or zero.dtype != torch.uint8 or int(zero.max()) > 15:
        raise ValueError(f"zero must be uint8 [N, G] = {tuple(scale.shape)} in [0, 15]")
    blocks = torch.nn.functional.pad(wide, (0, -k % BLOCK_K)).view(rows, -1, 4, 32)  # [N, b, j, r]
    shifts = torch.arange(0, 16, 4, dtype=torch.int32, device=codes.device)[None, None, :, None]
    containers = (blocks << shifts).sum(dim=2)  # [N, b, r]: disjoint bits
    containers = torch.where(containers >= 2**15, containers - 2**16, containers).to(torch.int16)
    return PackedInt4(containers.reshape(rows, -1).t().contiguous(), scale.t().contiguous(),
                      None if zero is None else zero.t().contiguous(), k, max(group_size, k) if groups == 1
                      else group_size)


def unpack_int4(w: PackedInt4) -> Tensor:
    """Stored nibbles as uint8 [N, K] (sym codes still + 8): the inverse of pack_int4's packing."""
    containers = w.qweight.t().to(torch.int32).reshape(w.out_features, -1, 1, 32)  # [N, b, 1, r]
    shifts = torch.arange(0, 16, 4, dtype=torch.int32, device=w.qweight.device)[None, None, :, None]
    nibbles = (containers >> shifts) & 0xF  # [N, b, j, r]
    return nibbles.reshape(w.out_features, -1)[:, :w.in_features].to(torch.uint8)


def dequantize_int4(w: PackedInt4, dtype: torch.dtype = torch.float64) -> Tensor:
    """The weight [N, K] the kernels multiply by, computed in float64 (exact) and returned in `dtype`."""
    codes = unpack_int4(w).to(torch.float64)
    zero = torch.full_like(w.scale, 8, dtype=torch.float64) if w.zero is None else w.zero.to(torch.float64)
    index = torch.arange(w.in_features, device=codes.device) // w.group_size
    weight = (codes - zero.t()[:, index]) * w.scale.t().to(torch.float64)[:, index]
    return weight.to(dtype)


def choose_kernel(m: int, n: int = 0) -> str:
    """The kernel `auto` runs for m rows of x and n output features (the GEMV reads containers in pairs: even n)."""
    return "gemv" if m <= GEMV_MAX_M and n % 2 == 0 else "mma"


def auto_splits(tiles: int, blocks: int, sms: int = H100_SMS) -> int:
    """Splits of K so that tiles x splits come near TARGET_PROGRAMS_PER_SM programs per SM, keeping at least
    MIN_BLOCKS_PER_SPLIT K-blocks per split (1 when the tiles alone fill the GPU). Prefers a count that divides
    the K-blocks evenly, the nearest to the wanted count by ratio (within 2x, else the wanted count): an uneven
    split leaves the programs with a block fewer idle at the end (H100, 4096 x 14336 at M = 1: 9 splits of 13/12
    blocks 18.3 us, 8 of 14 blocks 17.6 us; 14336 x 4096: 3 splits of 11/10 blocks 18.8 us, 4 of 8 17.7 us)."""
    if min(tiles, blocks, sms) < 1:
        raise ValueError(f"tiles, blocks and sms must be >= 1; got {tiles}, {blocks}, {sms}")
    wanted = math.ceil(TARGET_PROGRAMS_PER_SM * sms / tiles)
    most = blocks // MIN_BLOCKS_PER_SPLIT
    if wanted <= 1 or most <= 1:
        return 1
    even = min((d for d in range(1, most + 1) if blocks % d == 0), key=lambda d: (abs(math.log(d / wanted)), -d))
    return even if abs(math.log(even / wanted)) <= math.log(2) else min(wanted, most)  # no divisor near: uneven


def default_config(kernel: str, m: int) -> dict:
    if kernel == "gemv":
        return dict(GEMV_CONFIG)
    return dict(next(cfg for largest, cfg in MMA_CONFIGS if largest is None or m <= largest))


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


_LOCKS: dict[torch.device, Tensor] = {}


def _locks(device: torch.device, count: int) -> Tensor:
    """Per-device int32 tile counters, zero between launches (each reduction resets its own)."""
    locks = _LOCKS.get(device)
    if locks is None or locks.numel() < count:
        locks = torch.zeros(max(count, 4096), dtype=torch.int32, device=device)
        _LOCKS[device] = locks
    return locks


def int4_matmul(x: Tensor, w: PackedInt4, kernel: str = "auto", **config: int) -> Tensor:
    """x [..., K] (bf16 or fp16) @ dequant(w)^T -> [..., N] in x's dtype, float32 accumulation.

    kernel: "auto" (choose_kernel by the rows of x), "mma" or "gemv". `config` overrides that kernel's
    defaults: block_n, num_warps, num_stages, splits (0 = auto_splits), and block_m (mma) or prefetch (gemv: K-blocks
    loaded ahead into registers, 0..3). The gemv kernel needs an even N (it reads containers in pairs)."""
    check_activation(x, w.in_features, w.qweight.device)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, w.in_features)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    m, n = x2.shape[0], w.out_features
    if kernel == "auto":
        kernel = choose_kernel(m, n)
    if kernel not in ("mma", "gemv"):
        raise ValueError(f"kernel must be 'auto', 'mma' or 'gemv', got {kernel!r}")
    if kernel == "gemv" and n % 2:
        raise ValueError(f"the gemv kernel reads containers in pairs and needs an even N; got N = {n} (use 'mma')")
    cfg = default_config(kernel, m)
    unknown = set(config) - set(cfg)
    if unknown:
        raise ValueError(f"unknown {kernel} config {sorted(unknown)}; allowed: {sorted(cfg)}")
    cfg.update(config)
    if kernel == "gemv" and int(cfg["prefetch"]) not in (0, 1, 2, 3):
        raise ValueError(f"gemv prefetch must be 0..3 K-blocks ahead, got {cfg['prefetch']!r}")
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m and n:
        _launch(kernel, x2, w, out, cfg)
    return out.reshape(*lead, n)


def launch_plan(kernel: str, m: int, n: int, k: int, cfg: dict, sms: int = H100_SMS) -> dict:
    """Grid and split of one launch: tiles along N and M, K-blocks, splits and K-blocks per split."""
    blocks = math.ceil(k / BLOCK_K)
    n_tiles = math.ceil(n / cfg["block_n"])
    m_tiles = m if kernel == "gemv" else math.ceil(m / cfg["block_m"])
    splits = min(cfg["splits"] or auto_splits(n_tiles * m_tiles, blocks, sms), blocks)
    per_split = math.ceil(blocks / splits)
    return {"blocks": blocks, "n_tiles": n_tiles, "m_tiles": m_tiles, "per_split": per_split,
            "splits": math.ceil(blocks / per_split)}  # no empty split


def _launch(kernel: str, x: Tensor, w: PackedInt4, out: Tensor, cfg: dict) -> None:
    from reference_impls.kernels.quant import triton_int4_kernels as kernels

    m, n, k = x.shape[0], w.out_features, w.in_features
    sms = _sm_count(x.device.index or 0) if x.device.type == "cuda" else H100_SMS
    plan = launch_plan(kernel, m, n, k, cfg, sms)
    splits, n_tiles = plan["splits"], plan["n_tiles"]
    ws = torch.empty(splits, m, n, dtype=torch.float32, device=x.device) if splits > 1 else out
    locks = _locks(x.device, plan["m_tiles"] * n_tiles) if splits > 1 else w.scale
    zero = w.zero if w.zero is not None else w.scale  # an unused pointer argument still needs a tensor
    group_size = min(w.group_size, plan["blocks"] * BLOCK_K)  # one group per row: every k falls in group 0
    strides = (w.scale.stride(0), zero.stride(0), out.stride(0), ws.stride(0) if splits > 1 else 0,
               ws.stride(1) if splits > 1 else 0)
    if kernel == "gemv":
        from reference_impls.kernels.quant import triton_int4_gemv as gemv

        words = w.qweight.view(torch.int32)  # two neighbouring int16 containers per word (N even)
        gemv.int4_gemv_kernel[(n_tiles, splits, m)](
            x, words, w.scale, zero, out, ws, locks, m, n, k, plan["blocks"], plan["per_split"], splits, n_tiles,
            x.stride(0), words.stride(0), *strides, BLOCK_N=cfg["block_n"],
            GROUP_SIZE=0 if group_size >= k else group_size,
            SYMMETRIC=w.symmetric, SPLIT=splits > 1, PREFETCH=int(cfg["prefetch"]), EVEN_N=n % cfg["block_n"] == 0,
            EVEN_K=k % BLOCK_K == 0, INTERPRETED=x.device.type == "cpu", num_warps=cfg["num_warps"],
            num_stages=cfg["num_stages"])
    else:
        kernels.int4_mma_kernel[(n_tiles, plan["m_tiles"], splits)](
            x, w.qweight, w.scale, zero, out, ws, locks, m, n, k, plan["blocks"], plan["per_split"], splits, n_tiles,
            x.stride(0), w.qweight.stride(0), *strides, BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"],
            GROUP_SIZE=0 if group_size >= k else group_size, SYMMETRIC=w.symmetric,
            SLICE_SCALES=w.group_size < BLOCK_K, SPLIT=splits > 1, FP16=x.dtype == torch.float16,
            EVEN_N=n % cfg["block_n"] == 0, EVEN_K=k % BLOCK_K == 0, INTERPRETED=x.device.type == "cpu",
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
