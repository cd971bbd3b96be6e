"""typed: ENGRAM-style typed memory — each turn routed to an episodic, semantic or procedural index by fixed
rules, each type its own exact cosine index; a query routed by the same kind of rules, with a fallback.

Turn rules, first match wins (route_turn):
  1. procedural — how-to / instruction language (PROCEDURAL: "how to", "step", "first,", "recipe",
     "make sure", "remember to", "you should", ...) or a turn that opens with an imperative verb (IMPERATIVES);
  2. episodic — a dated or time-anchored event (EPISODIC: weekdays, months, years, "yesterday", "last week",
     "ago", or an event verb such as "went", "visited", "met", "attended");
  3. semantic — a fact or preference (SEMANTIC: "I am", "my", "I like/love/prefer/hate", "favorite", ...);
  4. otherwise episodic (an undated event of the conversation itself).
Query rules (route_query): "when / what date / what year / how long ago" -> episodic; "how do/can/should/to",
"what steps" -> procedural; "favorite / like / prefer / what kind / who is / where does ... live / job" ->
semantic; anything else is unrouted. Scores: cosine in the routed type; cosine x `fallback_weight` in the other
types (the fallback across all types); an unrouted query scores every type at full cosine.
Bytes in memory: the three vector tables, the type labels, and the UTF-8 bytes of the held turns.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from reference_impls.agents.embedders import Embedder, make_embedder
from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn, fraction
from reference_impls.agents.text import hit_text, indexed_text, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn
from reference_impls.agents.vector_table import VectorTable, top_k_indices

MEMORY_TYPES = ("episodic", "semantic", "procedural")

_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
PROCEDURAL = re.compile(r"\b(how to|how do you|step|steps|first,|recipe|instructions?|make sure|remember to|"
                        r"don't forget|you should|you need to|the trick is|tip)\b", re.IGNORECASE)
IMPERATIVES = frozenset("add put mix use take open click go turn set try remember call check install run stir "
                        "bake preheat press start keep avoid follow write".split())
EPISODIC = re.compile(rf"\b({_MONTHS}|{_DAYS}|yesterday|today|tonight|tomorrow|last (?:week|month|year|night|"
                      rf"weekend)|ago|this (?:morning|weekend|week)|(?:19|20)\d\d|went|visited|attended|met|"
                      rf"celebrated|graduated|moved|adopted|bought|started|finished|joined)\b", re.IGNORECASE)
SEMANTIC = re.compile(r"\b(i am|i'm|my|i like|i love|i enjoy|i prefer|i hate|favou?rite|allergic|i work|i live|"
                      r"usually|always)\b", re.IGNORECASE)
QUERY_EPISODIC = re.compile(r"\b(when|what date|what year|what month|how long ago|which day)\b", re.IGNORECASE)
QUERY_PROCEDURAL = re.compile(r"\b(how (?:do|does|can|should|to|did .* make)|what steps|what is the (?:recipe|way))\b",
                              re.IGNORECASE)
QUERY_SEMANTIC = re.compile(r"\b(favou?rite|like|likes|prefer|prefers|what kind|who is|where does .* live|job|"
                            r"allergic|identity|hobby|hobbies)\b", re.IGNORECASE)


def route_turn(text: str) -> str:
    """The memory type of a turn (rules in the module docstring)."""
    first_word = text.strip().split(" ", 1)[0].strip(",.!").lower() if text.strip() else ""
    if PROCEDURAL.search(text) or first_word in IMPERATIVES:
        return "procedural"
    if EPISODIC.search(text):
        return "episodic"
    if SEMANTIC.search(text):
        return "semantic"
    return "episodic"


def route_query(query: str) -> str | None:
    """The memory type a question asks about, or None when no rule fires."""
    if QUERY_EPISODIC.search(query):
        return "episodic"
    if QUERY_PROCEDURAL.search(query):
        return "procedural"
    if QUERY_SEMANTIC.search(query):
        return "semantic"
    return None


class TypedStore(MemoryStore):
    name = "typed"

    def __init__(self, *, embedder: str | Embedder | None = None, fallback_weight: float = 0.85) -> None:
        self.embedder = make_embedder(embedder)
        self.fallback_weight = fraction("fallback_weight", fallback_weight)
        self._turns: dict[str, Turn] = {}
        self._type_of: dict[str, str] = {}
        self._order: dict[str, int] = {}  # insertion number, for deterministic ties across the type tables
        self._tables = {t: VectorTable(self.embedder.dim) for t in MEMORY_TYPES}
        self._text_bytes = 0

    def type_of(self, item_id: str) -> str:
        self._get(item_id)
        return self._type_of[item_id]

    def add(self, turn: Turn) -> list[str]:
        check_turn(turn, self._turns)
        memory_type = route_turn(turn.text)
        self._tables[memory_type].add(turn.dia_id, self.embedder.embed_one(indexed_text(turn)))
        self._turns[turn.dia_id] = turn
        self._type_of[turn.dia_id] = memory_type
        self._order[turn.dia_id] = len(self._order)
        self._text_bytes += turn_bytes(turn)
        return [turn.dia_id]

    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        q = self.embedder.embed_one(query)
        routed = route_query(query)
        candidates: list[tuple[str, float]] = []
        for memory_type, table in self._tables.items():
            weight = 1.0 if routed is None or memory_type == routed else self.fallback_weight
            candidates += [(key, score * weight) for key, score in table.top(q, k)] if len(table) else []
        candidates.sort(key=lambda pair: self._order[pair[0]])
        best = top_k_indices(np.array([s for _, s in candidates], dtype=np.float64), k)
        return [Hit(candidates[i][0], hit_text(self._turns[candidates[i][0]]), (candidates[i][0],),
                    candidates[i][1]) for i in best]

    def update(self, item_id: str, text: str) -> None:
        old = self._get(item_id)
        new = replace(old, text=text)
        self._tables[self._type_of[item_id]].remove(item_id)
        self._type_of[item_id] = route_turn(text)  # the new text may be a different type of memory
        self._tables[self._type_of[item_id]].add_or_replace(item_id, self.embedder.embed_one(indexed_text(new)))
        self._turns[item_id] = new
        self._text_bytes += turn_bytes(new) - turn_bytes(old)

    def delete(self, item_id: str) -> None:
        old = self._get(item_id)
        self._tables[self._type_of.pop(item_id)].remove(item_id)
        del self._turns[item_id], self._order[item_id]
        self._text_bytes -= turn_bytes(old)

    def stats(self) -> StoreStats:
        labels = sum(len(t) for t in self._type_of.values())
        total = sum(t.nbytes for t in self._tables.values()) + labels + self._text_bytes
        return StoreStats(len(self._turns), int(total), 0)

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"typed holds no item {item_id!r}")
        return self._turns[item_id]
