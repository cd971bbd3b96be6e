"""Text for fidelity measurements: prose that ships with CPython, and a seeded retrieval corpus with known answers.

WHY: perplexity and embedding fidelity need real text, and the suite downloads nothing. Every CPython carries
the Python Language Reference as `pydoc_data.topics` (the text behind `help("if")`), so that is the reference
text: a fixed list of topics, in a fixed order, reduced to their prose paragraphs (grammar and code blocks
dropped). The topics change between Python releases (even between 3.11 patch releases), so the selected text's
sha256 is part of every result; the default topics are ones measured identical on CPython 3.10.13, 3.11.7,
3.12.1 and 3.13.0. Calibration (what GPTQ/AWQ see) and evaluation use disjoint topics.

Retrieval needs queries with known relevant documents; those are generated from a seed (`retrieval_corpus`).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import sys
from dataclasses import dataclass

REFERENCE_SOURCE = "pydoc_data.topics"
# Identical on CPython 3.10.13, 3.11.7, 3.12.1 and 3.13.0 (sha256 of each topic compared): ~47K characters.
EVALUATION_TOPICS = ("comparisons", "import", "with", "exceptions", "context-managers", "slicings", "in", "global",
                     "booleans", "integers", "assert", "return", "del", "unary", "bitwise", "yield", "while",
                     "dynamic-features", "if", "break", "lambda", "continue", "pass")
# Disjoint from the evaluation topics; identical on 3.10-3.12 (3.13 edits some): ~50K characters.
CALIBRATION_TOPICS = ("typesseq", "sequence-types", "typesseq-mutable", "objects", "binary", "subscriptions",
                      "augassign", "typesmethods", "power", "atom-identifiers", "exprlists", "nonlocal", "floating")
PARTS = {"evaluation": EVALUATION_TOPICS, "calibration": CALIBRATION_TOPICS}
_HEADING_RULE = re.compile(r"^[*=\-~^]{3,}$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")


@dataclass(frozen=True)
class ReferenceText:
    """The selected prose and where it came from; `sha256` identifies it across Python versions."""

    part: str  # "evaluation" or "calibration"
    source: str  # e.g. "pydoc_data.topics of CPython 3.11.7"
    topics: tuple[str, ...]  # the topics found and used, in order
    paragraphs: tuple[str, ...]
    sha256: str  # of `text`, UTF-8

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


def prose_paragraphs(topic_text: str) -> list[str]:
    """Paragraphs of a pydoc topic that are prose: not a heading, not an indented grammar or code block.

    A paragraph is a run of lines between blank lines; its lines are joined with single spaces."""
    out = []
    for block in re.split(r"\n\s*\n", topic_text):
        lines = block.rstrip().split("\n")
        if not lines[0].strip() or lines[0][0].isspace():
            continue  # grammar productions, examples and quoted code are indented
        if any(_HEADING_RULE.match(line.strip()) for line in lines):
            continue
        out.append(" ".join(" ".join(lines).split()))
    return out


@functools.lru_cache(maxsize=4)
def reference_text(part: str = "evaluation") -> ReferenceText:
    """The prose of `part`'s topics from this interpreter's pydoc_data; topics this Python lacks are skipped
    (the sha256 then differs, which is how a result says its text did)."""
    if part not in PARTS:
        raise ValueError(f"unknown reference-text part {part!r}; allowed: {', '.join(PARTS)}")
    from pydoc_data import topics

    found = tuple(name for name in PARTS[part] if name in topics.topics)
    if not found:
        raise ValueError(f"none of the {part} topics is in this Python's {REFERENCE_SOURCE}")
    paragraphs = tuple(p for name in found for p in prose_paragraphs(topics.topics[name]))
    text = "\n\n".join(paragraphs)
    version = ".".join(str(v) for v in sys.version_info[:3])
    return ReferenceText(part, f"{REFERENCE_SOURCE} of CPython {version}", found, paragraphs,
                         hashlib.sha256(text.encode()).hexdigest())


def reference_sentences(part: str = "evaluation", min_words: int = 6, max_words: int = 48) -> tuple[str, ...]:
    """Sentences of the part's prose, in text order, of min_words to max_words words (drops fragments and the
    few run-on lists)."""
    sentences = []
    for paragraph in reference_text(part).paragraphs:
        for sentence in _SENTENCE_END.split(paragraph):
            if min_words <= len(sentence.split()) <= max_words:
                sentences.append(sentence)
    return tuple(sentences)


def sample_sentences(part: str, count: int, seed: int) -> tuple[str, ...]:
    """`count` sentences drawn without replacement by `seed`, kept in text order."""
    pool = reference_sentences(part)
    if not 1 <= count <= len(pool):
        raise ValueError(f"sentence count must be in [1, {len(pool)}] (the {part} text's sentences), got {count}")
    picked = sorted(random.Random(seed).sample(range(len(pool)), count))
    return tuple(pool[i] for i in picked)


# --- seeded retrieval corpus -------------------------------------------------------------------------------------
# Each person has a profession, a city and a hobby; a document states them with a person's (invented) name, a query
# asks for the combination without the name and in other words (the profession and hobby are paraphrased). Each
# document also mentions a relative with a random profession, city and hobby, so facts of a query turn up in
# other documents split between two people: an encoder has to bind facts to the right person. Without the
# relatives, fp32 all-MiniLM-L6-v2 reached recall@10 = 1.0 on every seed (nothing left for a damaged encoder to
# lose); with them, at 128 documents and 48 queries, recall@10 is 0.92-0.98 over seeds 0-4 (recall@1 0.38-0.58).
PROFESSIONS = (("physician", "doctor"), ("attorney", "lawyer"), ("chef", "professional cook"),
               ("carpenter", "woodworker"), ("pilot", "airline aviator"), ("pharmacist", "dispenser of medicines"),
               ("architect", "designer of buildings"), ("journalist", "news reporter"), ("dentist", "tooth doctor"),
               ("firefighter", "fire brigade member"), ("librarian", "keeper of library books"),
               ("electrician", "wiring technician"))
CITIES = ("Lisbon", "Oslo", "Nairobi", "Osaka", "Toronto", "Lima", "Krakow", "Cairo", "Melbourne", "Dublin",
          "Hanoi", "Denver")
HOBBIES = (("plays the cello", "performs on a cello"), ("grows tomatoes", "gardens vegetables"),
           ("runs marathons", "does long-distance running"), ("collects stamps", "keeps a postage stamp collection"),
           ("keeps bees", "tends beehives"), ("climbs mountains", "goes mountaineering"),
           ("bakes sourdough bread", "makes bread from a starter"), ("paints watercolors", "makes watercolor art"),
           ("builds model trains", "assembles miniature railways"), ("plays chess", "competes at chess"),
           ("sails small boats", "goes sailing"), ("writes poetry", "composes poems"))
FIRST_NAMES = ("Ada", "Bram", "Celia", "Dmitri", "Esme", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaia", "Lorenz",
               "Mira", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Soren", "Talia", "Umar", "Vera", "Wim", "Yara")
SURNAME_SYLLABLES = ("bar", "cov", "del", "fen", "gar", "hol", "kin", "lom", "mar", "nov", "pel", "quist", "ros",
                     "sten", "tor", "vik", "wen", "zal")
DOCUMENT_TEMPLATES = ("{name} is {profession} in {city} who {hobby} in their spare time.",
                      "Living in {city}, {name} works as {profession} and {hobby}.",
                      "{name}, {profession} based in {city}, {hobby} on weekends.")
RELATIVE_TEMPLATE = " Their {relation} {name} is {profession} in {city} who {hobby}."
RELATIONS = ("sister", "brother", "neighbor", "cousin", "friend")
QUERY_TEMPLATES = ("Which {profession} from {city} {hobby}?",
                   "Find the {profession} living in {city} who {hobby}.",
                   "Who {hobby} and works as {article} {profession} in {city}?")


@dataclass(frozen=True)
class RetrievalCorpus:
    """Queries, documents and, per query, the indices of its relevant documents."""

    queries: tuple[str, ...]
    documents: tuple[str, ...]
    relevant: tuple[tuple[int, ...], ...]
    seed: int


def retrieval_corpus(documents: int = 128, queries: int = 48, seed: int = 0) -> RetrievalCorpus:
    """`documents` people with distinct (profession, city, hobby) facts, each with a relative; `queries` of the
    people, drawn by the seed, are asked about (one relevant document each)."""
    combinations = len(PROFESSIONS) * len(CITIES) * len(HOBBIES)
    if not 1 <= documents <= combinations:
        raise ValueError(f"documents must be in [1, {combinations}] (distinct fact combinations), got {documents}")
    if not 1 <= queries <= documents:
        raise ValueError(f"queries must be in [1, documents={documents}], got {queries}")
    rng = random.Random(seed)
    facts = rng.sample(range(combinations), documents)  # distinct (profession, city, hobby) per person
    names = _distinct_names(rng, 2 * documents)
    docs = []
    for person, code in enumerate(facts):
        profession, city, hobby = _decode(code)
        text = rng.choice(DOCUMENT_TEMPLATES).format(name=names[person], profession=_a(PROFESSIONS[profession][0]),
                                                     city=CITIES[city], hobby=HOBBIES[hobby][0])
        job, town, pastime = (rng.randrange(len(values)) for values in (PROFESSIONS, CITIES, HOBBIES))
        docs.append(text + RELATIVE_TEMPLATE.format(relation=rng.choice(RELATIONS), name=names[documents + person],
                                                    profession=_a(PROFESSIONS[job][0]), city=CITIES[town],
                                                    hobby=HOBBIES[pastime][0]))
    asked = rng.sample(range(documents), queries)
    texts = []
    for person in asked:
        profession, city, hobby = _decode(facts[person])
        asked_as = PROFESSIONS[profession][1]
        texts.append(rng.choice(QUERY_TEMPLATES).format(profession=asked_as, article=_a(asked_as).split()[0],
                                                        city=CITIES[city], hobby=HOBBIES[hobby][1]))
    return RetrievalCorpus(tuple(texts), tuple(docs), tuple((p,) for p in asked), seed)


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _decode(code: int) -> tuple[int, int, int]:
    profession, rest = divmod(code, len(CITIES) * len(HOBBIES))
    city, hobby = divmod(rest, len(HOBBIES))
    return profession, city, hobby


def _distinct_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    out = []
    while len(out) < count:
        surname = "".join(rng.choice(SURNAME_SYLLABLES) for _ in range(2)).capitalize()
        name = f"{rng.choice(FIRST_NAMES)} {surname}"
        if name not in names:
            names.add(name)
            out.append(name)
    return out


def recall_at_k(query_embeddings, document_embeddings, relevant: tuple[tuple[int, ...], ...], k: int) -> float:
    """Mean over queries of |relevant ∩ top-k by dot product| / |relevant| (embeddings are L2-normalized, so the
    dot product is the cosine)."""
    import torch

    if query_embeddings.shape[0] != len(relevant):
        raise ValueError(f"{query_embeddings.shape[0]} query embeddings but {len(relevant)} relevance lists")
    scores = query_embeddings.double() @ document_embeddings.double().T  # [Q, D]
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    hits = [len(set(rel) & set(row)) / len(rel) for rel, row in zip(relevant, top, strict=True)]
    return float(torch.tensor(hits, dtype=torch.float64).mean())
