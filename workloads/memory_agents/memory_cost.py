"""memory_cost: what a memory store costs to write and to search as the history grows, how big it gets, and
whether it puts a changed fact's newest statement ahead of the stale one.

A case writes `turns` turns one add() at a time (each timed: write p50/p95/p99), searches the questions (each
timed: search p50/p95/p99), and reads the store's own byte counts (memory, disk, per item, per turn). Update
correctness: for every question about a fact that changed (QAItem.stale_evidence lists the superseded turns),
the question is searched with k hits; it counts as correct when a hit citing the newest statement ranks above
every hit citing a stale one (a store that returns only the stale statement, or neither, is wrong).

The timed call is one search (rotating through the questions) against the full store, so `latency_s` is the
search latency at this history size; write latency is the counted p50/p95/p99 of the build. Sweep `turns` to
see the growth slope (suites/agents.yaml: up to 100,000 turns).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.case import Cost
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.agents.store import store_names
from reference_impls.agents.types import StoreStats
from workloads.memory_agents import agent_metrics
from workloads.memory_agents.memory_retrieval import (
    latency_counters,
    search_cost,
    store_footprint,
    store_unavailable,
)
from workloads.memory_agents.memory_runs import (
    HISTORY_PARAMS,
    History,
    embedder_missing,
    load_history,
    percentiles_ms,
    prepared,
    store_options,
)
from workloads.memory_agents.tokens import tokenizer_missing

assert agent_metrics


@dataclass(frozen=True)
class UpdateRank:
    """Ranks (1-based, 0 = absent) of the first hit citing the newest and the first citing a stale statement."""

    newest: int
    stale: int

    @property
    def correct(self) -> bool:
        return self.newest > 0 and (self.stale == 0 or self.newest < self.stale)


@dataclass(frozen=True)
class CostAnswer:
    store: str
    turns: int  # turns written before any probe
    write_ns: tuple[int, ...]
    search_ns: tuple[int, ...]
    first_search_ns: int
    stats: StoreStats
    updates: tuple[UpdateRank, ...]
    update_correct_fraction: float
    fresh_hits: int  # hits of this call's search


@dataclass(frozen=True)
class CostReference:
    turns: int
    stale_questions: int


def update_ranks(history: History, built, k: int) -> tuple[UpdateRank, ...]:
    ranks = []
    for store, conversation in zip(built.stores, history.conversations, strict=True):
        for item in conversation.qa:
            if not item.stale_evidence:
                continue
            hits = store.search(item.question, k)
            newest, stale = set(item.evidence), set(item.stale_evidence)
            ranks.append(UpdateRank(
                next((r for r, h in enumerate(hits, 1) if newest & set(h.source_turn_ids)), 0),
                next((r for r, h in enumerate(hits, 1) if stale & set(h.source_turn_ids)), 0)))
    return tuple(ranks)


@register_workload
class MemoryCost(Workload):
    name = "memory_cost"
    family = "memory_agents"
    description = ("Write and search latency p50/p95/p99 of each agent memory store as the history grows, its "
                   "footprint (memory, disk, bytes per item) and update correctness (newest fact ranked above the "
                   "stale one). Timed call: one search of the full store.")
    sweep_param = "turns"
    primary_metric = "memory.search_p95_ms"
    chart_metrics = ("memory.search_p95_ms", "memory.write_p95_ms", "memory.footprint_bytes")
    chart_caption = ("Log-log against the history length: a slope of 1 is linear growth (an exact scan's search, "
                     "any store's footprint); a flat line is constant cost per write or search; a line that "
                     "steepens is superlinear.")
    params = tuple(replace(p, default=200) if p.name == "questions" else p for p in HISTORY_PARAMS)
    contract_params = {"turns": 300, "questions": 60}

    def inputs(self, params: dict, device: str, seed: int) -> History:
        return load_history(params, seed)

    def reference(self, inputs: History, params: dict) -> CostReference:
        return CostReference(sum(len(c.turns()) for c in inputs.conversations),
                             sum(bool(q.stale_evidence) for c in inputs.conversations for q in c.qa))

    def cost(self, params: dict, impl: str) -> Cost:
        return search_cost(params)

    def check(self, output: CostAnswer, reference: CostReference, baseline_error: float | None) -> Check:
        wrong = []
        if len(output.write_ns) != reference.turns or output.turns != reference.turns:
            wrong.append(f"{len(output.write_ns)} writes timed for {reference.turns} turns")
        if len(output.updates) != reference.stale_questions:
            wrong.append(f"{len(output.updates)} update questions, expected {reference.stale_questions}")
        if output.updates:
            recount = sum(u.correct for u in output.updates) / len(output.updates)
            if abs(recount - output.update_correct_fraction) > 1e-12:
                wrong.append(f"update fraction {output.update_correct_fraction} != recount {recount}")
        if output.stats.items < 1 or output.stats.bytes_in_memory + output.stats.bytes_on_disk < 1:
            wrong.append("a store holding a history reports no items or no bytes")
        if min(output.write_ns, default=0) < 0 or min(output.search_ns, default=0) < 0:
            wrong.append("a negative latency")
        return Check(not wrong, float(len(wrong)), 0.0,
                     "every turn written and timed, sizes positive, update fraction recounts" +
                     (f" ({wrong[0]})" if wrong else ""))

    def quality(self, output: CostAnswer, reference: CostReference) -> dict[str, float]:
        return {}

    def counters(self, output: CostAnswer, params: dict) -> dict[str, float]:
        out = {**store_footprint(output.stats, output.turns),
               **latency_counters((), output.write_ns, output.first_search_ns, search_ns=output.search_ns)}
        out["memory.update_questions"] = float(len(output.updates))
        if output.updates:
            out["memory.update_correct_fraction"] = output.update_correct_fraction
        return out

    def wrong_answers(self, output: CostAnswer) -> list[CostAnswer]:
        first = output.updates[0] if output.updates else UpdateRank(0, 0)
        flipped = (UpdateRank(0, 1) if first.correct else UpdateRank(1, 0), *output.updates[1:])
        return [replace(output, write_ns=output.write_ns[1:]), replace(output, updates=flipped),
                replace(output, stats=StoreStats(0, 0, 0)),
                replace(output, update_correct_fraction=output.update_correct_fraction + 0.5)]

    def input_bytes(self, inputs: History) -> int:
        return 0

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if params["data"] != "synthetic":
            return "memory_cost writes one conversation; use data='synthetic' (its turns are the sweep)"
        return tokenizer_missing(params["tokenizer"]) or store_unavailable(impl) or embedder_missing(impl, params)


def cost_answer(store: str, history: History, params: dict) -> CostAnswer:
    built = prepared(history, store, params["k"], params["tokenizer"], store_options(store, params))
    if "updates" not in built.extra:
        built.extra["stats"] = built.stores[0].stats()
        built.extra["updates"] = update_ranks(history, built, params["k"])
    outcome = built.outcomes[built.calls % len(built.outcomes)]
    built.calls += 1
    question = history.conversations[outcome.conversation].qa[outcome.question].question
    fresh = built.stores[outcome.conversation].search(question, params["k"])
    if "answer" not in built.extra:
        updates = built.extra["updates"]
        built.extra["answer"] = CostAnswer(
            store, len(built.write_ns), tuple(built.write_ns), tuple(o.latency_ns for o in built.outcomes),
            built.first_search_ns, built.extra["stats"], updates,
            sum(u.correct for u in updates) / len(updates) if updates else 0.0, 0)
    return replace(built.extra["answer"], fresh_hits=len(fresh))


def _register(store: str) -> None:
    def run(inputs: History, params: dict) -> CostAnswer:
        return cost_answer(store, inputs, params)

    run.__doc__ = f"the {store} memory store: write, search and footprint"
    implementation("memory_cost", store, devices=("cpu",), baseline=store == "full_context")(run)


for _store in store_names():
    _register(_store)


__all__ = ["CostAnswer", "MemoryCost", "UpdateRank", "percentiles_ms"]
