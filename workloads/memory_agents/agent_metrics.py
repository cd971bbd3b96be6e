"""Metrics of the memory-agent workloads, declared once here (retrieval, cost, crossover, poisoning share them)."""

from __future__ import annotations

from harness.metrics import declare
from workloads.memory_agents.conversation import CATEGORY_NAMES

RECALL_KS = (1, 5, 10)


def category_key(category: int) -> str:
    """'multi-hop' -> 'multi_hop': metric names keep to word characters and dots."""
    return CATEGORY_NAMES[category].replace("-", "_")


for _k in RECALL_KS:
    declare(f"quality.evidence_recall_any@{_k}", "1", "higher", f"questions with a gold turn in the top {_k}", True)
    declare(f"quality.evidence_recall_all@{_k}", "1", "higher", f"questions with every gold turn in the top {_k}",
            True)
declare("quality.evidence_recall_any@returned", "1", "higher", "questions with a gold turn anywhere in the hits", True)
declare("quality.evidence_mrr", "1", "higher", "mean reciprocal rank of the first gold turn", True)
for _c in CATEGORY_NAMES:
    declare(f"quality.evidence_recall_any@10.{category_key(_c)}", "1", "higher",
            f"recall@10 (any gold turn), {CATEGORY_NAMES[_c]} questions", True)
    declare(f"quality.evidence_mrr.{category_key(_c)}", "1", "higher", f"MRR, {CATEGORY_NAMES[_c]} questions", True)
    declare(f"memory.questions.{category_key(_c)}", "questions", "higher", f"{CATEGORY_NAMES[_c]} questions scored",
            True)

declare("memory.questions", "questions", "higher", "questions scored (with gold evidence)", True)
declare("memory.tokens_per_query", "tokens", "lower", "tokens injected per query (mean)", True)
declare("memory.tokens_fraction_of_history", "1", "lower", "tokens injected per query / full history tokens", True)
declare("memory.history_tokens", "tokens", "lower", "tokens of the whole history as full context", True)
for _p in (50, 95, 99):
    declare(f"memory.search_p{_p}_ms", "ms", "lower", f"search latency p{_p} over the questions")
    declare(f"memory.write_p{_p}_ms", "ms", "lower", f"write (add one turn) latency p{_p} over the history")
declare("memory.first_search_ms", "ms", "lower", "first search after the writes (lazy index builds land here)")
declare("memory.items", "items", "lower", "items the store holds", True)
declare("memory.bytes_in_memory", "B", "lower", "store bytes in process memory (the store's own count)", True)
declare("memory.bytes_on_disk", "B", "lower", "store bytes on disk")
declare("memory.footprint_bytes", "B", "lower", "store bytes in memory + on disk (the store's own count)")
declare("memory.bytes_per_item", "B", "lower", "(memory + disk bytes) per item")
declare("memory.bytes_per_turn", "B", "lower", "(memory + disk bytes) per history turn")
declare("memory.update_questions", "questions", "higher", "questions about a fact that changed", True)
declare("memory.update_correct_fraction", "1", "higher", "changed facts whose newest turn ranks above the stale one",
        True)

declare("memory.crossover_turns_latency", "turns", "lower",
        "history length above which answering from full context is slower than from the store (modeled + measured "
        "search and writes), capped where the history's KV stops fitting")
declare("memory.crossover_turns_energy", "turns", "lower",
        "history length above which full context costs more device energy per query than the store (modeled)", True)
declare("memory.full_context_fit_turns", "turns", "higher",
        "history length whose KV cache just fits beside the weights in the device's memory", True)
declare("memory.full_context_query_s", "s", "lower", "modeled full-context prefill + answer per query at max turns",
        True)
declare("memory.store_query_s", "s", "lower",
        "store query at max turns: modeled prefill + answer, plus measured search p50 and writes")
declare("memory.full_context_energy_j", "J", "lower", "modeled full-context energy per query at max turns", True)
declare("memory.store_energy_j", "J", "lower", "modeled device energy per store query at max turns", True)

declare("memory.attack_success_rate", "1", "lower", "targeted questions whose poisoned item is in the top k", True)
declare("memory.attack_success_rate_filtered", "1", "lower", "attack success with the provenance filter", True)
declare("memory.recall_under_attack", "1", "higher", "targeted questions' recall@k (any gold turn), poisoned", True)
declare("memory.recall_under_attack_filtered", "1", "higher", "the same, with the provenance filter", True)
declare("memory.poisoned_items", "items", "lower", "adversarial memories injected", True)

declare("memory.dataset_conversations", "conversations", "higher", "conversations in the LoCoMo file", True)
declare("memory.dataset_turns", "turns", "higher", "turns in the LoCoMo file", True)
declare("memory.dataset_qa", "questions", "higher", "QA items in the LoCoMo file", True)
declare("memory.dataset_evidence_issues", "ids", "lower", "malformed evidence ids in the LoCoMo file", True)
declare("memory.dataset_sha256_prefix52", "1", "lower",
        "the file's sha256, first 13 hex digits as an integer (records carry numbers only)", True)
