"""The generated task data sets (ptft.data): for each task family two domains (the first in-domain, the one
fine-tuned on), records made from the world by one generator per (task, domain), and the card of a generated set.

Every test split is about *held-out* entities that the training split never mentions in the role that decides the
answer: fine-tuning teaches the task's format, and only pre-training can teach the test's facts.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Sequence

from ptft.data.card import length_stats, target_summary
from ptft.data.corpus import _animal_slots, _news_event, _news_fillers, _person_slots
from ptft.data.world import _ANIMAL_CLASSES, _DAYS, _HABITATS, World, _a, _cap, _exact_keys, _rng, _third
from ptft.provenance import provenance
from ptft.tasks import BUILTIN_TASKS, get_task

# Task family -> the domains it knows; the first is the in-domain (fine-tuning) domain.
DOMAINS: dict[str, tuple[str, ...]] = {
    "summarisation": ("news", "story"),
    "question_generation": ("social", "science"),
    "nli": ("places", "animals"),
    "paraphrase": ("statement", "question"),
}
SPEC_KEYS = ("task", "domain", "n_train", "n_test")
SPLITS = ("train", "test")

# -------------------------------------------------------------------------------------------------- datasets
# A generator makes one record for (world, rng, split, label); label is None for generation tasks. Records carry
# the task's fields plus "template" and "facts" ("subject|relation|object; ..."), and NLI records a "claim".

Record = dict[str, str]


def _facts(*triples: tuple[str, str, str]) -> str:
    return "; ".join("|".join(t) for t in triples)


# Summarisation: the news items reuse the corpus's news events and fillers with leads of their own.
_NEWS_LEADS = ("On {day}, {person} {event} in {city}.", "{person} {event} in {city} on {day}.",
               "Last {day}, {person} {event} in {city}.")


def _gen_news(world: World, rng: random.Random, split: str, label: str | None) -> Record:
    person = rng.choice(world.split_people(split))
    s = _person_slots(world, person)
    event_id, event = _news_event(world, rng)
    lead_i = rng.randrange(len(_NEWS_LEADS))
    lead = _NEWS_LEADS[lead_i].format(day=rng.choice(_DAYS), event=event, **s)
    document = " ".join([lead] + _news_fillers(rng, s, 2 if rng.random() < 0.7 else 3))  # short: 4-shot prompts fit in 512 tokens
    return {
        "document": document,
        "summary": f"{person.name}, {s['a_occ']} from {s['country']}, {event}.",
        "template": f"news-lead{lead_i}-{event_id}",
        "facts": _facts((person.name, "works_as", person.occupation), (person.city, "city_in", s["country"])),
    }


_STORY_EVENTS = ("found an old map in the attic", "heard a strange song in the woods", "lost a golden key",
                 "climbed the tallest hill", "baked a cake for the whole town", "followed a {animal} into the forest",
                 "met a talking {animal}", "built a tiny boat from reeds")
# Stories are short on purpose: four of them and a query fit a 512-token context with room to generate.
_STORY_FILLERS = ("The wind was cold.", "Nobody believed the tale.", "The old clock struck twelve.",
                  "A {animal} watched from a branch.", "It was a strange day.")
_STORY_ENDINGS = ("all was well", "the town was happy", "nobody forgot that day", "the secret was kept",
                  "everyone went home smiling")


def _gen_story(world: World, rng: random.Random, split: str, label: str | None) -> Record:
    person = rng.choice(world.split_people(split))
    s = _person_slots(world, person)
    animal = rng.choice(world.animals).name
    event_i = rng.randrange(len(_STORY_EVENTS))
    event = _STORY_EVENTS[event_i].format(animal=animal)
    out = [
        rng.choice(("Long ago, {person} lived in {city}.", "Once upon a time, {person} lived in {city}.")).format(**s),
        f"One {rng.choice(('night', 'winter', 'morning', 'evening'))}, {person.name} {event}.",
    ]
    if rng.random() < 0.5:
        out.append(rng.choice(_STORY_FILLERS).format(animal=animal))
    out.append(f"In the end, {rng.choice(_STORY_ENDINGS)}.")
    return {
        "document": " ".join(out),
        "summary": f"A {person.occupation} from {s['country']} {event}.",
        "template": f"story-event{event_i}",
        "facts": _facts((person.name, "works_as", person.occupation), (person.city, "city_in", s["country"])),
    }


_GIFTS = ("book", "scarf", "cake", "lamp", "flower", "small painting")
_ITEMS = ("bread", "apples", "fish", "cheese", "candles", "rope")
_CHORES = ("garden", "shopping", "cooking", "washing", "roof")
_SOCIAL = (  # (context, ((answer, question), ...))
    ("{P} went to the market in {city} to buy {item}.",
     (("to buy {item}", "Why did {P} go to the market?"), ("{city}", "Where did {P} go to buy {item}?"))),
    ("{P} works as {a_occ} in {city}. Every {day}, {P} helps {B} with the {chore}.",
     (("{a_occ}", "What does {P} work as?"), ("{B}", "Who does {P} help every {day}?"),
      ("the {chore}", "What does {P} help {B} with?"))),
    ("{P} felt tired after a long day in {city}, so {P} went to bed early.",
     (("went to bed early", "What did {P} do after a long day?"), ("tired", "How did {P} feel after a long day?"))),
    ("{P} gave {B} a {gift} because {B} was sad.",
     (("because {B} was sad", "Why did {P} give {B} a {gift}?"), ("a {gift}", "What did {P} give {B}?"))),
    ("{P} lives in {city} and is {a_occ}.",
     (("{city}", "Where does {P} live?"), ("{a_occ}", "What is {P}'s job?"))),
    ("After the storm, {P} helped {B} repair the roof of a house in {city}.",
     (("{B}", "Who did {P} help after the storm?"), ("the roof", "What did {P} help {B} repair?"))),
    ("{P} invited {B} to dinner to celebrate {B}'s new job. {P} cooked {item} for the evening.",
     (("to celebrate {B}'s new job", "Why did {P} invite {B} to dinner?"), ("{item}", "What did {P} cook?"))),
)
_SCIENCE = (
    ("The {animal} is {a_cls} that lives in the {habitat}.",
     (("{a_cls}", "What kind of animal is the {animal}?"), ("the {habitat}", "In which habitat is the {animal} found?"))),
    ("{Animals} feed mainly on {diet}. They are often seen in the {habitat}.",
     (("{diet}", "What is the main food of {animals}?"), ("the {habitat}", "Where are {animals} often seen?"))),
    ("{A_animal} can be recognised by its {colour} {part}.",
     (("its {colour} {part}", "How can {a_animal} be recognised?"), ("{colour}", "What colour are the {part} of {a_animal}?"))),
    ("Like every {cls}, the {animal} needs food to survive, and in the {habitat} it finds {diet}.",
     (("{diet}", "Which food does the {animal} find in the {habitat}?"),
      ("{cls}", "Which class of animals does the {animal} belong to?"))),
)


def _gen_qg(frames: Sequence[tuple[str, tuple[tuple[str, str], ...]]], prefix: str,
            slots: Callable[[World, random.Random, str], tuple[dict[str, str], str]]):
    def gen(world: World, rng: random.Random, split: str, label: str | None) -> Record:
        s, facts = slots(world, rng, split)
        frame_i = rng.randrange(len(frames))
        context, qa = frames[frame_i]
        qa_i = rng.randrange(len(qa))
        answer, question = qa[qa_i]
        return {"context": context.format(**s), "answer": answer.format(**s), "question": question.format(**s),
                "template": f"{prefix}{frame_i}-q{qa_i}", "facts": facts}
    return gen


def _social_slots(world: World, rng: random.Random, split: str) -> tuple[dict[str, str], str]:
    person = rng.choice(world.split_people(split))
    s = _person_slots(world, person)
    s.update(P=person.name, B=rng.choice(world.visitors), item=rng.choice(_ITEMS), gift=rng.choice(_GIFTS),
             chore=rng.choice(_CHORES), day=rng.choice(_DAYS))
    return s, _facts((person.name, "lives_in", person.city), (person.name, "works_as", person.occupation))


def _science_slots(world: World, rng: random.Random, split: str) -> tuple[dict[str, str], str]:
    animal = rng.choice(world.split_animals(split))
    s = _animal_slots(world, animal)
    s["A_animal"] = _cap(s["a_animal"])
    return s, _facts((animal.name, "is_a", animal.animal_class), (animal.name, "eats", animal.diet),
                     (animal.name, "lives_in", animal.habitat))


# NLI over places: the premise puts someone in a city; the hypothesis puts them in a country (entailment iff the
# city is in it, contradiction otherwise) or says something the premise does not settle (neutral).
_PLACES = (  # (premise, hypothesis with {where}, subject is a resident of the city?)
    ("{X} lives in {city}.", "{X} lives in {where}.", True),
    ("{X}, {a_occ}, lives in {city}.", "{X} lives in {where}.", True),
    ("{X} works in {city}.", "{X} works in {where}.", True),
    ("{X} is visiting {city} this week.", "{X} is visiting {where} this week.", False),
    ("{X} is staying at a hotel in {city}.", "{X} is staying in {where}.", False),
    ("{X} arrived in {city} this morning.", "{X} is in {where}.", False),
)
_PLACES_NEUTRAL = ("{X} was born in {where}.", "{X} has a cousin in {where}.", "{X} wants to visit {where} next year.",
                   "{Y} lives in {where}.", "{X} once studied in {where}.")


def _gen_places(world: World, rng: random.Random, split: str, label: str | None) -> Record:
    city = rng.choice(world.split_cities(split))
    frame_i = rng.randrange(len(_PLACES))
    premise, hypothesis, resident = _PLACES[frame_i]
    residents = world.people_of(city.name)
    if resident and residents:
        person = rng.choice(residents)
        x, a_occ = person.name, _a(person.occupation)
    else:
        frame_i = 3 + rng.randrange(3)
        premise, hypothesis, resident = _PLACES[frame_i]
        x, a_occ = rng.choice(world.visitors), ""
    others = [c for c in world.countries if c != city.country]
    fact = (city.name, "city_in", city.country)
    if label == "entailment":
        where, claim, template = city.country, (city.name, "city_in", city.country), f"places{frame_i}-entail"
    elif label == "contradiction":
        where = rng.choice(others)
        claim, template = (city.name, "city_in", where), f"places{frame_i}-contra"
    else:
        neutral_i = rng.randrange(len(_PLACES_NEUTRAL))
        hypothesis = _PLACES_NEUTRAL[neutral_i]
        where = rng.choice(world.countries)
        claim, template = (x, "unrelated", where), f"places{frame_i}-neutral{neutral_i}"
    y = rng.choice([v for v in world.visitors if v != x])
    slots = {"X": x, "Y": y, "city": city.name, "a_occ": a_occ, "where": where}
    return {"premise": premise.format(**slots), "hypothesis": hypothesis.format(**slots), "label": label,
            "template": template, "facts": _facts(fact), "claim": _facts(claim)}


# NLI over animals (out of domain: other entities, other sentences): the premise names a species, the
# hypothesis its class or habitat.
_ANIMAL_FRAMES = (  # (premise with {animal}, hypothesis with {what}); {a_...} carry the article
    ("{X} saw {a_animal} near the path.", "{X} saw {a_what}."),
    ("{A_animal} landed on {X}'s roof.", "{A_what} landed on {X}'s roof."),
    ("{X} photographed {a_animal} yesterday.", "{X} photographed {a_what} yesterday."),
    ("There is {a_animal} in {X}'s garden.", "There is {a_what} in {X}'s garden."),
)
_ANIMAL_NEUTRAL = ("{X} wants a pet {cls}.", "{X} is afraid of {classes}.", "{Y} saw {a_what}.", "{X} drew {a_what} at school.")


def _gen_animals(world: World, rng: random.Random, split: str, label: str | None) -> Record:
    animal = rng.choice(world.split_animals(split))
    frame_i = rng.randrange(len(_ANIMAL_FRAMES))
    premise, hypothesis = _ANIMAL_FRAMES[frame_i]
    by_habitat = rng.random() < 0.3
    relation, truth = ("lives_in", animal.habitat) if by_habitat else ("is_a", animal.animal_class)
    options = sorted({a.habitat for a in world.animals} | set(_HABITATS[:4])) if by_habitat else list(world.animal_classes)

    def what(value: str) -> str:
        return f"animal from the {value}" if by_habitat else value

    if label == "entailment":
        value, template = truth, f"animals{frame_i}-{relation}-entail"
        claim = (animal.name, relation, value)
    elif label == "contradiction":
        value = rng.choice([o for o in options if o != truth])
        claim, template = (animal.name, relation, value), f"animals{frame_i}-{relation}-contra"
    else:
        neutral_i = rng.randrange(len(_ANIMAL_NEUTRAL))
        hypothesis = _ANIMAL_NEUTRAL[neutral_i]
        value = rng.choice(world.animal_classes)
        claim, template = ("-", "unrelated", value), f"animals{frame_i}-neutral{neutral_i}"
        by_habitat = False
    x, y = rng.sample(world.visitors, 2)
    w = what(value) if label != "neutral" else value
    slots = {"X": x, "Y": y, "a_animal": _a(animal.name), "A_animal": _cap(_a(animal.name)), "a_what": _a(w),
             "A_what": _cap(_a(w)), "cls": value, "classes": _ANIMAL_CLASSES[value][0] if value in _ANIMAL_CLASSES else value}
    return {"premise": premise.format(**slots), "hypothesis": hypothesis.format(**slots), "label": label,
            "template": template, "facts": _facts((animal.name, relation, truth)), "claim": _facts(claim)}


# Paraphrase: sentence2 replaces the verb by its synonym (yes), by another verb (no), or swaps two people (no).
# Frames: (sentence, the same meaning reordered or None); {S}/{A}/{B} are subjects, {V} the verb form.
_STATEMENTS = (
    ("{S} {V} in {city} every morning.", "Every morning, {S} {V} in {city}."),
    ("{S} {V} near the old bridge.", "Near the old bridge, {S} {V}."),
    ("{S} {V} quietly after dinner.", "After dinner, {S} {V} quietly."),
    ("{S} always {V} when it rains.", "When it rains, {S} always {V}."),
    ("{A} {V} while {B} watches.", None),
    ("{A} {V} before {B} arrives.", None),
    ("{A} {V} after {B} leaves.", None),
    ("{A} {V} because {B} asked.", None),
)
_QUESTIONS = (
    ("Does {S} {V} in {city} every morning?", "Every morning, does {S} {V} in {city}?"),
    ("Why does {S} {V} near the river?", None),
    ("How often does {S} {V} after dinner?", "After dinner, how often does {S} {V}?"),
    ("Did {A} {V} before {B} arrived?", None),
    ("Will {A} {V} while {B} watches?", None),
    ("Can {A} {V} after {B} leaves?", None),
)


def _gen_paraphrase(frames: Sequence[tuple[str, str | None]], prefix: str, third_person: bool):
    def form(syn_word: str) -> str:
        return _third(syn_word) if third_person else syn_word

    def gen(world: World, rng: random.Random, split: str, label: str | None) -> Record:
        pool = world.split_synonyms(split)
        syn = rng.choice(pool)
        # "no" is a verb replaced by a non-synonym or (in two-person frames) the two people swapped.
        # Two-person frames are as common under yes as under no, so the frame alone says nothing about the label.
        two_people = rng.random() < 0.5
        if label == "yes":
            kind = "synonym"
        else:
            kind = "swap" if two_people and rng.random() < 0.8 else "other"
        frame_i = rng.choice([i for i, (f, _) in enumerate(frames) if ("{B}" in f) == two_people])
        frame, reordered = frames[frame_i]
        invented_first = rng.random() < 0.5
        w1 = syn.word if invented_first else syn.english
        if kind == "synonym":
            w2, claim = (syn.english if invented_first else syn.word), (syn.word, "means", syn.english)
        elif kind == "other":
            if invented_first or len(pool) < 2:
                w1 = syn.word  # the distractor is another synonym's meaning, so its word is as familiar as the right one
                w2 = rng.choice([o.english for o in world.synonyms if o.english != syn.english])
                claim = (syn.word, "means", w2)
            else:
                other = rng.choice([o for o in pool if o.english != syn.english])
                w2, claim = other.word, (other.word, "means", syn.english)
        else:
            w2 = rng.choice((w1, syn.english if invented_first else syn.word))
            claim = ("-", "swap", "-")
        if "{B}" in frame:
            a, b = rng.sample([p.name for p in world.people] + list(world.visitors), 2)
            subject1 = {"A": a, "B": b}
        else:
            if rng.random() < 0.5:
                subject = rng.choice(world.people).name
            else:
                subject = "the " + rng.choice(world.animals).name
            subject1 = {"S": subject}
        city = rng.choice(world.cities).name
        s1 = frame.format(V=form(w1), city=city, **subject1)
        frame2 = reordered if (reordered and rng.random() < 0.3) else frame
        subject2 = {"A": subject1["B"], "B": subject1["A"]} if kind == "swap" else subject1
        s2 = frame2.format(V=form(w2), city=city, **subject2)
        s1, s2 = _cap(s1), _cap(s2)
        return {"sentence1": s1, "sentence2": s2, "label": label,
                "template": f"{prefix}{frame_i}-{kind}" + ("-reordered" if frame2 is not frame else ""),
                "facts": _facts((syn.word, "means", syn.english)), "claim": _facts(claim)}
    return gen


_GENERATORS: dict[tuple[str, str], Callable[[World, random.Random, str, str | None], Record]] = {
    ("summarisation", "news"): _gen_news,
    ("summarisation", "story"): _gen_story,
    ("question_generation", "social"): _gen_qg(_SOCIAL, "social", _social_slots),
    ("question_generation", "science"): _gen_qg(_SCIENCE, "science", _science_slots),
    ("nli", "places"): _gen_places,
    ("nli", "animals"): _gen_animals,
    ("paraphrase", "statement"): _gen_paraphrase(_STATEMENTS, "statement", True),
    ("paraphrase", "question"): _gen_paraphrase(_QUESTIONS, "question", False),
}
assert set(_GENERATORS) == {(t, d) for t, ds in DOMAINS.items() for d in ds}
assert set(DOMAINS) == set(BUILTIN_TASKS) - {"instruction"}  # instruction tuning data comes only from the hub (ptft.hubdata)

_DESCRIPTIONS = {
    ("summarisation", "news"): "Short news items (an event in a person's home city plus filler); the summary repeats the "
    "event and adds the person's occupation and country, which only the pre-training corpus states.",
    ("summarisation", "story"): "Short fairy-tale style stories (other templates and vocabulary); the summary names the "
    "protagonist's occupation and country, known only from the corpus.",
    ("question_generation", "social"): "Everyday situations of people; the answer is a span of the context and the "
    "question a templated who/what/why/where question.",
    ("question_generation", "science"): "Facts about animal species (class, diet, habitat, colour) with science-quiz "
    "style questions.",
    ("nli", "places"): "Premise puts someone in a city, hypothesis in a country: entailment iff the city is in that "
    "country (a corpus fact), contradiction for another country, neutral for claims the premise does not settle.",
    ("nli", "animals"): "Premise names an animal species, hypothesis its class or habitat: entailment iff the corpus "
    "says so, contradiction for another class or habitat, neutral for unrelated claims.",
    ("paraphrase", "statement"): "Sentence 2 replaces the verb of sentence 1 by its synonym (yes; invented verb <-> "
    "English verb, a corpus fact), by another verb (no), or swaps the two people (no).",
    ("paraphrase", "question"): "The same over question-shaped sentences with base-form verbs.",
}


def _check_spec(name: str, spec: Any) -> tuple[str, str, int, int]:
    _exact_keys(spec, SPEC_KEYS, f"dataset {name!r}")
    task, domain = spec["task"], spec["domain"]
    if task not in DOMAINS:
        raise ValueError(f"dataset {name!r}: unknown task {task!r}; allowed tasks: {sorted(DOMAINS)}")
    if domain not in DOMAINS[task]:
        raise ValueError(f"dataset {name!r}: unknown domain {domain!r} for task {task!r}; allowed domains: {list(DOMAINS[task])}")
    for key in ("n_train", "n_test"):
        value = spec[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"dataset {name!r}: {key} must be a positive integer, got {value!r}")
    return task, domain, spec["n_train"], spec["n_test"]


def generate_dataset(name: str, spec: dict, world: World, seed: int) -> dict[str, list[Record]]:
    """The records of each split ({"train": [...n_train], "test": [...n_test]}). Classification labels are balanced
    exactly (counts differ by at most one); no input appears twice, within or across splits. Raises ValueError
    naming the set for a bad spec (unknown task, domain or key) or a world too small for that many distinct records."""
    task, domain, n_train, n_test = _check_spec(name, spec)
    family = get_task(task)
    make = _GENERATORS[(task, domain)]
    seen: set[tuple[str, ...]] = set()
    out: dict[str, list[Record]] = {}
    for split, n in (("test", n_test), ("train", n_train)):
        rng = _rng(seed, "dataset", name, task, domain, split)
        words = family.label_words
        labels: list[str | None] = [words[i % len(words)] for i in range(n)] if words else [None] * n
        rng.shuffle(labels)
        records = []
        for i, label in enumerate(labels):
            for _attempt in range(500):
                record = make(world, rng, split, label)
                key = tuple(record[f] for f in family.input_fields)
                if key not in seen:
                    break
            else:
                raise ValueError(
                    f"dataset {name!r}: could not make {n} distinct {split} records from this world "
                    f"(stuck at {i}); lower n_{split} or enlarge data.world"
                )
            seen.add(key)
            records.append({"id": f"{name}-{split}-{i:05d}", **record})
        out[split] = records
    return {split: out[split] for split in SPLITS}


def dataset_card(name: str, spec: dict, world: World, seed: int, splits: dict[str, list[Record]]) -> dict[str, Any]:
    """The card of a generated set (card.json): sizes, description, template and length counts of each split, the
    world's fingerprint (equal to the corpus card's iff both come from one world) and the provenance record."""
    task, domain = spec["task"], spec["domain"]
    family = get_task(task)
    card: dict[str, Any] = {
        "name": name,
        "task": task,
        "domain": domain,
        "in_domain": domain == DOMAINS[task][0],
        "seed": seed,
        "world_fingerprint": world.fingerprint(),
        "splits": {split: len(rows) for split, rows in splits.items()},
        "description": _DESCRIPTIONS[(task, domain)],
        "heldout": "test records are about held-out entities (a quarter of the cities and their people, animal "
        "species, synonym pairs) that training records never use in the role deciding the answer",
        "templates": {split: dict(sorted(Counter(r["template"] for r in rows).items())) for split, rows in splits.items()},
        "input_length": {split: length_stats([" ".join(r[f] for f in family.input_fields) for r in rows])
                         for split, rows in splits.items()},
    }
    card.update(target_summary(family, splits))
    card["provenance"] = provenance("dataset", {"name": name, "spec": spec, "world": dict(world.config)}, seed=seed)
    return card


