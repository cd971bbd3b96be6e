"""Packing into real bytes: b-bit bitstreams for every width, two's complement, base-3 trits and Sherry's 5-bit
runs, all exact round trips on random codes."""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.kernels.quant import formats, packing, ternary


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("bits", packing.PACK_WIDTHS)
@pytest.mark.parametrize("numel", [1, 7, 64, 1001])
def test_bitstream_round_trip_in_exactly_the_needed_bytes(bits, numel):
    codes = torch.randint(0, 1 << bits, (numel,), generator=_generator(bits * numel))
    packed = packing.pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(numel * bits / 8)
    assert torch.equal(packing.unpack_bits(packed, bits, numel).long(), codes)


def test_bitstream_layout_is_least_significant_bit_first():
    assert packing.pack_bits(torch.tensor([1, 2, 3]), 3).tolist() == [1 | 2 << 3 | (3 & 3) << 6, 3 >> 2]
    assert packing.pack_bits(torch.tensor([63, 1]), 6).tolist() == [63 | (1 << 6), 0]
    assert packing.pack_bits(torch.tensor([0xA, 0x5, 0xF]), 4).tolist() == [0x5A, 0x0F]
    assert packing.pack_bits(torch.tensor([0b10101, 0b00011]), 5).tolist() == [0b01110101, 0b00]


def test_twos_complement_round_trip():
    for bits in (2, 3, 4, 8):
        codes = torch.arange(-(1 << (bits - 1)), 1 << (bits - 1))
        patterns = packing.to_twos_complement(codes, bits)
        assert int(patterns.max()) == (1 << bits) - 1 and patterns.dtype == torch.uint8
        assert torch.equal(packing.from_twos_complement(patterns, bits).long(), codes)


@pytest.mark.parametrize("numel", [1, 5, 6, 999])
def test_trits_pack_five_per_byte(numel):
    codes = torch.randint(-1, 2, (numel,), generator=_generator(numel))
    packed = ternary.pack_trits(codes)
    assert packed.numel() == math.ceil(numel / 5) and int(packed.max()) <= 242
    assert torch.equal(ternary.unpack_trits(packed, numel).long(), codes)
    assert ternary.pack_trits(torch.tensor([1, -1, 0, 0, 1])).tolist() == [2 + 0 * 3 + 1 * 9 + 1 * 27 + 2 * 81]


@pytest.mark.parametrize("cols", [4, 12, 13, 66])
def test_sherry_runs_round_trip_from_random_codes(cols):
    rows, runs = 5, math.ceil(cols / 4)
    code = torch.randint(0, 32, (rows, runs), generator=_generator(cols))  # every 5-bit pattern is valid
    real = cols % 4
    if real:  # a ragged run keeps all its real weights: its zero is the first pad, the pads' signs are +
        code[:, -1] = real | ((code[:, -1] >> 2) & ((1 << real) - 1)) << 2
    q = formats.QTensor("sherry", (rows, cols), torch.float32,
                        {"codes": packing.pack_bits(code, 5), "scale": torch.ones(rows, 1, dtype=torch.float16)}, {})
    values = formats.dequantize(q)
    runs_view = torch.nn.functional.pad(values, (0, -cols % 4)).view(rows, runs, 4)
    assert bool(((runs_view[:, : cols // 4] == 0).sum(-1) == 1).all()) and set(values.unique().tolist()) <= {-1, 0, 1}
    again = formats.quantize(values, "sherry")
    assert torch.equal(again.payload["codes"], q.payload["codes"]) and torch.equal(formats.dequantize(again), values)


def test_sherry_zeroes_the_smallest_of_each_run_and_scales_by_the_kept_mean():
    w = torch.tensor([[0.5, -0.1, 2.0, -1.0, 0.3, 0.2, -0.4, 0.1]])
    deq = formats.dequantize(formats.quantize(w, "sherry"))
    kept_mean = (0.5 + 2.0 + 1.0 + 0.3 + 0.2 + 0.4) / 6
    scale = torch.tensor(kept_mean).half().float()
    assert torch.equal(deq, torch.tensor([[1, 0, 1, -1, 1, 1, -1, 0]]) * scale)


def test_ternary_is_bitnet_absmean_round_clip():
    w = torch.tensor([[0.1, -0.9, 2.5, -0.3], [0.05, 0.6, -0.2, 0.0]])
    q = formats.quantize(w, "ternary")
    scale = w.abs().mean()
    assert q.payload["scale"].item() == pytest.approx(float(scale))
    expected = torch.round(w / scale).clamp(-1, 1)
    assert torch.equal(formats.dequantize(q), expected * q.payload["scale"].reshape(()))
    channel = formats.quantize(w, "ternary-channel")
    assert channel.payload["scale"].shape == (2, 1) and channel.payload["scale"].dtype == torch.float16


@pytest.mark.parametrize("call, message", [
    (lambda: packing.pack_bits(torch.tensor([8]), 3), r"\[0, 7\]"),
    (lambda: packing.pack_bits(torch.tensor([1.0]), 3), "integer dtype"),
    (lambda: packing.pack_bits(torch.tensor([1]), 9), "from 1 to 8"),
    (lambda: packing.unpack_bits(torch.zeros(2, dtype=torch.uint8), 6, 3), "cannot hold"),
    (lambda: ternary.pack_trits(torch.tensor([2])), r"\{-1, 0, 1\}"),
])
def test_packing_rejects_bad_codes(call, message):
    with pytest.raises(ValueError, match=message):
        call()
