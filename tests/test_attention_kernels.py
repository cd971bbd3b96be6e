"""reference_impls/kernels/attention.py: accuracy against the float64 reference, NaN-safety, causal tiling,
sdpa backend handling, and the analytic workspace formulas against what the code really allocates."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from reference_impls.kernels import attention as attn


def _qkv(shape: tuple[int, int, int, int], dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g).to(dtype) for _ in range(3))  # q, k, v: [B, H, S, D]


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double()
    return ((out.double() - ref).norm() / ref.norm()).item()


# name -> fn(q, k, v, causal). Small chunk sizes so S=300 spans several, ragged, query and key chunks.
IMPLS = {
    "naive": attn.naive_attention,
    "chunked_default": attn.chunked_attention,
    "chunked_q128_k96": lambda q, k, v, c: attn.chunked_attention(q, k, v, c, query_chunk=128, key_chunk=96),
    "chunked_q48_k128": lambda q, k, v, c: attn.chunked_attention(q, k, v, c, query_chunk=48, key_chunk=128),
    "online_default": attn.online_softmax_attention,
    "online_q64_k96": lambda q, k, v, c: attn.online_softmax_attention(q, k, v, c, block_q=64, block_k=96),
    "online_q128_k48": lambda q, k, v, c: attn.online_softmax_attention(q, k, v, c, block_q=128, block_k=48),
    "sdpa_default": attn.sdpa_attention,
}
TILED = ["chunked_q128_k96", "chunked_q48_k128", "online_q64_k96", "online_q128_k48"]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 300, 32), (2, 3, 300, 64), (1, 2, 257, 64)])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_float32_matches_reference(impl: str, shape: tuple, causal: bool) -> None:
    q, k, v = _qkv(shape)
    ref = attn.attention_reference(q, k, v, causal)
    out = IMPLS[impl](q, k, v, causal)
    assert out.dtype == torch.float32 and out.shape == q.shape
    assert _rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("backend", attn.SDPA_BACKENDS)
def test_sdpa_forced_backends_match_reference(backend: str, causal: bool) -> None:
    reason = attn.sdpa_backend_available(backend, "cpu", torch.float32, 64)
    if reason is not None:
        pytest.skip(reason)
    q, k, v = _qkv((2, 3, 300, 64))
    out = attn.sdpa_attention(q, k, v, causal, backend=backend)
    assert _rel_err(out, attn.attention_reference(q, k, v, causal)) < 1e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("impl", TILED)
def test_half_precision_error_no_worse_than_naive(impl: str, dtype: torch.dtype, causal: bool) -> None:
    q, k, v = _qkv((2, 3, 300, 64), dtype, seed=1)
    ref = attn.attention_reference(q, k, v, causal)  # float64 of the rounded inputs
    naive_err = _rel_err(attn.naive_attention(q, k, v, causal), ref)
    out = IMPLS[impl](q, k, v, causal)
    assert out.dtype == dtype
    assert _rel_err(out, ref) <= 2 * naive_err + 8e-3


def _visited_tiles(seq: int, block_q: int, block_k: int, causal: bool) -> tuple[int, int]:
    """(tiles computed, tiles masked), straight from the definition of top-left causal attention."""
    visited = masked = 0
    for qs in range(0, seq, block_q):
        qe = min(qs + block_q, seq)
        for ks in range(0, seq, block_k):
            ke = min(ks + block_k, seq)
            if causal and ks > qe - 1:  # every key after every query: skipped
                continue
            visited += 1
            masked += causal and ke - 1 > qs  # some key after some query: masked
    return visited, masked


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("fn", [attn.chunked_attention, attn.online_softmax_attention])
def test_causal_skips_tiles_above_diagonal_and_masks_only_crossing_ones(fn, causal: bool) -> None:
    q, k, v = _qkv((1, 2, 300, 16))
    with _OpCounter() as counter:
        fn(q, k, v, causal, 128, 96)
    visited, masked = _visited_tiles(300, 128, 96, causal)
    if causal:
        assert (visited, masked) == (9, 6)  # of 12 tiles: 3 skipped, 3 below the diagonal unmasked
    matmuls = counter.counts.get("bmm", 0) + counter.counts.get("mm", 0)
    assert matmuls == 2 * visited  # q k^T and p v per tile
    assert counter.counts.get("masked_fill_", 0) == masked


@pytest.mark.parametrize("impl", TILED + ["naive"])
def test_fully_masked_rows_inside_a_key_chunk_give_no_nan(impl: str) -> None:
    """Causal with query chunk [0, 128) visiting key chunk [96, 192): rows 0..95 see no key there."""
    q, k, v = _qkv((2, 3, 300, 32), seed=2)
    out = IMPLS[impl](q, k, v, True)
    assert torch.isfinite(out).all()
    assert _rel_err(out, attn.attention_reference(q, k, v, True)) < 1e-5
    out16 = IMPLS[impl](q.bfloat16(), k.bfloat16(), v.bfloat16(), True)
    assert torch.isfinite(out16).all()


def _very_negative_scores(seq: int, few: list[int], head_dim: int = 64):
    """Scores about -200 for every key but `few` (about 0). Entries are multiples of 1/16, so every
    q.k is exact in float32 and the test measures the softmax, not score rounding."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn((1, 2, seq, head_dim), generator=g).mul(8).round().div(16) for _ in range(3))
    q[..., 0] = 40.0
    k[..., 0] = -40.0  # q.k / sqrt(64) = -1600 / 8 + small = about -200
    k[:, :, few, 0] = 0.0
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_scores_around_minus_200_do_not_underflow(impl: str, causal: bool) -> None:
    q, k, v = _very_negative_scores(300, few=[150, 201, 299])
    scores = (q.double() @ k.double().transpose(-2, -1)) / 8
    assert scores[:, :, :, :150].max() < -190  # rows < 150 (causal) see only very negative scores
    ref = attn.attention_reference(q, k, v, causal)
    out = IMPLS[impl](q, k, v, causal)
    assert torch.isfinite(out).all()
    assert _rel_err(out, ref) < 1e-5


def _direct_attention_row(query: list[float], keys: list[list[float]],
                          values: list[list[float]]) -> list[float]:
    """softmax(q . k_j / sqrt(D)) weighted sum of v_j, in Python floats (float64)."""
    logits = [sum(x * y for x, y in zip(query, key, strict=True)) / math.sqrt(len(query)) for key in keys]
    weights = [math.exp(x - max(logits)) for x in logits]
    return [sum(w * value[d] for w, value in zip(weights, values, strict=True)) / sum(weights)
            for d in range(len(values[0]))]


def test_reference_matches_a_direct_softmax_formula() -> None:
    """Scalar float64 arithmetic, one query row at a time: nothing shared with the reference."""
    q, k, v = _qkv((2, 2, 6, 3), torch.float64, seed=4)
    for causal in (False, True):
        ref = attn.attention_reference(q, k, v, causal)
        assert ref.dtype == torch.float64
        for b in range(2):
            for h in range(2):
                for i in range(6):
                    visible = slice(0, i + 1 if causal else 6)
                    expect = _direct_attention_row(q[b, h, i].tolist(), k[b, h, visible].tolist(),
                                                   v[b, h, visible].tolist())
                    assert ref[b, h, i].tolist() == pytest.approx(expect, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_reference_query_block_does_not_change_the_answer(causal: bool) -> None:
    q, k, v = _qkv((2, 3, 100, 16), seed=5)
    whole = attn.attention_reference(q, k, v, causal)  # one block: 100 < default query_block
    for query_block in (1, 7, 64):
        assert torch.allclose(attn.attention_reference(q, k, v, causal, query_block=query_block), whole,
                              rtol=1e-13, atol=1e-14)


def test_inputs_are_validated() -> None:
    q, k, v = _qkv((1, 2, 8, 4))
    with pytest.raises(ValueError, match="shape"):
        attn.naive_attention(q, k[:, :, :4], v, False)
    with pytest.raises(ValueError, match="dtype"):
        attn.chunked_attention(q, k.double(), v, False)
    with pytest.raises(ValueError, match="key_chunk"):
        attn.chunked_attention(q, k, v, False, key_chunk=0)
    with pytest.raises(ValueError, match="block_q"):
        attn.online_softmax_attention(q, k, v, False, block_q=0)


def test_sdpa_rejects_unknown_backend() -> None:
    q, k, v = _qkv((1, 2, 8, 4))
    with pytest.raises(ValueError, match="allowed.*'math'.*'efficient'.*'flash'.*'cudnn'"):
        attn.sdpa_attention(q, k, v, False, backend="triton")
    with pytest.raises(ValueError, match="allowed"):
        attn.sdpa_backend_available("triton", "cpu", torch.float32, 64)


def test_sdpa_backend_available_on_cpu() -> None:
    assert attn.sdpa_backend_available("math", "cpu", torch.float32, 64) is None
    assert attn.sdpa_backend_available("flash", "cpu", torch.float32, 64) is None  # this CPU build
    assert attn.sdpa_backend_available("flash", "cpu", torch.bfloat16, 32) is None
    for backend in ("efficient", "cudnn"):
        reason = attn.sdpa_backend_available(backend, "cpu", torch.float32, 64)
        assert isinstance(reason, str) and "CUDA" in reason
    assert "floating" in attn.sdpa_backend_available("math", "cpu", torch.int32, 64)
    if not torch.cuda.is_available():
        assert attn.sdpa_backend_available("flash", "cuda:0", torch.float16, 64) == "CUDA is not available"


# ----------------------------------------------------------------------------------------------------------
# Analytic workspace
# ----------------------------------------------------------------------------------------------------------


class _PeakTracker(TorchDispatchMode):
    """Peak bytes of live tensor storages created by aten ops inside the block (inputs excluded), checked
    after every op. Counts what the Python code allocates; scratch inside a kernel is not seen (on CUDA the
    harness's max_memory_allocated is the ground truth)."""

    def __init__(self, *inputs: torch.Tensor) -> None:
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in inputs}
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.live = {ptr: ref for ptr, ref in self.live.items() if not ref[0].expired()}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr not in self.live and ptr not in self.skip and storage.nbytes():
                    self.live[ptr] = (StorageWeakRef(storage), storage.nbytes())
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def _tracked_workspace(fn, q, k, v, *args) -> int:
    with _PeakTracker(q, k, v) as tracker:
        out = fn(q, k, v, *args)
    return tracker.peak - out.untyped_storage().nbytes()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape, block_q, block_k", [((2, 3, 300, 32), 128, 96), ((1, 2, 257, 64), 64, 100),
                                                      ((1, 1, 40, 2), 3, 2), ((2, 1, 100, 16), 256, 512)])
def test_workspace_formulas_equal_tracked_allocations(shape, block_q, block_k, dtype, causal) -> None:
    q, k, v = _qkv(shape, dtype)
    b, h, s, d = shape
    e = q.element_size()
    assert _tracked_workspace(attn.naive_attention, q, k, v, causal) == attn.naive_workspace_bytes(
        b, h, s, d, e, causal)
    assert _tracked_workspace(attn.chunked_attention, q, k, v, causal, block_q, block_k) == \
        attn.chunked_workspace_bytes(b, h, s, d, e, causal, block_q, block_k)
    assert _tracked_workspace(attn.online_softmax_attention, q, k, v, causal, block_q, block_k) == \
        attn.online_softmax_workspace_bytes(b, h, s, d, e, causal, block_q, block_k)


def test_default_block_sizes_are_the_workspace_defaults() -> None:
    q, k, v = _qkv((1, 1, 1100, 8))  # > CHUNKED_QUERY_CHUNK and > both online blocks
    assert _tracked_workspace(attn.chunked_attention, q, k, v, True) == attn.chunked_workspace_bytes(
        1, 1, 1100, 8, 4, True)
    assert _tracked_workspace(attn.online_softmax_attention, q, k, v, True) == \
        attn.online_softmax_workspace_bytes(1, 1, 1100, 8, 4, True)


def test_naive_workspace_is_two_score_matrices_plus_the_causal_mask() -> None:
    assert attn.naive_workspace_bytes(2, 3, 300, 64, 4, False) == 2 * 2 * 3 * 300**2 * 4
    assert attn.naive_workspace_bytes(2, 3, 300, 64, 2, True) == 2 * 2 * 3 * 300**2 * 2 + 300**2
    for causal in (False, True):  # O(S^2), independent of D
        assert attn.naive_workspace_bytes(1, 4, 8192, 64, 2, causal) == \
            4 * attn.naive_workspace_bytes(1, 4, 4096, 128, 2, causal)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_workspace_grows_only_by_its_summaries(causal: bool) -> None:
    qc, kc, d = attn.CHUNKED_QUERY_CHUNK, attn.CHUNKED_KEY_CHUNK, 64
    summaries_per_key_chunk = qc * (d + 2) * 4  # values [.., D] + exp sum + max per query row, float32
    # S a multiple of both chunk sizes, so the largest (masked) tile is full-size for every S
    tile_part = {s: attn.chunked_workspace_bytes(1, 1, s, d, 4, causal)
                 - math.ceil(s / kc) * summaries_per_key_chunk for s in (4096, 8192, 16384, 65536)}
    assert len(set(tile_part.values())) == 1, tile_part
    assert tile_part[4096] > qc * kc * 4  # at least the float32 score tile
    ratio = attn.chunked_workspace_bytes(1, 1, 16384, d, 4, causal) / attn.naive_workspace_bytes(
        1, 1, 16384, d, 4, causal)
    assert ratio < 1 / 20


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("element_bytes", [2, 4, 8])
def test_online_workspace_is_independent_of_seq(element_bytes: int, causal: bool) -> None:
    sizes = {s: attn.online_softmax_workspace_bytes(2, 4, s, 64, element_bytes, causal)
             for s in (512, 1000, 4096, 16384, 1 << 20)}
    assert len(set(sizes.values())) == 1, sizes
    assert sizes[512] < attn.naive_workspace_bytes(2, 4, 512, 64, element_bytes, causal)


def test_workspace_counts_float32_statistics_for_16_bit_inputs() -> None:
    """bfloat16, B=H=1, D=64, one 256 x 512 tile (M = 256 rows, N = 256 * 512 scores), non-causal:
    float32 scores 4N, three float32 row vectors 3*4M, bf16 p@v result 2*M*D, then the larger of the bf16
    probs copy 2N and the float32 upcast of p@v 4*M*D; plus running statistics 4*M*(D + 2)."""
    m_rows, n = 256, 256 * 512
    expect = 4 * n + 3 * 4 * m_rows + 2 * m_rows * 64 + max(2 * n, 4 * m_rows * 64) + 4 * m_rows * 66
    assert attn.online_softmax_workspace_bytes(1, 1, 4096, 64, 2, False) == expect
    assert attn.online_softmax_workspace_bytes(1, 1, 4096, 64, 2, False) > \
        attn.online_softmax_workspace_bytes(1, 1, 4096, 64, 4, False)  # the upcast copy costs extra


@pytest.mark.parametrize("fn", [attn.naive_workspace_bytes, attn.chunked_workspace_bytes,
                                attn.online_softmax_workspace_bytes])
@pytest.mark.parametrize("seq", [1, 2, 300, 5000])
def test_workspace_positive(fn, seq: int) -> None:
    for causal in (False, True):
        assert fn(1, 1, seq, 16, 2, causal) > 0


# ----------------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ----------------------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_reference(dtype: torch.dtype, causal: bool) -> None:
    q, k, v = (t.cuda() for t in _qkv((2, 3, 300, 64), dtype))
    ref = attn.attention_reference(q, k, v, causal)
    assert ref.device == q.device and ref.dtype == torch.float64
    naive_err = _rel_err(attn.naive_attention(q, k, v, causal), ref)
    bound = 1e-5 if dtype == torch.float32 else 2 * naive_err + 8e-3
    for impl in TILED + ["sdpa_default"]:
        out = IMPLS[impl](q, k, v, causal)
        assert out.device == q.device and out.dtype == dtype
        assert _rel_err(out, ref) <= bound, impl


@needs_cuda
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_workspace_equals_max_memory_allocated(dtype: torch.dtype, causal: bool) -> None:
    """Every temporary of this shape is a multiple of 512 B, the caching allocator's rounding."""
    b, h, s, d = 1, 4, 4096, 64
    q, k, v = (t.cuda() for t in _qkv((b, h, s, d), dtype))
    e = q.element_size()
    cases = [
        (attn.naive_attention, (), attn.naive_workspace_bytes(b, h, s, d, e, causal)),
        (attn.chunked_attention, (), attn.chunked_workspace_bytes(b, h, s, d, e, causal)),
        (attn.chunked_attention, (512, 1024), attn.chunked_workspace_bytes(b, h, s, d, e, causal, 512, 1024)),
        (attn.online_softmax_attention, (), attn.online_softmax_workspace_bytes(b, h, s, d, e, causal)),
    ]
    for fn, blocks, analytic in cases:
        fn(q, k, v, causal, *blocks)  # warm-up: cuBLAS takes its workspace from the allocator once
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        out = fn(q, k, v, causal, *blocks)
        torch.cuda.synchronize()
        assert torch.cuda.max_memory_allocated() - baseline - out.numel() * out.element_size() == analytic


@needs_cuda
@pytest.mark.parametrize("head_dim", [64, 100, 320])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("backend", attn.SDPA_BACKENDS)
def test_cuda_sdpa_backend_available_predicts_what_runs(backend: str, dtype: torch.dtype,
                                                        head_dim: int) -> None:
    q, k, v = (t.cuda() for t in _qkv((1, 2, 128, head_dim), dtype))
    reason = attn.sdpa_backend_available(backend, "cuda", dtype, head_dim)
    if reason is None:
        out = attn.sdpa_attention(q, k, v, True, backend=backend)
        bound = 2e-2 if dtype == torch.bfloat16 else 1e-5
        assert _rel_err(out, attn.attention_reference(q, k, v, True)) < bound
    else:
        with warnings.catch_warnings(), pytest.raises(RuntimeError):
            warnings.simplefilter("ignore")
            attn.sdpa_attention(q, k, v, True, backend=backend)


def test_sdpa_math_cost_follows_the_kernels_torch_dispatches():
    """The math backend's phases are checked against the ops torch really runs (TorchDispatchMode), so a torch
    release that changes them fails here instead of silently skewing predictions."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils._python_dispatch import TorchDispatchMode

    from harness.registry import REGISTRY

    REGISTRY.load()
    seen = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    q, k, v = (torch.randn(1, 2, 64, 32, dtype=torch.bfloat16) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH), Log():
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert seen.count("_to_copy") == 5  # q, k, v up; probabilities and output back down
    assert seen.count("bmm") == 2 and "_safe_softmax" in seen
    params = {"seq": 64, "heads": 2, "head_dim": 32, "dtype": "bfloat16", "causal": True, "batch": 1}
    cost = REGISTRY.workload("attention_prefill").cost(params, "sdpa_math")
    matmuls = [p for p in cost.phases if "@" in p.name]
    assert [p.dtype for p in matmuls] == ["float32", "float32"]  # upcast: the fp32 (not tensor-core) peak
    n = 2 * 64 * 64
    assert sum(p.bytes for p in cost.phases if p.name == "_safe_softmax") == 26 * n
    assert cost.expected_flops == pytest.approx(4 * n * 32 + 5 * n + 2 * 2 * 64 * 32)


def test_past_naives_reach_the_check_is_held_against_online_softmax():
    from harness.registry import REGISTRY

    workload = REGISTRY.load().workload("attention_prefill")
    params = {"seq": 65536, "heads": 16, "head_dim": 128, "dtype": "bfloat16", "causal": True, "batch": 1}
    assert workload.check_baseline(params) == "online_softmax"  # naive's scores would be 137 GB
    assert workload.check_baseline({**params, "seq": 16384}) is None
