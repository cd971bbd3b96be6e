"""The engine the memory workloads share: load a history, write it into a store turn by turn, search every question.

WHY one engine: retrieval, cost, crossover and poisoning must drive each store the same way. A case builds its
store once (inside the harness's warm-up: the first call) and keeps it on the inputs object, so the repeated,
timed call is one search (or one write) against a store of the full history, and latency per query is both the
harness's `latency_s` and the p50/p95/p99 of the evaluation pass, which times every question's search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from harness.case import Param
from reference_impls.agents.embedders import EMBEDDERS
from reference_impls.agents.store import MemoryStore, make_store
from reference_impls.agents.store import store_options as store_option_defaults
from reference_impls.agents.text import hit_text
from workloads.memory_agents.conversation import Conversation
from workloads.memory_agents.locomo import Dataset, load_locomo
from workloads.memory_agents.synthetic_history import generate
from workloads.memory_agents.tokens import TOKENIZERS, MemoCounter

TOP_KEPT = 10  # hits kept per query for recall@1/5/10; the rank of the first gold turn is kept over all hits
HISTORY_PARAMS = (
    Param("data", str, "synthetic", doc="'synthetic' (seeded generator) or a path to a LoCoMo JSON file"),
    Param("turns", int, 6000, minimum=10, doc="synthetic history length (ignored for a LoCoMo path)"),
    Param("questions", int, 2000, minimum=1, doc="synthetic questions (a LoCoMo path uses all of its QA)"),
    Param("k", int, 10, minimum=1, doc="hits per search"),
    Param("tokenizer", str, "words", choices=TOKENIZERS, doc="token rule for tokens injected (words: comparable)"),
    Param("embedder", str, "hashing", choices=EMBEDDERS,
          doc="embedder of the stores that embed turns (hashing: no model; minilm: all-MiniLM-L6-v2, the agents "
              "extra); a store without embeddings runs only with hashing, so no case repeats under another name"),
)


def store_options(store: str, params: dict) -> dict:
    """make_store options a case's params imply: the embedder, for the stores that take one."""
    return {"embedder": params["embedder"]} if "embedder" in store_option_defaults(store) else {}


def embedder_missing(store: str, params: dict) -> str | None:
    """Why this store/embedder pair is not a case here (None when it is)."""
    if params["embedder"] == "hashing":
        return None
    if "embedder" not in store_option_defaults(store):
        return f"store {store!r} keeps no embeddings: embedder {params['embedder']!r} would only rename its case"
    from reference_impls.models.minilm import missing_reason

    reason = missing_reason()
    return f"embedder {params['embedder']!r} is not installed here: {reason}" if reason else None


@dataclass
class History:
    """Conversations to write and question, plus the per-store state built from them during a case."""

    conversations: tuple[Conversation, ...]
    dataset: Dataset | None = None  # the LoCoMo file, when data was a path
    built: dict = field(default_factory=dict)  # store name -> state, reused by the timed calls


def load_history(params: dict, seed: int) -> History:
    """Generate (seeded) or load the history named by params['data']; bad values raise ValueError."""
    data = params["data"]
    if data == "synthetic":
        return History((generate(params["turns"], params["questions"], seed),))
    if not isinstance(data, str) or not data.endswith(".json"):
        raise ValueError(f"data must be 'synthetic' or a path to a LoCoMo .json file, got {data!r}")
    dataset = load_locomo(data)
    return History(dataset.conversations, dataset)


def dataset_counters(history: History) -> dict[str, float]:
    """A LoCoMo file's statistics and sha256 (as a 52-bit integer: records hold numbers) for the record."""
    if history.dataset is None:
        return {}
    stats = history.dataset.stats
    return {"memory.dataset_conversations": float(stats.conversations), "memory.dataset_turns": float(stats.turns),
            "memory.dataset_qa": float(stats.qa),
            "memory.dataset_evidence_issues": float(sum(stats.evidence_issues.values())),
            "memory.dataset_sha256_prefix52": float(int(history.dataset.sha256[:13], 16))}


def percentiles_ms(samples_ns: list[int]) -> dict[int, float]:
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {p: float(np.percentile(values, p)) for p in (50, 95, 99)}


@dataclass(frozen=True)
class QueryOutcome:
    """One question's search, reduced to what the metrics and the check need (full context returns every turn)."""

    conversation: int
    question: int  # index into that conversation's qa
    top_sources: tuple[tuple[str, ...], ...]  # source turn ids of the first TOP_KEPT hits, best first
    hits: int
    first_gold_rank: int  # 1-based rank over all hits of the first hit citing a gold turn; 0 when none does
    tokens: int  # tokens of every hit's text
    scores_sorted: bool  # scores non-increasing, as the interface promises
    unknown_sources: int  # source ids that name no turn of the history
    latency_ns: int


@dataclass
class BuiltStore:
    stores: list[MemoryStore]  # one per conversation
    write_ns: list[int]
    first_search_ns: int
    outcomes: list[QueryOutcome] = field(default_factory=list)
    calls: int = 0  # timed calls so far (they rotate through the questions)
    extra: dict = field(default_factory=dict)  # what a workload derives once from the outcomes


def build_store(name: str, conversations: tuple[Conversation, ...], options: dict | None = None) -> BuiltStore:
    """Write every turn in order with add(), timing each write; then one untimed-by-p50 first search."""
    stores, write_ns, first_ns = [], [], 0
    for conversation in conversations:
        store = make_store(name, **(options or {}))
        for turn in conversation.turns():
            start = time.perf_counter_ns()
            store.add(turn)
            write_ns.append(time.perf_counter_ns() - start)
        probe = conversation.qa[0].question if conversation.qa else conversation.turns()[0].text
        start = time.perf_counter_ns()
        store.search(probe, 1)
        first_ns = max(first_ns, time.perf_counter_ns() - start)
        stores.append(store)
    return BuiltStore(stores, write_ns, first_ns)


def search_one(store: MemoryStore, query: str, k: int, gold: set[str], known: set[str],
               count: MemoCounter) -> tuple[QueryOutcome, list]:
    """Search, timing the call only, and reduce the hits (conversation/question filled in by the caller)."""
    start = time.perf_counter_ns()
    hits = store.search(query, k)
    elapsed = time.perf_counter_ns() - start
    first_gold = next((rank for rank, hit in enumerate(hits, 1) if gold & set(hit.source_turn_ids)), 0)
    outcome = QueryOutcome(-1, -1, tuple(h.source_turn_ids for h in hits[:TOP_KEPT]), len(hits), first_gold,
                           sum(count(h.text) for h in hits),
                           all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False)),
                           sum(s not in known for h in hits for s in h.source_turn_ids), elapsed)
    return outcome, hits


def evaluate(built: BuiltStore, conversations: tuple[Conversation, ...], k: int, tokenizer: str) -> None:
    """Search every question that has gold evidence; fills built.outcomes."""
    count = MemoCounter(tokenizer)
    outcomes = []
    for c, (store, conversation) in enumerate(zip(built.stores, conversations, strict=True)):
        known = {t.dia_id for t in conversation.turns()}
        for q, item in enumerate(conversation.qa):
            if not item.evidence:
                continue
            outcome, _ = search_one(store, item.question, k, set(item.evidence), known, count)
            outcomes.append(QueryOutcome(c, q, *list(outcome.__dict__.values())[2:]))
    built.outcomes = outcomes


def history_tokens(conversation: Conversation, tokenizer: str) -> int:
    """Tokens of the whole history as full context puts it in front of the model (hit_text per turn)."""
    count = MemoCounter(tokenizer)
    return sum(count(hit_text(t)) for t in conversation.turns())


def prepared(history: History, store: str, k: int, tokenizer: str, options: dict | None = None) -> BuiltStore:
    """The store built from the history and searched once for every question (done on the first call)."""
    built = history.built.get(store)
    if built is None:
        built = build_store(store, history.conversations, options)
        evaluate(built, history.conversations, k, tokenizer)
        history.built[store] = built
    return built


def close_all(history: History) -> None:
    for built in history.built.values():
        for store in built.stores:
            store.close()
    history.built.clear()
