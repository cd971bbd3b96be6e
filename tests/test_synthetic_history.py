"""The seeded synthetic LoCoMo-format generator: determinism, dates, exact gold evidence per category."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from workloads.memory_agents import synthetic_vocab as vocab
from workloads.memory_agents.conversation import ADVERSARIAL, MULTI_HOP, OPEN_DOMAIN, SINGLE_HOP, TEMPORAL
from workloads.memory_agents.locomo import load_locomo
from workloads.memory_agents.synthetic_history import MONTHS, generate, write_locomo_json


@pytest.fixture(scope="module")
def conv():
    return generate(6000, 2000, seed=11)  # LoCoMo scale, ~0.2 s


def _date(text: str) -> dt.date:
    day, month, year = re.search(r"(\d+) (\w+),? (\d{4})", text).groups()
    return dt.date(int(year), MONTHS.index(month) + 1, int(day))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert write_locomo_json(a, 500, 100, seed=5) == write_locomo_json(b, 500, 100, seed=5)
    assert a.read_bytes() == b.read_bytes()
    write_locomo_json(c, 500, 100, seed=6)
    assert a.read_bytes() != c.read_bytes()


def test_shape_ids_and_increasing_dates(conv):
    assert sum(len(s.turns) for s in conv.sessions) == 6000 and len(conv.qa) == 2000
    assert [s.index for s in conv.sessions] == list(range(1, len(conv.sessions) + 1))
    for session in conv.sessions:
        assert [t.dia_id for t in session.turns] == [f"D{session.index}:{k}" for k in range(1, len(session.turns) + 1)]
        assert {t.speaker for t in session.turns} <= set(conv.speakers)
        assert all(t.time == session.time for t in session.turns)
    dates = [_date(s.time) for s in conv.sessions]
    assert all(later > earlier for earlier, later in zip(dates, dates[1:], strict=False))


def test_category_shares_follow_locomo(conv):
    counts = {c: sum(q.category == c for q in conv.qa) for c in range(1, 6)}
    assert counts == {MULTI_HOP: 280, TEMPORAL: 320, OPEN_DOMAIN: 120, SINGLE_HOP: 840, ADVERSARIAL: 440}
    assert len({q.question for q in conv.qa if q.category == SINGLE_HOP}) > 700  # paraphrases x people


def test_evidence_is_exact_per_category(conv):
    turns = conv.turn_by_id()
    order = {dia_id: i for i, dia_id in enumerate(turns)}
    updated = 0
    for q in conv.qa:
        assert q.evidence and all(e in turns for e in q.evidence)
        texts = [turns[e].text for e in q.evidence]
        if q.category == SINGLE_HOP:
            assert len(q.evidence) == 1 and q.answer in texts[0]
            assert all(order[s] < order[q.evidence[0]] and q.answer not in turns[s].text for s in q.stale_evidence)
            updated += bool(q.stale_evidence)
        elif q.category == TEMPORAL:
            assert q.question.startswith("When") and _date(q.answer) == _date(turns[q.evidence[0]].time)
        elif q.category == OPEN_DOMAIN:
            city = next(c for c in vocab.CITIES if c in texts[0])
            assert q.answer in vocab.CITIES[city]
        elif q.category == MULTI_HOP:
            assert len(q.evidence) == 2
        else:
            assert q.answer in texts[0] or _date(q.answer) == _date(turns[q.evidence[0]].time)
    assert updated > 50  # facts that changed: the new statement is gold, the old ones stale


def test_multi_hop_bridge_and_comparison(conv):
    turns = conv.turn_by_id()
    bridges = [q for q in conv.qa if q.category == MULTI_HOP and q.question.startswith(("Where", "In which"))]
    assert bridges
    for q in bridges:
        company = re.search(r"works at (.+) live\?|employee of (.+) live\?", q.question)
        assert (company.group(1) or company.group(2)) in turns[q.evidence[0]].text
        assert q.answer in turns[q.evidence[1]].text
    for q in conv.qa:
        if q.category == MULTI_HOP and q.question.startswith("Do "):
            assert q.answer == "yes" or q.answer.startswith("no: ")


def test_adversarial_asks_about_what_was_never_said(conv):
    """A slot-adversarial question names a person who never stated that fact; its answer is someone else's."""
    turns = conv.turn_by_id()
    slot_questions = [q for q in conv.qa if q.category == ADVERSARIAL and not q.question.startswith("When")]
    assert slot_questions
    for q in slot_questions:
        assert q.answer in turns[q.evidence[0]].text and not q.stale_evidence


def test_loader_reads_generator_output_with_zero_malformed_ids(tmp_path):
    path = tmp_path / "g.json"
    write_locomo_json(path, 2000, 400, seed=2)
    stats = load_locomo(path).stats
    assert (stats.turns, stats.qa, stats.evidence_dropped, stats.evidence_recovered) == (2000, 400, 0, 0)
    assert sum(stats.evidence_issues.values()) == 0


def test_smallest_history_and_bad_arguments():
    small = generate(10, 3, seed=0)
    assert sum(len(s.turns) for s in small.sessions) == 10 and len(small.qa) == 3
    with pytest.raises(ValueError, match="turns must be an int >= 10"):
        generate(5, 1, seed=0)
    with pytest.raises(ValueError, match="questions must be an int >= 0"):
        generate(100, -1, seed=0)
    with pytest.raises(ValueError, match="supports only"):
        generate(10, 500, seed=0)
