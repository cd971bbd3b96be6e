"""KIVI quantization: packing into real bytes, round-trip error bounds per bit width, exact byte and bit counts."""

import math

import pytest
import torch

from reference_impls.kernels import kv_quant


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", kv_quant.BITS)
@pytest.mark.parametrize("numel", [1, 7, 64, 1001])
def test_pack_unpack_round_trip_in_exact_bytes(bits, numel):
    codes = torch.randint(0, 1 << bits, (numel,), generator=torch.Generator().manual_seed(numel))
    packed = kv_quant.pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(numel * bits / 8)
    assert torch.equal(kv_quant.unpack_codes(packed, bits, numel).long(), codes)


def test_packing_puts_the_first_code_in_the_low_bits():
    assert kv_quant.pack_codes(torch.tensor([1, 2, 3, 0]), 2).tolist() == [1 | 2 << 2 | 3 << 4]
    assert kv_quant.pack_codes(torch.tensor([0xA, 0x5, 0xF]), 4).tolist() == [0x5A, 0x0F]


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("shape, group", [((3, 64), 32), ((2, 5, 100), 32), ((4, 37), 16)])
def test_round_trip_error_is_within_half_a_step_per_group(bits, shape, group):
    x = _randn(*shape, seed=bits)
    q = kv_quant.quantize_last_dim(x, bits, group)
    error = (q.dequantize(torch.float32) - x).abs().double()
    bound = kv_quant.quantization_error_bound(x, bits, group, torch.float32)
    assert bool((error <= bound).all())
    low, high = kv_quant.group_min_max(x, group)
    half_step = kv_quant.expand_groups((high - low).double() / ((1 << bits) - 1) / 2, group, shape[-1])
    assert 0.9 < float((error / half_step).max()) <= 1.01  # the bound is tight: errors reach half a step
    assert int(q.codes().max()) == (1 << bits) - 1 and int(q.codes().min()) == 0


def test_four_bits_are_about_five_times_more_accurate_than_two():
    x = _randn(8, 256)
    errors = [float((kv_quant.quantize_last_dim(x, b, 32).dequantize(torch.float32) - x).pow(2).mean().sqrt())
              for b in (2, 4)]
    assert 4.0 < errors[0] / errors[1] < 6.0  # step ratio 15 / 3 = 5


def test_a_constant_group_dequantizes_exactly():
    x = torch.full((2, 32), 0.75)
    assert torch.equal(kv_quant.quantize_last_dim(x, 2, 32).dequantize(torch.float32), x)


def test_kivi_groups_keys_per_channel_and_values_per_token():
    keys, values = _randn(1, 64, 4, seed=1), _randn(1, 64, 4, seed=2)
    keys[0, :32, 2] *= 100.0  # an outlier channel: per-channel groups keep it away from the other channels
    cache = kv_quant.kivi_compress(keys, values, bits=2, group_size=32, residual=0)
    assert cache.keys_q.shape == (1, 4, 64) and cache.keys_q.scale.shape == (1, 4, 2)
    assert cache.values_q.shape == (1, 64, 4) and cache.values_q.scale.shape == (1, 64, 1)
    dequantized_keys, _ = cache.dequantize()
    calm = [0, 1, 3]
    assert float((dequantized_keys[0, :, calm] - keys[0, :, calm]).abs().max()) < 2.0


def test_kivi_keeps_the_residual_window_exact_and_bounds_the_rest():
    keys, values = _randn(2, 300, 64, seed=3), _randn(2, 300, 64, seed=4)
    cache = kv_quant.kivi_compress(keys, values, bits=2, group_size=32, residual=128)
    dequantized_keys, dequantized_values = cache.dequantize()
    assert torch.equal(dequantized_keys[:, 172:], keys[:, 172:]) and torch.equal(dequantized_values[:, 172:],
                                                                                 values[:, 172:])
    key_bound, value_bound = kv_quant.kivi_error_bound(keys, values, 2, 32, 128, torch.float32)
    assert bool(((dequantized_keys - keys).abs() <= key_bound).all())
    assert bool(((dequantized_values - values).abs() <= value_bound).all())
    assert float(key_bound[:, 172:].abs().max()) == 0.0


def test_kivi_byte_counts_are_exact_for_ragged_groups():
    keys = values = _randn(2, 300, 64, seed=5)
    cache = kv_quant.kivi_compress(keys, values, bits=2, group_size=32, residual=128)
    quantized = 300 - 128  # 172 tokens: 6 token groups per key channel (the last holds 12), 2 per value token
    codes = 2 * math.ceil(2 * quantized * 64 * 2 / 8)
    scales_and_zeros = 2 * 2 * (2 * 64 * 6 + 2 * quantized * 2)  # float16 scale + zero per group
    window = 2 * 2 * 128 * 64 * 4
    assert cache.keys_q.packed.numel() == cache.values_q.packed.numel() == 5504
    assert cache.nbytes() == codes + scales_and_zeros + window == 147904
    assert cache.effective_bits() == pytest.approx(8 * 147904 / (2 * 2 * 300 * 64))


@pytest.mark.parametrize("bits, expected", [(2, 3.0), (4, 5.0)])
def test_effective_bits_include_scales_and_zero_points(bits, expected):
    assert kv_quant.kivi_quantized_bits(bits, 32) == expected
    keys = values = _randn(2, 256, 64, seed=bits)
    cache = kv_quant.kivi_compress(keys, values, bits=bits, group_size=32, residual=0)
    assert cache.effective_bits() == expected  # whole groups, no window: the formula exactly


def test_a_residual_longer_than_the_cache_quantizes_nothing():
    keys = values = _randn(1, 20, 8)
    cache = kv_quant.kivi_compress(keys, values, residual=32)
    assert cache.keys_q is None and cache.effective_bits() == 32.0
    assert torch.equal(cache.dequantize()[0], keys)


@pytest.mark.parametrize("call, message", [
    (lambda: kv_quant.pack_codes(torch.zeros(4), 3), "bits must be one of"),
    (lambda: kv_quant.quantize_last_dim(torch.zeros(4, dtype=torch.int32), 2, 32), "floating"),
    (lambda: kv_quant.kivi_compress(torch.zeros(2, 4, 8), torch.zeros(2, 4, 8), group_size=0), "group_size"),
    (lambda: kv_quant.kivi_compress(torch.zeros(2, 4, 8), torch.zeros(2, 5, 8)), "share"),
])
def test_bad_arguments_raise_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
