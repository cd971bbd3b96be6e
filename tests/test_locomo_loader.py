"""The LoCoMo-format loader: statistics of the shipped fixture, the category map, malformed evidence ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from workloads.memory_agents.fixture_faults import INJECTED
from workloads.memory_agents.locomo import CATEGORY_NAMES, dump_locomo_json, load_locomo, parse_locomo
from workloads.memory_agents.locomo_evidence import EvidenceTally, resolve_evidence
from workloads.memory_agents.synthetic_history import generate, write_locomo_json

FIXTURE = Path(__file__).parent / "fixtures" / "locomo_sample.json"


def test_category_map_is_locomos_not_the_papers_order():
    assert CATEGORY_NAMES == {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def test_fixture_statistics():
    dataset = load_locomo(FIXTURE)
    s = dataset.stats
    assert dataset.sha256 == hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    assert (s.conversations, s.sessions, s.turns, s.qa, s.image_turns) == (1, 4, 60, 30, 1)
    assert set(s.qa_by_category) == set(CATEGORY_NAMES.values()) and all(n > 0 for n in s.qa_by_category.values())
    assert sum(s.qa_by_category.values()) == 30
    assert s.evidence_issues == INJECTED
    assert s.evidence_recovered == 4  # two ids split out of the joined string, two rewritten to canonical form
    assert s.evidence_dropped == 5    # empty_turn, missing_session, dangling, not_a_string, unparseable
    assert s.qa_without_evidence == 0 and s.qa_skipped == 0
    assert s.tokens > s.turns * 5
    assert dataset.manifest_entry()["sha256"] == dataset.sha256


def test_fixture_category_contents_match_the_map():
    raw = json.loads(FIXTURE.read_text())[0]["qa"]
    for item in raw:
        if item["category"] == 5:
            assert "adversarial_answer" in item and "answer" not in item
        else:
            assert "answer" in item and "adversarial_answer" not in item
        if item["category"] == 2:
            assert item["question"].startswith("When")
        if item["category"] == 1:
            assert len(item["evidence"]) == 2 or ";" in item["evidence"][0]
    loaded = load_locomo(FIXTURE).conversations[0].qa
    assert [q.category for q in loaded] == [q["category"] for q in raw]


def test_fixture_evidence_is_all_valid_after_repair():
    conv = load_locomo(FIXTURE).conversations[0]
    ids = conv.turn_by_id()
    assert all(e in ids for q in conv.qa for e in q.evidence)
    assert any(len(q.evidence) == 2 for q in conv.qa if q.category == 1)


def test_fixture_is_reproducible_by_its_documented_command(tmp_path):
    out = tmp_path / "again.json"
    write_locomo_json(out, turns=60, questions=30, seed=7, indent=1, malformed=True)
    assert out.read_bytes() == FIXTURE.read_bytes()


def test_image_caption_is_appended_only_when_asked():
    with_caption = load_locomo(FIXTURE).conversations[0].sessions[0].turns[-1].text
    without = load_locomo(FIXTURE, include_captions=False).conversations[0].sessions[0].turns[-1].text
    assert with_caption == f"{without} [shares a photo of a dog on a beach]"


@pytest.mark.parametrize(("raw", "kept", "kind"), [
    ("D8:6; D9:17", ("D8:6", "D9:17"), "joined"),
    ("D8:6 D9:17", ("D8:6", "D9:17"), "joined"),
    ("D8:06", ("D8:6",), "noncanonical"),
    ("d 8 : 6", ("D8:6",), "noncanonical"),
    ("D:8:6", ("D8:6",), "noncanonical"),
    ("D10:", (), "empty_turn"),
    ("D:1", (), "missing_session"),
    ("D99:1", (), "dangling"),
    (17, (), "not_a_string"),
    ("", (), "unparseable"),
    ("evidence", (), "unparseable"),
])
def test_resolve_evidence_kinds(raw, kept, kind):
    tally = EvidenceTally()
    valid = {"D8:6", "D9:17", "D10:1"}
    assert resolve_evidence([raw], valid, tally) == kept
    assert tally.issues[kind] == 1 and tally.seen == 1
    assert tally.dropped == (0 if kept else 1)


def test_joined_string_with_one_bad_part_keeps_the_good_part():
    tally = EvidenceTally()
    assert resolve_evidence(["D8:6; D10:", "D8:6"], {"D8:6"}, tally) == ("D8:6",)
    assert (tally.issues["joined"], tally.issues["empty_turn"], tally.recovered, tally.dropped) == (1, 1, 1, 1)


def test_odd_qa_items_are_skipped_never_fatal():
    sample = json.loads(FIXTURE.read_text())[0]
    sample["qa"] = [{"question": "q?", "answer": 2022, "evidence": "D1:1", "category": 4},
                    {"question": "q?", "answer": "a", "evidence": [], "category": 9},
                    {"question": "q?", "answer": "a", "evidence": [], "category": True},
                    {"answer": "a", "evidence": [], "category": 4},
                    {"question": "q?", "evidence": ["D1:2"], "category": 5}]
    (conv,), stats = parse_locomo([sample])
    assert [(q.answer, q.evidence) for q in conv.qa] == [("2022", ("D1:1",)), ("", ("D1:2",))]
    assert stats.qa_skipped == 3 and stats.qa == 2


@pytest.mark.parametrize("content", ["not json {", "{\"a\": 1}", "[1, 2]", "[]", "[{\"conversation\": {}}]",
                                     "[{\"conversation\": {\"speaker_a\": \"A\", \"speaker_b\": \"B\"}}]"])
def test_not_locomo_is_a_value_error_naming_the_format(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="expected a LoCoMo JSON file"):
        load_locomo(path)


def test_missing_path_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a readable file"):
        load_locomo(tmp_path / "nope.json")


def test_turn_without_text_is_a_value_error(tmp_path):
    sample = json.loads(FIXTURE.read_text())[0]
    del sample["conversation"]["session_2"][3]["text"]
    with pytest.raises(ValueError, match="session_2 turn 3"):
        parse_locomo([sample])


def test_round_trip_of_a_generated_conversation(tmp_path):
    conv = generate(300, 60, seed=3)
    dump_locomo_json([conv], tmp_path / "c.json")
    dataset = load_locomo(tmp_path / "c.json")
    assert dataset.conversations == (conv,)
    assert sum(dataset.stats.evidence_issues.values()) == 0 and dataset.stats.evidence_dropped == 0
