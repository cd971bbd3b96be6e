"""sqlite_vec: turns and their embeddings in an on-disk SQLite database, searched by sqlite-vec's vec0 table.

Optional extra (`sqlite-vec`, plus `apsw` where Python's sqlite3 cannot load extensions). vec0 KNN with
distance_metric=cosine is a brute-force exact scan, so its ranking equals `dense`'s; score = 1 - cosine distance.
The database lives in a temporary directory (or the `path` given) in WAL mode with synchronous=NORMAL (a commit
does not fsync), one transaction per add_many batch.
Bytes on disk: the database file plus its -wal file as they stand (SQLite does not shrink files on delete).
Bytes in memory: the Python copy of the turns (used for hit text) and the id maps; SQLite's own page cache is
not attributed per database, so it is not counted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from typing import Any

import numpy as np

from reference_impls.agents.embedded_turns import EmbeddedTurnStore
from reference_impls.agents.embedders import Embedder
from reference_impls.agents.types import Turn

INSTALL_HINT = "pip install 'sqlite-vec>=0.1.6' 'apsw>=3.45'"
MAX_KNN_K = 4096  # vec0 refuses a larger k in one KNN query; search returns at most this many hits


def connect_with_vec(path: str) -> Any:
    """A connection to `path` with sqlite-vec loaded: stdlib sqlite3 when it can load extensions, else apsw."""
    try:
        import sqlite_vec
    except ImportError as exc:
        raise RuntimeError(f"the sqlite_vec store needs sqlite-vec: {INSTALL_HINT}") from exc
    import sqlite3

    connection = sqlite3.connect(path, isolation_level=None)
    if hasattr(connection, "enable_load_extension"):
        connection.enable_load_extension(True)
        sqlite_vec.load(connection)
        connection.enable_load_extension(False)
        return connection
    connection.close()
    try:
        import apsw
    except ImportError as exc:
        raise RuntimeError(f"this Python's sqlite3 cannot load extensions; the sqlite_vec store needs apsw: "
                           f"{INSTALL_HINT}") from exc
    connection = apsw.Connection(path)
    connection.enable_load_extension(True)
    connection.load_extension(sqlite_vec.loadable_path())
    connection.enable_load_extension(False)
    return connection


class SqliteVecStore(EmbeddedTurnStore):
    name = "sqlite_vec"

    def __init__(self, *, embedder: str | Embedder | None = None, path: str | None = None) -> None:
        super().__init__(embedder)
        if path is not None and (not isinstance(path, str) or os.path.exists(path)):
            raise ValueError(f"option path must name a database file that does not exist yet, got {path!r}")
        self._tempdir = tempfile.TemporaryDirectory(prefix="membench-sqlite-vec-") if path is None else None
        self.path = path or os.path.join(self._tempdir.name, "memory.db")
        self._db = connect_with_vec(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE turns (rowid INTEGER PRIMARY KEY, dia_id TEXT UNIQUE NOT NULL, "
                         "speaker TEXT, time TEXT, text TEXT)")
        self._db.execute(f"CREATE VIRTUAL TABLE vec_turns USING vec0(embedding float[{self.embedder.dim}] "
                         "distance_metric=cosine)")
        self._rowid_of: dict[str, int] = {}
        self._key_of: dict[int, str] = {}
        self._next_rowid = 1

    def _index_add(self, keys: list[str], vectors: np.ndarray) -> None:
        self._db.execute("BEGIN")
        try:
            for key, vector in zip(keys, vectors, strict=True):
                rowid = self._next_rowid
                self._next_rowid += 1
                self._db.execute("INSERT INTO turns (rowid, dia_id) VALUES (?, ?)", (rowid, key))
                self._db.execute("INSERT INTO vec_turns (rowid, embedding) VALUES (?, ?)",
                                 (rowid, _blob(vector)))
                self._rowid_of[key] = rowid
                self._key_of[rowid] = key
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def add_many(self, turns: Iterable[Turn]) -> list[str]:
        created = super().add_many(turns)
        if created:  # the turn texts, written after the base has validated and indexed them
            self._db.execute("BEGIN")
            for key in created:
                turn = self._turns[key]
                self._db.execute("UPDATE turns SET speaker = ?, time = ?, text = ? WHERE rowid = ?",
                                 (turn.speaker, turn.time, turn.text, self._rowid_of[key]))
            self._db.execute("COMMIT")
        return created

    def update(self, item_id: str, text: str) -> None:
        super().update(item_id, text)
        self._db.execute("UPDATE turns SET text = ? WHERE rowid = ?", (text, self._rowid_of[item_id]))

    def _index_replace(self, key: str, vector: np.ndarray) -> None:
        self._db.execute("UPDATE vec_turns SET embedding = ? WHERE rowid = ?", (_blob(vector), self._rowid_of[key]))

    def _index_remove(self, key: str) -> None:
        rowid = self._rowid_of.pop(key)
        del self._key_of[rowid]
        self._db.execute("DELETE FROM vec_turns WHERE rowid = ?", (rowid,))
        self._db.execute("DELETE FROM turns WHERE rowid = ?", (rowid,))

    def _index_top(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        rows = self._db.execute("SELECT rowid, distance FROM vec_turns WHERE embedding MATCH ? AND k = ? "
                                "ORDER BY distance", (_blob(query), min(k, MAX_KNN_K))).fetchall()
        ranked = sorted(((1.0 - float(distance), int(rowid)) for rowid, distance in rows),
                        key=lambda pair: (-pair[0], pair[1]))
        return [(self._key_of[rowid], score) for score, rowid in ranked]

    def _index_bytes(self) -> tuple[int, int]:
        on_disk = sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))
        in_memory = sum(len(k.encode("utf-8")) + 16 for k in self._rowid_of)
        return in_memory, on_disk

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()
