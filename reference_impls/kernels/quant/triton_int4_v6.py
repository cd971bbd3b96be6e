"""int4 W4A16 matmul, v6 (issue 5, the H100 GEMV gap): a two-pass split-K reduction, and a Gluon kernel that loads
the weights straight into tensor-core operand registers. This module is the public entry (int4_matmul_v6), the
launch planning and the input checks; it imports no triton (the kernels are imported on the first launch).

Two kernels, both measured against v5 by scripts/bench_int4_v6.py (results/published/h100-quant-matmul/v6/):
  mma       v5's tensor-core loop (triton_int4_kernels.mma_block, triton_int4's PackedInt4 and layout, so
            `quant_matmul` can switch to it with a one-line change); only the end of a program differs. v5 made
            every split store its partial, fence, bump an atomic tile counter and let the last split sum the
            partials in the same launch (~2 us at 4096 x 14336, M = 1: the 512 programs all pay it at once). Here
            splits store float32 partials into a [splits, M, N] workspace and stop; `sum_splits_kernel` adds them
            in split order (deterministic) and casts. pdl: the sum kernel is a programmatic dependent launch
            (griddepcontrol, sm_90+), scheduled while the partial kernel runs, so its launch latency is hidden
            (without pdl the two-pass design saves nothing). tma: containers through a TMA descriptor (measured no
            gain). Kernels: triton_int4_v6_kernels.py.
  fragment  (Gluon, Hopper only) FragmentInt4 from triton_int4_fragment.pack_fragments: the same containers
            reordered so that each lane's m16n8k16 A-operand registers are 4-byte words of 128-byte warp-wide loads.
            W is the A operand (16 output rows per mma), x^T the B operand (rows of x as the 8 columns): no shared
            memory and no barrier in the loop, loads one K-step ahead in registers. The zero point: per weight
            (symmetric default, one packed fma per two weights) or per block (a second mma by ones gives sum(x)).
            Fastest at M <= 8; at M = 16 it is slower than mma (B spans two n8 tiles and x loads double). Kernel:
            triton_int4_fragment_kernel.py.
Both use the two-pass split; the fragment kernel can also split K across the warps of a program (k_warps), whose
partials meet once, at the end. On CPU set TRITON_INTERPRET=1 before the first call (tests do): the interpreter runs
the mma kernel (pdl is then ignored) and the TMA path; Gluon has no interpreter, so the fragment kernel's layout is
tested on CPU and its arithmetic on the GPU (scripts/bench_int4_v6.py's checks).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from reference_impls.kernels.quant.triton_int4 import BLOCK_K, H100_SMS, PackedInt4, _sm_count, check_activation
from reference_impls.kernels.quant.triton_int4_fragment import (
    FragmentInt4,
    check_fragment_config,
    default_fragment_config,
)

# plan_splits splits K until tiles x splits reach this many programs per SM (H100, bench_int4_v6.py: the mma kernel
# is fastest at v5's 4 even with the cheaper reduction; the fragment kernel, 56 registers and no shared memory, at 8)
TARGET_PROGRAMS_PER_SM = {"mma": 4, "fragment": 8}
MIN_BLOCKS_PER_SPLIT = 2  # ... keeping at least this many K-blocks of 128 per split
SUM_BLOCK = 256  # outputs per program of the sum kernel
MMA_CONFIGS = (  # (largest M, config)
    (16, {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 3, "splits": 0, "pdl": 1, "tma": 0}),
    (None, {"block_m": 32, "block_n": 64, "num_warps": 4, "num_stages": 3, "splits": 0, "pdl": 1, "tma": 0}),
)

def plan_splits(tiles: int, blocks: int, sms: int = H100_SMS, target: int = 4) -> int:
    """Splits of K so that tiles x splits come near `target` programs per SM, with at least MIN_BLOCKS_PER_SPLIT
    blocks each; among counts within 2x of the wanted one, one that divides the blocks evenly (an uneven split
    leaves the shorter programs idle at the end), nearest by ratio."""
    if min(tiles, blocks, sms, target) < 1:
        raise ValueError(f"tiles, blocks, sms and target must be >= 1; got {tiles}, {blocks}, {sms}, {target}")
    wanted = math.ceil(target * sms / tiles)
    most = max(1, blocks // MIN_BLOCKS_PER_SPLIT)
    if wanted <= 1 or most <= 1:
        return 1
    even = min((d for d in range(1, most + 1) if blocks % d == 0), key=lambda d: (abs(math.log(d / wanted)), -d))
    return even if abs(math.log(even / wanted)) <= math.log(2) else min(wanted, most)


def default_config(kernel: str, m: int) -> dict:
    """The kernel's default config for m rows of x (int4_matmul_v6's `config` overrides it)."""
    if kernel == "fragment":
        return default_fragment_config(m)
    return dict(next(cfg for largest, cfg in MMA_CONFIGS if largest is None or m <= largest))


def _check_inputs(x: Tensor, w: PackedInt4 | FragmentInt4, kernel: str, config: dict) -> dict:
    check_activation(x, w.in_features, w.scale.device)
    if kernel == "auto":
        kernel = "fragment" if isinstance(w, FragmentInt4) else "mma"
    if kernel not in ("mma", "fragment"):
        raise ValueError(f"kernel must be 'auto', 'mma' or 'fragment', got {kernel!r}")
    if (kernel == "fragment") != isinstance(w, FragmentInt4):
        raise ValueError(f"kernel 'fragment' takes a FragmentInt4 (pack_fragments), the others a PackedInt4; got "
                         f"kernel {kernel!r} with {type(w).__name__}")
    cfg = default_config(kernel, math.prod(x.shape[:-1]))
    unknown = set(config) - set(cfg)
    if unknown:
        raise ValueError(f"unknown {kernel} config {sorted(unknown)}; allowed: {sorted(cfg)}")
    cfg.update(config)
    cfg["kernel"] = kernel
    n = w.out_features
    if cfg.get("tma") and (n % 8 or w.qweight.stride(1) != 1):
        raise ValueError(f"tma needs contiguous containers with N % 8 == 0 (16-byte rows); got N = {n}")
    if int(cfg["splits"]) < 0:
        raise ValueError(f"splits must be >= 0 (0: plan_splits), got {cfg['splits']!r}")
    if kernel == "fragment":
        check_fragment_config(cfg, w, x.device, math.prod(x.shape[:-1]))
    return cfg


def int4_matmul_v6(x: Tensor, w: PackedInt4 | FragmentInt4, kernel: str = "auto", **config: int) -> Tensor:
    """x [..., K] (bf16 or fp16) @ dequant(w)^T -> [..., N] in x's dtype, float32 accumulation, two-pass split K.

    kernel: "mma" (tensor cores, any M), "fragment" (Gluon, CUDA only; w from pack_fragments; fastest at M <= 8 on
    an H100, slower than mma at M = 16), or "auto" (fragment for a FragmentInt4, else mma). `config` overrides
    default_config: block_n, block_m, num_warps, splits (0 = plan_splits), pdl (0/1); num_stages and tma (0/1)
    for mma; row_tiles (1, 2), k_warps and zero_by_sum (None: per weight when symmetric) for fragment."""
    cfg = _check_inputs(x, w, kernel, config)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, w.in_features)
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    m, n = x2.shape[0], w.out_features
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m and n:
        _launch(cfg.pop("kernel"), x2, w, out, cfg)
    return out.reshape(*lead, n)


def launch_plan(kernel: str, m: int, n: int, k: int, cfg: dict, sms: int = H100_SMS) -> dict:
    """Tiles along N and M, K-blocks, splits (none empty) and K-blocks per split of one call."""
    blocks = math.ceil(k / BLOCK_K)
    n_tiles = math.ceil(n / cfg["block_n"])
    m_tiles = math.ceil(m / cfg["block_m"])
    target = TARGET_PROGRAMS_PER_SM[kernel]
    splits = min(int(cfg["splits"]) or plan_splits(n_tiles * m_tiles, blocks, sms, target), blocks)
    per_split = math.ceil(blocks / splits)
    return {"blocks": blocks, "n_tiles": n_tiles, "m_tiles": m_tiles, "per_split": per_split,
            "splits": math.ceil(blocks / per_split)}


@functools.cache
def _pdl_capable(index: int) -> bool:
    """griddepcontrol (programmatic dependent launch) needs sm_90 or newer."""
    return torch.cuda.get_device_capability(index)[0] >= 9


def _launch(kernel: str, x: Tensor, w: PackedInt4 | FragmentInt4, out: Tensor, cfg: dict) -> None:
    from reference_impls.kernels.quant import triton_int4_v6_kernels as kernels

    cuda = x.device.type == "cuda"
    m, n, k = x.shape[0], w.out_features, w.in_features
    plan = launch_plan(kernel, m, n, k, cfg, _sm_count(x.device.index or 0) if cuda else H100_SMS)
    splits = plan["splits"]
    pdl = bool(cfg["pdl"]) and cuda and splits > 1 and _pdl_capable(x.device.index or 0)
    dst = torch.empty(splits, m, n, dtype=torch.float32, device=x.device) if splits > 1 else out
    stride_ds = dst.stride(0) if splits > 1 else 0
    zero = w.zero if w.zero is not None else w.scale  # an unused pointer argument still needs a tensor
    group_size = min(w.group_size, plan["blocks"] * BLOCK_K)
    group = 0 if group_size >= k else group_size
    even = dict(SYMMETRIC=w.symmetric, EVEN_N=n % cfg["block_n"] == 0, EVEN_K=k % BLOCK_K == 0, PDL=pdl)
    if kernel == "fragment":
        from reference_impls.kernels.quant.triton_int4_fragment_kernel import launch_fragment

        launch_fragment(x, w, dst, zero, plan, cfg, group, even)
    else:
        desc = None
        if cfg["tma"]:
            from triton.tools.tensor_descriptor import TensorDescriptor

            desc = TensorDescriptor.from_tensor(w.qweight, [kernels.ROWS.value, cfg["block_n"]])
        kernels.int4_mma_partial_kernel[(plan["n_tiles"], plan["m_tiles"], splits)](
            x, w.qweight, desc, w.scale, zero, dst, m, n, k, plan["blocks"], plan["per_split"], x.stride(0),
            w.qweight.stride(0), w.scale.stride(0), zero.stride(0), dst.stride(-2), stride_ds,
            BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], GROUP_SIZE=group, SLICE_SCALES=w.group_size < BLOCK_K,
            FP16=x.dtype == torch.float16, TMA=bool(cfg["tma"]), INTERPRETED=not cuda, num_warps=cfg["num_warps"],
            num_stages=cfg["num_stages"], **even)
    if splits > 1:
        numel = m * n
        extra = {"launch_pdl": True} if pdl else {}
        kernels.sum_splits_kernel[(math.ceil(numel / SUM_BLOCK),)](dst, out, numel, dst.stride(0), SPLITS=splits,
                                                                   BLOCK=SUM_BLOCK, PDL=pdl, num_warps=4, **extra)
