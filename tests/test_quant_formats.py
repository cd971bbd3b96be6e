"""Weight-format registry: every registered format round-trips within its error bound on heavy-tailed weights,
stores exactly the bits it claims, keeps the input dtype, and rejects bad input with a clear ValueError."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.kernels import kv_quant
from reference_impls.kernels.quant import formats, grouping, packing, rtn
from reference_impls.kernels.quant.formats import Format

SHAPES = [(16, 128), (7, 100), (33, 257)]  # whole groups, ragged groups, ragged and odd
OWN_FORMATS = (
    [f"int{b}-{g}-{s}" for b in (8, 4, 3, 2) for g in ("tensor", "channel", "g32", "g64", "g128")
     for s in ("sym", "asym")]
    + ["nf4", "nf4-dq", "mxfp8-e4m3", "mxfp8-e5m2", "mxfp6-e3m2", "mxfp6-e2m3", "mxfp4", "mxint8", "nvfp4",
       "ternary", "ternary-channel", "sherry", "bf16", "fp16"]
)
IDEMPOTENT = ([n for n in OWN_FORMATS if n.startswith("int") and n.endswith("-sym")]
              + ["nf4", "mxfp8-e4m3", "mxfp8-e5m2", "mxfp6-e3m2", "mxfp6-e2m3", "mxfp4", "mxint8", "sherry", "bf16",
                 "fp16"])


def heavy_tailed(rows: int, cols: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Student-t (3 degrees of freedom) weights: outliers that stress absmax and block scales."""
    generator = torch.Generator().manual_seed(seed)
    normal = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    chi2 = torch.randn(3, rows, cols, generator=generator, dtype=torch.float64).pow(2).sum(0)
    return (0.02 * normal / (chi2 / 3).sqrt()).to(dtype)


def _calibration(fmt: Format, cols: int, seed: int) -> torch.Tensor | None:
    if not fmt.needs_calibration:
        return None
    return torch.randn(64, cols, generator=torch.Generator().manual_seed(seed + 1))


def test_every_canonical_name_is_registered_and_aliases_resolve():
    names = formats.format_names()
    assert set(OWN_FORMATS) <= set(names)
    assert formats.get_format("int4-g128").name == "int4-g128-asym"
    assert formats.get_format("int3-g32") is formats.get_format("int3-g32-asym")
    assert all(formats.get_format(n).description for n in names)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", formats.format_names())
def test_round_trip_stays_within_the_format_bound(name, shape):
    fmt = formats.get_format(name)
    seed = sum(map(ord, name)) + shape[1]
    w = heavy_tailed(*shape, seed=seed, dtype=torch.bfloat16 if fmt.lossless else torch.float32)  # lossless: bf16
    q = formats.quantize(w, name, _calibration(fmt, shape[1], seed))
    deq = formats.dequantize(q)
    assert q.format == name and q.shape == shape and deq.shape == shape and deq.dtype == w.dtype
    assert all(t.dtype in (torch.uint8, torch.int8, torch.float16, torch.float32, torch.float8_e4m3fn,
                           torch.bfloat16, torch.int32, torch.int64, torch.int16) for t in q.payload.values())
    error = (w.double() - deq.double()).abs()
    assert bool(torch.isfinite(deq).all())
    if fmt.lossless:
        assert torch.equal(deq, w.to(deq.dtype))
    if fmt.error_bound is not None:
        bound = fmt.error_bound(w, q)
        assert bound.shape == shape and bool((error <= bound * (1 + 1e-9)).all()), float((error / bound).max())
        if not fmt.lossless:  # a lossless bound is 0 everywhere
            assert float((error / bound).max()) > 0.5  # the bound is a real bound, not a blanket
    relative = float(error.norm() / w.double().norm())
    assert relative == 0.0 if fmt.lossless else relative < 1.0  # 0 is representable: no format adds energy


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("name", ["int4-g128-asym", "int3-g64-sym", "nf4-dq", "mxfp6-e3m2", "mxint8", "nvfp4",
                                  "ternary-channel", "sherry", "bf16"])
def test_other_input_dtypes_come_back_in_their_dtype_within_the_bound(name, dtype):
    w = heavy_tailed(9, 150, seed=3, dtype=dtype)
    q = formats.quantize(w, name)
    deq = formats.dequantize(q)
    assert q.dtype == dtype and deq.dtype == dtype
    assert bool(((w.double() - deq.double()).abs() <= formats.error_bound(w, q)).all())


@pytest.mark.parametrize("name", IDEMPOTENT)
def test_requantizing_a_dequantized_weight_stores_the_same_bytes(name):
    w = heavy_tailed(12, 200, seed=5)
    q = formats.quantize(w, name)
    again = formats.quantize(formats.dequantize(q), name)
    assert q.payload.keys() == again.payload.keys()
    for key, stored in q.payload.items():
        assert torch.equal(stored.view(torch.uint8), again.payload[key].view(torch.uint8)), key


def _expected_bits(name: str, rows: int, cols: int) -> float:
    """Bits per weight from the definitions, counted by hand."""
    numel = rows * cols
    if name.startswith("int"):
        bits, granularity, kind = name[3:].split("-")
        b = int(bits)
        scales = 1 if granularity == "tensor" else rows * (1 if granularity == "channel" else
                                                          math.ceil(cols / int(granularity[1:])))
        zero_bits = 8 * math.ceil(scales * b / 8) if kind == "asym" else 0  # zero points packed, whole bytes
        return b + (16 * scales + zero_bits) / numel
    groups = rows * math.ceil(cols / 64)
    table = {
        "nf4": 4 + 32 * groups / numel,
        "nf4-dq": 4 + (8 * groups + 32 * math.ceil(groups / 256) + 32) / numel,
        "mxfp8-e4m3": 8.25, "mxfp8-e5m2": 8.25, "mxfp6-e3m2": 6.25, "mxfp6-e2m3": 6.25, "mxfp4": 4.25,
        "mxint8": 8.25, "nvfp4": 4.5 + 32 / numel, "bf16": 16.0, "fp16": 16.0,
        "ternary": 8 * math.ceil(numel / 5) / numel + 32 / numel,
        "ternary-channel": 8 * math.ceil(numel / 5) / numel + 16 * rows / numel,
        "sherry": 1.25 + 16 / cols,
    }
    return table[name]


@pytest.mark.parametrize("name", OWN_FORMATS)
def test_effective_bits_count_every_stored_bit(name):
    w = heavy_tailed(8, 4096, seed=1)
    q = formats.quantize(w, name)
    assert q.storage_bits == sum(t.numel() * t.element_size() * 8 for t in q.payload.values())
    assert q.effective_bits == pytest.approx(_expected_bits(name, 8, 4096), rel=1e-12)


def test_headline_effective_bits_on_a_4096_wide_matrix():
    w = heavy_tailed(8, 4096, seed=2)
    bits = {name: formats.quantize(w, name).effective_bits for name in
            ("int4-g128-sym", "int4-g128", "nf4", "nf4-dq", "mxfp4", "nvfp4", "ternary", "sherry")}
    assert bits["int4-g128-sym"] == 4.125 and bits["int4-g128"] == 4 + 20 / 128 and bits["nf4"] == 4.5
    assert bits["nf4-dq"] == pytest.approx(4.127, abs=2e-3) and bits["mxfp4"] == 4.25
    assert bits["nvfp4"] == pytest.approx(4.5, abs=1e-3) and bits["nvfp4"] > 4.5
    assert bits["ternary"] == pytest.approx(1.6, abs=2e-3) and bits["sherry"] == pytest.approx(1.25, abs=5e-3)


def test_quantize_codes_lays_out_codes_scales_and_zero_points():
    w = heavy_tailed(5, 70, seed=4)
    codes, scale, zero = rtn.quantize_codes(w, 4, 32, symmetric=False)
    assert codes.dtype == torch.uint8 and codes.shape == (5, 70) and scale.shape == (5, 3) and zero.shape == (5, 3)
    assert scale.dtype == torch.float16 and zero.dtype == torch.uint8 and int(codes.max()) <= 15
    deq = rtn.dequantize_codes(codes, scale, zero, 32)
    assert torch.equal(deq, formats.dequantize(formats.quantize(w, "int4-g32-asym")))
    codes, scale, zero = rtn.quantize_codes(w, 3, "channel", symmetric=True)
    assert codes.dtype == torch.int8 and zero is None and scale.shape == (5, 1) and int(codes.abs().max()) == 3
    codes, scale, zero = rtn.quantize_codes(w, 8, "tensor", symmetric=True)
    assert scale.shape == (5, 1) and bool((scale == scale[0]).all()) and int(codes.abs().max()) == 127


def test_rtn_hand_worked_example():
    w = torch.tensor([[1.0, -7.0, 3.5, 0.2], [0.5, 1.0, 2.0, 3.0]])
    codes, scale, zero = rtn.quantize_codes(w, 4, "channel", symmetric=True)
    assert scale[0].item() == 1.0 and scale[1].item() == torch.tensor(3.0 / 7).half().item()
    assert codes[0].tolist() == [1, -7, 4, 0]  # 3.5 rounds half to even: 4
    codes, scale, zero = rtn.quantize_codes(w, 2, "channel", symmetric=False)
    assert zero[1].item() == 0 and codes[1].tolist() == [0, 1, 2, 3]  # all positive: the range is widened to 0
    assert scale[1].item() == pytest.approx(1.0, abs=1e-3)


def test_kivi_and_the_weight_formats_share_packing_and_group_helpers():
    assert kv_quant.group_min_max is grouping.group_min_max and kv_quant.expand_groups is grouping.expand_groups
    codes = torch.randint(0, 4, (101,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(kv_quant.pack_codes(codes, 2), packing.pack_bits(codes, 2))


def test_registry_rejects_duplicates_and_suggests_close_names():
    fmt = formats.get_format("nf4")
    with pytest.raises(ValueError, match="already registered"):
        formats.register_format(fmt)
    with pytest.raises(ValueError, match=r"did you mean .*int4-g128-asym.*Known formats"):
        formats.get_format("int4-g128-asymm")


@pytest.mark.parametrize("call, message", [
    (lambda: formats.quantize(torch.randn(4, 8), "int5-g128"), "unknown format 'int5-g128'"),
    (lambda: formats.quantize(torch.randn(8), "nf4"), "2-D .* got 1-D"),
    (lambda: formats.quantize(torch.randn(2, 4, 8), "mxfp4"), "2-D .* got 3-D"),
    (lambda: formats.quantize(torch.randint(0, 9, (4, 8)), "int8-channel-sym"), "float dtype"),
    (lambda: formats.quantize(torch.tensor([[1.0, float("nan")]]), "int4-g32-sym"), "finite"),
    (lambda: formats.quantize(torch.zeros(0, 8), "ternary"), "non-empty"),
    (lambda: rtn.quantize_codes(torch.randn(4, 8), 4, 0, True), "group_size must be an integer >= 1"),
    (lambda: rtn.quantize_codes(torch.randn(4, 8), 4, "row", True), "'channel' or 'tensor'"),
    (lambda: rtn.quantize_codes(torch.randn(4, 8), 9, 32, True), "bits must be one of 2, 3"),
    (lambda: rtn.quantize_codes(torch.randn(4, 8), 1, 32, False), "bits must be one of"),
    (lambda: formats.quantize(torch.full((2, 4), 1e8), "int8-channel-sym"), "float16 range"),
    (lambda: formats.quantize(torch.full((2, 4), 1e6), "fp16"), "fp16 range"),
])
def test_bad_input_raises_a_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_format_that_needs_calibration_refuses_to_run_without_it():
    needy = [n for n in formats.format_names() if formats.get_format(n).needs_calibration]
    if not needy:
        pytest.skip("no calibration formats registered")
    with pytest.raises(ValueError, match="needs calibration"):
        formats.quantize(torch.randn(4, 128), needy[0])
