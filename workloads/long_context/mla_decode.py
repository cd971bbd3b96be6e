"""MLA decode (DeepSeek-V2/V3 multi-head latent attention): one query token per sequence against a
compressed cache — one latent vector (kv_lora_rank) and one shared rope key per token, not per-head K/V.

A separate workload from attention_decode (whose docstring says why): the cache, the params and the
implementations differ. The two implementations compute the same function with very different work:
`decompress` up-projects the latent to per-head K and V every step (O(L·R·H·(Dn + Dv)) FLOPs, H·L·(Dn + Dv)
elements written and reread); `absorbed` moves the up-projections onto the query and the output and attends
over the latent directly (O(L·H·(2R + Dr)) FLOPs, only the cache read per token). The cost counts each
honestly: `flops` is the absorbed count (the fewest any implementation needs), `executed_flops` what each
implementation does. Defaults are DeepSeek-V3's dimensions; heads default to 16 (its 128 heads split 8 ways
by tensor parallelism).
"""

from __future__ import annotations

import math

import torch

from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.kernels import mla_decode as mla
from workloads.long_context.attention_decode import decode_check
from workloads.long_context.kv_metrics import KV_BYTES_READ

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
INPUT_ORDER = ("q_nope", "q_pe", "c_kv", "k_pe", "w_uk", "w_uv")


def dims(params: dict) -> dict:
    return {"b": params["batch"], "h": params["heads"], "L": params["kv_len"], "r": params["kv_lora_rank"],
            "dr": params["rope_dim"], "dn": params["qk_nope_dim"], "dv": params["v_head_dim"],
            "e": torch.finfo(DTYPES[params["dtype"]]).bits // 8}


@register_workload
class MlaDecode(Workload):
    name = "mla_decode"
    family = "long_context"
    description = ("DeepSeek-style MLA decode over a latent KV cache: decompress (per-head K/V materialized) "
                   "versus absorbed (attention on the latent itself).")
    sweep_param = "kv_len"
    params = (
        Param("kv_len", int, 4096, minimum=1, doc="tokens in the latent cache"),
        Param("batch", int, 1, minimum=1),
        Param("heads", int, 16, minimum=1, doc="query heads"),
        Param("kv_lora_rank", int, 512, minimum=1, doc="latent width R"),
        Param("rope_dim", int, 64, minimum=1, doc="shared rope key width Dr"),
        Param("qk_nope_dim", int, 128, minimum=1, doc="per-head no-position query/key width Dn"),
        Param("v_head_dim", int, 128, minimum=1, doc="per-head value width Dv"),
        Param("dtype", str, "float32", choices=tuple(DTYPES)),
    )
    contract_params = {"kv_len": 100, "batch": 2, "heads": 4, "kv_lora_rank": 64, "rope_dim": 16,
                       "qk_nope_dim": 32, "v_head_dim": 24}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        """Unit-normal queries and cache; up-projections scaled by 1/√R so per-head keys and values are
        unit-scale too (scores stay O(1), as in a trained model)."""
        s = dims(params)
        g = torch.Generator(device=device).manual_seed(seed)
        dtype = DTYPES[params["dtype"]]

        def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
            return (torch.randn(shape, generator=g, device=device, dtype=torch.float32) * scale).to(dtype)

        return {"q_nope": randn(s["b"], s["h"], s["dn"]), "q_pe": randn(s["b"], s["h"], s["dr"]),
                "c_kv": randn(s["b"], s["L"], s["r"]), "k_pe": randn(s["b"], s["L"], s["dr"]),
                "w_uk": randn(s["h"], s["dn"], s["r"], scale=1 / math.sqrt(s["r"])),
                "w_uv": randn(s["h"], s["dv"], s["r"], scale=1 / math.sqrt(s["r"]))}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return mla.mla_reference(*(inputs[n] for n in INPUT_ORDER))

    def check(self, output: torch.Tensor, reference: torch.Tensor, baseline_error: float | None) -> Check:
        """attention_decode's rule (a 32-eps floor in float32): decompress and absorbed round differently."""
        return decode_check(self, output, reference, baseline_error)

    def counters(self, output: torch.Tensor, params: dict) -> dict[str, float]:
        s = dims(params)
        return {KV_BYTES_READ.name: float(s["b"] * s["L"] * (s["r"] + s["dr"]) * s["e"])}

    def cost(self, params: dict, impl: str) -> Cost:
        """Minimum bytes: the cache (latent + rope key) once, both up-projection weights once, q and o.
        FLOPs: the absorbed algorithm's; executed FLOPs and traffic per implementation (see _work)."""
        s = dims(params)
        b, h, length, r, dr, dn, dv, e = (s[k] for k in ("b", "h", "L", "r", "dr", "dn", "dv", "e"))
        cache = b * length * (r + dr) * e
        weights = h * r * (dn + dv) * e
        q_o = b * h * (dn + dr + dv) * e
        absorbed_flops = 2.0 * b * h * (dn * r + length * (r + dr) + length * r + r * dv)
        executed, traffic, launches, workspace = _work(impl, s, absorbed_flops)
        return Cost(absorbed_flops, {"dram": float(cache + weights + q_o)}, cache + weights + q_o + workspace,
                    dtype=params["dtype"], traffic_bytes={"dram": weights + q_o + traffic}, launches=launches,
                    executed_flops=executed, special_ops=float(b * h * length))


def _work(impl: str, s: dict, absorbed_flops: float) -> tuple[float, float, int, float]:
    """(executed FLOPs, cache and intermediate traffic, launches, workspace bytes), counted from the code.

    Both torch implementations read the latent twice (decompress: once per up-projection; absorbed: once
    for the scores, once for o_lat) and pass the [H, L] scores six times (rope term written and read,
    scores written, softmax read and write, probabilities read)."""
    b, h, length, r, dr, dn, dv, e = (s[k] for k in ("b", "h", "L", "r", "dr", "dn", "dv", "e"))
    latent_twice_and_rope = b * length * (2 * r + dr) * e
    score_passes = 6.0 * b * h * length * e
    if impl == "decompress":
        flops = 2.0 * b * length * h * (r * (dn + dv) + dn + dr + dv)
        materialized = 2.0 * b * h * length * (dn + dv) * e  # K and V written, then read
        weights_per_sequence = (b - 1) * h * r * (dn + dv) * e  # one sequence at a time rereads the weights
        workspace = h * length * max(dn, dv) * e + 3.0 * h * length * e
        return flops, latent_twice_and_rope + materialized + score_passes + weights_per_sequence, 8 * b, workspace
    if impl == "absorbed":
        return absorbed_flops, latent_twice_and_rope + score_passes, 9, 3.0 * b * h * length * e
    raise ValueError(f"no cost model for implementation {impl!r} of mla_decode")


@implementation("mla_decode", "decompress", baseline=True)
def decompress(inputs: dict, params: dict) -> torch.Tensor:
    """Up-project the latent to per-head K and V each step (w_uk, w_uv), then attend: the obvious way."""
    return mla.mla_decompress(*(inputs[n] for n in INPUT_ORDER))


@implementation("mla_decode", "absorbed")
def absorbed(inputs: dict, params: dict) -> torch.Tensor:
    """w_uk absorbed into the query and w_uv into the output: attention runs on the latent cache directly."""
    return mla.mla_absorbed(*(inputs[n] for n in INPUT_ORDER))
