"""The memory-agent workloads: retrieval metrics, cost, crossover and poisoning on small, known histories."""

import hashlib
from pathlib import Path

import pytest

from harness.registry import REGISTRY
from reference_impls.agents.types import Turn
from workloads.memory_agents.conversation import SINGLE_HOP, TEMPORAL, Conversation, QAItem, Session
from workloads.memory_agents.memory_cost import UpdateRank
from workloads.memory_agents.memory_poisoning import UNTRUSTED_SPEAKER, poison_history
from workloads.memory_agents.memory_retrieval import Gold, recount, summarize
from workloads.memory_agents.memory_runs import History, QueryOutcome, load_history
from workloads.memory_agents.tokens import token_counter

REGISTRY.load()
FIXTURE = Path(__file__).parent / "fixtures" / "locomo_sample.json"


def tiny_conversation() -> Conversation:
    """Five turns: Ana's city changes (D1:1 stale, D2:2 newest); the question asks where she lives now."""
    s1 = (Turn("D1:1", 1, "Ana", "I live in Porto now.", "May 2023"),
          Turn("D1:2", 1, "Ben", "The weather was sunny.", "May 2023"),
          Turn("D1:3", 1, "Ana", "My dog is a beagle named Toby.", "May 2023"))
    s2 = (Turn("D2:1", 2, "Ben", "I baked bread today.", "June 2023"),
          Turn("D2:2", 2, "Ana", "I moved, I live in Lisbon now.", "June 2023"))
    qa = (QAItem("Where does Ana live?", "Lisbon", ("D2:2",), SINGLE_HOP, ("D1:1",)),
          QAItem("What is Ana's dog called?", "Toby", ("D1:3",), SINGLE_HOP),
          QAItem("When did Ben bake bread?", "June 2023", ("D2:1",), TEMPORAL))
    return Conversation("tiny", ("Ana", "Ben"), (Session(1, "May 2023", s1), Session(2, "June 2023", s2)), qa)


def params_of(workload: str, **overrides) -> dict:
    w = REGISTRY.workload(workload)
    return {**{p.name: p.default for p in w.params}, **overrides}


def run(workload: str, impl: str, inputs, params: dict):
    w = REGISTRY.workload(workload)
    out = REGISTRY.impl(workload, impl).fn(inputs, params)
    return w, out, w.check(out, w.reference(inputs, params), None)


def test_word_rule_counts_words_and_punctuation():
    assert token_counter("words")("I'm 30!") == 5
    with pytest.raises(ValueError, match="allowed: words, smollm2"):
        token_counter("bpe")


def test_summarize_and_recount_agree_on_hand_made_ranks():
    gold = Gold({(0, 0): frozenset({"a"}), (0, 1): frozenset({"b", "c"})}, {(0, 0): 4, (0, 1): 1}, (100,))
    first = QueryOutcome(0, 0, (("x",), ("a",)), 2, 2, 20, True, 0, 1000)  # gold at rank 2
    second = QueryOutcome(0, 1, (("b",),) + (("y",),) * 5 + (("c",),), 7, 1, 30, True, 0, 2000)  # b@1, c@7
    metrics = summarize((first, second), gold)
    assert metrics["quality.evidence_recall_any@1"] == 0.5 and metrics["quality.evidence_recall_any@5"] == 1.0
    assert metrics["quality.evidence_recall_all@5"] == 0.5 and metrics["quality.evidence_recall_all@10"] == 1.0
    assert metrics["quality.evidence_mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["quality.evidence_recall_any@10.single_hop"] == 1.0 and metrics["memory.questions.multi_hop"] == 1
    assert metrics["memory.tokens_per_query"] == 25 and metrics["memory.tokens_fraction_of_history"] == 0.25
    assert all(metrics[name] == value for name, value in recount((first, second), gold).items())


def test_retrieval_on_a_tiny_history_full_context_sees_all_and_bm25_ranks_the_fact_first():
    history, params = History((tiny_conversation(),)), params_of("memory_retrieval", k=2)
    w, full, check = run("memory_retrieval", "full_context", history, params)
    assert check.passed
    quality = w.quality(full, w.reference(history, params))
    assert quality["quality.evidence_recall_any@returned"] == 1.0
    assert w.counters(full, params)["memory.tokens_fraction_of_history"] == 1.0
    w, bm25, check = run("memory_retrieval", "bm25", history, params)
    assert check.passed and all(o.hits <= 2 for o in bm25.outcomes)
    assert bm25.metrics["quality.evidence_recall_any@5"] == 1.0
    assert w.counters(bm25, params)["memory.items"] == 5


def test_check_rejects_more_than_k_hits():
    history, params = History((tiny_conversation(),)), params_of("memory_retrieval", k=1)
    w, out, _ = run("memory_retrieval", "bm25", history, params)
    import dataclasses
    bloated = dataclasses.replace(out, outcomes=(dataclasses.replace(out.outcomes[0], hits=3), *out.outcomes[1:]))
    assert not w.check(bloated, w.reference(history, params), None).passed


def test_locomo_path_records_dataset_stats_and_sha256():
    params = params_of("memory_retrieval", data=str(FIXTURE), k=5)
    history = load_history(params, 0)
    w, out, check = run("memory_retrieval", "bm25", history, params)
    assert check.passed
    counters = w.counters(out, params)
    assert counters["memory.dataset_turns"] == 60 and counters["memory.dataset_qa"] == 30
    assert counters["memory.dataset_evidence_issues"] == 8
    assert counters["memory.dataset_sha256_prefix52"] == int(hashlib.sha256(FIXTURE.read_bytes()).hexdigest()[:13], 16)
    with pytest.raises(ValueError, match="synthetic"):
        load_history(params_of("memory_retrieval", data="locomo.csv"), 0)


def test_update_correctness_counts_newest_above_stale():
    assert UpdateRank(1, 2).correct and UpdateRank(1, 0).correct
    assert not UpdateRank(2, 1).correct and not UpdateRank(0, 1).correct and not UpdateRank(0, 0).correct
    history, params = History((tiny_conversation(),)), params_of("memory_cost", k=5)
    w, recency, check = run("memory_cost", "recency_window", history, params)
    assert check.passed and recency.updates == (UpdateRank(1, 5),) and recency.update_correct_fraction == 1.0
    _, full, check = run("memory_cost", "full_context", History((tiny_conversation(),)), params)
    assert check.passed and full.updates == (UpdateRank(5, 1),) and full.update_correct_fraction == 0.0
    counters = w.counters(recency, params)
    assert counters["memory.write_p50_ms"] <= counters["memory.write_p95_ms"] <= counters["memory.write_p99_ms"]
    assert counters["memory.bytes_per_item"] == counters["memory.bytes_in_memory"] / counters["memory.items"]


def test_poisons_are_seeded_unique_and_the_filter_stops_all_but_spoofed_ones():
    params = params_of("memory_poisoning", turns=400, questions=60, targets=12, spoofed_fraction=0.25)
    w = REGISTRY.workload("memory_poisoning")
    a, b = w.inputs(params, "cpu", 0), w.inputs(params, "cpu", 0)
    assert a.poisons == b.poisons and len(a.poisons) == 12
    ids = [t.dia_id for t in a.stream]
    assert len(ids) == len(set(ids)) == 400 + 12
    spoofed = sum(p.spoofed for p in a.poisons)
    assert all((p.turn.speaker == UNTRUSTED_SPEAKER) != p.spoofed for p in a.poisons)
    _, full, check = run("memory_poisoning", "full_context", a, params)
    assert check.passed and full.rates["memory.attack_success_rate"] == 1.0
    assert full.rates["memory.attack_success_rate_filtered"] == spoofed / 12
    assert full.rates["memory.recall_under_attack_filtered"] == 1.0
    _, bm25, check = run("memory_poisoning", "bm25", a, params)
    assert check.passed and bm25.rates["memory.attack_success_rate_filtered"] <= spoofed / 12
    with pytest.raises(ValueError, match="spoofed_fraction"):
        w.inputs({**params, "spoofed_fraction": 1.5}, "cpu", 0)


def test_poison_history_needs_targets():
    conversation = tiny_conversation()
    poisoned = poison_history(conversation, 5, 0.0, 0)
    assert {p.target for p in poisoned.poisons} == {0, 1, 2}
    assert all(p.turn.speaker == UNTRUSTED_SPEAKER for p in poisoned.poisons)
