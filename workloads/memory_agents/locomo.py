"""LoCoMo-format conversations: load a file the user gives, report its statistics, write the same format.

LoCoMo (snap-research/locomo, `locomo10.json`; CC BY-NC, so membench never ships it) is a JSON list of
samples. Each sample: `sample_id`; `conversation` {speaker_a, speaker_b, session_<n>: [turn], session_<n>_date_time}
with turns {speaker, dia_id "D<n>:<k>", text, optional img_url and blip_caption}; `qa` [{question, answer |
adversarial_answer, evidence [dia_id], category}]; and event_summary / observation / session_summary (ignored).

Category numbers in the file mean 1 = multi-hop, 2 = temporal, 3 = open-domain, 4 = single-hop,
5 = adversarial. This follows LoCoMo's own evaluation code (categories 2/3/4 scored by plain F1, 1 by
sub-answer F1, 5 by "not mentioned") and the data itself (category 2 questions ask "when", category 5
items carry `adversarial_answer`). The paper lists the five types in a different order, the README gives
no map, and several forks (e.g. the Mem0 evaluation and those derived from it) label 1 as single-hop and
3 as multi-hop; their per-category tables are mislabelled.

Token rule for the statistics: each run of word characters (`\\w+`) and each other non-space character
is one token ("I'm 30!" -> I ' m 30 ! = 5). Simple, deterministic, and within ~25% of BPE tokenizers on
English chat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from reference_impls.agents.types import Turn
from workloads.memory_agents.conversation import (
    ADVERSARIAL,
    CATEGORY_NAMES,
    Conversation,
    QAItem,
    Session,
)
from workloads.memory_agents.locomo_evidence import ISSUE_KINDS, EvidenceTally, resolve_evidence

__all__ = ["CATEGORY_NAMES", "Conversation", "Dataset", "DatasetStats", "QAItem", "Session", "count_tokens",
           "conversation_to_locomo", "dump_locomo_json", "format_stats", "load_locomo", "parse_locomo"]

EXPECTED = ("a LoCoMo JSON file: a list of samples, each an object with 'conversation' {speaker_a, speaker_b, "
            "session_<n>: [{speaker, dia_id, text}], session_<n>_date_time} and 'qa' [{question, answer, evidence, "
            "category}]")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SESSION_KEY = re.compile(r"session_(\d+)")


def count_tokens(text: str) -> int:
    """Tokens by the documented word rule (see the module docstring)."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class DatasetStats:
    """What a loaded file holds, and what was wrong with it (reported in the run manifest)."""

    conversations: int
    sessions: int
    turns: int
    tokens: int
    image_turns: int
    sessions_without_date: int
    duplicate_turn_ids: int
    qa: int
    qa_by_category: dict[str, int]
    qa_without_evidence: int
    qa_skipped: int
    evidence_ids: int
    evidence_issues: dict[str, int]
    evidence_recovered: int
    evidence_dropped: int


@dataclass(frozen=True)
class Dataset:
    """A loaded LoCoMo-format file: its conversations, statistics and the sha256 of its bytes."""

    path: str
    sha256: str
    conversations: tuple[Conversation, ...]
    stats: DatasetStats

    def manifest_entry(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, **asdict(self.stats)}


def load_locomo(path: str | Path, include_captions: bool = True) -> Dataset:
    """Read a LoCoMo-format JSON file. Bad path or not LoCoMo -> ValueError naming what was expected.

    include_captions appends an image turn's caption as " [shares <caption>]", as LoCoMo's own baselines do.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"LoCoMo path {str(file)!r} is not a readable file; expected {EXPECTED}")
    raw = file.read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(file)!r} is not JSON ({exc}); expected {EXPECTED}") from None
    conversations, stats = parse_locomo(data, source=str(file), include_captions=include_captions)
    return Dataset(str(file), hashlib.sha256(raw).hexdigest(), conversations, stats)


def parse_locomo(data: object, source: str = "<data>",
                 include_captions: bool = True) -> tuple[tuple[Conversation, ...], DatasetStats]:
    """Parsed JSON -> conversations + statistics. Structure errors raise; evidence errors are counted."""
    if isinstance(data, dict) and "conversation" in data:
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{source!r}: top level is {type(data).__name__}; expected {EXPECTED}")
    tally = EvidenceTally()
    counts = {"tokens": 0, "image_turns": 0, "no_date": 0, "duplicates": 0, "no_evidence": 0, "skipped": 0}
    conversations = tuple(_parse_sample(sample, i, source, include_captions, tally, counts)
                          for i, sample in enumerate(data))
    by_category = {name: 0 for name in CATEGORY_NAMES.values()}
    for conv in conversations:
        for item in conv.qa:
            by_category[CATEGORY_NAMES[item.category]] += 1
    stats = DatasetStats(
        conversations=len(conversations),
        sessions=sum(len(c.sessions) for c in conversations),
        turns=sum(len(s.turns) for c in conversations for s in c.sessions),
        tokens=counts["tokens"], image_turns=counts["image_turns"], sessions_without_date=counts["no_date"],
        duplicate_turn_ids=counts["duplicates"], qa=sum(by_category.values()), qa_by_category=by_category,
        qa_without_evidence=counts["no_evidence"], qa_skipped=counts["skipped"], evidence_ids=tally.seen,
        evidence_issues={kind: tally.issues[kind] for kind in ISSUE_KINDS},
        evidence_recovered=tally.recovered, evidence_dropped=tally.dropped)
    return conversations, stats


def _parse_sample(sample: object, index: int, source: str, include_captions: bool, tally: EvidenceTally,
                  counts: dict[str, int]) -> Conversation:
    where = f"{source!r} sample {index}"
    if not isinstance(sample, dict) or not isinstance(sample.get("conversation"), dict):
        raise ValueError(f"{where} has no 'conversation' object; expected {EXPECTED}")
    conv = sample["conversation"]
    speakers = (conv.get("speaker_a"), conv.get("speaker_b"))
    if not all(isinstance(s, str) for s in speakers):
        raise ValueError(f"{where}: 'conversation' needs string 'speaker_a' and 'speaker_b'; expected {EXPECTED}")
    numbers = sorted(int(m.group(1)) for key in conv if (m := _SESSION_KEY.fullmatch(key)))
    if not numbers:
        raise ValueError(f"{where}: 'conversation' has no session_<n> lists; expected {EXPECTED}")
    sessions = []
    seen_ids: set[str] = set()
    for number in numbers:
        time = conv.get(f"session_{number}_date_time", "")
        if not isinstance(time, str) or not time:
            counts["no_date"] += 1
            time = time if isinstance(time, str) else ""
        turns = conv[f"session_{number}"]
        if not isinstance(turns, list):
            raise ValueError(f"{where}: session_{number} is {type(turns).__name__}; expected a list of turns")
        parsed = tuple(_parse_turn(t, number, time, f"{where} session_{number} turn {k}", include_captions, counts)
                       for k, t in enumerate(turns))
        counts["duplicates"] += sum(1 for t in parsed if t.dia_id in seen_ids)
        seen_ids.update(t.dia_id for t in parsed)
        sessions.append(Session(number, time, parsed))
    qa_raw = sample.get("qa", [])
    if not isinstance(qa_raw, list):
        raise ValueError(f"{where}: 'qa' is {type(qa_raw).__name__}; expected a list of QA objects")
    qa = tuple(item for item in (_parse_qa(q, seen_ids, tally, counts) for q in qa_raw) if item is not None)
    sample_id = sample.get("sample_id")
    return Conversation(str(sample_id) if sample_id is not None else f"sample-{index}", speakers, tuple(sessions), qa)


def _parse_turn(turn: object, session: int, time: str, where: str, include_captions: bool,
                counts: dict[str, int]) -> Turn:
    if not isinstance(turn, dict) or not all(isinstance(turn.get(k), str) for k in ("speaker", "dia_id", "text")):
        raise ValueError(f"{where} is not a turn; expected an object with string speaker, dia_id and text")
    text = turn["text"]
    caption = turn.get("blip_caption")
    if turn.get("img_url") or caption:
        counts["image_turns"] += 1
    if include_captions and isinstance(caption, str) and caption:
        text = f"{text} [shares {caption}]"
    counts["tokens"] += count_tokens(text)
    return Turn(dia_id=turn["dia_id"], session=session, speaker=turn["speaker"], text=text, time=time)


def _parse_qa(item: object, valid_ids: set[str], tally: EvidenceTally, counts: dict[str, int]) -> QAItem | None:
    """One QA object -> QAItem, or None (counted as skipped) when it has no question or no known category."""
    category = item.get("category") if isinstance(item, dict) else None
    if (not isinstance(item, dict) or not isinstance(item.get("question"), str) or isinstance(category, bool)
            or category not in CATEGORY_NAMES):
        counts["skipped"] += 1
        return None
    answer = item.get("adversarial_answer", item.get("answer")) if category == ADVERSARIAL else item.get("answer")
    raw_evidence = item.get("evidence", [])
    evidence = resolve_evidence(raw_evidence if isinstance(raw_evidence, list) else [raw_evidence], valid_ids, tally)
    stale_raw = item.get("stale_evidence", [])
    stale = tuple(i for i in stale_raw if isinstance(i, str) and i in valid_ids) if isinstance(stale_raw, list) else ()
    if not evidence:
        counts["no_evidence"] += 1
    return QAItem(item["question"], "" if answer is None else str(answer), evidence, category, stale)


def conversation_to_locomo(conv: Conversation) -> dict:
    """A Conversation -> one LoCoMo sample object (key order as in locomo10.json)."""
    body: dict = {"speaker_a": conv.speakers[0], "speaker_b": conv.speakers[1]}
    for session in conv.sessions:
        body[f"session_{session.index}_date_time"] = session.time
        body[f"session_{session.index}"] = [{"speaker": t.speaker, "dia_id": t.dia_id, "text": t.text}
                                            for t in session.turns]
    qa = []
    for item in conv.qa:
        answer_key = "adversarial_answer" if item.category == ADVERSARIAL else "answer"
        entry = {"question": item.question, answer_key: item.answer, "evidence": list(item.evidence),
                 "category": item.category}
        if item.stale_evidence:
            entry["stale_evidence"] = list(item.stale_evidence)
        qa.append(entry)
    return {"sample_id": conv.sample_id, "conversation": body, "qa": qa,
            "event_summary": {}, "observation": {}, "session_summary": {}}


def dump_locomo_json(conversations: Sequence[Conversation], path: str | Path, indent: int | None = None) -> str:
    """Write conversations as a LoCoMo JSON list; return the sha256 of the bytes written."""
    text = json.dumps([conversation_to_locomo(c) for c in conversations], indent=indent, ensure_ascii=True)
    payload = (text + "\n").encode("utf-8")
    Path(path).write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def format_stats(dataset: Dataset) -> str:
    """The statistics as aligned text lines, for people."""
    s = dataset.stats
    lines = [f"file         {dataset.path}", f"sha256       {dataset.sha256}",
             f"conversations {s.conversations}  sessions {s.sessions}  turns {s.turns}  tokens {s.tokens} "
             f"(word rule)  image turns {s.image_turns}",
             f"qa           {s.qa}  " + "  ".join(f"{k} {v}" for k, v in s.qa_by_category.items()),
             f"             without evidence {s.qa_without_evidence}  skipped {s.qa_skipped}",
             f"evidence ids {s.evidence_ids}  recovered {s.evidence_recovered}  dropped {s.evidence_dropped}",
             "  issues     " + "  ".join(f"{k} {v}" for k, v in s.evidence_issues.items())]
    if s.sessions_without_date or s.duplicate_turn_ids:
        lines.append(f"  sessions without date {s.sessions_without_date}  duplicate turn ids {s.duplicate_turn_ids}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the statistics of a LoCoMo-format JSON file.")
    parser.add_argument("path")
    parser.add_argument("--json", action="store_true", help="print the manifest entry as JSON")
    args = parser.parse_args(argv)
    dataset = load_locomo(args.path)
    print(json.dumps(dataset.manifest_entry(), indent=2) if args.json else format_stats(dataset))


if __name__ == "__main__":
    main()
