"""A seeded synthetic conversation history in LoCoMo's format, from 10 to 100,000+ turns in seconds.

Two speakers talk over dated sessions (dates strictly increasing). Each speaker states facts about
themselves and about relatives and friends (job, employer, city, pet, hobby, food, instrument, car), and
later updates them ("I moved to Lisbon!") or contradicts themselves (a correction); they report dated
events; in between they chat, echo each other and mention slot words with no claim (near misses).

Questions come in LoCoMo's five categories, each with exact gold evidence turns:
- 4 single-hop: one fact ("Where does X live?") -> the LATEST turn stating it; older statements of other
  values go to `stale_evidence`, so memory_cost can check that search ranks the new fact first;
- 1 multi-hop: two facts combined ("Do X and Y live in the same city?", "Where does the person who works at
  <company> live?") -> both latest turns;
- 2 temporal: "When did X <event>?" -> the session date ("8 May 2023"); evidence the event turn;
- 3 open-domain: a fact plus world knowledge kept simple: city -> country or main language (a fixed table);
- 5 adversarial: a true question asked about the wrong person (another person's event, or a question that
  presupposes someone else's fact: "How long has Ana played the cello?" when her cousin plays it) -> the right
  response is "not mentioned"; `adversarial_answer` holds the misleading value and the evidence is the turn it
  comes from (as LoCoMo builds category 5 by swapping the speaker).

Same arguments -> the same Conversation and byte-identical JSON (only `random.Random(seed)` draws).
Fixture command (with deliberately malformed evidence ids for the loader's tests):
    python -m workloads.memory_agents.synthetic_history --turns 60 --questions 30 --seed 7 --malformed \\
        --indent 1 --out tests/fixtures/locomo_sample.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reference_impls.agents.types import Turn
from workloads.memory_agents import synthetic_facts as facts
from workloads.memory_agents import synthetic_vocab as vocab
from workloads.memory_agents.conversation import Conversation, Session
from workloads.memory_agents.locomo import conversation_to_locomo, dump_locomo_json
from workloads.memory_agents.synthetic_questions import History, Person, make_questions

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class Mix:
    """Probabilities of what a turn is; the rest is chatter."""

    fact: float = 0.30
    event: float = 0.12
    near_miss: float = 0.12
    echo: float = 0.45        # chance the reply right after a statement echoes it
    update: float = 0.2       # chance a fact turn changes an already stated fact
    correction: float = 0.3   # share of a speaker's own changes said as a correction of an earlier statement
    new_person: float = 0.3   # chance a new fact is about a newly introduced relative or friend


def _session_sizes(turns: int, rng: random.Random) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < turns:
        sizes.append(min(rng.randint(14, 32), turns - sum(sizes)))
    return sizes


def _session_dates(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(LoCoMo date-time string, answer date) per session, strictly increasing by 1-4 days."""
    day = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(1500))
    out = []
    for _ in range(count):
        hour, minute = rng.randint(8, 21), rng.randrange(60)
        clock = f"{(hour - 1) % 12 + 1}:{minute:02d} {'am' if hour < 12 else 'pm'}"
        out.append((f"{clock} on {day.day} {MONTHS[day.month - 1]}, {day.year}",
                    f"{day.day} {MONTHS[day.month - 1]} {day.year}"))
        day += dt.timedelta(days=rng.randint(1, 4))
    return out


class _Writer:
    """Walks the turns in order, deciding what each says and recording the facts and events it creates."""

    def __init__(self, speakers: tuple[str, str], rng: random.Random, mix: Mix) -> None:
        self.rng, self.mix = rng, mix
        self.history = History(people=[Person(speakers[0], None, "", speakers[0]),
                                       Person(speakers[1], None, "", speakers[1])])
        self.owned: list[list[int]] = [[0], [1]]
        self.changeable: list[list[tuple[int, str]]] = [[], []]
        self.used_names = {(s, "") for s in speakers}
        self.last_value: str | None = None

    def _new_person(self, owner: int) -> int:
        rng = self.rng
        while True:
            name = (rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES))
            if name not in self.used_names and name[0] not in self.history.people[0].name.split() + \
                    self.history.people[1].name.split():
                break
        self.used_names.add(name)
        relation = rng.choice(vocab.RELATIONS)
        full = f"{name[0]} {name[1]}"
        label = f"{self.history.people[owner].name}'s {relation} {full}"
        self.history.people.append(Person(full, owner, relation, label))
        self.owned[owner].append(len(self.history.people) - 1)
        return len(self.history.people) - 1

    def _say(self, template: str, person: int, value: str, old: str = "") -> str:
        who = "My " + self.history.people[person].relation + " " + self.history.people[person].name
        text = template.format(v=value, a_v=facts.with_article(value), old=old, a_old=facts.with_article(old or "x"),
                               who=who)
        opener = self.rng.choice(vocab.OPENERS)
        if opener and not text.startswith(("I ", "I'")):
            text = text[0].lower() + text[1:]
        return f"{opener}{text}{self.rng.choice(vocab.CLOSERS)}"

    def fact(self, speaker: int, dia_id: str) -> str:
        rng, mix, known = self.rng, self.mix, self.history.facts
        if self.changeable[speaker] and rng.random() < mix.update:
            person, slot = rng.choice(self.changeable[speaker])
            spec, old = facts.SLOTS[slot], known[(person, slot)][-1][1]
            value = spec.draw(rng)
            while value == old:
                value = spec.draw(rng)
            if person == speaker and rng.random() < mix.correction:
                template = rng.choice(spec.correct_self)
            else:
                template = rng.choice(spec.update_self if person == speaker else spec.update_other)
        else:
            person = rng.choice(self.owned[speaker])
            open_slots = [s for s in facts.SLOT_NAMES if (person, s) not in known]
            if not open_slots or rng.random() < mix.new_person:
                person = self._new_person(speaker)
                open_slots = list(facts.SLOT_NAMES)
            slot, old = rng.choice(open_slots), ""
            spec = facts.SLOTS[slot]
            value = spec.draw(rng)
            template = rng.choice(spec.state_self if person == speaker else spec.state_other)
            self.changeable[speaker].append((person, slot))
        known.setdefault((person, slot), []).append((dia_id, value))
        self.last_value = value
        return self._say(template, person, value, old)

    def event(self, speaker: int, dia_id: str, date: str) -> str | None:
        rng = self.rng
        person = speaker if rng.random() < 0.7 or len(self.owned[speaker]) == 1 else rng.choice(self.owned[speaker][1:])
        activity = rng.randrange(len(vocab.ACTIVITIES))
        place = rng.choice(vocab.VENUES) if rng.random() < 0.6 else f"in {rng.choice(facts.CITY_NAMES)}"
        if (person, activity, place) in self.history.event_keys:
            return None
        self.history.add_event(person, activity, place, dia_id, date)
        past, time = vocab.ACTIVITIES[activity][rng.choice((0, 2))], rng.choice(vocab.EVENT_TIMES)
        if person == speaker:
            template = rng.choice(facts.ACTIVITY_STATEMENTS_SELF)
            who = ""
        else:
            template = rng.choice(facts.ACTIVITY_STATEMENTS_OTHER)
            who = f"My {self.history.people[person].relation} {self.history.people[person].name}"
        self.last_value = place.removeprefix("in ")
        return template.format(past=past, place=place, time=time, Time=time[0].upper() + time[1:], who=who,
                               who_lower=who[0].lower() + who[1:] if who else "")

    def chatter(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return f"{rng.choice(vocab.REACTIONS)} {rng.choice(vocab.FOLLOWUPS)}"
        line = rng.choice(vocab.SMALL_TALK)
        return line.format(**{k: rng.choice(v) for k, v in vocab.SMALL_TALK_FILL.items() if "{" + k + "}" in line})

    def near_miss(self) -> str:
        spec = facts.SLOTS[self.rng.choice(facts.SLOT_NAMES)]
        value = spec.draw(self.rng)
        return self.rng.choice(spec.near_miss).format(v=value, a_v=facts.with_article(value))

    def echo(self) -> str:
        value = self.last_value or ""
        return f"{value[0].upper() + value[1:]}? {self.rng.choice(vocab.REACTIONS)} {self.rng.choice(vocab.FOLLOWUPS)}"


def generate(turns: int, questions: int, seed: int, sample_id: str | None = None,
             mix: Mix | None = None) -> Conversation:
    """A seeded synthetic Conversation of `turns` turns and `questions` QA items of all five categories."""
    if not isinstance(turns, int) or turns < 10:
        raise ValueError(f"turns must be an int >= 10, got {turns!r}")
    if not isinstance(questions, int) or questions < 0:
        raise ValueError(f"questions must be an int >= 0, got {questions!r}")
    rng, mix = random.Random(seed), mix or Mix()
    first, second = rng.sample(vocab.FIRST_NAMES, 2)
    writer = _Writer((first, second), rng, mix)
    sizes = _session_sizes(turns, rng)
    dates = _session_dates(len(sizes), rng)
    sessions = []
    for number, (size, (time, date)) in enumerate(zip(sizes, dates, strict=True), start=1):
        speaker, session_turns, previous_stated = rng.randrange(2), [], False
        for k in range(1, size + 1):
            dia_id, roll, text = f"D{number}:{k}", rng.random(), None
            if previous_stated and rng.random() < mix.echo:
                text = writer.echo()
            elif roll < mix.fact:
                text = writer.fact(speaker, dia_id)
            elif roll < mix.fact + mix.event:
                text = writer.event(speaker, dia_id, date)
            elif roll < mix.fact + mix.event + mix.near_miss:
                text = writer.near_miss()
            previous_stated = text is not None and roll < mix.fact + mix.event and not text.endswith("?")
            if text is None:
                text, previous_stated = writer.chatter(), False
            session_turns.append(Turn(dia_id, number, (first, second)[speaker], text, time))
            speaker = 1 - speaker
        sessions.append(Session(number, time, tuple(session_turns)))
    qa = make_questions(writer.history, questions, rng)
    return Conversation(sample_id or f"synthetic-seed{seed}-{turns}t", (first, second), tuple(sessions), qa)


def write_locomo_json(path: str | Path, turns: int, questions: int, seed: int, indent: int | None = None,
                      malformed: bool = False) -> str:
    """Generate and write one sample as a LoCoMo JSON list; returns the file's sha256."""
    conv = generate(turns, questions, seed)
    if not malformed:
        return dump_locomo_json([conv], path, indent=indent)
    from workloads.memory_agents.fixture_faults import inject_malformed_evidence

    sample = inject_malformed_evidence(conversation_to_locomo(conv))
    Path(path).write_text(json.dumps([sample], indent=indent, ensure_ascii=True) + "\n")
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a seeded synthetic LoCoMo-format JSON file.")
    parser.add_argument("--turns", type=int, required=True)
    parser.add_argument("--questions", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--indent", type=int, default=None)
    parser.add_argument("--malformed", action="store_true", help="inject malformed evidence ids (test fixture)")
    args = parser.parse_args(argv)
    digest = write_locomo_json(args.out, args.turns, args.questions, args.seed, args.indent, args.malformed)
    print(f"wrote {args.out} sha256 {digest}")


if __name__ == "__main__":
    main()
