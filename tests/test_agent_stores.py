"""Every memory store: exact hits, update and delete change what search returns, k, sorted scores, growing
stats, determinism, exactness of the vector indexes against dense, and ValueErrors for bad input."""

from __future__ import annotations

import importlib.util

import pytest

from reference_impls.agents.store import UnknownItemError, make_store, store_names, store_options
from reference_impls.agents.types import Hit, StoreStats, Turn

HAS_FAISS = importlib.util.find_spec("faiss") is not None
HAS_SQLITE_VEC = importlib.util.find_spec("sqlite_vec") is not None
OPTIONAL = {"faiss": HAS_FAISS, "sqlite_vec": HAS_SQLITE_VEC}
RANKED = [n for n in store_names() if n not in ("full_context", "recency_window")]

TOPICS = [
    "I adopted a golden retriever puppy named Biscuit {n} weeks ago",
    "We went to Lisbon for the jazz festival in July, stop {n}",
    "My favorite dessert is lemon tart with {n} raspberries",
    "How do you fix a flat bicycle tire? First remove wheel number {n}",
    "The quarterly budget meeting moved to room {n} on Thursday",
    "I am training for a marathon and run {n} kilometers on Sundays",
    "Remember to water the basil and tomato seedlings {n} times",
    "Our neighbour's roof was repaired after storm {n} last week",
]


def conversation(turns: int = 32) -> list[Turn]:
    """A small two-speaker conversation over 4 sessions; every turn's words differ (topic x number)."""
    out = []
    for i in range(turns):
        session = 1 + i * 4 // turns
        text = TOPICS[i % len(TOPICS)].format(n=f"n{i}x")
        out.append(Turn(f"D{session}:{i + 1}", session, "Maya" if i % 2 == 0 else "Theo", text,
                        f"{10 + session}:00 am on {session} May, 2023"))
    return out


def build(name: str, turns: list[Turn] | None = None, **options) -> object:
    if name in OPTIONAL and not OPTIONAL[name]:
        pytest.skip(f"{name} extra not installed")
    store = make_store(name, **options)
    store.add_many(conversation() if turns is None else turns)
    return store


def ids(hits: list[Hit]) -> list[str]:
    return [h.item_id for h in hits]


def sources(hits: list[Hit]) -> set[str]:
    return {s for h in hits for s in h.source_turn_ids}


@pytest.mark.parametrize("name", RANKED)
def test_verbatim_query_finds_its_turn_first(name):
    store = build(name)
    for turn in conversation()[::5]:
        hits = store.search(turn.text, 3)
        assert turn.dia_id in hits[0].source_turn_ids, (turn.dia_id, hits)
        assert turn.text in hits[0].text
    store.close()


@pytest.mark.parametrize("name", RANKED)
def test_update_changes_the_answer(name):
    store = build(name)
    target = conversation()[9]
    store.update(target.dia_id, "Theo bought a purple kayak called Nimbus")
    hits = store.search("purple kayak Nimbus", 3)
    assert hits[0].item_id == target.dia_id and "purple kayak" in hits[0].text
    assert all(target.text not in h.text for h in store.search(target.text, 10))
    store.close()


@pytest.mark.parametrize("name", store_names())
def test_delete_removes_the_item(name):
    store = build(name)
    target = conversation()[-3]  # recent enough to be inside recency_window's default window
    before = store.stats()
    assert target.dia_id in sources(store.search(target.text, 40))
    store.delete(target.dia_id)
    assert target.dia_id not in sources(store.search(target.text, 40))
    assert store.stats().items < before.items
    with pytest.raises(UnknownItemError):
        store.delete(target.dia_id)
    with pytest.raises(KeyError):
        store.update(target.dia_id, "anything")
    store.close()


@pytest.mark.parametrize("name", [n for n in store_names() if n != "full_context"])
def test_k_is_respected_and_scores_are_sorted(name):
    store = build(name)
    for k in (1, 3, 7, 100):
        hits = store.search("marathon kilometers Sundays festival", k)
        assert 1 <= len(hits) <= k
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert len(set(ids(hits))) == len(hits)
    with pytest.raises(ValueError, match="k must be"):
        store.search("x", 0)
    store.close()


def test_full_context_returns_everything_in_order():
    store = build("full_context")
    hits = store.search("anything at all", 2)
    assert ids(hits) == [t.dia_id for t in conversation()]
    assert hits[0].text == "[11:00 am on 1 May, 2023] Maya: " + conversation()[0].text


def test_recency_window_keeps_only_the_last_turns():
    store = build("recency_window", window=5)
    assert ids(store.search("q", 10)) == [t.dia_id for t in reversed(conversation()[-5:])]
    assert store.stats().items == 5
    with pytest.raises(UnknownItemError):
        store.delete(conversation()[0].dia_id)  # evicted


@pytest.mark.parametrize("name", store_names())
def test_stats_grow_with_adds(name):
    turns = conversation(48)
    store = build(name, turns[:16])
    first = store.stats()
    store.add_many(turns[16:])
    second = store.stats()
    assert isinstance(first, StoreStats) and second.items > first.items > 0
    assert second.bytes_in_memory + second.bytes_on_disk > first.bytes_in_memory + first.bytes_on_disk
    assert first.bytes_in_memory > sum(len(t.text) for t in turns[:16])  # at least the text itself
    if name == "sqlite_vec":
        assert second.bytes_on_disk > 0
    store.close()


@pytest.mark.parametrize("name", store_names())
def test_two_runs_give_identical_results(name):
    runs = []
    for _ in range(2):
        store = build(name)
        store.update("D2:12", "Maya painted the fence teal")
        runs.append([store.search(q, 5) for q in ("jazz festival Lisbon", "fence teal", "budget meeting room")])
        store.close()
    assert runs[0] == runs[1]


def assert_same_ranking(got: list[Hit], want: list[Hit], every_score: dict[str, float]) -> None:
    """got is a valid top-k under dense's exact scores: same length, and at every rank the item got there has
    dense's score for that rank (float32 tolerance), so only items tied in score may swap places."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.score == pytest.approx(w.score, abs=1e-5)
        assert every_score[g.item_id] == pytest.approx(w.score, abs=1e-5)


@pytest.mark.parametrize("name", ["faiss", "sqlite_vec"])
def test_vector_indexes_equal_dense_ranking(name):
    dense, other = build("dense"), build(name)
    for store in (dense, other):
        store.update("D1:3", "My favorite dessert is pistachio ice cream")
        store.delete("D3:20")
    for query in ("favorite dessert", "marathon training run", "storm roof repaired", "bicycle tire wheel"):
        for k in (1, 4, 31):
            every_score = {h.item_id: h.score for h in dense.search(query, 1000)}
            assert_same_ranking(other.search(query, k), dense.search(query, k), every_score)
    other.close()


def test_hierarchical_pages_core_memory_and_coarse_to_fine():
    store = build("hierarchical", recent_turns=8, page_size=4, pages_to_open=1)
    assert len(store._pages) == 6 and len(store._recent) == 8  # 32 turns: 6 pages of 4 + 8 recent
    core = [i for i in store._core]
    assert core and all(i.startswith("core:") for i in core)
    assert any("favorite dessert" in store._core[i][1] for i in core)  # "My ..." sentences are profile facts
    hit = store.search("lemon tart raspberries n2x", 1)[0]  # turn D1:3 sits in the first archival page
    assert "D1:3" in hit.source_turn_ids
    assert all("keywords:" in s for s in store._summaries.values())


def test_linked_notes_links_are_symmetric_and_followed():
    store = build("linked_notes", links=3, min_link=0.05)
    links = store.note_links("D1:1")
    assert links and all(store.note_links(other)["D1:1"] == w for other, w in links.items())
    assert len(store.note_keywords("D1:1")) == 5
    seed = store.search(conversation()[0].text, 1)[0]
    assert seed.item_id == "D1:1"
    wider = store.search(conversation()[0].text, 20)
    neighbour_scores = {h.item_id: h.score for h in wider}
    for other, weight in links.items():  # a neighbour scores at least seed score x link weight
        assert neighbour_scores.get(other, -1) >= seed.score * weight - 1e-6


def test_typed_routes_turns_and_queries():
    from reference_impls.agents.typed import route_query, route_turn

    assert route_turn("How do you fix a flat tire? First remove the wheel") == "procedural"
    assert route_turn("Preheat the oven to 200 degrees") == "procedural"
    assert route_turn("We went to Lisbon in July") == "episodic"
    assert route_turn("My favorite dessert is lemon tart") == "semantic"
    assert route_turn("Sounds great") == "episodic"
    assert route_query("When did Maya go to Lisbon?") == "episodic"
    assert route_query("How do I fix a tire?") == "procedural"
    assert route_query("What is Maya's favorite dessert?") == "semantic"
    assert route_query("Tell me about the meeting") is None
    store = build("typed")
    assert store.type_of("D1:4") == "procedural" and store.type_of("D1:3") == "semantic"
    store.update("D1:3", "We went to the lemon festival yesterday")
    assert store.type_of("D1:3") == "episodic"


def test_bm25_rebuilds_only_after_writes():
    store = build("bm25")
    store.search("jazz", 3)
    store.search("marathon", 3)
    assert store.rebuilds == 1
    store.add(Turn("D9:1", 9, "Maya", "zeppelin rides over the harbour"))
    assert ids(store.search("zeppelin harbour", 3)) == ["D9:1"]  # only items sharing a term come back
    assert store.rebuilds == 2


def test_bad_names_and_options_are_value_errors():
    with pytest.raises(ValueError, match="allowed: .*dense"):
        make_store("vector_db")
    with pytest.raises(ValueError, match="no option"):
        make_store("dense", dimension=3)
    with pytest.raises(ValueError, match="window"):
        make_store("recency_window", window=0)
    with pytest.raises(ValueError, match="page_size"):
        make_store("hierarchical", recent_turns=4, page_size=8)
    with pytest.raises(ValueError, match="embedder"):
        make_store("dense", embedder="word2vec")
    with pytest.raises(ValueError, match="fallback_weight"):
        make_store("typed", fallback_weight=2.0)
    store = make_store("dense")
    store.add(conversation()[0])
    with pytest.raises(ValueError, match="already added"):
        store.add(conversation()[0])
    with pytest.raises(ValueError, match="takes a Turn"):
        store.add("hello")
    assert "window" in store_options("recency_window")
    with pytest.raises(ValueError, match="session"):
        Turn("D0:1", 0, "Maya", "hi")


@pytest.mark.parametrize("name", store_names())
def test_empty_store_searches_to_nothing_or_everything(name):
    if name in OPTIONAL and not OPTIONAL[name]:
        pytest.skip(f"{name} extra not installed")
    store = make_store(name)
    assert store.search("anything", 5) == []
    assert store.stats().items == 0
    store.close()


def test_hybrid_scores_are_reciprocal_rank_sums_of_bm25_and_dense():
    turns = conversation()
    hybrid = build("hybrid", turns, candidates=8, rrf_k=60)
    bm25, dense = build("bm25", turns), build("dense", turns)
    query = "golden retriever puppy lemon tart"
    expected: dict[str, float] = {}
    for index in (bm25, dense):
        for rank, hit in enumerate(index.search(query, 8), 1):
            expected[hit.item_id] = expected.get(hit.item_id, 0.0) + 1.0 / (60 + rank)
    got = hybrid.search(query, 5)
    best = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(h.item_id, h.score) for h in got] == [(key, pytest.approx(score, rel=1e-12)) for key, score in best]
    # a turn both indexes rank first scores 2/61; one found by a single index at most 1/61
    assert got[0].score == pytest.approx(2 / 61) and all(h.score <= 2 / 61 for h in got)
    hybrid.delete(got[0].item_id)
    assert got[0].item_id not in ids(hybrid.search(query, 5))
    assert hybrid.stats().items == len(turns) - 1
