"""Deliberately malformed evidence ids, injected into a generated LoCoMo sample to exercise the loader.

Used only to build the shipped test fixture; one of each kind the loader must survive (see
`locomo_evidence.py`), plus one image turn with img_url and blip_caption as locomo10.json has them.
Deterministic: the first QA items of given categories are edited, in order.
"""

from __future__ import annotations

import copy

# What the injection adds, per kind, for the tests to assert against.
INJECTED = {"joined": 1, "noncanonical": 2, "empty_turn": 1, "missing_session": 1, "dangling": 1,
            "not_a_string": 1, "unparseable": 1}


def _first(qa: list[dict], category: int, evidence_len: int = 1, skip: int = 0) -> dict:
    matches = [q for q in qa if q["category"] == category and len(q["evidence"]) == evidence_len]
    return matches[skip]


def inject_malformed_evidence(sample: dict) -> dict:
    """A copy of `sample` with one malformed evidence id of each kind (see INJECTED)."""
    sample = copy.deepcopy(sample)
    qa = sample["qa"]
    multi = _first(qa, 1, evidence_len=2)
    multi["evidence"] = ["; ".join(multi["evidence"])]                       # joined: "D3:10; D1:24"
    single_a, single_b = _first(qa, 4), _first(qa, 4, skip=1)
    session, turn = single_a["evidence"][0][1:].split(":")
    single_a["evidence"] = [f"D{session}:0{turn}"]                           # noncanonical: leading zero
    session, turn = single_b["evidence"][0][1:].split(":")
    single_b["evidence"] = [f"d {session}:{turn}"]                           # noncanonical: case and space
    temporal = _first(qa, 2)
    temporal["evidence"] = [*temporal["evidence"], f"D{session}:"]           # empty_turn
    temporal_b = _first(qa, 2, skip=1)
    temporal_b["evidence"] = [*temporal_b["evidence"], "D:3"]                # missing_session
    open_domain = _first(qa, 3)
    open_domain["evidence"] = [*open_domain["evidence"], "D999:1"]           # dangling
    adversarial = _first(qa, 5)
    adversarial["evidence"] = [*adversarial["evidence"], None, "see above"]  # not_a_string, unparseable
    chatter = sample["conversation"]["session_1"][-1]
    chatter["img_url"] = ["https://example.invalid/photo.jpg"]
    chatter["blip_caption"] = "a photo of a dog on a beach"
    return sample
