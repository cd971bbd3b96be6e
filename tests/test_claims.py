"""Claims: verdicts follow the measurement, and the seed claims read the records they say they read."""

import pandas as pd
import pytest

from harness.claims import Claim, Measurement, ok_rows
from harness.registry import REGISTRY

REGISTRY.load()


def _claim(comparison: str, expected: float, tolerance: float = 0.0) -> Claim:
    return Claim("X", "paper", "statement", expected, "x", comparison, "how", lambda df: None, tolerance)


@pytest.mark.parametrize("comparison, expected, tolerance, value, verdict", [
    (">=", 59.0, 0.0, 93.3, "reproduced"), (">=", 59.0, 0.0, 40.0, "not reproduced"),
    ("<=", 1.05, 0.0, 0.44, "reproduced"), ("<=", 1.05, 0.0, 1.2, "not reproduced"),
    ("within", 2.55, 0.1, 2.4, "reproduced"), ("within", 2.55, 0.1, 2.0, "not reproduced"),
])
def test_verdict_follows_the_comparison(comparison, expected, tolerance, value, verdict):
    assert _claim(comparison, expected, tolerance).verdict(Measurement(value, "d")) == verdict


def test_nothing_measured_is_not_measurable_not_a_failure():
    row = _claim(">=", 1.0).evaluate(pd.DataFrame())
    assert row["verdict"] == "not measurable here" and "measured" not in row
    with pytest.raises(ValueError, match="comparison must be one of"):
        _claim("~", 1.0)


def _record(impl: str, overhead: float, latency: float, status: str = "ok", seq: int = 16384) -> dict:
    return {"workload": "attention_prefill", "impl": impl, "device": "cpu", "status": status, "valid": True,
            "param.seq": seq, "param.causal": False, "peak_memory_overhead_bytes": overhead, "latency_s": latency}


def test_rabe_staats_claims_read_naive_over_chunked_at_16k():
    records = pd.DataFrame([_record("naive", 2048 * 2**20, 1.4), _record("chunked", 22 * 2**20, 0.7),
                            _record("chunked", 1.0, 0.001, status="failed"),  # a failed case never counts
                            _record("naive", 1.0, 0.001, seq=1024)])
    memory = REGISTRY.claims["P056-memory"].evaluate(records)
    assert memory["measured"] == pytest.approx(2048 / 22) and memory["verdict"] == "reproduced"
    time = REGISTRY.claims["P056-time"].evaluate(records)
    assert time["measured"] == pytest.approx(0.5) and time["verdict"] == "reproduced"
    assert len(ok_rows(records, "attention_prefill", seq=16384)) == 2


def test_duplex_gqa_intensity_is_modeled_between_4_and_8():
    row = REGISTRY.claims["P009-gqa"].evaluate(pd.DataFrame())
    assert 3.5 <= row["measured"] <= 8 and row["device"] == "model"


def test_allocation_and_softmax_claims_read_their_workloads_records():
    def alloc(impl, waste):
        return {"workload": "kv_allocation", "impl": impl, "device": "cpu", "status": "ok", "valid": True,
                "param.block_size": 16, "param.requests": 200.0, "param.trace": "sharegpt", "param.memory_gib": 2.0,
                "kv_alloc.waste_pct": waste}

    def soft(impl, n, latency):
        return {"workload": "softmax_passes", "impl": impl, "device": "cpu", "status": "ok", "valid": True,
                "param.n": n, "latency_s": latency}

    records = pd.DataFrame([alloc("static", 72.0), alloc("paged", 1.3), soft("three_pass", 1 << 24, 0.045),
                            soft("two_pass", 1 << 24, 0.060), soft("two_pass", 1 << 12, 0.001)])
    assert REGISTRY.claims["P091-paged"].evaluate(records)["verdict"] == "reproduced"
    static = REGISTRY.claims["P091-static"].evaluate(records)
    assert static["measured"] == 72.0 and "200 sharegpt-like" in static["detail"]
    softmax = REGISTRY.claims["P178-two-pass"].evaluate(records)
    assert softmax["measured"] == pytest.approx(0.75) and softmax["verdict"] == "not reproduced"
