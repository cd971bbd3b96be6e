"""memory_retrieval: what each memory store retrieves for a question, and how many tokens it puts before the model.

No LLM: the store's top-k hits are scored against the gold evidence turns. Evidence recall@1/5/10 counts a
question as found when any (or all) of its gold turns is among the first K hits' source_turn_ids; MRR uses
the rank of the first hit citing a gold turn; both also per LoCoMo category. Tokens injected per query are
the tokens of every hit's text (tokens.py's rule), also as a fraction of the full history's tokens.

The store is built once per case (the first call, inside warm-up) and every question is searched once with
its own timer (search p50/p95/p99 counters). The timed call is then one search, rotating through the
questions, so `latency_s` is a per-query search latency too. `check` holds the answer to the interface's
promises (at most k hits, best first, sources that exist, a repeated search returns the same hits) and
recounts every recall figure from the kept hits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from harness.case import Cost
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.agents.store import make_store, store_names
from reference_impls.agents.types import StoreStats
from workloads.memory_agents import agent_metrics
from workloads.memory_agents.agent_metrics import RECALL_KS, category_key
from workloads.memory_agents.conversation import CATEGORY_NAMES
from workloads.memory_agents.memory_runs import (
    HISTORY_PARAMS,
    TOP_KEPT,
    BuiltStore,
    History,
    QueryOutcome,
    dataset_counters,
    embedder_missing,
    history_tokens,
    load_history,
    percentiles_ms,
    prepared,
    store_options,
)
from workloads.memory_agents.tokens import tokenizer_missing

assert agent_metrics  # the declarations must be imported before any record is made
UNBOUNDED = ("full_context",)  # stores whose search returns every item, not at most k
TOLERANCE = 1e-12


@dataclass(frozen=True)
class RetrievalAnswer:
    store: str
    k: int
    outcomes: tuple[QueryOutcome, ...]
    metrics: dict[str, float]  # the implementation's summary (recall, MRR, tokens)
    fresh_index: int  # which outcome this call searched again
    fresh_sources: tuple[tuple[str, ...], ...]
    stats: StoreStats
    write_ns: tuple[int, ...]
    first_search_ns: int
    dataset: dict[str, float]  # a LoCoMo file's statistics and sha256 (empty for synthetic data)


@dataclass(frozen=True)
class Gold:
    evidence: dict[tuple[int, int], frozenset[str]]  # (conversation, question) -> gold turn ids
    category: dict[tuple[int, int], int]
    history_tokens: tuple[int, ...]  # per conversation


def gold_of(history: History, tokenizer: str) -> Gold:
    evidence, category = {}, {}
    for c, conversation in enumerate(history.conversations):
        for q, item in enumerate(conversation.qa):
            if item.evidence:
                evidence[(c, q)], category[(c, q)] = frozenset(item.evidence), item.category
    return Gold(evidence, category, tuple(history_tokens(conv, tokenizer) for conv in history.conversations))


def summarize(outcomes: tuple[QueryOutcome, ...], gold: Gold) -> dict[str, float]:
    """Recall, MRR and tokens from each outcome's gold ranks (the check recounts these by another route)."""
    if not outcomes:
        raise ValueError("no questions with gold evidence to score")
    n = len(outcomes)
    out: dict[str, float] = {}
    ranks = []
    for o in outcomes:
        wanted = gold.evidence[(o.conversation, o.question)]
        first_cover = {}  # gold turn -> first rank citing it
        for rank, sources in enumerate(o.top_sources, 1):
            for s in wanted.intersection(sources):
                first_cover.setdefault(s, rank)
        ranks.append((min(first_cover.values(), default=0),
                      max(first_cover.values()) if len(first_cover) == len(wanted) else 0))
    for k in RECALL_KS:
        out[f"quality.evidence_recall_any@{k}"] = sum(0 < a <= k for a, _ in ranks) / n
        out[f"quality.evidence_recall_all@{k}"] = sum(0 < b <= k for _, b in ranks) / n
    out["quality.evidence_recall_any@returned"] = sum(o.first_gold_rank > 0 for o in outcomes) / n
    out["quality.evidence_mrr"] = sum(1 / o.first_gold_rank for o in outcomes if o.first_gold_rank) / n
    for category in CATEGORY_NAMES:
        members = [(o, r) for o, r in zip(outcomes, ranks, strict=True)
                   if gold.category[(o.conversation, o.question)] == category]
        if members:
            key = category_key(category)
            out[f"quality.evidence_recall_any@10.{key}"] = sum(0 < a <= 10 for _, (a, _) in members) / len(members)
            out[f"quality.evidence_mrr.{key}"] = sum(1 / o.first_gold_rank for o, _ in members
                                                     if o.first_gold_rank) / len(members)
            out[f"memory.questions.{key}"] = float(len(members))
    out["memory.questions"] = float(n)
    out["memory.tokens_per_query"] = sum(o.tokens for o in outcomes) / n
    out["memory.tokens_fraction_of_history"] = sum(o.tokens / gold.history_tokens[o.conversation]
                                                   for o in outcomes) / n
    out["memory.history_tokens"] = float(sum(gold.history_tokens))
    return out


def recount(outcomes: tuple[QueryOutcome, ...], gold: Gold) -> dict[str, float]:
    """The recall figures again, by set membership over each top-K slice (independent of `summarize`)."""
    n, out = len(outcomes), {}
    for k in RECALL_KS:
        seen = [set(itertools.chain.from_iterable(o.top_sources[:k])) for o in outcomes]
        wanted = [gold.evidence[(o.conversation, o.question)] for o in outcomes]
        out[f"quality.evidence_recall_any@{k}"] = sum(bool(w & s) for w, s in zip(wanted, seen, strict=True)) / n
        out[f"quality.evidence_recall_all@{k}"] = sum(w <= s for w, s in zip(wanted, seen, strict=True)) / n
    return out


def interface_violations(answer: RetrievalAnswer, gold: Gold) -> list[str]:
    """Broken promises of the store interface, and metrics that disagree with the hits."""
    wrong = []
    for o in answer.outcomes:
        wanted = gold.evidence.get((o.conversation, o.question))
        if wanted is None:
            wrong.append(f"outcome for an unknown question {(o.conversation, o.question)}")
            continue
        if answer.store not in UNBOUNDED and o.hits > answer.k:
            wrong.append(f"{o.hits} hits > k={answer.k}")
        if not o.scores_sorted or o.unknown_sources:
            wrong.append("hits not best-first or citing unknown turns")
        if len(o.top_sources) != min(o.hits, TOP_KEPT) or any(not s for s in o.top_sources):
            wrong.append("a hit without source turns")
        cited = [rank for rank, sources in enumerate(o.top_sources, 1) if wanted & set(sources)]
        if cited and o.first_gold_rank != cited[0] or not cited and 0 < o.first_gold_rank <= len(o.top_sources):
            wrong.append(f"first gold rank {o.first_gold_rank} disagrees with the kept hits")
    if answer.fresh_sources != answer.outcomes[answer.fresh_index].top_sources:
        wrong.append("a repeated search returned different hits")
    for name, value in recount(answer.outcomes, gold).items():
        if abs(answer.metrics.get(name, -1.0) - value) > TOLERANCE:
            wrong.append(f"{name} {answer.metrics.get(name)} != recount {value}")
    return wrong


def store_footprint(stats: StoreStats, turns: int) -> dict[str, float]:
    total = stats.bytes_in_memory + stats.bytes_on_disk
    return {"memory.items": float(stats.items), "memory.bytes_in_memory": float(stats.bytes_in_memory),
            "memory.bytes_on_disk": float(stats.bytes_on_disk), "memory.footprint_bytes": float(total),
            "memory.bytes_per_item": total / max(1, stats.items), "memory.bytes_per_turn": total / max(1, turns)}


def latency_counters(outcomes: tuple[QueryOutcome, ...], write_ns: tuple[int, ...], first_ns: int,
                     search_ns: tuple[int, ...] = ()) -> dict:
    search = percentiles_ms(list(search_ns) or [o.latency_ns for o in outcomes])
    write = percentiles_ms(list(write_ns))
    return {**{f"memory.search_p{p}_ms": v for p, v in search.items()},
            **{f"memory.write_p{p}_ms": v for p, v in write.items()}, "memory.first_search_ms": first_ns / 1e6}


def store_unavailable(store: str) -> str | None:
    """Why a store cannot be made here (an optional extra not installed), else None."""
    try:
        make_store(store).close()
    except ImportError as exc:
        return f"store {store!r} needs an optional extra: {exc}"
    return None


def search_cost(params: dict) -> Cost:
    """One search scans the history once: ~a 384-wide dot product (or a term lookup) per turn. The time is
    Python and index work, which no roofline predicts (hardware_bound=False)."""
    turns = float(params["turns"])
    return Cost(flops=2 * 384 * turns, bytes={"dram": 384 * 4 * turns}, dtype="float32", hardware_bound=False)


@register_workload
class MemoryRetrieval(Workload):
    name = "memory_retrieval"
    family = "memory_agents"
    description = ("Agent memory stores on a LoCoMo-format history, no LLM: evidence recall@1/5/10 (any/all gold "
                   "turns), MRR, per category; tokens injected per query and as a fraction of the history; "
                   "search latency p50/p95/p99 per query; the store's footprint.")
    sweep_param = "turns"
    primary_metric = "quality.evidence_recall_any@10"
    params = HISTORY_PARAMS
    contract_params = {"turns": 300, "questions": 40}

    def inputs(self, params: dict, device: str, seed: int) -> History:
        return load_history(params, seed)

    def reference(self, inputs: History, params: dict) -> Gold:
        return gold_of(inputs, params["tokenizer"])

    def cost(self, params: dict, impl: str) -> Cost:
        return search_cost(params)

    def check(self, output: RetrievalAnswer, reference: Gold, baseline_error: float | None) -> Check:
        wrong = interface_violations(output, reference)
        return Check(not wrong, float(len(wrong)), 0.0,
                     "interface promises hold and recall recounts exactly" + (f" ({wrong[0]})" if wrong else ""))

    def quality(self, output: RetrievalAnswer, reference: Gold) -> dict[str, float]:
        return {name: v for name, v in output.metrics.items() if name.startswith("quality.")}

    def counters(self, output: RetrievalAnswer, params: dict) -> dict[str, float]:
        return {**{name: v for name, v in output.metrics.items() if name.startswith("memory.")},
                **latency_counters(output.outcomes, output.write_ns, output.first_search_ns),
                **store_footprint(output.stats, len(output.write_ns)), **output.dataset}

    def wrong_answers(self, output: RetrievalAnswer) -> list[RetrievalAnswer]:
        first = output.outcomes[0]
        bad_id = replace(first, top_sources=(("D999999:1",), *first.top_sources[1:]))
        inflated = {**output.metrics, "quality.evidence_recall_any@1": output.metrics[
            "quality.evidence_recall_any@1"] + 1 / len(output.outcomes)}
        unsorted = replace(first, scores_sorted=False)
        return [replace(output, metrics=inflated), replace(output, outcomes=(unsorted, *output.outcomes[1:])),
                replace(output, outcomes=(bad_id, *output.outcomes[1:])),
                replace(output, fresh_sources=(("D999999:1",),))]

    def input_bytes(self, inputs: History) -> int:
        return 0

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        return tokenizer_missing(params["tokenizer"]) or store_unavailable(impl) or embedder_missing(impl, params)


def answer_for(store: str, history: History, params: dict) -> tuple[RetrievalAnswer, BuiltStore]:
    """Build and evaluate once, then search one question again (the timed work of every later call)."""
    built = prepared(history, store, params["k"], params["tokenizer"], store_options(store, params))
    if "answer" not in built.extra:
        stats = [s.stats() for s in built.stores]
        total = StoreStats(*(sum(getattr(x, f) for x in stats) for f in ("items", "bytes_in_memory", "bytes_on_disk")))
        built.extra["answer"] = RetrievalAnswer(
            store, params["k"], tuple(built.outcomes), summarize(tuple(built.outcomes), gold_of(history, params[
                "tokenizer"])), 0, (), total, tuple(built.write_ns), built.first_search_ns, dataset_counters(history))
    index = built.calls % len(built.outcomes)
    built.calls += 1
    o = built.outcomes[index]
    hits = built.stores[o.conversation].search(history.conversations[o.conversation].qa[o.question].question,
                                               params["k"])
    answer = replace(built.extra["answer"], fresh_index=index,
                     fresh_sources=tuple(h.source_turn_ids for h in hits[:len(o.top_sources)]))
    return answer, built


def _register(store: str) -> None:
    def run(inputs: History, params: dict) -> RetrievalAnswer:
        return answer_for(store, inputs, params)[0]

    run.__doc__ = f"the {store} memory store (reference_impls/agents), searched with k hits"
    implementation("memory_retrieval", store, devices=("cpu",), baseline=store == "full_context")(run)


for _store in store_names():
    _register(_store)
