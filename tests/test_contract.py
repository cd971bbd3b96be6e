"""One contract for every registered workload and implementation (DESIGN: the contract test)."""

import pytest
import torch

from harness.registry import REGISTRY, Workload

REGISTRY.load()
WORKLOADS = sorted(REGISTRY.workloads)
PAIRS = [(w, i) for w in WORKLOADS for i in sorted(REGISTRY.impls_of(w)) if "cpu" in REGISTRY.impl(w, i).devices]


def small_params(workload: Workload) -> dict:
    """Defaults plus the workload's contract_params; skips the test where its baseline cannot run here (a real
    model whose package is not installed), with the workload's own reason."""
    params = {p.name: p.default for p in workload.params}
    params.update(getattr(workload, "contract_params", {}))
    reason = workload.unsupported(REGISTRY.baseline_of(workload.name).name, params, "cpu")
    if reason:
        pytest.skip(reason)
    return params


def _tensors(inputs):
    return [v for v in (inputs.values() if isinstance(inputs, dict) else [inputs]) if torch.is_tensor(v)]


@pytest.mark.parametrize("name", WORKLOADS)
def test_inputs_are_deterministic_random_and_not_zeros(name):
    workload = REGISTRY.workload(name)
    params = small_params(workload)
    a, b, c = (workload.inputs(params, "cpu", seed) for seed in (0, 0, 1))
    for x, y, z in zip(_tensors(a), _tensors(b), _tensors(c), strict=True):
        assert torch.equal(x, y) and not torch.equal(x, z)
        assert x.count_nonzero() > 0.9 * x.numel()


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_declares_what_the_report_needs(name):
    workload = REGISTRY.workload(name)
    assert workload.family and workload.description and workload.sweep_param in [p.name for p in workload.params]
    assert REGISTRY.baseline_of(name) is not None, "every workload marks one baseline implementation"
    assert len(workload.version()) == 12


@pytest.mark.parametrize("name, impl", PAIRS)
def test_implementation_agrees_with_reference_and_cost_is_positive(name, impl):
    workload = REGISTRY.workload(name)
    params = small_params(workload)
    if workload.unsupported(impl, params, "cpu"):
        pytest.skip(workload.unsupported(impl, params, "cpu"))
    inputs = workload.inputs(params, "cpu", 0)
    reference = workload.reference(inputs, params)
    baseline = REGISTRY.baseline_of(name)
    baseline_error = workload.check(baseline.fn(inputs, params), reference, None).error
    output = REGISTRY.impl(name, impl).fn(inputs, params)
    assert workload.check(output, reference, None if impl == baseline.name else baseline_error).passed
    cost = workload.cost(params, impl)
    assert cost.flops > 0 and cost.total_bytes > 0


@pytest.mark.parametrize("name", WORKLOADS)
def test_check_catches_a_wrong_answer(name):
    workload = REGISTRY.workload(name)
    params = small_params(workload)
    inputs = workload.inputs(params, "cpu", 0)
    reference = workload.reference(inputs, params)
    output = REGISTRY.baseline_of(name).fn(inputs, params)
    error = workload.check(output, reference, None).error
    wrong_answers = workload.wrong_answers(output)
    assert len(wrong_answers) >= 2
    for wrong in wrong_answers:
        assert not workload.check(wrong, reference, error).passed
