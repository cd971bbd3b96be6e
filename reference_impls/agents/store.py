"""The one interface every agent memory store implements, and the name -> store registry.

WHY one interface: the retrieval and cost workloads drive every store the same way (add each turn, then
search per question), so recall, tokens injected, latency and footprint compare like for like.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable

from reference_impls.agents.types import Hit, StoreStats, Turn


class UnknownItemError(KeyError, ValueError):
    """update/delete named an item id the store does not hold (never added, deleted, or evicted)."""


class MemoryStore(ABC):
    """add turns, search them, update or delete items, report the store's size.

    Item ids are the store's own (most stores use the turn's dia_id; derived items get a prefix such as
    "core:"). search returns at most k hits, best first, scores non-increasing, ties broken by insertion order.
    """

    name: str = ""

    @abstractmethod
    def add(self, turn: Turn) -> list[str]:
        """Write one turn; return the ids of the items it created (may be empty)."""

    def add_many(self, turns: Iterable[Turn]) -> list[str]:
        """Write turns in order (embedding stores override this to embed in one batch); return all new ids."""
        created: list[str] = []
        for turn in turns:
            created.extend(self.add(turn))
        return created

    @abstractmethod
    def search(self, query: str, k: int) -> list[Hit]:
        """The best k items for the query, best first."""

    @abstractmethod
    def update(self, item_id: str, text: str) -> None:
        """Replace an item's text (its source turn ids stay); later searches see the new text only."""

    @abstractmethod
    def delete(self, item_id: str) -> None:
        """Remove an item; later searches never return it."""

    @abstractmethod
    def stats(self) -> StoreStats:
        """Items held and their true bytes (each store's docstring says how they are counted)."""

    def close(self) -> None:  # noqa: B027 - a no-op by default, not abstract
        """Release files and connections (a no-op for in-memory stores)."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return k


def check_turn(turn: Turn, held: dict) -> None:
    if not isinstance(turn, Turn):
        raise ValueError(f"add() takes a Turn, got {type(turn).__name__}")
    if turn.dia_id in held:
        raise ValueError(f"turn {turn.dia_id!r} was already added (dia_ids are unique within a conversation)")


def positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"option {name} must be an int >= 1, got {value!r}")
    return value


def fraction(name: str, value: object, low: float = 0.0, high: float = 1.0) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= float(value) <= high:
        raise ValueError(f"option {name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


# name -> (module under reference_impls.agents, class name); modules load on demand so optional extras
# (faiss, sqlite-vec) are imported only by the store that needs them.
_STORES: dict[str, tuple[str, str]] = {
    "full_context": ("full_context", "FullContextStore"),
    "recency_window": ("recency_window", "RecencyWindowStore"),
    "bm25": ("bm25_store", "BM25Store"),
    "dense": ("dense", "DenseStore"),
    "faiss": ("faiss_store", "FaissStore"),
    "sqlite_vec": ("sqlite_vec_store", "SqliteVecStore"),
    "hierarchical": ("hierarchical", "HierarchicalStore"),
    "linked_notes": ("linked_notes", "LinkedNotesStore"),
    "typed": ("typed", "TypedStore"),
    "hybrid": ("hybrid", "HybridStore"),
}


def store_names() -> list[str]:
    """Every store name make_store accepts (optional-extra stores included; they fail on use if missing)."""
    return sorted(_STORES)


def store_class(name: str) -> type[MemoryStore]:
    if name not in _STORES:
        raise ValueError(f"unknown memory store {name!r}; allowed: {', '.join(store_names())}")
    module_name, class_name = _STORES[name]
    module = importlib.import_module(f"reference_impls.agents.{module_name}")
    return getattr(module, class_name)


def store_options(name: str) -> dict[str, object]:
    """The options a store takes, with their defaults."""
    signature = inspect.signature(store_class(name).__init__)
    return {p.name: p.default for p in list(signature.parameters.values())[1:]
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_store(name: str, **options: object) -> MemoryStore:
    """A new, empty store by name; an unknown name or option is a ValueError listing what is allowed."""
    allowed = store_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"store {name!r} has no option(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(sorted(allowed)) or '(none)'}")
    return store_class(name)(**options)
