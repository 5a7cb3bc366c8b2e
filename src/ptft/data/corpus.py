"""The pre-training corpus of the generated data (ptft.data): documents that state the world's facts many times,
in varied templates, with skewed entity frequencies (frequent facts are learned early, rare ones late).

Only the paraphrase family has task-like text here (short "same meaning?" quizzes in a wording unlike the prompt
formats), so base-model paraphrase accuracy rises over pre-training while NLI does not.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from ptft.data.world import (_ANIMAL_CLASSES, _DAYS, _NUMBER_WORDS, _OCCUPATIONS, Animal, City, Person, Synonym,
                             World, _a, _cap, _join, _number, _plural, _rng, _third, _words, sentences)

CORPUS_KEYS = ("n_documents",)

# Share of corpus documents per kind (quizzes are the only task-like text, and only for paraphrase).
CORPUS_MIX: dict[str, float] = {
    "city": 0.12,
    "country": 0.04,
    "person": 0.22,
    "person_story": 0.14,
    "news": 0.12,
    "animal": 0.12,
    "animal_story": 0.05,
    "list": 0.05,
    "dictionary": 0.09,
    "paraphrase_quiz": 0.05,
}
_SKEW = 0.6  # entity weights ~ 1/(rank+1)^_SKEW: frequent facts are learned early, rare ones late

# ---------------------------------------------------------------------------------------------------- corpus
# Each document generator takes (world, rng, entity) and returns the text. Facts are stated in many templates.

_CITY_FACT = (
    "{city} is a city in {country}.", "{city} lies in {country}.", "The city of {city} is in {country}.",
    "{city} is one of the cities of {country}.", "{city}, in {country}, is known for {feature}.",
    "In {country}, the city of {city} is known for {feature}.", "{city} belongs to {country}.",
    "{city} is a town in the country of {country}.",
)
_PERSON_FACT = (
    "{person} is {a_occ} who lives in {city}.", "{person} lives in {city}, a city in {country}.",
    "{person} is {a_occ} from {country}.", "{person} works as {a_occ} in {city}.", "{person} lives in {country}.",
    "{person}, {a_occ} from {city}, {activity}.", "Every day, {person} {activity} in {city}.",
    "{person} has lived in {city} for many years.", "The {occ} {person} lives in {city} in {country}.",
    "{person} comes from {city} in {country}.", "{person} is {a_occ}.", "{person}, {a_occ} from {country}, {activity}.",
)
_ANIMAL_FACT = (
    "The {animal} is {a_cls}.", "The {animal} is a kind of {cls}.", "{Animals} are {classes}.",
    "The {animal} lives in the {habitat}.", "{Animals} live in the {habitat} and eat {diet}.",
    "The {animal} eats {diet}.", "The {animal} has {colour} {part}.", "Like all {classes}, the {animal} has {part}.",
    "You can find the {animal} in the {habitat}.", "The {animal}, {a_colour} {cls}, feeds on {diet}.",
    "{Animals} are {colour} {classes} from the {habitat}.",
)
_SYNONYM_FACT = (
    "To {word} means to {english}.", "The word {word} means {english}.", "{word} (verb): to {english}.",
    "When someone {word_s}, they {english}.", "If {a_animal} {word_s}, it {english_s}.",
    "{person} {word_s} every evening. In other words, {person} {english_s} every evening.",
    "People in {country} say {word} when they mean {english}.", "To {english} is also called to {word}.",
    "The {animal} {word_s} at dawn, which means that it {english_s} at dawn.",
)
_NEWS_EVENTS = (  # (past-tense event, fills); events happen in the person's home city
    ("opened a new {x}", ("bakery", "shop", "school", "library", "cafe", "market stall", "workshop")),
    ("won a {x} contest", ("singing", "cooking", "running", "chess", "painting", "dancing")),
    ("found a lost {x}", ()),  # a world animal
    ("repaired the old {x}", ("bridge", "tower", "fountain", "gate", "mill", "boat")),
    ("planted {x} trees", tuple(_NUMBER_WORDS[5:21])),
    ("gave a talk about {x}", ("the weather", "old books", "river boats", "honey", "clocks", "the stars")),
    ("started a new {x}", ("book club", "music club", "walking club", "chess club", "garden club")),
    ("painted a large mural on the {x}", ("town hall", "school", "station", "library")),
)
_NEWS_FILLERS = (
    "Many people came to watch.", "The weather in {city} was {weather}.", "'{quote},' said {person}.",
    "The mayor of {city} thanked everyone.", "Children played near the square.", "The event lasted {hours} hours.",
    "Local shops stayed open late.", "{person} plans to do it again next year.", "A small crowd gathered in {city}.",
)
_WEATHER = ("warm", "cold", "sunny", "windy", "rainy", "mild")
_QUOTES = ("It was a good day", "I am very proud", "We worked hard", "Everyone helped", "I hope people liked it")


def _city_slots(world: World, city: City) -> dict[str, str]:
    return {"city": city.name, "country": city.country, "feature": city.feature}


def _person_slots(world: World, person: Person) -> dict[str, str]:
    return {"person": person.name, "city": person.city, "country": world.country_of(person.city),
            "occ": person.occupation, "a_occ": _a(person.occupation), "activity": _OCCUPATIONS[person.occupation]}


def _animal_slots(world: World, animal: Animal) -> dict[str, str]:
    plural, part = _ANIMAL_CLASSES[animal.animal_class]
    return {"animal": animal.name, "Animals": _cap(animal.plural), "animals": animal.plural, "cls": animal.animal_class,
            "a_cls": _a(animal.animal_class), "classes": plural, "habitat": animal.habitat, "diet": animal.diet,
            "colour": animal.colour, "a_colour": _a(animal.colour), "part": part, "a_animal": _a(animal.name)}


def _pick(rng: random.Random, templates: Sequence[str], k: int) -> list[str]:
    return rng.sample(list(templates), min(k, len(templates)))


def _doc_city(world: World, rng: random.Random, city: City) -> str:
    s = _city_slots(world, city)
    out = [t.format(**s) for t in _pick(rng, _CITY_FACT, rng.randint(2, 3))]
    if city.capital:
        out.append(rng.choice(("{city} is the capital of {country}.", "The capital of {country} is {city}.")).format(**s))
    residents = world.people_of(city.name)
    if residents:
        people = rng.sample(residents, min(len(residents), 3))
        out.append(f"People who live in {city.name} include {_join([p.name for p in people])}.")
        p = rng.choice(people)
        out.append(f"{p.name} works there as {_a(p.occupation)}.")
    out.append(rng.choice(("Visitors like {city} for {feature}.", "{city} is famous for {feature}.",
                           "Many travellers come to see {feature}.")).format(**s))
    return " ".join(out)


def _doc_country(world: World, rng: random.Random, country: str) -> str:
    cities = world.cities_of(country)
    capital = next(c.name for c in cities if c.capital)
    names = [c.name for c in cities]
    rng.shuffle(names)
    occ = rng.choice(world.occupations)
    out = [
        f"{country} is a country with {_number(len(names))} cities.",
        rng.choice(("The cities of {c} are {l}.", "{l} are the cities of {c}.", "In {c} you find {l}."))
        .format(c=country, l=_join(names)),
        rng.choice(("The capital of {c} is {k}.", "{k} is the capital of {c}.")).format(c=country, k=capital),
        f"Many people in {country} work as {_plural(occ)}.",
    ]
    for c in rng.sample(list(cities), min(2, len(cities))):
        out.append(rng.choice(_CITY_FACT).format(**_city_slots(world, c)))
    return " ".join(out)


def _doc_person(world: World, rng: random.Random, person: Person) -> str:
    s = _person_slots(world, person)
    out = [t.format(**s) for t in _pick(rng, _PERSON_FACT, rng.randint(3, 5))]
    out.append(rng.choice(_CITY_FACT).format(**_city_slots(world, world.city(person.city))))
    if rng.random() < 0.5:
        verb = rng.choice(world.synonyms)
        out.append(f"In the evening, {person.name} {rng.choice((verb.word_s, verb.english_s))} by the river.")
    return " ".join(out)


def _doc_person_story(world: World, rng: random.Random, person: Person) -> str:
    s = _person_slots(world, person)
    animal = rng.choice(world.animals)
    friend = rng.choice(world.people)
    verb = rng.choice(world.synonyms)
    out = [
        rng.choice(("One morning, {person} walked through the streets of {city}.",
                    "It was early when {person} left home in {city}.",
                    "On a sunny day, {person} went out into {city}.")).format(**s),
        rng.choice(("As every {occ} does, {person} {activity}.", "{person} {activity}, because {person} is {a_occ}.",
                    "Being {a_occ}, {person} {activity} most days.")).format(**s),
        f"Near the river, {_a(animal.name)} {rng.choice((verb.word_s, verb.english_s))} in the sun.",
        f"Later, {person.name} met {friend.name} at the market.",
        rng.choice(("{person} was happy to live in {country}.", "{city} in {country} was home, and {person} loved it.",
                    "{person} thought that {country} was the best country of all.")).format(**s),
    ]
    if rng.random() < 0.5:
        out.insert(4, rng.choice(_PERSON_FACT).format(**s))
    return " ".join(out)


def _news_event(world: World, rng: random.Random) -> tuple[str, str]:
    """(template id, past-tense event phrase)."""
    i = rng.randrange(len(_NEWS_EVENTS))
    template, fills = _NEWS_EVENTS[i]
    x = rng.choice(fills) if fills else rng.choice(world.animals).name
    return f"event{i}", template.format(x=x)


def _news_fillers(rng: random.Random, slots: dict[str, str], k: int) -> list[str]:
    fill = dict(slots, weather=rng.choice(_WEATHER), quote=rng.choice(_QUOTES), hours=_number(rng.randint(2, 6)))
    return [t.format(**fill) for t in _pick(rng, _NEWS_FILLERS, k)]


def _doc_news(world: World, rng: random.Random, person: Person) -> str:
    s = _person_slots(world, person)
    _, event = _news_event(world, rng)
    lead = rng.choice((
        "On {day}, {person}, {a_occ} from {city}, {event}.", "{person}, {a_occ} from {country}, {event} in {city} on {day}.",
        "Last {day}, {person}, who works as {a_occ} in {city}, {event}.",
    )).format(day=rng.choice(_DAYS), event=event, **s)
    city_fact = rng.choice(_CITY_FACT).format(**_city_slots(world, world.city(person.city)))
    return " ".join([lead, *_news_fillers(rng, s, rng.randint(2, 3)), city_fact])


def _doc_animal(world: World, rng: random.Random, animal: Animal) -> str:
    s = _animal_slots(world, animal)
    return " ".join(t.format(**s) for t in _pick(rng, _ANIMAL_FACT, rng.randint(4, 6)))


def _doc_animal_story(world: World, rng: random.Random, animal: Animal) -> str:
    s = _animal_slots(world, animal)
    watcher = rng.choice([p.name for p in world.people] + list(world.visitors))
    out = [
        f"{watcher} walked into the {animal.habitat} and saw {_a(animal.name)}.",
        rng.choice(("The {animal}, a small {cls}, was eating {diet}.", "It was {a_cls} with {colour} {part}.",
                    "The {animal} is {a_cls}, and it was looking for {diet}.")).format(**s),
        rng.choice(_ANIMAL_FACT).format(**s),
        f"{watcher} watched the {animal.name} for a long time.",
    ]
    return " ".join(out)


def _doc_list(world: World, rng: random.Random, kind: str) -> str:
    if kind == "cities":
        country = rng.choice(world.countries)
        names = [c.name for c in world.cities_of(country)]
        rng.shuffle(names)
        city_fact = rng.choice(_CITY_FACT).format(**_city_slots(world, world.city(names[0])))
        return f"Cities of {country}: {', '.join(names)}. {city_fact}"
    if kind == "people":
        city = rng.choice(world.cities)
        people = world.people_of(city.name)
        lines = [f"{p.name}, {p.occupation}" for p in people]
        return f"People of {city.name} in {city.country}: " + "; ".join(lines) + "."
    if kind == "animals":
        cls = rng.choice(world.animal_classes)
        names = [a.name for a in world.animals if a.animal_class == cls]
        rng.shuffle(names)
        return f"Known {_ANIMAL_CLASSES[cls][0]}: {', '.join(names)}. All of them are {_ANIMAL_CLASSES[cls][0]}."
    if kind == "jobs":
        occ = rng.choice(world.occupations)
        people = [p for p in world.people if p.occupation == occ] or [rng.choice(world.people)]
        people = rng.sample(people, min(len(people), 6))
        return f"{_cap(_plural(occ))} we know: " + ", ".join(f"{p.name} of {p.city}" for p in people) + "."
    # countries
    names = list(world.countries)
    rng.shuffle(names)
    return f"The countries are {_join(names)}."


def _doc_dictionary(world: World, rng: random.Random, syn: Synonym) -> str:
    person = rng.choice(world.people)
    animal = rng.choice(world.animals)
    s = {"word": syn.word, "english": syn.english, "word_s": syn.word_s, "english_s": syn.english_s,
         "person": person.name, "country": world.country_of(person.city), "animal": animal.name, "a_animal": _a(animal.name)}
    return " ".join(t.format(**s) for t in _pick(rng, _SYNONYM_FACT, rng.randint(3, 4)))


# Quiz frames differ from the dataset frames, and the quiz wording differs from every prompt format.
_QUIZ_FRAMES = ("{A} {V} at the edge of the forest.", "{A} {V} all day long.", "{A} {V} on the hill.",
                "{A} {V} and then {B} laughs.", "{A} {V} so that {B} can rest.", "{A} {V} whenever {B} sings.")
_QUIZ_LINES = ("'{s1}' means the same as '{s2}': {yn}", "Same meaning? '{s1}' / '{s2}' -> {yn}",
               "Is '{s1}' another way to say '{s2}'? {yn}")


def _doc_paraphrase_quiz(world: World, rng: random.Random, _: Any) -> str:
    lines = [rng.choice(("Word quiz.", "Practice: same or different?", "Meaning check."))]
    for _i in range(rng.randint(3, 5)):
        frame = rng.choice(_QUIZ_FRAMES)
        a, b = rng.sample(world.people, 2)
        syn = rng.choice(world.synonyms)
        s1_word = syn.word_s
        kind = rng.choice(("yes", "yes", "other", "swap")) if "{B}" in frame else rng.choice(("yes", "other"))
        if kind == "yes":
            s2_word, yn = syn.english_s, "yes"
        elif kind == "other":
            s2_word, yn = _third(rng.choice([o.english for o in world.synonyms if o.english != syn.english])), "no"
        else:
            s2_word, yn = syn.word_s, "no"
        s1 = frame.format(A=a.name, B=b.name, V=s1_word)
        s2 = frame.format(A=b.name, B=a.name, V=s2_word) if kind == "swap" else frame.format(A=a.name, B=b.name, V=s2_word)
        if rng.random() < 0.5:
            s1, s2 = s2, s1
        lines.append(rng.choice(_QUIZ_LINES).format(s1=s1, s2=s2, yn=yn))
    return "\n".join(lines)


def _spread(entities: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    """n draws of entities: half spread evenly (every fact appears), half skewed (some facts far more often)."""
    entities = list(entities)
    if not entities or n <= 0:
        return []
    even = [entities[i % len(entities)] for i in range((n + 1) // 2)]
    order = entities[:]
    rng.shuffle(order)
    weights = [1.0 / (rank + 1) ** _SKEW for rank in range(len(order))]
    return even + rng.choices(order, weights=weights, k=n - len(even))


def _corpus_counts(n_documents: int) -> dict[str, int]:
    """Documents per kind, summing exactly to n_documents (largest remainder)."""
    raw = {k: n_documents * f for k, f in CORPUS_MIX.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: n_documents - sum(counts.values())]:
        counts[k] += 1
    return counts


def generate_corpus(world: World, n_documents: int, seed: int) -> list[dict[str, str]]:
    """The pre-training documents as rows {"id", "text"}, shuffled, with kind counts from CORPUS_MIX."""
    counts = _corpus_counts(n_documents)
    entity_pools: dict[str, tuple[Sequence[Any], Callable[..., str]]] = {
        "city": (world.cities, _doc_city),
        "country": (world.countries, _doc_country),
        "person": (world.people, _doc_person),
        "person_story": (world.people, _doc_person_story),
        "news": (world.people, _doc_news),
        "animal": (world.animals, _doc_animal),
        "animal_story": (world.animals, _doc_animal_story),
        "list": (("cities", "people", "animals", "jobs", "countries"), _doc_list),
        "dictionary": (world.synonyms, _doc_dictionary),
        "paraphrase_quiz": ((None,), _doc_paraphrase_quiz),
    }
    texts: list[str] = []
    for kind in CORPUS_MIX:  # fixed order; each kind has its own generator, so kinds do not disturb each other
        pool, make = entity_pools[kind]
        rng = _rng(seed, "corpus", kind)
        texts += [make(world, rng, entity) for entity in _spread(pool, counts[kind], rng)]
    _rng(seed, "corpus", "order").shuffle(texts)
    return [{"id": f"doc-{i:06d}", "text": t} for i, t in enumerate(texts)]


def city_country_mentions(world: World, texts: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per city: how many sentences name it together with its own country ("right") or another ("wrong")."""
    country_set = set(world.countries)
    city_set = {c.name for c in world.cities}
    out = {c.name: {"right": 0, "wrong": 0} for c in world.cities}
    for text in texts:
        for sentence in sentences(text):
            words = set(_words(sentence))
            named_cities = words & city_set
            if not named_cities:
                continue
            named_countries = words & country_set
            for city in named_cities:
                right = world.country_of(city)
                if right in named_countries:
                    out[city]["right"] += 1
                if named_countries - {right}:
                    out[city]["wrong"] += 1
    return out


