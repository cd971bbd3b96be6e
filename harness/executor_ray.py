"""Run a suite's cases as Ray tasks (`membench run --executor ray`): one machine or a cluster, same records.

WHY this shape: each task calls `harness.isolation.execute`, so a case keeps its fresh worker process, its
timeout and its OOM handling; only the record travels back, and the driver's RunStore stays the one writer.
The driver places every task on a node itself (node affinity, not Ray's spreading) so that it can promise
what a timing needs: at most `max_concurrent` CPU cases per node at once (default 1: two timed CPU cases on a
small machine share cores, caches and memory bandwidth and slow each other down), and GPU cases limited by
the GPUs they ask for (one case per GPU; a multi-rank case takes one GPU per rank, all on one node).
Ray is an optional extra: nothing here imports it until a RayExecutor is made.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Any

from harness.case import Case, Record, one_line
from harness.errors import UserError
from harness.isolation import execute
from harness.registry import REGISTRY
from harness.suite import Settings
from harness.worker import CaseSpec

INSTALL_HINT = "pip install 'membench[scale]'"


@dataclass(frozen=True)
class CaseResources:
    """What one case asks of a node: CPUs, GPUs and bytes of host memory to hold back for it."""

    num_cpus: float
    num_gpus: int
    memory: int


def case_resources(case: Case, settings: Settings) -> CaseResources:
    """CUDA: one GPU per rank. CPU: the suite's `threads` (or 1) per rank, and the analytic footprint."""
    ranks = REGISTRY.workload(case.workload).ranks(case.param_dict())
    if case.device == "cuda":
        return CaseResources(num_cpus=1, num_gpus=ranks, memory=0)
    return CaseResources(num_cpus=max(settings.threads, 1) * ranks, num_gpus=0, memory=_footprint_bytes(case))


def _footprint_bytes(case: Case) -> int:
    """The cost model's footprint of one call; 0 (reserve nothing) where the workload gives none."""
    try:
        footprint = REGISTRY.workload(case.workload).cost(case.param_dict(), case.impl).footprint_bytes
    except Exception:  # a case that cannot even cost itself fails in its worker, with the reason recorded
        return 0
    return int(footprint or 0)


@dataclass
class Node:
    """One alive Ray node: its resources and what this driver's tasks hold of them right now."""

    node_id: str
    cpus: float
    gpus: float
    memory: float
    cpu_cases: int = 0
    gpus_held: float = 0.0
    memory_held: float = 0.0


@dataclass(frozen=True)
class Placement:
    """Where a case runs and what it asks of Ray there (requests clamped to the node's size)."""

    node: Node
    num_cpus: float
    num_gpus: int
    memory: int


class NodeSlots:
    """The driver's ledger of its own tasks per node: at most `max_concurrent` CPU cases, GPUs never shared."""

    def __init__(self, nodes: list[Node], max_concurrent: int) -> None:
        self.nodes, self.max_concurrent = nodes, max_concurrent

    def never_fits(self, need: CaseResources) -> str | None:
        """A one-line reason when no node of the cluster could ever run the case (it would wait forever)."""
        if need.num_gpus:
            most = max((n.gpus for n in self.nodes), default=0)
            if most < need.num_gpus:
                return (f"needs {need.num_gpus} GPU(s) on one Ray node; the largest node has {most:g} "
                        f"({len(self.nodes)} node(s))")
        elif not any(n.cpus >= 1 for n in self.nodes):
            return f"no Ray node has a CPU to run it on ({len(self.nodes)} node(s))"
        return None

    def place(self, need: CaseResources) -> Placement | None:
        """The first node with room now, or None while every fitting node is busy."""
        for node in self.nodes:
            if need.num_gpus:
                if node.gpus - node.gpus_held >= need.num_gpus:
                    return Placement(node, min(need.num_cpus, node.cpus), need.num_gpus, 0)
                continue
            if node.cpus < 1 or node.cpu_cases >= self.max_concurrent:
                continue
            memory = int(min(need.memory, node.memory))  # too big for the node: it runs alone and may OOM
            if node.memory - node.memory_held >= memory:
                return Placement(node, min(need.num_cpus, node.cpus), 0, memory)
        return None

    def hold(self, placement: Placement, sign: int = 1) -> None:
        node = placement.node
        node.gpus_held += sign * placement.num_gpus
        node.memory_held += sign * placement.memory
        if not placement.num_gpus:
            node.cpu_cases += sign

    def release(self, placement: Placement) -> None:
        self.hold(placement, sign=-1)


def run_case_remotely(spec: CaseSpec, omp_num_threads: str | None) -> dict:
    """The Ray task: the driver's OMP_NUM_THREADS (Ray sets its own per task), then the ordinary execute().

    Under the local executor a case's libraries see the shell's thread settings; Ray would otherwise pin
    OMP_NUM_THREADS to the task's CPU count. The worker's forkserver starts on the first call, with this env.
    """
    if omp_num_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp_num_threads
    return execute(spec).to_json()


class RayExecutor:
    """The runner's Executor over Ray tasks; connects on creation (starting a local instance without address)."""

    def __init__(self, settings: Settings, address: str | None = None, max_concurrent: int = 1) -> None:
        if max_concurrent < 1:
            raise UserError(f"--max-concurrent must be >= 1 (CPU cases at once per node), got {max_concurrent}")
        ray = _import_ray()
        self._ray, self._address = ray, address
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
        self.slots = NodeSlots(_alive_nodes(ray), max_concurrent)
        self._settings = settings  # the suite's: every case of a run shares them
        self._omp = os.environ.get("OMP_NUM_THREADS")
        # GPU tasks get a fresh Ray worker each (max_calls=1), so a reused forkserver never keeps an old
        # CUDA_VISIBLE_DEVICES; CPU tasks reuse workers, whose environment is the same for every CPU case.
        self._cpu_task = ray.remote(max_retries=0)(run_case_remotely)
        self._gpu_task = ray.remote(max_retries=0, max_calls=1)(run_case_remotely)
        self._running: dict[Any, tuple[CaseSpec, Placement]] = {}
        self._ready: deque[Record] = deque()
        self._planned: dict[Case, Placement | str] = {}
        self._needs: dict[Case, CaseResources] = {}  # the loop asks about a waiting case again and again

    def describe(self) -> dict:
        address = self._address or os.environ.get("RAY_ADDRESS") or "local"
        return {"kind": "ray", "address": address, "nodes": len(self.slots.nodes),
                "max_concurrent_cpu_cases_per_node": self.slots.max_concurrent}

    def has_room(self, case: Case) -> bool:
        if case not in self._needs:
            self._needs[case] = case_resources(case, self._settings)
        need = self._needs[case]
        plan = self.slots.never_fits(need) or self.slots.place(need)
        if plan is None:
            return False
        self._planned[case] = plan
        return True

    def submit(self, spec: CaseSpec) -> None:
        if spec.case not in self._planned and not self.has_room(spec.case):
            raise RuntimeError(f"submitted without room: {spec.case.id}")
        plan = self._planned.pop(spec.case)
        if isinstance(plan, str):
            self._ready.append(_skipped(spec, plan))
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self._gpu_task if plan.num_gpus else self._cpu_task
        options = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus,
                   "scheduling_strategy": NodeAffinitySchedulingStrategy(plan.node.node_id, soft=False)}
        if plan.memory:
            options["memory"] = plan.memory
        ref = task.options(**options).remote(spec, self._omp)
        self.slots.hold(plan)
        self._running[ref] = (spec, plan)

    def next_record(self) -> Record:
        if self._ready:
            return self._ready.popleft()
        done, _ = self._ray.wait(list(self._running), num_returns=1)
        spec, plan = self._running.pop(done[0])
        self.slots.release(plan)
        try:
            return Record(**self._ray.get(done[0]))
        except Exception as exc:  # the task itself died (node lost, worker crash): the case failed, say how
            self._forget_dead_nodes()
            return Record.for_case(spec.run, spec.case, "failed",
                                   error=one_line(f"ray task lost: {type(exc).__name__}: {exc}"))

    def _forget_dead_nodes(self) -> None:
        """Stop placing cases on nodes that left the cluster (their tasks would fail at once)."""
        alive = {n["NodeID"] for n in self._ray.nodes() if n.get("Alive")}
        self.slots.nodes = [n for n in self.slots.nodes if n.node_id in alive]

    def close(self) -> None:
        for ref in list(self._running):
            self._ray.cancel(ref, force=True)
        self._running.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _alive_nodes(ray: Any) -> list[Node]:
    nodes = [Node(n["NodeID"], n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0),
                  n["Resources"].get("memory", 0.0)) for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        raise UserError("the Ray cluster has no alive node")
    return nodes


def _skipped(spec: CaseSpec, reason: str) -> Record:
    record = Record.for_case(spec.run, spec.case, "skipped", error=reason)
    record.workload_version = REGISTRY.workload(spec.case.workload).version()
    return record
