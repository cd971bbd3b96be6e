"""Extractive keywords and summaries (no model): rank words and sentences by TF-IDF over the store's own turns.

WHY shared: the hierarchical store's page summaries and the linked-notes store's note keywords both need
"the salient words of this text given everything seen so far", defined once here.
"""

from __future__ import annotations

import math
from collections import Counter

from reference_impls.agents.text import content_words, sentences


class DocumentFrequency:
    """How many held documents contain each content word; idf(w) = ln(1 + N / df(w)) (unseen word: df = 1)."""

    def __init__(self) -> None:
        self.documents = 0
        self._df: Counter[str] = Counter()

    def add(self, text: str) -> None:
        self.documents += 1
        self._df.update(set(content_words(text)))

    def remove(self, text: str) -> None:
        self.documents -= 1
        self._df.subtract(set(content_words(text)))

    def idf(self, word: str) -> float:
        return math.log(1.0 + max(self.documents, 1) / max(self._df.get(word, 0), 1))

    @property
    def nbytes(self) -> int:
        return sum(len(w.encode("utf-8")) + 8 for w in self._df)


def top_keywords(text: str, df: DocumentFrequency, n: int) -> list[str]:
    """The n content words of `text` with the highest tf x idf, ties by first occurrence."""
    counts = Counter(content_words(text))
    first = {w: i for i, w in reversed(list(enumerate(content_words(text))))}
    ranked = sorted(counts, key=lambda w: (-counts[w] * df.idf(w), first[w]))
    return ranked[:n]


def extractive_summary(texts: list[str], df: DocumentFrequency, n_sentences: int, n_keywords: int) -> str:
    """The page's n best sentences (in page order) and its n best keywords.

    Sentence score = sum over the sentence's distinct content words of tf_page(w) x idf(w), divided by
    sqrt(number of content words in the sentence) so long sentences do not win by length alone.
    """
    page_tf = Counter(w for t in texts for w in content_words(t))
    candidates = [s for t in texts for s in sentences(t)]

    def score(sentence: str) -> float:
        distinct = set(content_words(sentence))
        if not distinct:
            return 0.0
        return sum(page_tf[w] * df.idf(w) for w in distinct) / math.sqrt(len(content_words(sentence)))

    best = sorted(range(len(candidates)), key=lambda i: (-score(candidates[i]), i))[:n_sentences]
    chosen = " ".join(candidates[i] for i in sorted(best))
    keywords = sorted(page_tf, key=lambda w: (-page_tf[w] * df.idf(w), w))[:n_keywords]
    return f"{chosen} keywords: {' '.join(keywords)}" if keywords else chosen
