"""FlashAttention-2's forward pass as one Triton kernel: our own fused attention, beside torch's SDPA backends.

One program owns BLOCK_M query rows of one (batch, head) and streams the keys past them in BLOCK_N blocks,
keeping a running row max, row sum and output accumulator in float32 (the online softmax). The softmax
runs in base 2: scores are multiplied by 1/sqrt(D) * log2(e) once, so exp2 replaces exp. Nothing of size
S x S is ever written to memory; each program reads its Q block once, every K/V block it visits once, and
writes its O block once.

Causal attention (query i sees keys 0..i, top-left aligned) visits only the key blocks left of the
diagonal: blocks wholly below it run without any mask, and only the BLOCK_M keys on the diagonal are
masked. Query blocks are launched last-first, so the longest (those at the end of the sequence) start in
the first wave and the short ones fill in the tail. Sequence lengths need not be multiples of the blocks:
the last query and key blocks are masked.

Triton is optional: this module imports without it, and `triton_available` says why it cannot run. On a
machine without a GPU, Triton's interpreter (TRITON_INTERPRET=1, read when this module is imported) runs
the same kernel on CPU tensors, slowly, so its logic is testable in CI.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.attention import check_qkv

TRITON_HEAD_DIMS = (64, 128)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2E = 1.4426950408889634  # exp(x) == exp2(x * log2(e))

try:  # optional dependency: without it the kernels below are simply not defined
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None


@dataclass(frozen=True)
class FlashConfig:
    """Launch shape of the kernel: tile sizes (BLOCK_M a multiple of BLOCK_N), warps, pipeline depth."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {size}")
        if self.block_m % self.block_n:
            raise ValueError(f"block_m ({self.block_m}) must be a multiple of block_n ({self.block_n}) so that "
                             "only the diagonal key blocks need the causal mask")
        if self.num_warps not in (1, 2, 4, 8, 16) or self.num_stages < 1:
            raise ValueError(f"num_warps must be one of 1, 2, 4, 8, 16 and num_stages >= 1; got {self}")


# Chosen on an H100 (SXM, 80 GB) by scripts/bench_triton_flash.py --sweep (bf16, 16K tokens) among BLOCK_M
# 64/128, BLOCK_N 64/128, 4/8 warps and 2-4 stages: 128 x 64 tiles on 8 warps in 3 stages was the best or
# within 2% of it for both head dims, causal or not, and never spills registers (BLOCK_N 128 does, and so do
# 4 warps at head_dim 128). Results: results/published/h100-triton-flash/.
H100_CONFIGS: dict[tuple[int, bool], FlashConfig] = {
    (64, False): FlashConfig(128, 64, 8, 3),
    (64, True): FlashConfig(128, 64, 8, 3),
    (128, False): FlashConfig(128, 64, 8, 3),
    (128, True): FlashConfig(128, 64, 8, 3),
}
INTERPRETER_CONFIG = FlashConfig(32, 16, 4, 1)  # small tiles: many blocks, so every code path runs in tests


def triton_available(device: str | torch.device) -> str | None:
    """None when triton_flash_attention can run on `device`, else a one-line reason."""
    if importlib.util.find_spec("triton") is None or triton is None:
        return "triton is not installed (pip install triton; it ships with torch's CUDA wheels on Linux)"
    device_type = torch.device(device).type
    if device_type == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return ("triton runs on the CPU only in its interpreter (set TRITON_INTERPRET=1 before importing "
                    "reference_impls.kernels.triton_flash); it is a CUDA kernel")
        return None
    if device_type != "cuda":
        return f"triton_flash runs on cuda (or cpu in Triton's interpreter), not {device_type}"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return f"triton_flash needs compute capability >= 8.0 (bf16 tensor cores), this GPU is {major}.{minor}"
    return None


def default_config(head_dim: int, causal: bool, device: torch.device) -> FlashConfig:
    """The tuned table on a GPU; small tiles in the interpreter, where tile size only costs time."""
    if device.type == "cpu":
        return INTERPRETER_CONFIG
    return H100_CONFIGS[(head_dim, causal)]


def _check_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    check_qkv(q, k, v)
    if q.dtype not in TRITON_DTYPES:
        raise ValueError(f"triton_flash supports dtypes {', '.join(map(str, TRITON_DTYPES))}; got {q.dtype}")
    if q.shape[-1] not in TRITON_HEAD_DIMS:
        raise ValueError(f"triton_flash supports head_dim {' or '.join(map(str, TRITON_HEAD_DIMS))}; "
                         f"got head_dim={q.shape[-1]}")


def triton_flash_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool,
                           config: FlashConfig | None = None) -> Tensor:
    """softmax(q kᵀ / sqrt(D)) v for q, k, v of shape [B, H, S, D], fused in one Triton kernel.

    float16/bfloat16 (float32 too, with exact float32 dot products) and head_dim 64 or 128; any S >= 1.
    Accumulates in float32 and returns [B, H, S, D] in the input dtype. `config` overrides the tuned tiles.
    Raises ValueError for unsupported shapes or dtypes and RuntimeError where triton cannot run."""
    _check_inputs(q, k, v)
    reason = triton_available(q.device)
    if reason:
        raise RuntimeError(reason)
    out = torch.empty_like(q)  # [B, H, S, D]
    launch_flash_forward(q.contiguous(), k.contiguous(), v.contiguous(), out, causal, config)
    return out


def launch_flash_forward(q: Tensor, k: Tensor, v: Tensor, out: Tensor, causal: bool,
                         config: FlashConfig | None = None) -> object:
    """Launch the kernel on checked, contiguous tensors; returns Triton's compiled kernel (registers, spills,
    PTX), which benchmarks read to see what the compiler made of a config."""
    batch, heads, seq, head_dim = q.shape
    config = config or default_config(head_dim, causal, q.device)
    grid = (batch * heads, triton.cdiv(seq, config.block_m))
    return _flash_forward_kernel[grid](
        q, k, v, out, seq, LOG2E / math.sqrt(head_dim),
        HEAD_DIM=head_dim, BLOCK_M=config.block_m, BLOCK_N=config.block_n, CAUSAL=causal,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", INTERPRETED=q.device.type == "cpu",
        num_warps=config.num_warps, num_stages=config.num_stages)


if triton is not None:

    @triton.jit
    def _mma_operand(x, INTERPRETED: tl.constexpr):
        """Compiled: x as is. Interpreted: x in float32, which holds every fp16/bf16 product exactly: Triton
        3.6's interpreter multiplies bf16 operands as their raw 16-bit integers."""
        if INTERPRETED:
            x = x.to(tl.float32)
        return x

    @triton.jit
    def _fold_key_block(acc, row_sum, row_max, q, k_ptrs, v_ptrs, offs_m, keys, seq, qk_scale,
                        MASKED: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
                        INTERPRETED: tl.constexpr):
        """Fold one block of keys (positions `keys`) into the running (acc, row_sum, row_max).

        A MASKED block may run past the sequence end (its loads are masked) and, with CAUSAL, cross the
        diagonal; an unmasked block is known to be full and wholly visible, so it skips every comparison."""
        if MASKED:
            k = tl.load(k_ptrs, mask=keys[:, None] < seq, other=0.0)  # [BLOCK_N, D]
        else:
            k = tl.load(k_ptrs)
        scores = tl.dot(_mma_operand(q, INTERPRETED), _mma_operand(tl.trans(k), INTERPRETED),
                        input_precision=DOT_PRECISION)  # [BLOCK_M, BLOCK_N] fp32
        if MASKED:
            if CAUSAL:
                visible = offs_m[:, None] >= keys[None, :]  # also hides keys >= seq from real rows
            else:
                visible = keys[None, :] < seq
            scores = tl.where(visible, scores, float("-inf"))
        # Base-2 online softmax: the scale and log2(e) ride along in one multiply-add per score.
        new_max = tl.maximum(row_max, tl.max(scores, 1) * qk_scale)  # [BLOCK_M]
        probs = tl.exp2(scores * qk_scale - new_max[:, None])  # [BLOCK_M, BLOCK_N]
        alpha = tl.exp2(row_max - new_max)  # rescales what was summed under the old max; 0 at first
        row_sum = row_sum * alpha + tl.sum(probs, 1)
        if MASKED:
            v = tl.load(v_ptrs, mask=keys[:, None] < seq, other=0.0)  # [BLOCK_N, D]
        else:
            v = tl.load(v_ptrs)
        acc = tl.dot(_mma_operand(probs.to(v.dtype), INTERPRETED), _mma_operand(v, INTERPRETED),
                     acc * alpha[:, None], input_precision=DOT_PRECISION)
        return acc, row_sum, new_max

    @triton.jit
    def _fold_key_blocks(acc, row_sum, row_max, q, k_ptrs, v_ptrs, offs_m, offs_n, key_lo, key_hi, seq,
                         qk_scale, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
                         CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr, INTERPRETED: tl.constexpr):
        """Fold keys [key_lo, key_hi) in, BLOCK_N at a time.

        Compiled, a `range` loop, which Triton software-pipelines (num_stages). The interpreter walks the
        same blocks with `while`: Triton 3.6's interpreter cannot take a run-time `range` bound under
        NumPy >= 2.4 (triton-lang/triton#9171)."""
        k_ptrs += key_lo * HEAD_DIM
        v_ptrs += key_lo * HEAD_DIM
        if INTERPRETED:
            start_n = key_lo
            while start_n < key_hi:
                acc, row_sum, row_max = _fold_key_block(acc, row_sum, row_max, q, k_ptrs, v_ptrs, offs_m,
                                                        start_n + offs_n, seq, qk_scale, MASKED, CAUSAL,
                                                        DOT_PRECISION, INTERPRETED)
                k_ptrs += BLOCK_N * HEAD_DIM
                v_ptrs += BLOCK_N * HEAD_DIM
                start_n += BLOCK_N
        else:
            for start_n in range(key_lo, key_hi, BLOCK_N):
                acc, row_sum, row_max = _fold_key_block(acc, row_sum, row_max, q, k_ptrs, v_ptrs, offs_m,
                                                        start_n + offs_n, seq, qk_scale, MASKED, CAUSAL,
                                                        DOT_PRECISION, INTERPRETED)
                k_ptrs += BLOCK_N * HEAD_DIM
                v_ptrs += BLOCK_N * HEAD_DIM
        return acc, row_sum, row_max

    @triton.jit
    def _flash_forward_kernel(q_ptr, k_ptr, v_ptr, out_ptr, seq, qk_scale, HEAD_DIM: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
                              DOT_PRECISION: tl.constexpr, INTERPRETED: tl.constexpr):
        """One program: BLOCK_M query rows of one (batch, head) of contiguous [B, H, S, D] tensors."""
        head = tl.program_id(0)
        start_m = (tl.num_programs(1) - 1 - tl.program_id(1)) * BLOCK_M  # last query block first
        base = head.to(tl.int64) * seq * HEAD_DIM
        offs_m = start_m + tl.arange(0, BLOCK_M)  # [BLOCK_M] query positions
        offs_n = tl.arange(0, BLOCK_N)  # [BLOCK_N]
        offs_d = tl.arange(0, HEAD_DIM)  # [D]
        rows_ok = offs_m[:, None] < seq
        q = tl.load(q_ptr + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=rows_ok, other=0.0)
        k_ptrs = k_ptr + base + offs_n[:, None] * HEAD_DIM + offs_d[None, :]  # [BLOCK_N, D]
        v_ptrs = v_ptr + base + offs_n[:, None] * HEAD_DIM + offs_d[None, :]  # [BLOCK_N, D]

        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
        row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        if CAUSAL:
            full_end = start_m  # keys left of this query block: every row sees all of them
            masked_end = tl.minimum(start_m + BLOCK_M, seq)  # the diagonal: the only masked keys
        else:
            full_end = (seq // BLOCK_N) * BLOCK_N
            masked_end = seq  # a ragged tail block, if any
        acc, row_sum, row_max = _fold_key_blocks(
            acc, row_sum, row_max, q, k_ptrs, v_ptrs, offs_m, offs_n, 0, full_end, seq, qk_scale,
            HEAD_DIM, BLOCK_N, False, CAUSAL, DOT_PRECISION, INTERPRETED)
        acc, row_sum, row_max = _fold_key_blocks(
            acc, row_sum, row_max, q, k_ptrs, v_ptrs, offs_m, offs_n, full_end, masked_end, seq, qk_scale,
            HEAD_DIM, BLOCK_N, True, CAUSAL, DOT_PRECISION, INTERPRETED)
        out = acc / row_sum[:, None]
        tl.store(out_ptr + base + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=rows_ok)
