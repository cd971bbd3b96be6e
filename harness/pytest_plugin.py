"""pytest plugin: benchmark your own function against a membench workload inside your own test suite.

    import pytest
    from harness.pytest_plugin import membench_params

    @pytest.mark.parametrize("membench_case", membench_params("attention_prefill", seq=[256, 512]),
                             indirect=True)
    def test_my_attention(membench_case):
        out = membench_case.benchmark(my_attention)  # pytest-benchmark times my_attention(inputs, params)
        # ... and the output was checked against the workload's float64 reference (AssertionError if wrong)

    @pytest.mark.membench("softmax_passes", n=4096)  # one case, by marker
    def test_my_softmax(membench_case):
        membench_case.check(my_softmax(membench_case.inputs, membench_case.params))

The function takes the workload's inputs and params, like a registered membench implementation. The case's
identity (workload, params, device, seed, workload version, analytic cost) travels in pytest-benchmark's
`extra_info`, so `membench import-pytest-benchmark` turns `--benchmark-json` output into membench records that
reach `membench report`, `compare` and `gate`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

MARKER = "membench"


def _registry():
    from harness.registry import REGISTRY

    return REGISTRY.load()


def case_params(workload_name: str, params: dict | None = None) -> tuple[Any, dict]:
    """The workload and its full, validated params (defaults filled); a ValueError names what is allowed."""
    registry = _registry()
    if workload_name not in registry.workloads:
        known = ", ".join(sorted(registry.workloads))
        raise ValueError(f"unknown membench workload {workload_name!r}; known: {known}")
    workload = registry.workloads[workload_name]
    given = dict(params or {})
    declared = {p.name for p in workload.params}
    unknown = sorted(set(given) - declared)
    if unknown:
        raise ValueError(f"{workload_name}: unknown params {unknown}; allowed: {', '.join(sorted(declared))}")
    full = {}
    for param in workload.params:
        try:
            full[param.name] = param.validate(given.get(param.name, param.default))
        except ValueError as exc:
            raise ValueError(f"{workload_name}: param {param.name}: {exc}; allowed: {param.allowed()}") from None
    return workload, full


def membench_params(workload: str, device: str = "cpu", seed: int = 0, **grid: Any) -> list:
    """pytest.param entries for `indirect=True` parametrization: the product of the grid's values."""
    case_params(workload)  # fail at collection on an unknown workload
    axes = [(name, values if isinstance(values, (list, tuple)) else [values]) for name, values in grid.items()]
    out = []
    for combo in itertools.product(*[values for _, values in axes]):
        params = dict(zip([name for name, _ in axes], combo, strict=True))
        case_params(workload, params)
        label = ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        out.append(pytest.param({"workload": workload, "params": params, "device": device, "seed": seed},
                                id=f"{workload}[{label}]@{device}"))
    return out


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class MembenchCase:
    """One workload case inside a test: its inputs, its reference, its check, and a timed call."""

    def __init__(self, workload: Any, params: dict, device: str, seed: int, request: pytest.FixtureRequest):
        self.workload, self.params, self.device, self.seed = workload, params, device, seed
        self._request = request
        self._inputs: Any = None
        self._reference: Any = None
        self._baseline_error: float | None | bool = False  # False: not computed yet
        self.last_check: Any = None

    @property
    def impl(self) -> str:
        """The test function's name stands for the implementation in the case id."""
        return getattr(self._request.node, "originalname", None) or self._request.node.name

    @property
    def id(self) -> str:
        from harness.case import Case

        return Case(self.workload.family, self.workload.name, self.impl, tuple(self.params.items()), self.device,
                    self.seed).id

    @property
    def inputs(self) -> Any:
        if self._inputs is None:
            self._inputs = self.workload.inputs(self.params, self.device, self.seed)
        return self._inputs

    @property
    def reference(self) -> Any:
        if self._reference is None:
            self._reference = self.workload.reference(self.inputs, self.params)
        return self._reference

    def baseline_error(self) -> float | None:
        """The registered baseline implementation's error on these inputs: the 2x rule's yardstick."""
        if self._baseline_error is False:
            registry = _registry()
            stand_in = self.workload.check_baseline(self.params)
            baseline = (registry.impl(self.workload.name, stand_in) if stand_in
                        else registry.baseline_of(self.workload.name))
            self._baseline_error = None if baseline is None else self.workload.check(
                baseline.fn(self.inputs, self.params), self.reference, None).error
        return self._baseline_error

    def check(self, output: Any) -> Any:
        """Hold `output` to the workload's rule against its reference; AssertionError when it fails."""
        check = self.workload.check(output, self.reference, self.baseline_error())
        self.last_check = check
        if not check.passed:
            raise AssertionError(f"{self.id}: error {check.error:.3g} > tolerance {check.tolerance:.3g} "
                                 f"({check.rule})")
        return check

    def describe(self) -> dict:
        """The case's identity and analytic cost, as plain JSON for pytest-benchmark's extra_info."""
        registry = _registry()
        baseline = registry.baseline_of(self.workload.name)
        try:
            cost = self.workload.cost(self.params, baseline.name if baseline else self.impl).to_json()
        except Exception:  # a workload whose cost depends on a registered implementation's name
            cost = None
        return {"workload": self.workload.name, "family": self.workload.family, "params": dict(self.params),
                "device": self.device, "seed": self.seed, "workload_version": self.workload.version(),
                "cost": cost}

    def benchmark(self, fn: Any, benchmark: Any = None) -> Any:
        """Time fn(inputs, params) with pytest-benchmark's `benchmark` fixture, then check its output."""
        if benchmark is None:
            try:
                benchmark = self._request.getfixturevalue("benchmark")
            except pytest.FixtureLookupError:
                raise RuntimeError("membench_case.benchmark needs pytest-benchmark (pip install pytest-benchmark)"
                                   ) from None
        info = self.describe()
        benchmark.extra_info["membench"] = info
        output = benchmark(fn, self.inputs, self.params)
        check = self.workload.check(output, self.reference, self.baseline_error())
        info["check"] = {"passed": bool(check.passed), "error": _finite(check.error),
                         "tolerance": _finite(check.tolerance), "rule": check.rule}
        if check.passed:
            found = dict(self.workload.quality(output, self.reference))
            found.update(self.workload.counters(output, self.params))
            info["metrics"] = {name: _finite(value) for name, value in found.items()}
        self.check(output)
        return output


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(workload, device='cpu', seed=0, **params): the membench case "
                            "the membench_case fixture builds")


@pytest.fixture
def membench_case(request: pytest.FixtureRequest) -> MembenchCase:
    """A membench workload case: parametrize with membench_params(..., indirect=True) or mark with membench."""
    spec = getattr(request, "param", None)
    if spec is None:
        marker = request.node.get_closest_marker(MARKER)
        if marker is None or not marker.args:
            raise pytest.UsageError("membench_case needs a workload: parametrize it with membench_params(...) and "
                                    "indirect=True, or mark the test @pytest.mark.membench('workload', param=...)")
        kwargs = dict(marker.kwargs)
        spec = {"workload": marker.args[0], "device": kwargs.pop("device", "cpu"), "seed": kwargs.pop("seed", 0),
                "params": kwargs}
    workload, params = case_params(spec["workload"], spec.get("params"))
    device = spec.get("device", "cpu")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("CUDA is not available on this machine")
    return MembenchCase(workload, params, device, int(spec.get("seed", 0)), request)
