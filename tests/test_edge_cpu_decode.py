"""cpu_decode: cached pp/tg logits equal a float64 no-cache forward; SmolLM2 in TinyLlama equals transformers."""

import pytest
import torch

from reference_impls.edge import cpu_decode
from reference_impls.kernels.tiny_llama import random_tokens
from reference_impls.models.smollm2 import missing_reason
from workloads.edge.cpu_decode import CpuDecode, DecodeOutput, phase_costs


def _error(x, ref):
    return float((x.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("test, n", [("pp", 3), ("pp", 17), ("tg", 5), ("tg", 11)])
def test_tiny_cached_runs_equal_the_float64_forward(test, n):
    model = cpu_decode.tiny_llama("tiny", seed=2)
    tokens = random_tokens(n, model.shape.vocab, 4)
    result = cpu_decode.run_tiny(model, test, tokens)
    reference = cpu_decode.reference_logits(model, test, tokens)
    assert result.logits.shape == reference.shape == ((1 if test == "pp" else n), model.shape.vocab)
    assert _error(result.logits, reference) < 1e-5
    assert result.kv_bytes == model.shape.kv_bytes_per_token(4) * n and result.seconds > 0


def test_bad_test_name_is_rejected():
    model = cpu_decode.tiny_llama("tiny")
    with pytest.raises(ValueError, match="test must be one of pp, tg"):
        cpu_decode.run_tiny(model, "pg", random_tokens(4, 100, 0))


@pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
def test_smollm2_weights_in_tiny_llama_match_transformers():
    model = cpu_decode.tiny_llama("smollm2-135m")
    tokens = random_tokens(6, model.shape.vocab, 1)
    reference = cpu_decode.reference_logits(model, "tg", tokens)
    ours, theirs = cpu_decode.run_tiny(model, "tg", tokens), cpu_decode.run_transformers("tg", tokens)
    assert _error(ours.logits, reference) < 1e-5 and _error(theirs.logits, reference) < 1e-5


def test_cost_and_modeled_counters():
    workload = CpuDecode()
    params = {"model": "smollm2-135m-random", "test": "pp", "tokens": 64, "threads": 1}
    cost = workload.cost(params, "tiny_llama")
    assert cost.flops == pytest.approx(phase_costs("smollm2-135m-random", "pp", 64)[0].flops)
    # prefill FLOPs are at least 2 x non-embedding parameters x tokens (linear maps alone)
    assert cost.flops > 2 * (134_515_008 - 28_311_552) * 64
    tg = workload.cost({**params, "test": "tg"}, "tiny_llama")
    assert tg.total_bytes > 64 * 0.9 * 134_515_008 * 4  # weights streamed once per generated token
    result = cpu_decode.TestResult(torch.zeros(1, 3), 0.5, 64, 1000)
    counts = workload.counters(DecodeOutput(result.logits, result), params)
    assert counts["cpu_decode.tokens_per_s"] == 128 and counts["cpu_decode.ttft_s"] == 0.5
    assert counts["cpu_decode.params"] == 134_515_008
    assert counts["cpu_decode.modeled_tokens_per_s.m2"] > counts["cpu_decode.modeled_tokens_per_s.pi5"] > 0
    assert counts["cpu_decode.modeled_energy_j_per_token.pi5"] > 0
    assert "cpu_decode.ttft_s" not in workload.counters(DecodeOutput(result.logits, result), {**params, "test": "tg"})
