"""Quantized matmul kernels against the float64 product of the dequantized weight, on fresh random inputs.

Triton kernels run in Triton's interpreter on CPU (conftest sets TRITON_INTERPRET=1), at small sizes; the
interpreter rounds float32 -> bf16 by truncation, so 16-bit results are held to 3x the error of rounding the
exact answer to the dtype (a GPU rounds to nearest: scripts/bench_quant_matmul.py holds it to 2x there).
"""

import math
import os

import pytest
import torch

from reference_impls.kernels.quant import dequant_matmul as dm
from reference_impls.kernels.quant import int8_matmul as i8
from reference_impls.kernels.quant import lut_gemv as lut
from reference_impls.kernels.quant import rtn
from reference_impls.kernels.quant import ternary_gemv as tern
from reference_impls.kernels.quant import triton_int4 as t4

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double().cpu() - ref.cpu()).norm() / ref.cpu().norm())


def quantized(n: int, k: int, bits: int, group: int, symmetric: bool, seed: int):
    """RTN codes of a random Gaussian weight: (codes, scale, zero, group_size)."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=gen) * 0.02
    codes, scale, zero = rtn.quantize_codes(weight, bits, group if group < k else "channel", symmetric)
    return codes, scale, zero, min(group, k)


def lattice_x(m: int, k: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x whose per-token int8 quantization is exact: integers in [-127, 127] (each row reaching 127) times 2^-7."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (m, k), generator=gen).to(torch.float32)
    q[:, k // 2] = 127.0
    return (q / 128.0).to(dtype)


# --- triton_int4 -----------------------------------------------------------------------------------------------

def triton_runs() -> bool:
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.parametrize("k, group, symmetric", [(300, 64, True), (260, 128, False), (200, 200, False),
                                                 (513, 256, True)])
def test_int4_packing_round_trips_rtn_codes(k, group, symmetric):
    codes, scale, zero, group_size = quantized(37, k, 4, group, symmetric, seed=k)
    packed = t4.pack_int4(codes, scale, zero, group_size)
    assert packed.qweight.dtype == torch.int16 and packed.qweight.shape == (32 * math.ceil(k / 128), 37)
    assert torch.equal(t4.unpack_int4(packed).to(torch.int16), codes.to(torch.int16) + (8 if symmetric else 0))
    exact = dm.dequantize(codes, scale, zero, group_size, torch.float64)
    assert torch.equal(t4.dequantize_int4(packed), exact)
    assert packed.nbytes == 37 * 32 * math.ceil(k / 128) * 2 + scale.numel() * 2 + (0 if symmetric else zero.numel())


@pytest.mark.skipif(not triton_runs(), reason="no GPU and Triton's interpreter is off")
@pytest.mark.parametrize("kernel, m, n, k, group, symmetric, dtype, splits, extra", [
    ("mma", 1, 40, 300, 128, True, torch.bfloat16, 2, {}),
    ("mma", 3, 72, 260, 64, False, torch.float16, 1, {}),
    ("mma", 17, 33, 200, 32, True, torch.bfloat16, 3, {}),
    ("mma", 2, 24, 130, 130, False, torch.bfloat16, 0, {}),
    ("mma", 2, 64, 512, 128, False, torch.bfloat16, 2, {}),  # no masks: N % block_n = K % 128 = 0
    ("mma", 33, 64, 1024, 256, True, torch.float16, 2, {}),  # block_m 32: zero point subtracted per weight
    ("gemv", 1, 40, 300, 128, False, torch.bfloat16, 2, {"prefetch": 1}),
    ("gemv", 3, 34, 260, 64, True, torch.float16, 1, {"prefetch": 0}),
    ("gemv", 2, 70, 300, 32, False, torch.bfloat16, 2, {"prefetch": 2}),
    ("gemv", 2, 24, 130, 130, True, torch.bfloat16, 0, {"prefetch": 3}),
    ("gemv", 1, 64, 768, 256, True, torch.bfloat16, 2, {"prefetch": 3}),  # no masks: N % block_n = K % 128 = 0
    ("gemv", 2, 96, 512, 128, False, torch.float16, 1, {"prefetch": 2}),
    ("auto", 5, 20, 256, 256, True, torch.float16, 0, {}),
])
def test_triton_int4_matches_float64(kernel, m, n, k, group, symmetric, dtype, splits, extra):
    seed = m * 1000 + n + k
    codes, scale, zero, group_size = quantized(n, k, 4, group, symmetric, seed)
    packed = t4.pack_int4(codes.to(DEVICE), scale.to(DEVICE), None if zero is None else zero.to(DEVICE), group_size)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEVICE)
    ref = dm.reference_matmul(x.cpu(), codes, scale, zero, group_size)
    config = {"block_n": 32, "splits": splits} | extra if kernel != "auto" else {}
    y = t4.int4_matmul(x, packed, kernel, **config)
    assert y.dtype == dtype and y.shape == (m, n)
    floor = rel_error(ref.to(dtype), ref)
    assert rel_error(y, ref) <= 3 * floor + 1e-5
    assert torch.equal(y, t4.int4_matmul(x, packed, kernel, **config)), "split-K reduction must be deterministic"


def test_triton_int4_rejects_bad_input():
    codes, scale, zero, _ = quantized(16, 256, 4, 128, False, seed=0)
    with pytest.raises(ValueError, match="group_size"):
        t4.pack_int4(codes[:, :240], scale[:, :5], zero[:, :5], 48)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        t4.pack_int4(codes.to(torch.int16) + 16, scale, zero, 128)
    packed = t4.pack_int4(codes, scale, zero, 128)
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        t4.int4_matmul(torch.randn(1, 256), packed)
    with pytest.raises(ValueError, match="K = 255"):
        t4.int4_matmul(torch.randn(1, 255, dtype=torch.bfloat16), packed)
    with pytest.raises(ValueError, match="allowed"):
        t4.int4_matmul(torch.randn(1, 256, dtype=torch.bfloat16), packed, block_kw=8)
    with pytest.raises(ValueError, match="prefetch"):
        t4.int4_matmul(torch.randn(1, 256, dtype=torch.bfloat16), packed, "gemv", prefetch=4)
    odd = t4.pack_int4(codes[:15], scale[:15], zero[:15], 128)
    with pytest.raises(ValueError, match="even N"):
        t4.int4_matmul(torch.randn(1, 256, dtype=torch.bfloat16), odd, "gemv")
    assert t4.choose_kernel(1, 15) == "mma"


def test_split_plan_fills_the_gpu_without_empty_splits():
    assert t4.auto_splits(tiles=32, blocks=112) == 16  # ~4 programs per SM on 132 SMs (17), 16 divides 112
    assert t4.auto_splits(tiles=64, blocks=112) == 8 and t4.auto_splits(tiles=224, blocks=32) == 4  # even splits
    assert t4.auto_splits(tiles=64, blocks=31) == 7  # 31 is prime: no even split near 9, so the wanted count, capped
    assert t4.auto_splits(tiles=1024, blocks=112) == 1  # the tiles alone fill the GPU
    assert t4.auto_splits(tiles=1, blocks=6) == 1  # never under MIN_BLOCKS_PER_SPLIT blocks per split
    plan = t4.launch_plan("mma", 1, 4096, 14336, t4.default_config("mma", 1))
    assert plan["splits"] * plan["per_split"] >= plan["blocks"] > (plan["splits"] - 1) * plan["per_split"]
    assert t4.choose_kernel(1) == "mma" and t4.default_config("mma", 256)["block_m"] == 32


# --- W8A8 through torch._int_mm ---------------------------------------------------------------------------------

@pytest.mark.skipif(i8.int_mm_unavailable("cpu") is not None, reason="torch has no _int_mm")
@pytest.mark.parametrize("m, n, k", [(1, 40, 64), (3, 33, 100), (17, 64, 250)])
def test_int8_linear_is_exact_on_an_int8_grid(m, n, k):
    codes, scale, _, _ = quantized(n, k, 8, k, True, seed=m + n)
    weight = i8.prepare_int8_weight(codes, scale)
    for dtype in (torch.float32, torch.bfloat16):
        x = lattice_x(m, k, seed=n, dtype=dtype)
        qx, sx = i8.quantize_per_token(x)
        assert torch.equal(qx.to(torch.float32) * sx[:, None], x.to(torch.float32))
        ref = dm.reference_matmul(x, codes, scale, None, k)
        floor = rel_error(ref.to(dtype), ref)
        assert rel_error(i8.int8_linear(x, weight), ref) <= 2 * floor + 1e-6


def test_int8_rejects_what_it_cannot_run(monkeypatch):
    with pytest.raises(ValueError, match="int8"):
        i8.prepare_int8_weight(torch.zeros(4, 8, dtype=torch.uint8), torch.ones(4))
    with pytest.raises(ValueError, match="one scale per output row"):
        i8.prepare_int8_weight(torch.ones(4, 8, dtype=torch.int8), torch.ones(3))
    weight = i8.prepare_int8_weight(torch.ones(4, 8, dtype=torch.int8), torch.ones(4))
    monkeypatch.delattr(torch, "_int_mm", raising=False)
    with pytest.raises(ValueError, match="no torch._int_mm"):
        i8.int8_linear(torch.ones(2, 8), weight)


# --- dequantize-then-matmul -------------------------------------------------------------------------------------

@pytest.mark.parametrize("m, n, k, bits, group, symmetric", [(1, 30, 100, 4, 32, True), (3, 17, 77, 3, 77, False),
                                                             (17, 40, 256, 8, 128, True)])
def test_dequant_matmul_is_one_rounding_from_exact(m, n, k, bits, group, symmetric):
    codes, scale, zero, group_size = quantized(n, k, bits, group, symmetric, seed=k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    ref = dm.reference_matmul(x, codes, scale, zero, group_size)
    assert rel_error(dm.dequant_matmul(x, codes, scale, zero, group_size), ref) < 1e-6
    xb = x.to(torch.bfloat16)
    ref_b = dm.reference_matmul(xb, codes, scale, zero, group_size)
    assert rel_error(dm.dequant_matmul(xb, codes, scale, zero, group_size), ref_b) < 8e-3
    with pytest.raises(ValueError, match="scale must be"):
        dm.dequant_matmul(x, codes, scale[:, :1], zero, 16)


# --- LUT GEMV and ternary GEMV (CPU) ----------------------------------------------------------------------------

def test_subset_sum_tables_hold_every_chunk_subset_sum():
    x = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 0.5, 0.25]])
    tables = lut.subset_sum_tables(x, 8)  # [1, 256, 2]
    assert torch.equal(tables[0, :, 0], torch.arange(256, dtype=torch.float32))  # powers of two: T[v] = v
    assert tables[0, 3, 1] == 0.75 and tables[0, 255, 1] == 0.75  # chunk 1 holds 0.5, 0.25 and zero padding
    assert torch.equal(lut.subset_sum_tables(x, 4)[0, :, 1], torch.arange(16, dtype=torch.float32) * 16)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("m, n, k, group, symmetric, chunk_bits", [(1, 50, 256, 64, True, 8),
                                                                   (3, 33, 300, 128, False, 8),
                                                                   (17, 20, 77, 77, False, 4)])
def test_lut_gemv_matches_float64(bits, m, n, k, group, symmetric, chunk_bits):
    codes, scale, zero, group_size = quantized(n, k, bits, group, symmetric, seed=bits * k + m)
    packed = lut.pack_bitplanes(codes, scale, zero, group_size, bits)
    assert packed.planes.shape == (bits, n, math.ceil(k / 8)) and packed.planes.dtype == torch.uint8
    assert torch.equal(lut.unpack_bitplanes(packed).to(torch.int16),
                       codes.to(torch.int16) + ((1 << (bits - 1)) if symmetric else 0))
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(n))
    ref = dm.reference_matmul(x, codes, scale, zero, group_size)
    assert rel_error(lut.lut_gemv(x, packed, chunk_bits), ref) < 1e-5
    xh = x.to(torch.float16)
    ref_h = dm.reference_matmul(xh, codes, scale, zero, group_size)
    assert rel_error(lut.lut_gemv(xh, packed, chunk_bits), ref_h) <= 2 * rel_error(ref_h.to(torch.float16), ref_h)


def test_lut_gemv_rejects_bad_input():
    codes, scale, zero, _ = quantized(8, 48, 4, 12, False, seed=1)
    with pytest.raises(ValueError, match="multiple of 8"):
        lut.pack_bitplanes(codes, scale, zero, 12, 4)
    codes, scale, zero, _ = quantized(8, 48, 4, 16, False, seed=1)
    with pytest.raises(ValueError, match="do not fit 3 bits"):
        lut.pack_bitplanes(codes, scale, zero, 16, 3)
    packed = lut.pack_bitplanes(codes, scale, zero, 16, 4)
    with pytest.raises(ValueError, match="chunk_bits"):
        lut.lut_gemv(torch.randn(1, 48), packed, chunk_bits=3)


@pytest.mark.parametrize("m, n, k, group, chunk_bits", [(1, 64, 256, 64, 8), (3, 31, 100, 100, 4),
                                                        (17, 40, 333, 32, 8)])
def test_ternary_gemv_matches_float64(m, n, k, group, chunk_bits):
    codes, scale, _, group_size = quantized(n, k, 2, group, True, seed=n + k)  # 2-bit sym RTN: ternary codes
    assert set(codes.unique().tolist()) <= {-1, 0, 1}
    packed = tern.pack_ternary(codes, scale, group_size)
    assert packed.planes.shape == (2, n, math.ceil(k / 8))
    assert packed.nbytes == 2 * n * math.ceil(k / 8) + scale.numel() * 2
    assert torch.equal(tern.unpack_ternary(packed), codes)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
    ref = dm.reference_matmul(x, codes, scale, None, group_size)
    assert rel_error(tern.ternary_gemv(x, packed, chunk_bits), ref) < 1e-5


def test_ternary_per_tensor_scale_and_bad_codes():
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(-1, 2, (24, 90), generator=gen, dtype=torch.int8)
    scale = torch.full((24, 1), 0.0371, dtype=torch.float16)  # BitNet: one absmean scale for the whole tensor
    x = torch.randn(2, 90, generator=gen)
    ref = x.double() @ (codes.double() * 0.0371).t()
    assert rel_error(tern.ternary_gemv(x, tern.pack_ternary(codes, scale, 90)), ref) < 1e-3  # fp16 scale rounding
    with pytest.raises(ValueError, match=r"\{-1, 0, 1\}"):
        tern.pack_ternary(codes * 2, scale, 90)


# --- the quant_matmul workload ------------------------------------------------------------------------------------

def test_workload_costs_predict_the_w4a16_speedup_and_say_what_cannot_run():
    from harness.registry import REGISTRY
    from workloads.quantization import quant_matmul

    workload = REGISTRY.workload("quant_matmul")
    params = {p.name: p.default for p in workload.params}  # M=1, 4096 x 4096, int4 g128 sym, bf16
    dense, int4 = workload.cost(params, "bf16"), workload.cost(params, "triton_int4")
    assert dense.flops == int4.flops == 2 * 4096 * 4096
    assert 3.85 < dense.total_bytes / int4.total_bytes < 3.88  # 16 bits vs 4 + 16/128 bits, plus x and y
    counted = workload.counters(None, params)
    assert counted[quant_matmul.EFFECTIVE_BITS.name] == 4.125
    assert counted[quant_matmul.STORAGE.name] == 4096 * 4096 * 4.125 / 8  # the workload declares it as STORAGE
    assert "4-bit" in workload.unsupported("triton_int4", params | {"bits": 8}, "cuda")
    assert "per-channel" in workload.unsupported("int8_int_mm", params | {"bits": 8}, "cpu")
    assert "ternary" in workload.unsupported("ternary_gemv", params, "cpu")
    assert workload.unsupported("ternary_gemv", params | {"bits": 2}, "cpu") is None
    assert "bfloat16 or float16" in workload.unsupported("triton_int4", params | {"dtype": "float32"}, "cuda")
    small = params | {"M": 2, "N": 16, "K": 64, "group": 32, "dtype": "float32"}
    inputs = workload.inputs(small, "cpu", 3)
    reference = workload.reference(inputs, small)
    output = REGISTRY.impl("quant_matmul", "lut_gemv").fn(inputs, small)
    verdict = workload.check(output, reference, None)
    assert verdict.passed and verdict.tolerance == pytest.approx(1.1920929e-07 * (1 + 8 * 8))
