"""Calibrated and mixed formats: GPTQ and AWQ beat RTN on the layer output, reduce to RTN exactly where theory says
they must, the outlier format keeps its planted columns, BitMoD never loses to any of its candidates."""

import pytest
import torch

from reference_impls.kernels.quant import awq, bitmod, formats, gptq, grouping, outlier, rtn
from reference_impls.kernels.quant.calibration import output_error

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weight(rows: int, cols: int, seed: int = 0, std: float = 0.05) -> torch.Tensor:
    return torch.randn(rows, cols, generator=_gen(seed)) * std


def _correlated(tokens: int, cols: int, seed: int = 1) -> torch.Tensor:
    """X = Z A + noise: a random mixing A makes the input channels correlated, as real activations are."""
    g = _gen(seed)
    return torch.randn(tokens, cols, generator=g) @ (torch.randn(cols, cols, generator=g) / cols**0.5) \
        + 0.1 * torch.randn(tokens, cols, generator=g)


def _rtn(w: torch.Tensor, bits: int = 4, group: int = 128) -> torch.Tensor:
    return formats.dequantize(formats.quantize(w, f"int{bits}-g{group}-asym"))


# ---------------------------------------------------------------- GPTQ


@pytest.mark.parametrize("bits, group, shape", [(4, 128, (96, 300)), (3, 32, (64, 200)), (8, 64, (40, 129))])
def test_gptq_output_error_is_well_below_rtn(bits, group, shape):
    w, x = _weight(*shape), _correlated(384, shape[1])
    q = formats.quantize(w, f"gptq-int{bits}-g{group}", calibration=x)
    gptq_error, rtn_error = output_error(x, w, formats.dequantize(q)), output_error(x, w, _rtn(w, bits, group))
    assert gptq_error <= 0.9 * rtn_error
    codes, scale, zero = gptq.gptq_quantize_codes(w, x, bits, group, act_order=True)
    assert output_error(x, w, rtn.dequantize_codes(codes, scale, zero, group)) <= 0.9 * rtn_error


@pytest.mark.parametrize("shape", [(16, 128), (24, 300), (7, 77)])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("dampening", [0.0, 0.01])
def test_gptq_is_exactly_rtn_when_the_hessian_is_diagonal(shape, act_order, dampening):
    """X with orthogonal columns (a shuffled, scaled identity) has a diagonal H: U is diagonal, no error is pushed
    to any other column, and group parameters come from untouched weights."""
    w = _weight(*shape, seed=shape[1])
    scales = torch.rand(shape[1], generator=_gen(2)) + 0.5
    x = torch.diag(scales)[torch.randperm(shape[1], generator=_gen(3))]
    got = gptq.gptq_quantize_codes(w, x, 4, 32, act_order=act_order, dampening=dampening)
    want = rtn.quantize_codes(w, 4, 32, symmetric=False)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_gptq_first_column_and_first_group_scales_match_rtn():
    """Nothing is fed back into column 0 and the first group's parameters are set before any feedback."""
    w, x = _weight(32, 256, seed=4), _correlated(200, 256, seed=5)
    codes, scale, zero = gptq.gptq_quantize_codes(w, x, 4, 128)
    rtn_codes, rtn_scale, rtn_zero = rtn.quantize_codes(w, 4, 128, symmetric=False)
    assert torch.equal(codes[:, 0], rtn_codes[:, 0])
    assert torch.equal(scale[:, 0], rtn_scale[:, 0]) and torch.equal(zero[:, 0], rtn_zero[:, 0])
    assert not torch.equal(codes, rtn_codes)  # ... but later columns do move


@pytest.mark.parametrize("dtype", DTYPES)
def test_gptq_payload_is_rtn_asym_layout_and_decodes_with_rtn(dtype):
    w, x = _weight(48, 200, seed=6).to(dtype), _correlated(256, 200, seed=7).to(dtype)
    q = formats.quantize(w, "gptq-int4-g128", calibration=x)
    rtn_q = formats.quantize(w, "int4-g128-asym")
    assert set(q.payload) == set(rtn_q.payload) and q.storage_bits == rtn_q.storage_bits
    for key in q.payload:
        assert q.payload[key].dtype == rtn_q.payload[key].dtype and q.payload[key].shape == rtn_q.payload[key].shape
    as_rtn = rtn_q.__class__("int4-g128-asym", q.shape, q.dtype, q.payload, rtn_q.meta)
    out = formats.dequantize(q)
    assert out.dtype == dtype and torch.equal(out, formats.dequantize(as_rtn))
    assert q.effective_bits == pytest.approx(4 + 2 * (16 + 4) / 200)  # 2 groups (128 + ragged 72) per row


def test_gptq_rejects_bad_input():
    w = _weight(8, 64)
    with pytest.raises(ValueError, match="calibration"):
        formats.quantize(w, "gptq-int4-g128")
    with pytest.raises(ValueError, match="in_features = 64"):
        formats.quantize(w, "gptq-int4-g128", calibration=torch.randn(10, 63))
    with pytest.raises(ValueError, match="finite"):
        formats.quantize(w, "gptq-int4-g128", calibration=torch.full((10, 64), float("nan")))
    with pytest.raises(ValueError, match="bits"):
        gptq.gptq_quantize_codes(w, torch.randn(10, 64), bits=1)
    with pytest.raises(ValueError, match="dampening"):
        gptq.gptq_quantize_codes(w, torch.randn(10, 64), dampening=-0.1)
    identical_channels = torch.randn(10, 1, generator=_gen(0)).repeat(1, 64)  # H of rank 1
    with pytest.raises(ValueError, match="positive definite"):
        gptq.gptq_quantize_codes(w, identical_channels, dampening=0.0)
    gptq.gptq_quantize_codes(w, identical_channels)  # ... which dampening repairs


# ---------------------------------------------------------------- AWQ


def _spiky_activations(tokens: int, cols: int, seed: int = 8) -> torch.Tensor:
    x = torch.randn(tokens, cols, generator=_gen(seed))
    x[:, torch.randperm(cols, generator=_gen(seed + 1))[: max(1, cols // 64)]] *= 30  # a few very loud channels
    return x


@pytest.mark.parametrize("shape", [(64, 256), (40, 300)])
def test_awq_beats_rtn_on_activations_with_loud_channels(shape):
    w, x = _weight(*shape, seed=9), _spiky_activations(256, shape[1])
    q = formats.quantize(w, "awq-int4-g128", calibration=x)
    awq_error, rtn_error = output_error(x, w, formats.dequantize(q)), output_error(x, w, _rtn(w))
    assert awq_error <= 0.8 * rtn_error and q.meta["alpha"] > 0


def test_awq_picks_the_best_alpha_of_its_grid():
    w, x = _weight(32, 256, seed=10), _spiky_activations(128, 256, seed=11)
    alpha, _, _ = awq.awq_search(w, x)
    chosen = output_error(x, w, awq.dequantize(awq.quantize(w, x, alphas=(alpha,))))
    for other in awq.ALPHA_GRID[::3]:
        assert chosen <= output_error(x, w, awq.dequantize(awq.quantize(w, x, alphas=(other,))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_awq_at_alpha_zero_is_exactly_rtn(dtype):
    w, x = _weight(24, 200, seed=12).to(dtype), _spiky_activations(64, 200).to(dtype)
    q = awq.quantize(w, x, alphas=(0.0,))
    assert torch.equal(q.payload["input_scale"], torch.ones(200, dtype=torch.float16))
    out = awq.dequantize(q)
    assert out.dtype == dtype and torch.equal(out, _rtn(w))


def test_awq_counts_its_scales_and_rejects_bad_input():
    w, x = _weight(16, 256, seed=13), _spiky_activations(64, 256)
    q = formats.quantize(w, "awq-int4-g128", calibration=x)
    assert q.payload["input_scale"].dtype == torch.float16
    assert q.storage_bits == formats.quantize(w, "int4-g128-asym").storage_bits + 16 * 256
    with pytest.raises(ValueError, match="calibration"):
        formats.quantize(w, "awq-int4-g128")
    with pytest.raises(ValueError, match="alpha"):
        awq.input_scale(x, 1.5)


# ---------------------------------------------------------------- outlier reordering


def _planted(rows: int, cols: int, seed: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    w = _weight(rows, cols, seed=seed, std=0.02)
    columns = torch.randperm(cols, generator=_gen(seed + 1))[: outlier.num_outliers(cols)]
    w[:, columns] *= 40
    return w, columns


@pytest.mark.parametrize("shape", [(64, 300), (33, 129), (16, 1000)])
def test_outlier_format_keeps_planted_columns_and_beats_rtn(shape):
    w, columns = _planted(*shape)
    q = formats.quantize(w, "int4-g128-outlier")
    k = q.meta["outliers"]
    assert set(q.payload["permutation"][:k].tolist()) == set(columns.tolist())
    error = float((formats.dequantize(q) - w).norm())
    assert error < 0.5 * float((_rtn(w) - w).norm())


@pytest.mark.parametrize("dtype", DTYPES)
def test_outlier_permutation_is_exactly_inverted(dtype):
    w = _planted(24, 300)[0].to(dtype)
    q = outlier.quantize(w)
    order = q.payload["permutation"].long()
    assert torch.equal(torch.sort(order).values, torch.arange(300))
    out = outlier.dequantize(q)
    k = q.meta["outliers"]
    assert out.dtype == dtype
    assert torch.equal(out[:, order[:k]], w[:, order[:k]].to(torch.bfloat16).to(dtype))  # kept columns, bf16-exact
    assert torch.equal(out[:, order[k:]], _rtn(w[:, order[k:]]))  # the rest is RTN of the reordered columns
    assert bool(((out.double() - w.double()).abs() <= outlier.error_bound(w, q)).all())


def test_outlier_with_calibration_ranks_channels_by_activation_and_counts_every_byte():
    w = _weight(32, 400, seed=16)
    x = torch.randn(50, 400, generator=_gen(17))
    x[:, [7, 300, 123, 9]] *= torch.tensor([5.0, 50.0, 20.0, 10.0])
    q = outlier.quantize(w, x, fraction=0.01)
    assert q.payload["permutation"][:4].tolist() == [300, 123, 9, 7]
    rest = formats.quantize(w[:, :396], "int4-g128-asym")  # any 396 columns: the size depends on the shape only
    assert q.storage_bits == rest.storage_bits + 16 * 32 * 4 + 16 * 400  # bf16 columns + int16 permutation
    assert outlier.num_outliers(4096) == 41 and outlier.num_outliers(50) == 1 and outlier.num_outliers(1) == 1
    with pytest.raises(ValueError, match="in_features = 400"):
        outlier.quantize(w, torch.randn(5, 399))


# ---------------------------------------------------------------- BitMoD


def _heavy_tailed(rows: int, cols: int, seed: int = 18) -> torch.Tensor:
    """Rows of Gaussian, Laplace-like and skewed groups, so that every candidate type wins somewhere."""
    g = _gen(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    a, b = rows // 3, 2 * rows // 3
    sign = torch.randint(0, 2, (b - a, cols), generator=g) * 2 - 1
    w[a:b] = torch.empty(b - a, cols).exponential_(generator=g) * 0.02 * sign  # Laplace
    w[b:] = (w[b:].abs() ** 2) * 40 - 0.005  # one-sided groups
    return w


@pytest.mark.parametrize("shape", [(30, 256), (12, 300), (5, 77)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bitmod_never_loses_to_a_single_candidate(shape, dtype):
    w = _heavy_tailed(*shape).to(dtype)
    out = formats.dequantize(formats.quantize(w, "bitmod-g128"))
    group_error = grouping.group_view((out.double() - w.double()).square(), 128).sum(-1)  # [N, G]
    for name, (_, _, _, values) in bitmod.candidates(w).items():
        single = grouping.group_view((values.flatten(1)[:, : shape[1]].double() - w.double()).square(), 128).sum(-1)
        assert bool((group_error <= single).all()), name


def test_bitmod_uses_every_type_and_decodes_the_special_values():
    w = _heavy_tailed(60, 512)
    q = bitmod.quantize(w)
    type_id = bitmod._stored(q)[3]
    assert torch.bincount(type_id.flatten(), minlength=3).min() > 0
    assert bitmod.fp4_table(5.0).tolist()[8] == 5.0 and bitmod.fp4_table(8.0).tolist()[15] == -6.0
    one_group = torch.tensor([[8.0, -6.0, 4.0, 0.5] + [0.0] * 124])  # exactly EA+ with scale 1
    q = bitmod.quantize(one_group)
    assert bitmod._stored(q)[3].item() == 2 and torch.equal(bitmod.dequantize(q), one_group)
    assert torch.equal(bitmod.dequantize(bitmod.quantize(-one_group)), -one_group)  # EA- via a negative scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 128), (9, 300)])
def test_bitmod_error_bound_holds_and_bits_are_counted(dtype, shape):
    w = _heavy_tailed(*shape).to(dtype)
    q = formats.quantize(w, "bitmod-g128")
    out = formats.dequantize(q)
    assert out.dtype == dtype
    assert bool(((out.double() - w.double()).abs() <= formats.error_bound(w, q)).all())
    rows, groups = shape[0], grouping.num_groups(shape[1], 128)
    packed_bits = lambda count, width: 8 * -(-count * width // 8)  # noqa: E731 - whole bytes of a bitstream
    assert q.storage_bits == packed_bits(rows * shape[1], 4) + 16 * rows * groups + packed_bits(rows * groups, 4) \
        + packed_bits(rows * groups, 2)  # codes, fp16 scales, 4-bit zero points, 2-bit type ids


# ---------------------------------------------------------------- every format here


@pytest.mark.parametrize("name", ["gptq-int4-g128", "awq-int4-g128", "int4-g128-outlier", "bitmod-g128"])
def test_bad_weights_are_refused(name):
    x = torch.randn(4, 16)
    for bad in (torch.randn(16), torch.randint(0, 3, (4, 16)), torch.full((4, 16), float("inf"))):
        with pytest.raises(ValueError):
            formats.quantize(bad, name, calibration=x)
