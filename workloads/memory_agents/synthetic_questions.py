"""Questions of LoCoMo's five categories over a synthetic history, each with exact gold evidence ids.

The generator records what was said (`History`); this module turns it into QA items. Counts per category
follow LoCoMo's proportions (single-hop 42%, adversarial 22%, temporal 16%, multi-hop 14%, open-domain 6%),
at least one of each when there are 5+ questions; a category short of candidates passes its share on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from workloads.memory_agents import synthetic_facts as facts
from workloads.memory_agents import synthetic_vocab as vocab
from workloads.memory_agents.conversation import (
    ADVERSARIAL,
    MULTI_HOP,
    OPEN_DOMAIN,
    SINGLE_HOP,
    TEMPORAL,
    QAItem,
)

SHARES = {SINGLE_HOP: 0.42, ADVERSARIAL: 0.22, TEMPORAL: 0.16, MULTI_HOP: 0.14, OPEN_DOMAIN: 0.06}


@dataclass(frozen=True)
class Person:
    """A speaker (owner None) or a relative/friend of speaker `owner`; `label` is how questions name them."""

    name: str
    owner: int | None
    relation: str
    label: str


@dataclass
class History:
    """What the conversation said: fact statements per (person, slot) in order, and dated events."""

    people: list[Person]
    facts: dict[tuple[int, str], list[tuple[str, str]]] = field(default_factory=dict)  # -> [(dia_id, value)]
    events: list[tuple[int, int, str, str, str]] = field(default_factory=list)  # person, activity, place, id, date
    event_keys: set[tuple[int, int, str]] = field(default_factory=set)

    def add_event(self, person: int, activity: int, place: str, dia_id: str, date: str) -> None:
        self.events.append((person, activity, place, dia_id, date))
        self.event_keys.add((person, activity, place))

    def latest(self, person: int, slot: str) -> tuple[str, str, tuple[str, ...]]:
        """(dia_id, value, stale dia_ids) of the newest statement of a fact."""
        said = self.facts[(person, slot)]
        dia_id, value = said[-1]
        return dia_id, value, tuple(i for i, v in said[:-1] if v != value)


def _single_hop(h: History, rng: random.Random, limit: int) -> list[QAItem]:
    out = []
    for person, slot in h.facts:
        dia_id, value, stale = h.latest(person, slot)
        question = rng.choice(facts.SLOTS[slot].questions).format(name=h.people[person].label)
        out.append(QAItem(question, value, (dia_id,), SINGLE_HOP, stale))
    return out


def _temporal(h: History, rng: random.Random, limit: int) -> list[QAItem]:
    out = []
    for person, activity, place, dia_id, date in h.events:
        question = rng.choice(facts.TEMPORAL_QUESTIONS).format(
            name=h.people[person].label, base=vocab.ACTIVITIES[activity][1], place=place)
        out.append(QAItem(question, date, (dia_id,), TEMPORAL))
    return out


def _open_domain(h: History, rng: random.Random, limit: int) -> list[QAItem]:
    out = []
    for person, slot in h.facts:
        if slot != "city":
            continue
        dia_id, city, stale = h.latest(person, slot)
        kind = rng.choice(("country", "language"))
        answer = vocab.CITIES[city][0 if kind == "country" else 1]
        question = rng.choice(facts.OPEN_DOMAIN_QUESTIONS[kind]).format(name=h.people[person].label)
        out.append(QAItem(question, answer, (dia_id,), OPEN_DOMAIN, stale))
    return out


def _multi_hop(h: History, rng: random.Random, limit: int) -> list[QAItem]:
    out, seen = [], set()
    employers: dict[str, set[int]] = {}
    for (person, slot), said in h.facts.items():
        if slot == "employer":
            for _, value in said:
                employers.setdefault(value, set()).add(person)
    for person, slot in h.facts:  # bridge: a company named once leads to its employee, then to their city
        if slot == "employer" and (person, "city") in h.facts:
            job_id, company, job_stale = h.latest(person, "employer")
            if employers[company] == {person} and sum(v == company for _, v in h.facts[(person, slot)]) == 1:
                city_id, city, city_stale = h.latest(person, "city")
                question = rng.choice(facts.MULTI_HOP_BRIDGE).format(bridge=company)
                out.append(QAItem(question, city, (job_id, city_id), MULTI_HOP, job_stale + city_stale))
    by_slot = {slot: [p for (p, s) in h.facts if s == slot] for slot in ("city", "job")}
    for _ in range(4 * limit):  # comparisons of two people's latest values
        slot = rng.choice(("city", "job"))
        if len(by_slot[slot]) < 2:
            continue
        a, b = rng.sample(by_slot[slot], 2)
        if (slot, min(a, b), max(a, b)) in seen:
            continue
        seen.add((slot, min(a, b), max(a, b)))
        (id_a, v_a, stale_a), (id_b, v_b, stale_b) = h.latest(a, slot), h.latest(b, slot)
        template = facts.MULTI_HOP_SAME[0 if slot == "city" else 1]
        answer = "yes" if v_a == v_b else f"no: {h.people[a].name} {v_a}, {h.people[b].name} {v_b}"
        question = template.format(name=h.people[a].label, other=h.people[b].label)
        out.append(QAItem(question, answer, (id_a, id_b), MULTI_HOP, stale_a + stale_b))
    return out


def _adversarial(h: History, rng: random.Random, limit: int) -> list[QAItem]:
    """True questions asked about the wrong person, as LoCoMo builds category 5.

    WHY the content stays in the question: LoCoMo swaps the speaker in a question the conversation answers
    ("What did Caroline realize after her charity race?" when Melanie ran it), so the gold evidence is the turn
    where the other person said it, and a store can find it. A question with no content ("Where does X work?")
    points at no turn; its gold would be arbitrary.
    """
    out, seen = [], set()
    facts_said = list(h.facts)
    for _ in range(4 * limit):
        if h.events and rng.random() < 0.3:  # someone else's event, asked about the other speaker
            person, activity, place, dia_id, date = rng.choice(h.events)
            target = 1 - person if person < 2 else h.people[person].owner
            if (target, activity, place) in h.event_keys or ("event", target, dia_id) in seen:
                continue
            seen.add(("event", target, dia_id))
            question = rng.choice(facts.TEMPORAL_QUESTIONS).format(
                name=h.people[target].label, base=vocab.ACTIVITIES[activity][1], place=place)
            out.append(QAItem(question, date, (dia_id,), ADVERSARIAL))
            continue
        if not facts_said:
            continue
        source, slot = rng.choice(facts_said)  # someone's fact, presupposed of the other speaker (or the owner)
        target = 1 - source if source < 2 else h.people[source].owner
        dia_id, value, _ = h.latest(source, slot)
        held = h.facts.get((target, slot), [])
        if any(v == value for _, v in held) or ("fact", target, dia_id) in seen:
            continue
        seen.add(("fact", target, dia_id))
        question = rng.choice(facts.SLOTS[slot].premise).format(
            name=h.people[target].label, v=value, a_v=facts.with_article(value))
        out.append(QAItem(question, value, (dia_id,), ADVERSARIAL))
    return out


BUILDERS = {SINGLE_HOP: _single_hop, ADVERSARIAL: _adversarial, TEMPORAL: _temporal, MULTI_HOP: _multi_hop,
            OPEN_DOMAIN: _open_domain}


def _targets(questions: int) -> dict[int, int]:
    exact = {c: questions * share for c, share in SHARES.items()}
    counts = {c: int(v) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: counts[c] - exact[c])[: questions - sum(counts.values())]:
        counts[c] += 1
    if questions >= len(SHARES):
        for c in counts:
            if counts[c] == 0:
                counts[c] = 1
                counts[max(counts, key=counts.get)] -= 1
    return counts


def make_questions(h: History, questions: int, rng: random.Random) -> tuple[QAItem, ...]:
    """`questions` QA items in LoCoMo's proportions; ValueError when the history cannot support that many."""
    targets = _targets(questions)
    pools = {}
    for category, build in BUILDERS.items():
        pool = build(h, rng, max(targets[category], 1) * 2 + 8)
        rng.shuffle(pool)
        pools[category] = pool
    chosen = {c: pools[c][: targets[c]] for c in pools}
    missing = questions - sum(len(v) for v in chosen.values())
    for category in BUILDERS:  # pass the shortfall on, in SHARES order
        extra = pools[category][len(chosen[category]): len(chosen[category]) + missing]
        chosen[category] += extra
        missing -= len(extra)
    if missing > 0:
        raise ValueError(f"a history this short supports only {questions - missing} distinct questions, "
                         f"asked for {questions}: raise turns or lower questions")
    items = [item for category in BUILDERS for item in chosen[category]]
    rng.shuffle(items)
    return tuple(items)
