"""Flash-decoding in Triton: split-KV attention decode over a paged or contiguous cache, GQA-aware.

One kernel serves both cache layouts (`PAGED` is a compile-time flag):
  paged       k_pages, v_pages [N, P, Hkv, D] with block_table [B, pages]: token t of sequence b is read
              straight from pool row block_table[b, t // P], slot t % P — the pages are never gathered.
  contiguous  k, v [B, Hkv, L, D]: the same kernel with the batch index standing in for the page.

Grid (kv_head, batch, split), so neighbouring programs read the heads of the same pages. A program takes
every query head of its KV group (the G = Hq / Hkv heads padded to 16 rows, the smallest tl.dot) so each
K/V byte is read from memory once per step, then streams its share of the sequence in BLOCK_N-token tiles
with an online softmax (base 2, float32 statistics); the paged kernel loads the next tile's block-table
entries while it folds the current one. With splits > 1 each program writes a normalized partial output
and its log-sum-exp, and a second small kernel merges the splits; with splits == 1 the first kernel writes
the answer itself.

Sequences may have different lengths (`kv_lens`, int32 [B]); a split past a sequence's end writes
lse = -inf and contributes nothing. Triton is imported lazily, so importing this module needs no GPU and
no triton; on a CPU machine set TRITON_INTERPRET=1 before the first call to run the kernels in
Triton's interpreter (how the tests run them).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

# Tokens per tile, warps, pipeline depth, block-table entries loaded a tile ahead, grid (kv_head, batch, split)
# order. Chosen on an H100 by scripts/bench_decode.py's tune section (results/published/h100-decode/): 4 stages
# suit the contiguous kernel, 3 the paged one; table prefetch gains the paged kernel 5-9%; grid order ~1%.
DEFAULT_CONFIG = {"block_n": 64, "num_warps": 4, "num_stages": 4, "prefetch_table": True, "heads_first": True}
PAGED_CONFIG = DEFAULT_CONFIG | {"num_stages": 3}
H100_SMS = 132  # streaming multiprocessors assumed where no GPU is asked (costs, the interpreter)
# Programs one SM runs at once, measured on an H100 (scripts/bench_decode.py's splits sweep): the contiguous
# kernel's 4 stages fill the shared memory for one, the paged kernel's 3 stages leave room for two.
PROGRAMS_PER_SM = {"contiguous": 1, "paged": 2}
MIN_TOKENS_PER_SPLIT = 256  # a split shorter than this costs more in merging than it gains
MAX_SPLITS = 256
WAVE_EFFICIENCY = 0.85


@functools.lru_cache(maxsize=4096)  # called on every launch: keep the host path short
def auto_splits(batch: int, kv_heads: int, kv_len: int, slots: int = H100_SMS) -> int:
    """Flash-decoding's wave rule: the fewest splits whose batch · kv_heads · splits programs fill `slots`
    (SMs × programs per SM) in whole waves to within WAVE_EFFICIENCY of the best split count's fill, with
    no split under MIN_TOKENS_PER_SPLIT tokens. A batch that fills the GPU alone gets 1 split (no merge);
    one long sequence gets about a wave of long splits (on an H100 that beat 2-8 waves of short ones)."""
    if min(batch, kv_heads, kv_len, slots) < 1:
        raise ValueError(f"batch, kv_heads, kv_len and slots must be >= 1; got {batch}, {kv_heads}, {kv_len}, "
                         f"{slots}")
    programs = batch * kv_heads
    most = max(1, min(MAX_SPLITS, kv_len // MIN_TOKENS_PER_SPLIT))
    fill = [programs * s / slots / math.ceil(programs * s / slots) for s in range(1, most + 1)]
    return next(s for s, f in enumerate(fill, start=1) if f >= WAVE_EFFICIENCY * max(fill))


def device_slots(device: torch.device, layout: str) -> int:
    """SMs of `device` (H100_SMS off-GPU) times PROGRAMS_PER_SM[layout]."""
    sms = H100_SMS if device.type != "cuda" else _sm_count(device.index or 0)
    return sms * PROGRAMS_PER_SM[layout]


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _kernels() -> tuple:
    """The split and merge kernels, imported on first use so that this module imports without triton."""
    from reference_impls.kernels import triton_decode_kernels as kernels

    return kernels.split_kv_kernel, kernels.merge_kernel


def _lens(kv_lens: int | Tensor, batch: int, device: torch.device) -> tuple[Tensor | None, int]:
    """(per-sequence lengths as int32 [B] or None when uniform, the longest length). A tensor costs one
    device sync here (its max); an int costs none, so uniform batches stay CUDA-graph capturable."""
    if isinstance(kv_lens, int):
        if kv_lens < 1:
            raise ValueError(f"kv_len must be >= 1, got {kv_lens}")
        return None, kv_lens
    if kv_lens.shape != (batch,) or int(kv_lens.min()) < 1:
        raise ValueError(f"kv_lens must be [batch] = [{batch}] positive lengths; got {tuple(kv_lens.shape)}")
    return kv_lens.to(device=device, dtype=torch.int32), int(kv_lens.max())


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << (n - 1).bit_length())


def _launch(q: Tensor, k: Tensor, v: Tensor, table: Tensor | None, lens: Tensor | None, kv_len: int,
            splits: int, strides_k: tuple[int, int, int], strides_v: tuple[int, int, int], kv_heads: int,
            page_size: int, config: dict) -> Tensor:
    """Run the split kernel (and the merge when splits > 1); strides are (page or batch, token, head)."""
    split_kernel, merge_kernel = _kernels()
    batch, heads, dim = q.shape
    if heads % kv_heads or splits < 1:
        raise ValueError(f"query heads ({heads}) must be a multiple of kv heads ({kv_heads}); splits >= 1 "
                         f"(got {splits})")
    if q.stride(2) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("q, k and v need a contiguous last (head_dim) dimension")
    group, block_d = heads // kv_heads, _pow2(dim)
    out = torch.empty_like(q)  # [B, Hq, D]
    part = out if splits == 1 else torch.empty(batch, heads, splits, dim, dtype=torch.float32, device=q.device)
    lse = torch.empty(batch, heads, splits, dtype=torch.float32, device=q.device)
    table_arg = lse if table is None else table  # an unused pointer argument still needs a tensor
    scale_log2 = (1.0 / math.sqrt(dim)) * math.log2(math.e)
    grid = (kv_heads, batch, splits) if config["heads_first"] else (batch, kv_heads, splits)
    split_kernel[grid](
        q, k, v, table_arg, lse if lens is None else lens, part, lse, kv_len, splits, scale_log2,
        q.stride(0), q.stride(1), *strides_k, *strides_v, table_arg.stride(0), part.stride(0), part.stride(1),
        part.stride(2) if splits > 1 else 0, lse.stride(0), lse.stride(1),
        GROUP=group, BLOCK_G=_pow2(group), HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_N=config["block_n"],
        PAGE_SIZE=page_size, PAGED=table is not None, VARLEN=lens is not None, SPLIT=splits > 1,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32", INTERPRETED=q.device.type == "cpu",
        PREFETCH_TABLE=config["prefetch_table"], HEADS_FIRST=config["heads_first"], num_warps=config["num_warps"],
        num_stages=config["num_stages"])
    if splits > 1:
        block_s = _pow2(splits)
        merge_kernel[(batch, heads)](
            part, lse, out, splits, part.stride(0), part.stride(1), part.stride(2), lse.stride(0), lse.stride(1),
            out.stride(0), out.stride(1), BLOCK_S=block_s, CHUNK=max(16, block_s // 16), HEAD_DIM=dim,
            BLOCK_D=block_d, num_warps=4)
    return out


def triton_paged_decode(q: Tensor, k_pages: Tensor, v_pages: Tensor, block_table: Tensor, kv_lens: int | Tensor,
                        splits: int = 0, **config: int) -> Tensor:
    """Decode over a paged cache read through the block table. q [B, Hq, D]; k_pages, v_pages [N, P, Hkv, D];
    block_table int32 [B, pages]; kv_lens an int or int32 [B]. splits 0 picks auto_splits. `config` overrides
    PAGED_CONFIG (block_n, num_warps, num_stages, prefetch_table, heads_first). Returns [B, Hq, D]."""
    if k_pages.dim() != 4 or k_pages.shape != v_pages.shape or block_table.dim() != 2:
        raise ValueError(f"expected k_pages, v_pages [N, P, Hkv, D] and block_table [B, pages]; got "
                         f"{tuple(k_pages.shape)}, {tuple(v_pages.shape)}, {tuple(block_table.shape)}")
    batch, page_size, kv_heads = q.shape[0], k_pages.shape[1], k_pages.shape[2]
    lens, longest = _lens(kv_lens, batch, q.device)
    if longest > block_table.shape[1] * page_size:
        raise ValueError(f"a kv_len exceeds the block table's {block_table.shape[1]} pages of {page_size} tokens")
    if block_table.dtype != torch.int32:
        raise ValueError(f"block_table must be int32, got {block_table.dtype}")
    splits = splits or auto_splits(batch, kv_heads, longest, device_slots(q.device, "paged"))
    strides_k = (k_pages.stride(0), k_pages.stride(1), k_pages.stride(2))
    strides_v = (v_pages.stride(0), v_pages.stride(1), v_pages.stride(2))
    return _launch(q, k_pages, v_pages, block_table, lens, longest, splits, strides_k, strides_v, kv_heads,
                   page_size, _config(PAGED_CONFIG, config))


def triton_split_decode(q: Tensor, k: Tensor, v: Tensor, splits: int = 0, kv_lens: int | Tensor | None = None,
                        **config: int) -> Tensor:
    """Decode over a contiguous cache k, v [B, Hkv, L, D] (the paged kernel with the batch as the page).
    kv_lens (default L) lets sequences use a prefix of the cache. splits 0 picks auto_splits."""
    if k.dim() != 4 or k.shape != v.shape:
        raise ValueError(f"k, v must share one [B, Hkv, L, D] shape; got {tuple(k.shape)}, {tuple(v.shape)}")
    batch, kv_heads, kv_len, _ = k.shape
    lens, longest = _lens(kv_len if kv_lens is None else kv_lens, batch, q.device)
    if longest > kv_len:
        raise ValueError(f"kv_lens exceed the cache length {kv_len}")
    splits = splits or auto_splits(batch, kv_heads, longest, device_slots(q.device, "contiguous"))
    strides_k = (k.stride(0), k.stride(2), k.stride(1))
    strides_v = (v.stride(0), v.stride(2), v.stride(1))
    return _launch(q, k, v, None, lens, longest, splits, strides_k, strides_v, kv_heads, 1,
                   _config(DEFAULT_CONFIG, config))


def _config(default: dict, overrides: dict) -> dict:
    """`default` with `overrides` (from a tuning run); unknown keys are a ValueError."""
    unknown = set(overrides) - set(default)
    if unknown:
        raise ValueError(f"unknown kernel config {sorted(unknown)}; allowed: {sorted(default)}")
    return default | overrides
