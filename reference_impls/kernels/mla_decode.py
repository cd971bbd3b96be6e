"""Multi-head latent attention (MLA, DeepSeek-V2/V3) decode in plain PyTorch: the cache is compressed.

Instead of per-head K and V, the cache holds one latent vector per token plus one shared rope key:

  c_kv   [B, L, R]    compressed latent (kv_lora_rank R, 512 in DeepSeek-V3)
  k_pe   [B, L, Dr]   rope key shared by every head (Dr = 64)
  q_nope [B, H, Dn]   query, no-position part (Dn = qk_nope_head_dim, 128)
  q_pe   [B, H, Dr]   query, rope part
  w_uk   [H, Dn, R]   up-projection latent -> per-head key (k_nope[h] = c_kv @ w_uk[h]ᵀ)
  w_uv   [H, Dv, R]   up-projection latent -> per-head value (v[h] = c_kv @ w_uv[h]ᵀ, Dv = 128)

score[h, l] = (q_nope[h]·k_nope[h, l] + q_pe[h]·k_pe[l]) / √(Dn + Dr); out[h] = Σ_l softmax(score)[h, l]·v[h, l].
Output [B, H, Dv] (before DeepSeek's output projection, which is not part of attention).

Two ways to compute it, equal in exact arithmetic:
  mla_decompress  up-project the latent into per-head K and V (H·L·(Dn + Dv) elements materialized per
                  sequence), then attend: the obvious way, O(L·R·H·(Dn + Dv)) FLOPs.
  mla_absorbed    fold w_uk into the query (q_lat[h] = q_nope[h] @ w_uk[h], [H, R]) and w_uv into the output,
                  so attention runs on the latent directly like MQA with R + Dr wide keys and R wide values:
                  O(L·H·(2R + Dr)) FLOPs, and the cache is the only thing read per token.

Imports nothing from the benchmark harness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

REFERENCE_CHUNK = 4096  # tokens per float64 up-projection block in mla_reference


@dataclass(frozen=True)
class MlaDims:
    batch: int
    heads: int
    kv_len: int
    kv_lora_rank: int
    rope_dim: int
    qk_nope_dim: int
    v_head_dim: int

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.qk_nope_dim + self.rope_dim)


def mla_dims(q_nope: Tensor, q_pe: Tensor, c_kv: Tensor, k_pe: Tensor, w_uk: Tensor, w_uv: Tensor) -> MlaDims:
    """Check every shape and dtype against the others; a mismatch names the tensor and the expected shape."""
    if c_kv.dim() != 3 or q_nope.dim() != 3:
        raise ValueError(f"c_kv must be [B, L, R] and q_nope [B, H, Dn]; got {tuple(c_kv.shape)}, "
                         f"{tuple(q_nope.shape)}")
    (batch, kv_len, rank), (_, heads, nope) = c_kv.shape, q_nope.shape
    rope, v_dim = q_pe.shape[-1], w_uv.shape[1] if w_uv.dim() == 3 else -1
    expected = {"q_nope": (batch, heads, nope), "q_pe": (batch, heads, rope), "k_pe": (batch, kv_len, rope),
                "w_uk": (heads, nope, rank), "w_uv": (heads, v_dim, rank)}
    given = {"q_nope": q_nope, "q_pe": q_pe, "k_pe": k_pe, "w_uk": w_uk, "w_uv": w_uv}
    for name, shape in expected.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(f"{name} must be {shape} to match c_kv {tuple(c_kv.shape)}; got "
                             f"{tuple(given[name].shape)}")
    dtypes = {t.dtype for t in (c_kv, *given.values())}
    if len(dtypes) != 1 or not c_kv.dtype.is_floating_point:
        raise ValueError(f"MLA tensors must share one floating dtype; got {sorted(map(str, dtypes))}")
    return MlaDims(batch, heads, kv_len, rank, rope, nope, v_dim)


def mla_reference(q_nope: Tensor, q_pe: Tensor, c_kv: Tensor, k_pe: Tensor, w_uk: Tensor, w_uv: Tensor,
                  chunk: int = REFERENCE_CHUNK) -> Tensor:
    """The golden answer in float64, by the definition (decompress, attend), one sequence and `chunk` tokens
    at a time so a long cache never holds H·L·Dn float64 keys at once. Returns [B, H, Dv] float64."""
    dims = mla_dims(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv)
    w_uk64, w_uv64 = w_uk.double(), w_uv.double()
    out = torch.empty(dims.batch, dims.heads, dims.v_head_dim, dtype=torch.float64, device=c_kv.device)
    for b in range(dims.batch):
        latent = c_kv[b].double()  # [L, R]
        scores = torch.einsum("hr,lr->hl", q_pe[b].double(), k_pe[b].double())  # rope part, [H, L]
        for start in range(0, dims.kv_len, chunk):
            k_nope = torch.einsum("lr,hnr->hln", latent[start:start + chunk], w_uk64)  # [H, c, Dn]
            scores[:, start:start + chunk] += torch.einsum("hn,hln->hl", q_nope[b].double(), k_nope)
        weights = torch.softmax(scores * dims.scale, dim=-1)  # [H, L]
        acc = torch.zeros(dims.heads, dims.v_head_dim, dtype=torch.float64, device=c_kv.device)
        for start in range(0, dims.kv_len, chunk):
            values = torch.einsum("lr,hvr->hlv", latent[start:start + chunk], w_uv64)  # [H, c, Dv]
            acc += torch.einsum("hl,hlv->hv", weights[:, start:start + chunk], values)
        out[b] = acc
    return out


def mla_decompress(q_nope: Tensor, q_pe: Tensor, c_kv: Tensor, k_pe: Tensor, w_uk: Tensor, w_uv: Tensor) -> Tensor:
    """Up-project the latent to per-head K and V, then attend. One sequence at a time: each writes and
    rereads H·L·(Dn + Dv) elements of keys and values, and reads its latent twice (once per projection)."""
    dims = mla_dims(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv)
    out = q_nope.new_empty(dims.batch, dims.heads, dims.v_head_dim)  # [B, H, Dv]
    for b in range(dims.batch):
        latent_t = c_kv[b].transpose(0, 1)  # [R, L]
        k_nope = w_uk @ latent_t  # one [H·Dn, R] x [R, L] matmul -> [H, Dn, L]
        rope = (q_pe[b] * dims.scale) @ k_pe[b].transpose(0, 1)  # [H, L]
        scores = torch.baddbmm(rope.unsqueeze(1), (q_nope[b] * dims.scale).unsqueeze(1), k_nope)  # [H, 1, L]
        del k_nope
        probs = torch.softmax(scores, dim=-1)
        values = w_uv @ latent_t  # [H, Dv, L]
        out[b] = (probs @ values.transpose(1, 2)).squeeze(1)  # [H, 1, L] x [H, L, Dv]
    return out


def absorb_query(q_nope: Tensor, w_uk: Tensor) -> Tensor:
    """q_lat[b, h] = q_nope[b, h] @ w_uk[h]: the key up-projection moved onto the query. [B, H, R]."""
    return torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1)  # [H, B, Dn] x [H, Dn, R]


def mla_absorbed(q_nope: Tensor, q_pe: Tensor, c_kv: Tensor, k_pe: Tensor, w_uk: Tensor, w_uv: Tensor) -> Tensor:
    """Attention on the latent: scores = q_lat·c_kv + q_pe·k_pe, o_lat = softmax · c_kv, out = o_lat @ w_uvᵀ.
    Batched over sequences; nothing of size H·L·D is materialized, only the [B, H, L] scores. In torch the
    latent is read twice (for the scores and for o_lat); a fused kernel would read it once."""
    dims = mla_dims(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv)
    q_lat = absorb_query(q_nope * dims.scale, w_uk)  # [B, H, R]
    rope = (q_pe * dims.scale) @ k_pe.transpose(1, 2)  # [B, H, L]
    scores = torch.baddbmm(rope, q_lat, c_kv.transpose(1, 2))  # [B, H, L]
    o_lat = torch.softmax(scores, dim=-1) @ c_kv  # [B, H, R]
    out = torch.bmm(o_lat.transpose(0, 1), w_uv.transpose(1, 2))  # [H, B, R] x [H, R, Dv] -> [H, B, Dv]
    return out.transpose(0, 1).contiguous()  # [B, H, Dv]
