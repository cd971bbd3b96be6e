"""Workloads and implementations register by decorator; the runner finds them here and nowhere else."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.case import Cost, Param
from harness.errors import UserError


@dataclass(frozen=True)
class Check:
    """Correctness verdict: the error figure, the tolerance it was held to, and the rule used."""

    passed: bool
    error: float
    tolerance: float
    rule: str


def rel_l2_error(output: Any, reference: Any) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 on the CPU; NaN anywhere makes it inf (never a pass)."""
    import torch

    out = output.detach().to("cpu", torch.float64)
    ref = reference.detach().to("cpu", torch.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        return float("inf")
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-300))


class Workload:
    """One measurable task. Subclasses set the class attributes and override the methods that apply."""

    name: str = ""
    family: str = ""
    description: str = ""
    params: tuple[Param, ...] = ()
    sweep_param: str = ""
    primary_metric: str = "latency_s"
    chart_metrics: tuple[str, ...] = ()  # panels of the report's scaling chart (default: primary, peak memory)
    chart_caption: str = ""  # what to look for in that chart (default: the report's generic caption)
    distributed: bool = False  # True: every call runs inside a torch.distributed group, one process per rank

    def ranks(self, params: dict) -> int:
        """Processes (torch.distributed world size) one case spans: its `ranks` param for a distributed workload.

        The harness launches that many rank processes (torchrun's environment variables, gloo on CPU, NCCL on
        CUDA with one GPU per rank); each calls inputs/impl/reference/check for its own shard, in lockstep.
        """
        return int(params.get("ranks", 1)) if self.distributed else 1

    def inputs(self, params: dict, device: str, seed: int) -> Any:
        raise NotImplementedError

    def reference(self, inputs: Any, params: dict) -> Any:
        raise NotImplementedError

    def cost(self, params: dict, impl: str) -> Cost:
        raise NotImplementedError

    def quality(self, output: Any, reference: Any) -> dict[str, float]:
        """Named quality metrics of a checked output (recall@k, SQNR, ...), each declared in harness.metrics."""
        return {"quality.rel_l2_error": rel_l2_error(output, reference)}

    def counters(self, output: Any, params: dict) -> dict[str, float]:
        """Deterministic figures the output carries (bytes held, waste %, operations), each a declared metric.

        For simulators and policies the answer is a count, not a time: the runner records these as `counted`.
        """
        return {}

    def check(self, output: Any, reference: Any, baseline_error: float | None) -> Check:
        """DESIGN's rule: error ≤ 2 × the baseline implementation's error in the same precision + eps floor.

        The baseline itself (baseline_error None) is held to a sanity bound of sqrt(eps) of its dtype.
        """
        import torch

        error = rel_l2_error(output, reference)
        eps = torch.finfo(output.dtype).eps if output.dtype.is_floating_point else 0.0
        if baseline_error is None:
            tolerance, rule = eps**0.5, "error <= sqrt(eps) (baseline sanity bound)"
        else:
            tolerance, rule = 2.0 * baseline_error + eps, "error <= 2 x baseline error + eps"
        return Check(error <= tolerance, error, tolerance, rule)

    def wrong_answers(self, output: Any) -> list[Any]:
        """Corruptions of a correct output that `check` must reject (the contract test feeds them in).

        Tensor outputs: scaled by 1.01, rows swapped, one NaN. A workload whose answer is not a tensor (a
        simulator's tally, a policy's kept set) overrides this with corruptions of its own answer type.
        """
        wrong = output * 1.01
        swapped = output.flip(-2) if output.dim() > 1 else output.flip(0)
        poisoned = output.clone()
        poisoned.view(-1)[0] = float("nan")
        return [wrong, swapped, poisoned]

    def input_bytes(self, inputs: Any) -> int:
        """Bytes of the tensors in `inputs` (a dict), used to size input rotation against the L2 cache."""
        values = inputs.values() if isinstance(inputs, dict) else [inputs]
        return int(sum(v.numel() * v.element_size() for v in values if hasattr(v, "element_size")))

    def check_baseline(self, params: dict) -> str | None:
        """The implementation whose error sets the 2x tolerance at these params; None means the registered
        baseline. Override where the baseline cannot run at some sizes (a naive O(n²) one at 64K tokens)."""
        return None

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        """A one-line reason when this implementation cannot run these params on this device."""
        return None

    def version(self) -> str:
        """Hash of the workload's source file: an edited workload compares as incomparable."""
        source = inspect.getsource(inspect.getmodule(type(self)))
        return hashlib.sha256(source.encode()).hexdigest()[:12]

    def param_spec(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def info(self) -> dict:
        return {"family": self.family, "sweep_param": self.sweep_param, "primary_metric": self.primary_metric,
                "chart_metrics": list(self.chart_metrics), "chart_caption": self.chart_caption,
                "params": [p.name for p in self.params], "description": self.description}


@dataclass(frozen=True)
class Implementation:
    workload: str
    name: str
    fn: Callable[[Any, dict], Any]
    devices: tuple[str, ...]
    baseline: bool = False
    description: str = ""


class Registry:
    """One small object holding every workload and implementation; duplicates raise, typos get suggestions."""

    def __init__(self) -> None:
        self.workloads: dict[str, Workload] = {}
        self.impls: dict[str, dict[str, Implementation]] = {}
        self.claims: dict[str, Any] = {}  # harness.claims.Claim by id
        self._loaded: set[str] = set()

    def add_workload(self, workload: Workload) -> None:
        if not workload.name or not workload.family:
            raise ValueError(f"{type(workload).__name__} needs a name and a family")
        if workload.name in self.workloads:
            raise ValueError(f"workload {workload.name!r} registered twice")
        self.workloads[workload.name] = workload

    def add_impl(self, impl: Implementation) -> None:
        by_name = self.impls.setdefault(impl.workload, {})
        if impl.name in by_name:
            raise ValueError(f"implementation {impl.workload}/{impl.name} registered twice")
        if impl.baseline and any(i.baseline for i in by_name.values()):
            raise ValueError(f"workload {impl.workload!r} already has a baseline implementation")
        by_name[impl.name] = impl

    def add_claim(self, claim: Any) -> None:
        if claim.id in self.claims:
            raise ValueError(f"claim {claim.id!r} registered twice")
        self.claims[claim.id] = claim

    def workload(self, name: str) -> Workload:
        if name not in self.workloads:
            raise UserError(_unknown("workload", name, self.workloads))
        return self.workloads[name]

    def impl(self, workload: str, name: str) -> Implementation:
        known = self.impls.get(workload, {})
        if name not in known:
            raise UserError(_unknown(f"implementation of {workload!r}", name, known))
        return known[name]

    def impls_of(self, workload: str) -> dict[str, Implementation]:
        return dict(self.impls.get(workload, {}))

    def baseline_of(self, workload: str) -> Implementation | None:
        return next((i for i in self.impls.get(workload, {}).values() if i.baseline), None)

    def load(self, plugins: Iterable[str] = ()) -> Registry:
        """Import every module under `workloads` plus any plugin modules the user named (idempotent)."""
        for module in ["workloads", *plugins]:
            if module in self._loaded:
                continue
            try:
                package = importlib.import_module(module)
            except ImportError as exc:
                raise UserError(f"cannot import plugin module {module!r}: {exc}") from exc
            for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{module}."):
                importlib.import_module(info.name)
            self._loaded.add(module)
        return self


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Known: {', '.join(known) or 'none'}."


REGISTRY = Registry()


def register_workload(cls: type[Workload]) -> type[Workload]:
    """Class decorator: `@register_workload class AttentionPrefill(Workload): name = ...`."""
    REGISTRY.add_workload(cls())
    return cls


def implementation(workload: str, name: str, devices: tuple[str, ...] = ("cpu", "cuda"),
                   baseline: bool = False) -> Callable:
    """Function decorator: `@implementation("attention_prefill", "chunked")` on `fn(inputs, params)`."""

    def wrap(fn: Callable[[Any, dict], Any]) -> Callable[[Any, dict], Any]:
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        REGISTRY.add_impl(Implementation(workload, name, fn, tuple(devices), baseline, doc))
        return fn

    return wrap


def register_claim(claim: Any) -> Any:
    """Register a harness.claims.Claim (workloads/claims.py holds the seed papers' claims)."""
    REGISTRY.add_claim(claim)
    return claim
