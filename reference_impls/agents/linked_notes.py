"""linked_notes: A-MEM-style memory — every turn is a note with extractive keywords and weighted links to the
notes most similar to it; search follows the links.

- Keywords: the note's `keywords` content words with the highest tf x idf over the notes held when it is written
  (keywords.top_keywords). They are appended to the embedded text, so a note's salient words weigh double.
- Links: when a note is written, it links to its `links` most similar earlier notes whose cosine is at least
  `min_link`; a link is symmetric and its weight is that cosine. An updated note drops its links and relinks
  against every other held note; a deleted note's links are removed from its neighbours.
- Search: the `seeds` best notes by cosine (seeds=0 means k seeds) keep their own score; each neighbour of a
  seed scores seed score x link weight (the best over its seeds, or its own score if it is itself a seed);
  the k best of seeds and neighbours are returned.
Bytes in memory: the note vector table, keyword strings, links (8 bytes of weight + the id per direction),
document frequencies, and the UTF-8 bytes of the held turns.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reference_impls.agents.embedders import Embedder, make_embedder
from reference_impls.agents.keywords import DocumentFrequency, top_keywords
from reference_impls.agents.store import MemoryStore, UnknownItemError, check_k, check_turn, fraction, positive_int
from reference_impls.agents.text import hit_text, indexed_text, text_bytes, turn_bytes
from reference_impls.agents.types import Hit, StoreStats, Turn
from reference_impls.agents.vector_table import VectorTable, top_k_indices


class LinkedNotesStore(MemoryStore):
    name = "linked_notes"

    def __init__(self, *, embedder: str | Embedder | None = None, links: int = 5, min_link: float = 0.2,
                 keywords: int = 5, seeds: int = 0) -> None:
        self.embedder = make_embedder(embedder)
        self.links = positive_int("links", links)
        self.min_link = fraction("min_link", min_link, -1.0, 1.0)
        self.keywords = positive_int("keywords", keywords)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 0:
            raise ValueError(f"option seeds must be an int >= 0 (0 = k seeds), got {seeds!r}")
        self.seeds = seeds
        self._turns: dict[str, Turn] = {}
        self._keywords: dict[str, list[str]] = {}
        self._links: dict[str, dict[str, float]] = {}
        self._vectors = VectorTable(self.embedder.dim)
        self._df = DocumentFrequency()
        self._text_bytes = 0

    def note_keywords(self, item_id: str) -> list[str]:
        return list(self._keywords[self._get(item_id).dia_id])

    def note_links(self, item_id: str) -> dict[str, float]:
        return dict(self._links[self._get(item_id).dia_id])

    def _embed_note(self, turn: Turn) -> np.ndarray:
        self._keywords[turn.dia_id] = top_keywords(indexed_text(turn), self._df, self.keywords)
        return self.embedder.embed_one(f"{indexed_text(turn)} {' '.join(self._keywords[turn.dia_id])}")

    def _link(self, note_id: str, vector: np.ndarray) -> None:
        self._links[note_id] = {}
        for other, weight in self._vectors.top(vector, self.links + 1):  # + 1: an updated note finds itself
            if other != note_id and weight >= self.min_link and len(self._links[note_id]) < self.links:
                self._links[note_id][other] = weight
                self._links[other][note_id] = weight

    def _unlink(self, note_id: str) -> None:
        for other in self._links.pop(note_id):
            del self._links[other][note_id]

    def add(self, turn: Turn) -> list[str]:
        check_turn(turn, self._turns)
        self._df.add(indexed_text(turn))
        vector = self._embed_note(turn)
        self._link(turn.dia_id, vector)  # before the note joins the table: links go to earlier notes only
        self._vectors.add(turn.dia_id, vector)
        self._turns[turn.dia_id] = turn
        self._text_bytes += turn_bytes(turn)
        return [turn.dia_id]

    def update(self, item_id: str, text: str) -> None:
        old = self._get(item_id)
        new = replace(old, text=text)
        self._df.remove(indexed_text(old))
        self._df.add(indexed_text(new))
        self._turns[item_id] = new
        self._text_bytes += turn_bytes(new) - turn_bytes(old)
        self._unlink(item_id)
        vector = self._embed_note(new)
        self._vectors.set(item_id, vector)
        self._link(item_id, vector)

    def delete(self, item_id: str) -> None:
        old = self._get(item_id)
        self._unlink(item_id)
        self._vectors.remove(item_id)
        self._df.remove(indexed_text(old))
        del self._turns[item_id], self._keywords[item_id]
        self._text_bytes -= turn_bytes(old)

    def search(self, query: str, k: int) -> list[Hit]:
        check_k(k)
        if not self._turns:
            return []
        seeds = self._vectors.top(self.embedder.embed_one(query), self.seeds or k)
        best: dict[str, float] = dict(seeds)
        for seed, seed_score in seeds:
            for neighbour, weight in self._links[seed].items():
                propagated = seed_score * weight
                if propagated > best.get(neighbour, -np.inf):
                    best[neighbour] = propagated
        ids = sorted(best, key=lambda i: self._vectors.row_of(i))  # insertion order breaks ties
        order = top_k_indices(np.array([best[i] for i in ids], dtype=np.float64), k)
        return [Hit(ids[i], hit_text(self._turns[ids[i]]), (ids[i],), best[ids[i]]) for i in order]

    def stats(self) -> StoreStats:
        link_bytes = sum(len(n) * 8 + text_bytes(*n) for n in self._links.values())
        keyword_bytes = sum(text_bytes(*words) for words in self._keywords.values())
        total = self._vectors.nbytes + link_bytes + keyword_bytes + self._df.nbytes + self._text_bytes
        return StoreStats(len(self._turns), int(total), 0)

    def _get(self, item_id: str) -> Turn:
        if item_id not in self._turns:
            raise UnknownItemError(f"linked_notes holds no item {item_id!r}")
        return self._turns[item_id]
