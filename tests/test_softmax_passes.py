"""Softmax in three and two passes: every implementation against float64, overflow, masking, cost bookkeeping."""

import math

import pytest
import torch

from harness.registry import REGISTRY
from reference_impls.kernels import softmax as sm

REGISTRY.load()
EPS32 = torch.finfo(torch.float32).eps


def _rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(y.double() - ref) / torch.linalg.vector_norm(ref))


@pytest.mark.parametrize("impl", sm.IMPLEMENTATIONS)
@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 4), (4096, 1024), (100_003, 8192), (65536, 65536)])
def test_float32_matches_float64_at_ragged_sizes(impl, n, chunk):
    g = torch.Generator().manual_seed(n)
    x = 3.0 * torch.randn(n, generator=g)
    y = sm.SOFTMAXES[impl](x, chunk=chunk)
    ref = sm.softmax_reference(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    # torch.softmax accumulates one long row in float32 lanes: its error grows with n (~20 eps at 10^5)
    assert _rel_error(y, ref) <= (2 * EPS32 if impl != "torch" else 4 * math.sqrt(n) * EPS32)
    assert abs(float(y.double().sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("impl", sm.IMPLEMENTATIONS)
def test_float64_inputs_stay_float64_and_exact(impl):
    x = torch.randn(5000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = sm.SOFTMAXES[impl](x, chunk=512)
    assert y.dtype == torch.float64
    assert _rel_error(y, sm.softmax_reference(x)) < 1e-14


@pytest.mark.parametrize("impl", ["three_pass", "three_pass_stored", "online", "two_pass"])
def test_logits_that_overflow_exp_are_handled(impl):
    """exp(1000) overflows float32 (and float64): every pass structure must still normalize correctly."""
    x = 1000.0 + 5.0 * torch.randn(20_000, generator=torch.Generator().manual_seed(2))
    x[123] = 1100.0
    y = sm.SOFTMAXES[impl](x, chunk=4096)
    ref = sm.softmax_reference(x)
    assert torch.isfinite(y).all()
    assert _rel_error(y, ref) <= 2 * EPS32
    assert int(y.argmax()) == 123


def test_two_pass_sum_uses_no_max_and_cannot_overflow():
    """Per chunk, the extended-exponent sum equals sum(exp(x)) as mantissa * 2^exponent even where exp(x) = inf."""
    x = torch.tensor([700.0, 710.0, 705.5, -3.0], dtype=torch.float64)
    n, m = torch.empty_like(x), torch.empty_like(x)
    mantissa, exponent = sm._extended_exp_sum(x, n, m)
    expected_log = math.log(sum(math.exp(v - 710.0) for v in x.tolist())) + 710.0
    assert math.isclose(math.log(mantissa) + exponent * math.log(2.0), expected_log, rel_tol=1e-14)
    assert exponent == round(710.0 / math.log(2.0))


@pytest.mark.parametrize("impl", sm.IMPLEMENTATIONS)
def test_masked_minus_infinity_entries_get_zero(impl):
    x = torch.full((10_000,), float("-inf"))
    x[9_998:] = torch.tensor([1.0, 2.0])
    y = sm.SOFTMAXES[impl](x, chunk=1024)
    assert not torch.isnan(y).any()
    assert torch.equal(y[:9_998], torch.zeros(9_998))
    expected = torch.tensor([1.0, 2.0]).softmax(0)
    assert torch.allclose(y[9_998:], expected, rtol=1e-6)


def test_write_pass_fills_the_given_output_without_reallocating():
    x = torch.randn(70_000, generator=torch.Generator().manual_seed(3))
    for impl in sm.IMPLEMENTATIONS:
        out = torch.full_like(x, 7.0)
        pointer = out.data_ptr()
        y = sm.SOFTMAXES[impl](x, out=out, chunk=16384)
        assert y.data_ptr() == pointer and _rel_error(out, sm.softmax_reference(x)) <= 2 * EPS32


@pytest.mark.parametrize("bad, message", [
    (dict(x=torch.randn(3, 4)), "one non-empty vector"),
    (dict(x=torch.empty(0)), "one non-empty vector"),
    (dict(x=torch.arange(5)), "floating-point"),
    (dict(x=torch.randn(5), chunk=0), "chunk must be >= 1"),
    (dict(x=torch.randn(5), out=torch.empty(4)), "out must match x"),
])
def test_bad_input_is_a_clear_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        sm.two_pass_softmax(**bad)


def test_torch_call_count_and_workspace():
    assert sm.torch_calls("three_pass", 1_000_000, 131072) == 8 * 8 + 1 + 1
    assert sm.torch_calls("two_pass", 131072, 131072) == 16 + 1 + 1
    assert sm.torch_calls("torch", 10**8, 4096) == 2
    assert sm.workspace_bytes("two_pass", 10, 131072, 4) == 80
    assert sm.workspace_bytes("three_pass_stored", 10**6, 131072, 4) == 0
    with pytest.raises(ValueError, match="unknown softmax implementation"):
        sm.torch_calls("four_pass", 10, 10)


def test_workload_cost_counts_passes_over_the_vector():
    workload = REGISTRY.workload("softmax_passes")
    params = {"n": 1 << 24, "chunk": 1 << 17, "dtype": "float32"}
    costs = {impl: workload.cost(params, impl) for impl in sm.IMPLEMENTATIONS}
    n_bytes = 4.0 * (1 << 24)
    for cost in costs.values():
        assert cost.bytes == {"dram": 2 * n_bytes} and cost.flops == 4.0 * (1 << 24)
    assert costs["three_pass"].expected_traffic["dram"] == 4 * n_bytes
    assert costs["two_pass"].expected_traffic["dram"] == costs["online"].expected_traffic["dram"] == 3 * n_bytes
    assert costs["three_pass_stored"].expected_traffic["dram"] == 5 * n_bytes
    assert costs["two_pass"].special_ops == 3 * (1 << 24) and costs["three_pass_stored"].special_ops == 1 << 24
    assert costs["three_pass"].launches == 8 * 128 + 2


def test_workload_runs_every_implementation_and_checks_against_float64():
    workload = REGISTRY.workload("softmax_passes")
    params = {"n": 50_001, "chunk": 8192, "dtype": "float32"}
    inputs = workload.inputs(params, "cpu", 0)
    reference = workload.reference(inputs, params)
    assert REGISTRY.baseline_of("softmax_passes").name == "three_pass"
    base = workload.check(REGISTRY.impl("softmax_passes", "three_pass").fn(inputs, params), reference, None)
    assert base.passed and base.error < 2 * EPS32
    for impl in sm.IMPLEMENTATIONS:
        output = REGISTRY.impl("softmax_passes", impl).fn(inputs, params)
        check = workload.check(output, reference, base.error)
        assert check.passed and (impl == "torch" or check.error < 2 * EPS32), impl
    drifted = reference.to(torch.float32) * (1 + 2e-5)  # a uniform 2e-5 error: past the floor
    assert not workload.check(drifted, reference, base.error).passed
