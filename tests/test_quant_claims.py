"""Quantization claims read the quant_error / quant_fidelity / quant_matmul records they say they read."""

import pandas as pd
import pytest

from harness.registry import REGISTRY

REGISTRY.load()


def _error(fmt: str, bits: float, sqnr: float = 20.0, source: str = "minilm", layer: str = "q", max_abs: float = 0.1,
           status: str = "ok") -> dict:
    return {"workload": "quant_error", "impl": "registry", "device": "cpu", "status": status, "valid": True,
            "param.format": fmt, "param.source": source, "param.layer": layer, "quant.effective_bits": bits,
            "quality.weight_sqnr_db": sqnr, "quality.weight_max_abs_error": max_abs}


def _matmul(impl: str, m: int, latency: float, n: int = 4096, k: int = 14336, device: str = "cuda:0") -> dict:
    return {"workload": "quant_matmul", "impl": impl, "device": device, "status": "ok", "valid": True, "param.M": m,
            "param.N": n, "param.K": k, "param.bits": 4, "param.group": 128, "param.dtype": "bfloat16",
            "latency_s": latency}


def _evaluate(claim: str, rows: list[dict]) -> dict:
    return REGISTRY.claims[claim].evaluate(pd.DataFrame(rows))


def test_bits_claims_read_effective_bits_and_dfloat11_needs_real_weights():
    assert _evaluate("P099-int4", [_error("int4-g128-sym", 4.125)])["measured"] == pytest.approx(16 / 4.125)
    sherry = _evaluate("P163-sherry", [_error("sherry", 1.2539), _error("sherry", 9.0, status="failed")])
    assert sherry["measured"] == pytest.approx(1.2539) and sherry["verdict"] == "reproduced"
    df11 = _evaluate("P040-dfloat11", [_error("dfloat11", 10.68, max_abs=0.0), _error("dfloat11", 16.0,
                                                                                        source="synthetic")])
    assert df11["measured"] == pytest.approx(10.68 / 16) and df11["verdict"] == "reproduced"
    assert "bit-exact" in df11["detail"]
    assert _evaluate("P040-dfloat11", [_error("dfloat11", 10.6, source="synthetic")])["verdict"] == \
        "not measurable here"


def test_bitmod_gain_is_per_layer_sqnr_difference():
    rows = [_error("bitmod-g128", 4.17, sqnr=20.5, layer="a"), _error("int4-g128-asym", 4.16, sqnr=20.0, layer="a"),
            _error("bitmod-g128", 4.17, sqnr=19.0, layer="b"), _error("int4-g128-asym", 4.16, sqnr=19.5, layer="b"),
            _error("bitmod-g128", 4.17, sqnr=30.0, layer="c")]  # no int4 partner: not compared
    row = _evaluate("P043-bitmod", rows)
    assert row["measured"] == pytest.approx(0.0) and "a +0.50 dB" in row["detail"]


def test_marlin_claims_take_bf16_over_int4_on_the_largest_shape_and_the_knee():
    rows = []
    for m, int4 in [(1, 17.6), (4, 17.7), (16, 18.4), (32, 24.0), (64, 37.0)]:
        rows += [_matmul("bf16", m, 44.5e-6), _matmul("triton_int4", m, int4 * 1e-6)]
    rows += [_matmul("bf16", 1, 15e-6, n=4096, k=4096), _matmul("triton_int4", 1, 4e-6, n=4096, k=4096)]
    rows += [_matmul("triton_int4", 1, 1e-6, device="cpu")]  # CPU rows never count
    batch1 = _evaluate("Marlin-batch1", rows)
    assert batch1["measured"] == pytest.approx(44.5 / 17.6) and batch1["verdict"] == "not reproduced"
    knee = _evaluate("Marlin-knee", rows)
    assert knee["measured"] == 16 and knee["verdict"] == "reproduced"


def test_lut_and_cliff_claims():
    rows = [_matmul("dequant_matmul", 1, 0.3, device="cpu"), _matmul("lut_gemv", 1, 0.1, device="cpu"),
            _matmul("lut_gemv", 4, 10.0, device="cpu"), _matmul("dequant_matmul", 1, 7e-4)]  # CUDA rows never count
    assert _evaluate("P097-lut", rows)["measured"] == pytest.approx(3.0)

    def fid(fmt, delta):
        return {"workload": "quant_fidelity", "impl": "fake_quant", "device": "cpu", "status": "ok", "valid": True,
                "param.model": "smollm2", "param.format": fmt, "quality.perplexity_delta": delta,
                "quality.perplexity_fp32": 10.0}

    baseline = dict(fid("int4-g128", 0.0), impl="fp32")  # the as-loaded case carries a format param too
    cliff = _evaluate("P150-cliff", [fid("int4-g128", 0.5), fid("int3-g128", 2.5), baseline])
    assert cliff["measured"] == pytest.approx(5.0) and cliff["verdict"] == "reproduced"
    assert _evaluate("P041-kv-outliers", [])["verdict"] == "not measurable here"
