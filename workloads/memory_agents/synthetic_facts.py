"""The facts a synthetic persona can hold: per slot, how a value is drawn and how it is said and asked.

Each slot has first-mention templates (said by the person, or about a relative/friend), update templates
("I moved to Lisbon"), correction templates (a conflict: the speaker contradicts an earlier statement),
question paraphrases, premise questions that presuppose a value (LoCoMo's adversarial questions are true
questions asked about the wrong person) and near-miss distractors (the slot's words with no claim about anybody).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from workloads.memory_agents import synthetic_vocab as vocab


def with_article(noun: str) -> str:
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun


@dataclass(frozen=True)
class SlotSpec:
    """How one kind of fact is drawn, stated, updated, corrected, asked about and near-missed."""

    draw: Callable[[random.Random], str]
    state_self: tuple[str, ...]
    state_other: tuple[str, ...]
    update_self: tuple[str, ...]
    update_other: tuple[str, ...]
    correct_self: tuple[str, ...]
    questions: tuple[str, ...]
    near_miss: tuple[str, ...]
    premise: tuple[str, ...]  # questions presupposing {name} holds {v} (adversarial: asked of the wrong person)


def _company(rng: random.Random) -> str:
    return f"{rng.choice(vocab.COMPANY_HEADS)}{rng.choice(vocab.COMPANY_TAILS)} {rng.choice(vocab.COMPANY_KINDS)}"


def _pet(rng: random.Random) -> str:
    return f"{with_article(rng.choice(vocab.PET_SPECIES))} named {rng.choice(vocab.PET_NAMES)}"


def _car(rng: random.Random) -> str:
    return with_article(f"{rng.choice(vocab.CAR_COLORS)} {rng.choice(vocab.CAR_MODELS)}")


CITY_NAMES = tuple(vocab.CITIES)

# Placeholders: {v} the value, {a_v} with an article, {old} the value being contradicted, {who} e.g.
# "My cousin Tomas Reyes", {name} how a question names the person.
SLOTS: dict[str, SlotSpec] = {
    "job": SlotSpec(
        draw=lambda rng: rng.choice(vocab.JOBS),
        state_self=("I work as {a_v}.", "These days I earn my living as {a_v}.", "I'm {a_v} by trade, you know."),
        state_other=("{who} works as {a_v}.", "{who} is {a_v}, believe it or not.", "{who} makes a living as {a_v}."),
        update_self=("I quit my old job and now I work as {a_v}.", "I started a new career as {a_v} this month."),
        update_other=("{who} switched careers and is {a_v} now.", "{who} just got hired as {a_v}."),
        correct_self=("I told you I was {a_old} but that's wrong, I'm actually {a_v}.",),
        questions=("What does {name} do for a living?", "What is {name}'s job?", "Which profession does {name} have?"),
        near_miss=("I once thought about becoming {a_v}, but it wasn't for me.",
                   "Do you know any good {v}s? Asking for a friend."),
        premise=("When did {name} start working as {a_v}?", "What does {name} like most about being {a_v}?"),
    ),
    "employer": SlotSpec(
        draw=_company,
        state_self=("I work at {v}.", "My employer is {v}.", "I've got a position at {v}."),
        state_other=("{who} works at {v}.", "{who} is employed by {v}.", "{who} has a job at {v}."),
        update_self=("I changed companies, I'm at {v} now.", "I just signed a contract with {v}."),
        update_other=("{who} left for a job at {v}.", "{who} moved over to {v} recently."),
        correct_self=("Small correction: I work at {v}, not {old}.",),
        questions=("Which company does {name} work for?", "Where is {name} employed?", "Who employs {name}?"),
        near_miss=("I saw an ad for {v} on the bus today.", "Have you heard anything about {v}? They're hiring."),
        premise=("How long has {name} been working at {v}?", "What is {name}'s role at {v}?"),
    ),
    "city": SlotSpec(
        draw=lambda rng: rng.choice(CITY_NAMES),
        state_self=("I live in {v}.", "Home for me is {v} these days.", "I've got a flat in {v}."),
        state_other=("{who} lives in {v}.", "{who} has a place in {v}.", "{who} settled down in {v}."),
        update_self=("I moved to {v}!", "We packed everything up and relocated to {v}."),
        update_other=("{who} moved to {v}.", "{who} relocated to {v} for good."),
        correct_self=("I think I said I live in {old}, but it's actually {v}.",),
        questions=("Which city does {name} live in?", "Where does {name} live?", "In what city is {name}'s home?"),
        near_miss=("Have you ever been to {v}? I keep seeing photos of it.", "I'd love a weekend trip to {v}."),
        premise=("Why did {name} settle in {v}?", "Which neighborhood of {v} does {name} live in?"),
    ),
    "pet": SlotSpec(
        draw=_pet,
        state_self=("I have {v}.", "At home I look after {v}.", "My pet is {v}."),
        state_other=("{who} has {v}.", "{who} adopted {v}.", "{who} takes care of {v}."),
        update_self=("I adopted a new pet, {v}.", "We brought home {v} last weekend."),
        update_other=("{who} now has {v}.", "{who} just adopted {v}."),
        correct_self=("Not {old}, sorry, I got mixed up: my pet is {v}.",),
        questions=("What pet does {name} have?", "Which animal does {name} own?", "What is {name}'s pet?"),
        near_miss=("My neighbor's kid keeps asking for {v}, but no way.", "I saw someone walking {v} this morning."),
        premise=("How old is {name}'s pet, {v}?", "Where did {name} get {v}?"),
    ),
    "hobby": SlotSpec(
        draw=lambda rng: rng.choice(vocab.HOBBIES),
        state_self=("My favorite hobby is {v}.", "I spend my free time on {v}.", "I'm really into {v}."),
        state_other=("{who} is really into {v}.", "{who} spends weekends on {v}.", "{who}'s big hobby is {v}."),
        update_self=("I gave up my old hobby and took up {v}.", "Lately my free time goes to {v}."),
        update_other=("{who} took up {v} recently.", "{who} has a new hobby: {v}."),
        correct_self=("I said my hobby was {old}, but I really meant {v}.",),
        questions=("What hobby does {name} have?", "What does {name} do in their free time?",
                   "Which pastime is {name} into?"),
        near_miss=("I read an article about {v} yesterday.", "I've never tried {v}, have you?"),
        premise=("When did {name} get into {v}?", "Who got {name} interested in {v}?"),
    ),
    "food": SlotSpec(
        draw=lambda rng: rng.choice(vocab.FOODS),
        state_self=("My favorite dish is {v}.", "Nothing beats {v} for me.", "I could eat {v} every day."),
        state_other=("{who} loves {v} more than anything.", "{who}'s favorite dish is {v}.",
                     "{who} always orders {v}."),
        update_self=("My new favorite food is {v}.", "I've switched allegiance: {v} is my favorite dish now."),
        update_other=("{who} says {v} is their favorite now.", "{who} is obsessed with {v} these days."),
        correct_self=("Forget what I said about {old}, my favorite dish is {v}.",),
        questions=("What is {name}'s favorite food?", "Which dish does {name} like best?",
                   "What food does {name} love most?"),
        near_miss=("There's a new place downtown that serves {v}.", "I tried making {v} once and it was a disaster."),
        premise=("Where does {name} go to eat {v}?", "Why does {name} love {v} so much?"),
    ),
    "instrument": SlotSpec(
        draw=lambda rng: rng.choice(vocab.INSTRUMENTS),
        state_self=("I play the {v}.", "I've been practicing the {v} for years.", "My instrument is the {v}."),
        state_other=("{who} plays the {v}.", "{who} is learning the {v}.", "{who} performs on the {v}."),
        update_self=("I switched instruments, I play the {v} now.", "I sold my old instrument and bought a {v}."),
        update_other=("{who} switched to the {v}.", "{who} has started playing the {v} instead."),
        correct_self=("It's the {v} I play, not the {old}.",),
        questions=("What instrument does {name} play?", "Which musical instrument does {name} play?",
                   "What does {name} play in the band?"),
        near_miss=("There was a street musician with a {v} outside my office.", "The {v} always sounds sad to me."),
        premise=("Who taught {name} to play the {v}?", "How long has {name} played the {v}?"),
    ),
    "car": SlotSpec(
        draw=_car,
        state_self=("I drive {v}.", "I get around in {v}.", "My ride is {v}."),
        state_other=("{who} drives {v}.", "{who} owns {v}.", "{who} gets around in {v}."),
        update_self=("I sold my old car and bought {v}.", "I upgraded to {v}."),
        update_other=("{who} traded in their car for {v}.", "{who} bought {v}."),
        correct_self=("Correction: I drive {v}, not {old}.",),
        questions=("What vehicle does {name} drive?", "What does {name} drive?", "Which car does {name} own?"),
        near_miss=("Someone parked {v} across my driveway again.", "I rented {v} once on holiday."),
        premise=("When did {name} buy {v}?", "How does {name} like driving {v}?"),
    ),
}
SLOT_NAMES = tuple(SLOTS)

ACTIVITY_STATEMENTS_SELF = ("I {past} {place} {time}.", "{Time} I {past} {place}.", "I just {past} {place}, {time}!")
ACTIVITY_STATEMENTS_OTHER = ("{who} {past} {place} {time}.", "{Time} {who_lower} {past} {place}.")
TEMPORAL_QUESTIONS = ("When did {name} {base} {place}?", "When exactly did {name} {base} {place}?")
OPEN_DOMAIN_QUESTIONS = {
    "country": ("In which country does {name} live?", "What country is {name}'s home in?"),
    "language": ("What language do most people speak where {name} lives?",),
}
MULTI_HOP_SAME = ("Do {name} and {other} live in the same city?", "Do {name} and {other} have the same job?")
MULTI_HOP_BRIDGE = ("Where does the person who works at {bridge} live?",
                    "In which city does the employee of {bridge} live?")
