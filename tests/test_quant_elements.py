"""Element encodings against their specs: OCP MX v1.0 minifloats and MXINT8, NVFP4's two-level scale, QLoRA's NF4
levels built from normal quantiles, and BitNet / Sherry ternary rules."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.kernels.quant import formats, microscaling, minifloat, nf4, nvfp4, packing

SPEC = {  # max normal, min subnormal (OCP MX v1.0 and OCP FP8 specs)
    "e4m3": (448.0, 2.0**-9), "e5m2": (57344.0, 2.0**-16), "e3m2": (28.0, 0.0625), "e2m3": (7.5, 0.125),
    "e2m1": (6.0, 0.5),
}


@pytest.mark.parametrize("name", SPEC)
def test_element_types_have_the_spec_range(name):
    fmt = minifloat.ELEMENT_TYPES[name]
    values = minifloat.code_table(fmt)
    finite = values[torch.isfinite(values)]
    assert float(finite.max()) == SPEC[name][0] == fmt.max_normal == -float(finite.min())
    assert float(finite[finite > 0].min()) == SPEC[name][1] == fmt.min_subnormal
    assert len(set(finite.tolist())) == (1 << fmt.bits) - 1 - (values.numel() - finite.numel())  # +-0 coincide


def test_e2m1_holds_exactly_the_eight_fp4_magnitudes():
    values = minifloat.code_table(minifloat.E2M1)
    assert values[:8].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6] and values[8:].tolist() == [-0.0, -0.5, -1, -1.5, -2,
                                                                                           -3, -4, -6]


def test_only_the_spec_special_codes_are_not_finite():
    e4m3, e5m2 = minifloat.code_table(minifloat.E4M3), minifloat.code_table(minifloat.E5M2)
    assert torch.isnan(e4m3[[0x7F, 0xFF]]).all() and int(torch.isfinite(e4m3).sum()) == 254
    assert e5m2[0x7C].item() == math.inf and e5m2[0xFC].item() == -math.inf and int(torch.isfinite(e5m2).sum()) == 248
    for fmt in (minifloat.E3M2, minifloat.E2M3, minifloat.E2M1):
        assert bool(torch.isfinite(minifloat.code_table(fmt)).all())


def _probe(fmt: minifloat.MiniFloat, seed: int) -> torch.Tensor:
    """Random values over the whole range plus every midpoint between neighbours (the ties) and zeros."""
    generator = torch.Generator().manual_seed(seed)
    grid = minifloat.code_table(fmt)
    grid = grid[torch.isfinite(grid)].unique()
    mids = (grid[1:] + grid[:-1]) / 2
    spread = torch.exp2(torch.empty(20000).uniform_(math.log2(fmt.min_subnormal) - 2, fmt.max_exponent + 1,
                                                     generator=generator))
    signs = torch.randint(0, 2, (20000,), generator=generator) * 2 - 1
    return torch.cat([spread * signs, mids, torch.tensor([0.0, -0.0])])


@pytest.mark.parametrize("name, torch_dtype", [("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)])
def test_fp8_encodings_agree_with_torch_casts(name, torch_dtype):
    fmt = minifloat.ELEMENT_TYPES[name]
    values = _probe(fmt, seed=len(name)).clamp(-fmt.max_normal, fmt.max_normal)  # torch does not saturate
    ours = minifloat.encode(values, fmt)
    assert torch.equal(ours, values.to(torch_dtype).view(torch.uint8))
    assert torch.equal(minifloat.decode(ours, fmt), values.to(torch_dtype).float())


@pytest.mark.parametrize("name", SPEC)
def test_encoding_rounds_to_nearest_even_and_saturates(name):
    fmt = minifloat.ELEMENT_TYPES[name]
    values = _probe(fmt, seed=7).double()
    decoded = minifloat.decode(minifloat.encode(values, fmt), fmt).double()
    grid = minifloat.code_table(fmt)
    grid = grid[torch.isfinite(grid)].double().unique()
    distance = (values[:, None] - grid[None, :]).abs()
    nearest = distance.min(dim=1).values
    inside = values.abs() <= fmt.max_normal
    assert torch.equal((values - decoded).abs()[inside], nearest[inside])  # nearest value, always
    assert bool((decoded[~inside].abs() == fmt.max_normal).all())  # saturation, never inf or NaN
    ties = (distance == nearest[:, None]).sum(dim=1) == 2
    codes = minifloat.encode(values[ties], fmt)
    assert ties.sum() > 10 and bool(((codes & 1) == 0).all())  # ties go to the even mantissa
    assert bool((minifloat.element_error_bound(values, fmt) >= (values - decoded).abs()).all())


def test_mx_scale_is_the_spec_power_of_two_and_an_empty_block_gets_the_smallest():
    w = torch.zeros(2, 64)
    w[0, :32] = torch.linspace(-5.0, 3.0, 32)  # amax 5: floor(log2 5) = 2
    w[1, :32] = 0.001
    w[:, 32:] = torch.linspace(0.1, 1.0, 32)  # amax 1: exponent 0
    for name, emax in (("mxfp8-e4m3", 8), ("mxfp8-e5m2", 15), ("mxfp6-e3m2", 4), ("mxfp6-e2m3", 2), ("mxfp4", 2),
                       ("mxint8", 0)):
        q = formats.quantize(w, name)
        assert q.payload["scales"].dtype == torch.uint8
        expected = [[2 - emax + 127, 0 - emax + 127], [math.floor(math.log2(0.001)) - emax + 127, 0 - emax + 127]]
        assert q.payload["scales"].tolist() == expected, name
    zero = formats.quantize(torch.zeros(1, 32), "mxfp4")
    assert zero.payload["scales"].tolist() == [[0]] and not formats.dequantize(zero).any()


def test_mxint8_elements_are_twos_complement_sixty_fourths():
    w = torch.tensor([[1.0, -1.0, 0.5, 1.99, -1.999, 2 ** -7, 0.0, 0.25] * 4])  # amax < 2: X = 1
    q = formats.quantize(w, "mxint8")
    assert q.payload["scales"].tolist() == [[127]]
    codes = packing.from_twos_complement(q.payload["codes"], 8)[:8].tolist()
    assert codes == [64, -64, 32, 127, -127, 0, 0, 16]  # 1.99 * 64 = 127.4; -1.999 saturates at -127; 0.5 ties to 0


def test_mx_element_widths_pack_into_real_bitstreams():
    w = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    for name, bits in (("mxfp6-e2m3", 6), ("mxfp4", 4), ("mxfp8-e4m3", 8)):
        q = formats.quantize(w, name)
        assert q.payload["codes"].numel() == 3 * 64 * bits // 8
        blocks = w.view(3, 2, 32)
        scale = torch.exp2(q.payload["scales"].float() - 127)[..., None]
        element = microscaling.ELEMENTS[name]
        expected = minifloat.encode(blocks / scale, element).reshape(-1)
        assert torch.equal(packing.unpack_bits(q.payload["codes"], bits, w.numel()), expected)


def test_nvfp4_two_level_scales_follow_nvidia_recipe():
    w = torch.randn(4, 48, generator=torch.Generator().manual_seed(1)) * 3
    q = formats.quantize(w, "nvfp4")
    amax = w.abs().max()
    assert q.payload["tensor_scale"].dtype == torch.float32 and q.payload["tensor_scale"].item() == pytest.approx(
        float(amax / (448 * 6)), rel=1e-7)
    block_amax = w.view(4, 3, 16).abs().amax(-1)
    assert q.payload["block_scales"].dtype == torch.float8_e4m3fn and q.payload["block_scales"].shape == (4, 3)
    expected = (block_amax / 6 / q.payload["tensor_scale"]).to(torch.float8_e4m3fn)
    assert torch.equal(q.payload["block_scales"].view(torch.uint8), expected.view(torch.uint8))
    assert float(q.payload["block_scales"].float().max()) == 448.0  # the block holding amax uses the top scale
    assert nvfp4.BLOCK == 16


def test_nf4_levels_are_the_published_list_and_derive_from_normal_quantiles():
    published = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]
    assert list(nf4.NF4_LEVELS) == published
    derived = nf4.normal_float_levels()
    assert float((derived - torch.tensor(published, dtype=torch.float64)).abs().max()) < 1e-4
    assert nf4.NF4_OFFSET == pytest.approx(0.9677083, abs=1e-7)


def test_nf4_picks_the_nearest_level_of_the_block_absmax():
    w = torch.randn(3, 130, generator=torch.Generator().manual_seed(2))
    q = formats.quantize(w, "nf4")
    absmax = torch.nn.functional.pad(w.abs(), (0, 62)).view(3, 3, 64).amax(-1)
    assert torch.equal(q.payload["absmax"], absmax)
    codes = packing.unpack_bits(q.payload["codes"], 4, w.numel()).view(3, 130).long()
    levels = torch.tensor(nf4.NF4_LEVELS, dtype=torch.float64)
    normalized = w.double() / absmax.double().repeat_interleave(64, dim=1)[:, :130]
    assert torch.equal(codes, (normalized[..., None] - levels).abs().argmin(-1))


def test_nf4_double_quantization_keeps_scales_close_and_stores_int8():
    w = torch.randn(64, 1024, generator=torch.Generator().manual_seed(3))
    q = formats.quantize(w, "nf4-dq")
    assert q.payload["scale_codes"].dtype == torch.int8 and q.payload["scale_scales"].dtype == torch.float32
    assert q.payload["scale_codes"].numel() == 64 * 16 and q.payload["scale_scales"].numel() == 4
    plain = formats.quantize(w, "nf4").payload["absmax"]
    decoded = nf4._block_scales(q)
    spread = (plain - plain.mean()).abs().max()
    assert float((decoded - plain).abs().max()) <= float(spread) / 127 / 2 * 1.001  # half an int8 step
