"""Attention prefill: softmax(QKᵀ/√d)V over a whole prompt — where the O(n²) score matrix lives or doesn't."""

from __future__ import annotations

import importlib.util

import torch

from harness.case import Cost, Param, Phase
from harness.registry import Workload, implementation, register_workload
from reference_impls.kernels import attention as attn

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
NAIVE_SCORE_LIMIT = 16 * 2**30  # bytes of [B, H, S, S] scores beyond which naive is not the check's yardstick
SDPA_BACKENDS = {"sdpa_math": "math", "sdpa_flash": "flash", "sdpa_efficient": "efficient", "sdpa_cudnn": "cudnn"}


@register_workload
class AttentionPrefill(Workload):
    name = "attention_prefill"
    family = "long_context"
    description = ("Exact attention over a full prompt ([batch, heads, seq, head_dim] Q, K, V). "
                   "Implementations differ in what they materialize: the whole score matrix, or tiles of it.")
    sweep_param = "seq"
    params = (
        Param("seq", int, 1024, minimum=1, doc="tokens in the prompt (queries = keys)"),
        Param("heads", int, 4, minimum=1),
        Param("head_dim", int, 64, minimum=1),
        Param("dtype", str, "float32", choices=tuple(DTYPES)),
        Param("causal", bool, False),
        Param("batch", int, 1, minimum=1),
    )

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        g = torch.Generator(device=device).manual_seed(seed)
        shape = (params["batch"], params["heads"], params["seq"], params["head_dim"])  # [B, H, S, D]
        dtype = DTYPES[params["dtype"]]
        q, k, v = (torch.randn(shape, generator=g, device=device, dtype=torch.float32).to(dtype) for _ in range(3))
        return {"q": q, "k": k, "v": v}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return attn.attention_reference(inputs["q"], inputs["k"], inputs["v"], params["causal"])

    def cost(self, params: dict, impl: str) -> Cost:
        """FLOPs 4·b·h·s²·d (two matmuls; half when causal); minimum bytes: read Q, K, V and write O once.

        The expected traffic adds what each implementation materializes (see _traffic_and_launches).
        """
        b, h, s, d = params["batch"], params["heads"], params["seq"], params["head_dim"]
        element = torch.finfo(DTYPES[params["dtype"]]).bits // 8
        flops = 4.0 * b * h * s * s * d * (0.5 if params["causal"] else 1.0)
        io_bytes = 4.0 * b * h * s * d * element
        workspace = _workspace_bytes(impl, b, h, s, d, element, params["causal"])
        footprint = None if workspace is None else io_bytes + workspace
        if impl in PHASED:
            phases = PHASED[impl](b, h, s, d, element, params["causal"], params["dtype"])
            return Cost.from_phases(flops, {"dram": io_bytes}, footprint, params["dtype"], phases)
        traffic, launches, scores = _traffic_and_launches(impl, b, h, s, d, element, params["causal"])
        return Cost(flops, {"dram": io_bytes}, footprint, dtype=params["dtype"], traffic_bytes={"dram": traffic},
                    launches=launches, executed_flops=4.0 * b * h * scores * d, special_ops=float(b * h * scores))

    def check_baseline(self, params: dict) -> str | None:
        """Past NAIVE_SCORE_LIMIT bytes of scores (64K tokens in bf16: 137 GB) naive cannot run, so the 2x rule
        is held against online_softmax, which computes the same float32-statistics softmax in tiles."""
        b, h, s = params["batch"], params["heads"], params["seq"]
        score_bytes = b * h * s * s * torch.finfo(DTYPES[params["dtype"]]).bits // 8
        return "online_softmax" if score_bytes > NAIVE_SCORE_LIMIT else None

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if impl == "triton_flash":
            return _triton_flash_unsupported(params, device)
        backend = SDPA_BACKENDS.get(impl)
        if backend is None:
            return None
        return attn.sdpa_backend_available(backend, device, DTYPES[params["dtype"]], params["head_dim"])


def _workspace_bytes(impl: str, b: int, h: int, s: int, d: int, element: int, causal: bool) -> float | None:
    """Temporaries at peak beyond inputs and output; None where torch's internals decide (plain sdpa, and the
    math backend, which upcasts 16-bit inputs and so uses more than naive)."""
    if impl == "naive":
        return attn.naive_workspace_bytes(b, h, s, d, element, causal)
    if impl == "chunked":
        return attn.chunked_workspace_bytes(b, h, s, d, element, causal)
    if impl == "online_softmax":
        return attn.online_softmax_workspace_bytes(b, h, s, d, element, causal)
    if impl == "sdpa_flash":
        return 4.0 * b * h * s  # the float32 log-sum-exp per query row (measured on an H100: + 1 KiB)
    if impl == "triton_flash":
        return 0.0  # writes only the output: no log-sum-exp (forward only), no copies of contiguous inputs
    return None


def _naive_phases(b: int, h: int, s: int, d: int, element: int, causal: bool, dtype: str) -> tuple[Phase, ...]:
    """naive_attention's kernels in order, each with the bytes it moves (n = b·h·s² score elements).

    The score matrix is in the input dtype; softmax reads it twice (max and sum, then the write pass).
    """
    n, io = float(b * h * s * s), float(b * h * s * d * element)
    phases = [Phase("q @ kᵀ", 2.0 * n * d, 2 * io + n * element, dtype),
              Phase("scale in place", n, 2 * n * element, dtype)]
    if causal:  # [S, S] bool mask (ones, triu_), then masked_fill_ reads it once per head
        phases += [Phase("causal mask", 0.0, 3.0 * s * s, dtype, launches=2),
                   Phase("masked_fill_", 0.0, n * (2 * element + 1), dtype)]
    phases += [Phase("softmax", 4.0 * n, 3 * n * element, dtype, special_ops=n),
               Phase("probs @ v", 2.0 * n * d, n * element + 2 * io, dtype)]
    return tuple(phases)


def _sdpa_math_phases(b: int, h: int, s: int, d: int, element: int, causal: bool,
                      dtype: str) -> tuple[Phase, ...]:
    """torch's math backend, kernel by kernel as torch 2.11–2.13 dispatch it (read with TorchDispatchMode).

    16-bit inputs are upcast to float32 first, so both matmuls run at the float32 (not tensor-core) peak;
    _safe_softmax adds isneginf / all / where passes over the score matrix, and the probabilities are also
    copied back to the input dtype (a copy the output does not use).
    """
    n, elems = float(b * h * s * s), float(b * h * s * d)
    upcast = element < 4
    acc, acc_dtype = (4, "float32") if upcast else (element, dtype)
    phases = []
    if upcast:
        phases.append(Phase("q, k, v to float32", 0.0, 3 * elems * (element + acc), dtype, launches=3))
    phases.append(Phase("scale q and k", 2 * elems, 4 * elems * acc, acc_dtype, launches=2))
    if causal:  # ones + tril in bool, where -> a float [S, S] additive mask
        phases.append(Phase("causal mask", 0.0, s * s * (3.0 + acc), acc_dtype, launches=3))
    phases.append(Phase("q @ kᵀ", 2.0 * n * d, 2 * elems * acc + n * acc, acc_dtype))
    if causal:
        phases.append(Phase("add mask", n, 3 * n * acc, acc_dtype))
    phases.append(Phase("_safe_softmax", 4.0 * n, n * (3 * acc + acc + 1 + 1 + 2 * acc), acc_dtype, launches=5,
                        special_ops=n))
    if upcast:
        phases.append(Phase("probs to input dtype", 0.0, n * (acc + element), acc_dtype))
    phases.append(Phase("probs @ v", 2.0 * n * d, n * acc + 2 * elems * acc, acc_dtype))
    if upcast:
        phases.append(Phase("output to input dtype", 0.0, elems * (acc + element), dtype))
    return tuple(phases)


PHASED = {"naive": _naive_phases, "sdpa_math": _sdpa_math_phases}
NAIVE_PASSES = 7  # score elements moved: matmul write, scale read+write, softmax read twice + write, PV read
TILE_PASSES = 10  # per tile element: matmul write, scale r+w, max read, subtract r+w, exp r+w, sum read, PV read
TILE_LAUNCHES = {"chunked": 12, "online_softmax": 17}  # torch ops per tile in reference_impls' code


def _traffic_and_launches(impl: str, b: int, h: int, s: int, d: int, element: int,
                          causal: bool) -> tuple[float, int, float]:
    """Expected main-memory bytes, kernel launches and computed score elements (per batch·head) of one call,
    counted from the implementation's code.

    Materialized score elements are charged as if they round-trip through main memory: right for the
    naive [S, S] matrix, an over-estimate for tiles small enough to stay in a cache (the residual shows it).
    Fused kernels (the SDPA backends but math) are charged the minimum: Q, K, V read and O written once,
    and with causal they skip the masked half.
    """
    io = 4.0 * b * h * s * d * element
    stats = max(element, 4) if element < 8 else element  # 16-bit scores are upcast to float32
    if impl in ("naive", "sdpa_math"):
        score_bytes = b * h * s * s * (stats if impl == "sdpa_math" else element)
        masking = (2 * score_bytes + b * h * s * s) if causal else 0.0
        return io + NAIVE_PASSES * score_bytes + masking, 4 + (3 if causal else 0), float(s * s)
    if impl == "triton_flash" and _triton_tiles(d, causal) is not None:
        return io, 1, _visited_tiles(s, *_triton_tiles(d, causal), causal)[1]
    if impl in TILE_LAUNCHES:
        rows, cols = ((attn.CHUNKED_QUERY_CHUNK, attn.CHUNKED_KEY_CHUNK) if impl == "chunked"
                      else (attn.ONLINE_BLOCK_Q, attn.ONLINE_BLOCK_K))
        tiles, tile_elements, keys_read = _visited_tiles(s, rows, cols, causal)
        kv_rereads = 2.0 * b * h * keys_read * d * element  # K and V of every visited tile
        traffic = io + kv_rereads + TILE_PASSES * b * h * tile_elements * stats
        return traffic, TILE_LAUNCHES[impl] * tiles + 4 * -(-s // rows), tile_elements
    return io, 1, s * (s + 1) / 2.0 if causal else float(s * s)


def _visited_tiles(s: int, rows: int, cols: int, causal: bool) -> tuple[int, float, float]:
    """(tiles, score elements, keys read) over all query blocks; causal skips blocks above the diagonal."""
    tiles, elements, keys = 0, 0.0, 0.0
    for start in range(0, s, rows):
        stop = min(start + rows, s)
        visited = min(s, -(-(stop if causal else s) // cols) * cols)
        tiles += -(-visited // cols)
        elements += (stop - start) * visited
        keys += visited
    return tiles, elements, keys


def _triton_tiles(head_dim: int, causal: bool) -> tuple[int, int] | None:
    """(BLOCK_M, BLOCK_N) of triton_flash's tuned launch, or None for a head_dim it does not run."""
    from reference_impls.kernels.triton_flash import H100_CONFIGS  # imports without triton installed

    config = H100_CONFIGS.get((head_dim, causal))
    return None if config is None else (config.block_m, config.block_n)


def _triton_flash_unsupported(params: dict, device: str) -> str | None:
    if device != "cuda":
        return (f"triton_flash is a CUDA kernel, not run on {device}: Triton's CPU interpreter runs it far too "
                "slowly to time (tests/test_triton_flash.py checks it there)")
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (it ships with torch's CUDA wheels on Linux)"
    from reference_impls.kernels import triton_flash

    if DTYPES[params["dtype"]] not in triton_flash.TRITON_DTYPES:
        return f"triton_flash runs float16, bfloat16 and float32, not {params['dtype']}"
    if params["head_dim"] not in triton_flash.TRITON_HEAD_DIMS:
        return f"triton_flash runs head_dim 64 or 128, not {params['head_dim']}"
    return triton_flash.triton_available(device)


@implementation("attention_prefill", "naive", baseline=True)
def naive(inputs: dict, params: dict) -> torch.Tensor:
    """Materializes the [B, H, S, S] score matrix: the baseline every other implementation is held to."""
    return attn.naive_attention(inputs["q"], inputs["k"], inputs["v"], params["causal"])


@implementation("attention_prefill", "chunked")
def chunked(inputs: dict, params: dict) -> torch.Tensor:
    """Rabe & Staats: query chunks × key chunks with per-chunk summaries combined by log-sum-exp."""
    return attn.chunked_attention(inputs["q"], inputs["k"], inputs["v"], params["causal"])


@implementation("attention_prefill", "online_softmax")
def online_softmax(inputs: dict, params: dict) -> torch.Tensor:
    """FlashAttention-style tiling with a running max and denominator, in plain torch."""
    return attn.online_softmax_attention(inputs["q"], inputs["k"], inputs["v"], params["causal"])


@implementation("attention_prefill", "sdpa")
def sdpa(inputs: dict, params: dict) -> torch.Tensor:
    """torch.nn.functional.scaled_dot_product_attention with torch's own backend choice."""
    return attn.sdpa_attention(inputs["q"], inputs["k"], inputs["v"], params["causal"])


def _register_sdpa_backend(impl_name: str, backend: str, devices: tuple[str, ...]) -> None:
    def run(inputs: dict, params: dict) -> torch.Tensor:
        return attn.sdpa_attention(inputs["q"], inputs["k"], inputs["v"], params["causal"], backend=backend)

    run.__doc__ = f"scaled_dot_product_attention forced onto its {backend!r} backend."
    implementation("attention_prefill", impl_name, devices=devices)(run)


@implementation("attention_prefill", "triton_flash", devices=("cuda",))
def triton_flash(inputs: dict, params: dict) -> torch.Tensor:
    """Our FlashAttention-2 forward in Triton: fused, fp32 online softmax in base 2, causal blocks skipped."""
    from reference_impls.kernels.triton_flash import triton_flash_attention

    return triton_flash_attention(inputs["q"], inputs["k"], inputs["v"], params["causal"])


_register_sdpa_backend("sdpa_math", "math", ("cpu", "cuda"))
_register_sdpa_backend("sdpa_flash", "flash", ("cpu", "cuda"))
_register_sdpa_backend("sdpa_efficient", "efficient", ("cuda",))
_register_sdpa_backend("sdpa_cudnn", "cudnn", ("cuda",))
