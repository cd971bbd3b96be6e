"""hierarchical: MemGPT / MemoryOS-style tiers — core memory, a recent page buffer, archival pages — searched
coarse to fine.

- Core memory: per speaker, the profile sentences of their turns (extractive): a sentence is a profile fact when
  it matches PROFILE_PATTERN (first-person self-description: "I am", "I'm", "I like/love/enjoy/prefer/hate",
  "I work/live/study", "I have", or "my ..."). At most `core_limit` facts per speaker; the oldest is evicted.
  Each fact is its own item, id "core:<dia_id>:<n>", scored by cosine like a turn.
- Recent buffer: at most `recent_turns` turns, all scored at every search.
- Archival pages: when the buffer overflows, its oldest `page_size` turns become one page with an extractive
  summary (keywords.extractive_summary: best `summary_sentences` sentences by TF-IDF plus the 8 best keywords),
  embedded once (and again when one of its turns is updated or deleted).
- Search: rank pages by cosine(query, summary), open the best `pages_to_open`, score the turns inside them;
  merge with the buffer's turns and the core facts; the k best by cosine.
Bytes in memory: the three vector tables (turns, page summaries, core facts), summary and fact texts, and the
UTF-8 bytes of the held turns.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import replace

import numpy as np

from reference_impls.agents.embedders import Embedder, make_embedder
from reference_impls.agents.keywords import DocumentFrequency, extractive_summary
from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn, positive_int
from reference_impls.agents.text import hit_text, indexed_text, sentences, text_bytes, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn
from reference_impls.agents.vector_table import VectorTable, top_k_indices

PROFILE_PATTERN = re.compile(r"\b(i am|i'm|i like|i love|i enjoy|i prefer|i hate|i work|i live|i study|i have|my)\b",
                             re.IGNORECASE)
SUMMARY_KEYWORDS = 8


def profile_facts(text: str) -> list[str]:
    """The sentences of `text` that state something about the speaker (PROFILE_PATTERN)."""
    return [s for s in sentences(text) if PROFILE_PATTERN.search(s)]


class HierarchicalStore(MemoryStore):
    name = "hierarchical"

    def __init__(self, *, embedder: str | Embedder | None = None, recent_turns: int = 20, page_size: int = 10,
                 summary_sentences: int = 4, pages_to_open: int = 16, core_limit: int = 64) -> None:
        self.embedder = make_embedder(embedder)
        self.recent_turns = positive_int("recent_turns", recent_turns)
        self.page_size = positive_int("page_size", page_size)
        if self.page_size > self.recent_turns:
            raise ValueError(f"option page_size ({page_size}) must be <= recent_turns ({recent_turns})")
        self.summary_sentences = positive_int("summary_sentences", summary_sentences)
        self.pages_to_open = positive_int("pages_to_open", pages_to_open)
        self.core_limit = positive_int("core_limit", core_limit)
        dim = self.embedder.dim
        self._turns: dict[str, Turn] = {}
        self._turn_vectors = VectorTable(dim)
        self._recent: deque[str] = deque()
        self._pages: dict[str, list[str]] = {}  # page id -> turn ids
        self._page_of: dict[str, str] = {}
        self._summaries: dict[str, str] = {}
        self._page_vectors = VectorTable(dim)
        self._core: dict[str, tuple[str, str, str]] = {}  # core id -> (speaker, fact text, source dia_id)
        self._core_of_turn: dict[str, list[str]] = {}
        self._core_by_speaker: dict[str, deque[str]] = {}
        self._core_vectors = VectorTable(dim)
        self._df = DocumentFrequency()
        self._next_page = 0
        self._text_bytes = 0

    # --- writes -----------------------------------------------------------------------------------------
    def add(self, turn: Turn) -> list[str]:
        check_turn(turn, self._turns)
        self._turns[turn.dia_id] = turn
        self._text_bytes += turn_bytes(turn)
        self._df.add(indexed_text(turn))
        self._turn_vectors.add(turn.dia_id, self.embedder.embed_one(indexed_text(turn)))
        self._recent.append(turn.dia_id)
        created = [turn.dia_id] + self._extract_core(turn)
        if len(self._recent) > self.recent_turns:
            page_id = f"page:{self._next_page}"
            self._next_page += 1
            self._pages[page_id] = [self._recent.popleft() for _ in range(self.page_size)]
            for turn_id in self._pages[page_id]:
                self._page_of[turn_id] = page_id
            self._page_vectors.add(page_id, np.zeros(self.embedder.dim, dtype=np.float32))
            self._summarize(page_id)
        return created

    def _extract_core(self, turn: Turn) -> list[str]:
        created = []
        facts = profile_facts(turn.text)
        vectors = self.embedder.embed([f"{turn.speaker}: {f}" for f in facts]) if facts else []
        queue = self._core_by_speaker.setdefault(turn.speaker, deque())
        for n, (fact, vector) in enumerate(zip(facts, vectors, strict=True)):
            core_id = f"core:{turn.dia_id}:{n}"
            self._core[core_id] = (turn.speaker, fact, turn.dia_id)
            self._core_vectors.add(core_id, vector)
            self._core_of_turn.setdefault(turn.dia_id, []).append(core_id)
            queue.append(core_id)
            created.append(core_id)
            while len(queue) > self.core_limit:
                self._drop_core(queue[0])
        return created

    def _drop_core(self, core_id: str) -> None:
        speaker, _, source = self._core.pop(core_id)
        self._core_vectors.remove(core_id)
        self._core_of_turn[source].remove(core_id)
        self._core_by_speaker[speaker].remove(core_id)

    def _summarize(self, page_id: str) -> None:
        texts = [indexed_text(self._turns[t]) for t in self._pages[page_id]]
        self._summaries[page_id] = extractive_summary(texts, self._df, self.summary_sentences, SUMMARY_KEYWORDS)
        self._page_vectors.set(page_id, self.embedder.embed_one(self._summaries[page_id]))

    def update(self, item_id: str, text: str) -> None:
        if item_id in self._core:
            speaker, _, source = self._core[item_id]
            self._core[item_id] = (speaker, text, source)
            self._core_vectors.set(item_id, self.embedder.embed_one(f"{speaker}: {text}"))
            return
        old = self._get(item_id)
        new = replace(old, text=text)
        self._df.remove(indexed_text(old))
        self._df.add(indexed_text(new))
        self._turns[item_id] = new
        self._text_bytes += turn_bytes(new) - turn_bytes(old)
        self._turn_vectors.set(item_id, self.embedder.embed_one(indexed_text(new)))
        for core_id in list(self._core_of_turn.get(item_id, [])):
            self._drop_core(core_id)
        self._extract_core(new)
        if item_id in self._page_of:
            self._summarize(self._page_of[item_id])

    def delete(self, item_id: str) -> None:
        if item_id in self._core:
            self._drop_core(item_id)
            return
        old = self._get(item_id)
        for core_id in list(self._core_of_turn.get(item_id, [])):
            self._drop_core(core_id)
        self._core_of_turn.pop(item_id, None)
        self._df.remove(indexed_text(old))
        del self._turns[item_id]
        self._text_bytes -= turn_bytes(old)
        self._turn_vectors.remove(item_id)
        page_id = self._page_of.pop(item_id, None)
        if page_id is None:
            self._recent.remove(item_id)
        elif len(self._pages[page_id]) == 1:
            del self._pages[page_id], self._summaries[page_id]
            self._page_vectors.remove(page_id)
        else:
            self._pages[page_id].remove(item_id)
            self._summarize(page_id)

    # --- reads ------------------------------------------------------------------------------------------
    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        q = self.embedder.embed_one(query)
        turn_ids = list(self._recent)
        for page_id, _ in self._page_vectors.top(q, self.pages_to_open) if len(self._page_vectors) else []:
            turn_ids.extend(self._pages[page_id])
        candidates: list[tuple[str, float]] = []
        if turn_ids:
            rows = np.array([self._turn_vectors.row_of(t) for t in turn_ids], dtype=np.int64)
            order = np.argsort(rows, kind="stable")  # insertion order, so ties break the same way every time
            scores = self._turn_vectors.scores_of_rows(q, rows[order])
            candidates += [(turn_ids[i], float(s)) for i, s in zip(order, scores, strict=True)]
        if len(self._core_vectors):
            candidates += self._core_vectors.top(q, k)
        best = top_k_indices(np.array([s for _, s in candidates], dtype=np.float64), k)
        return [self._hit(candidates[i][0], candidates[i][1]) for i in best]

    def _hit(self, item_id: str, score: float) -> Hit:
        if item_id in self._core:
            speaker, fact, source = self._core[item_id]
            return Hit(item_id, f"(core memory) {speaker}: {fact}", (source,), score)
        return Hit(item_id, hit_text(self._turns[item_id]), (item_id,), score)

    def stats(self) -> StoreStats:
        derived = text_bytes(*self._summaries.values()) + sum(text_bytes(f) for _, f, _ in self._core.values())
        tables = self._turn_vectors.nbytes + self._page_vectors.nbytes + self._core_vectors.nbytes
        return StoreStats(len(self._turns) + len(self._core),
                          int(tables + derived + self._df.nbytes + self._text_bytes), 0)

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"hierarchical holds no item {item_id!r}")
        return self._turns[item_id]
