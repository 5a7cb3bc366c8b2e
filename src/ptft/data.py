"""Generated data for the embedded mini-study: a small fictional world, a pre-training corpus that states
its facts many times, and the task datasets whose answers need those facts.

Everything is a pure function of (config, seed): each generator draws from its own `random.Random` seeded
by a hash of the seed and what it is for, so outputs are byte-identical across runs and call orders.

The design that makes the study's effects appear:
- The world (countries and their cities, people with a home city and an occupation, animal species with a
  class, diet, habitat and colour, invented verbs with an English synonym) exists only in the corpus, so a
  checkpoint knows a fact only once pre-training has seen it often enough. Entity frequencies are skewed,
  so knowledge grows gradually over checkpoints.
- Every test split is about *held-out* entities (a quarter of the cities and the people living there, of the
  animal species, of the synonym pairs) that the training split never mentions in the role that decides
  the answer: fine-tuning teaches the task's format, and only pre-training can teach the test's facts.
- Only the paraphrase family has task-like text in the corpus (short "same meaning?" quizzes in a wording
  unlike the prompt formats), so base-model paraphrase accuracy rises over pre-training while NLI does not.
- Summaries copy the document's event (some ROUGE-L for a base model that copies) and add the person's
  occupation and country, which the document never states but the corpus does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ptft.provenance import PROVENANCE_FILE, atomic_dir, provenance, write_json, write_jsonl
from ptft.tasks import BUILTIN_TASKS, get_task

# Task family -> the domains it knows; the first is the in-domain (fine-tuning) domain.
DOMAINS: dict[str, tuple[str, ...]] = {
    "summarisation": ("news", "story"),
    "question_generation": ("social", "science"),
    "nli": ("places", "animals"),
    "paraphrase": ("statement", "question"),
}
WORLD_KEYS = ("n_countries", "n_cities", "n_people", "n_animal_classes", "n_animals", "n_synonyms")
CORPUS_KEYS = ("n_documents",)
SPEC_KEYS = ("task", "domain", "n_train", "n_test")
SPLITS = ("train", "test")
HELDOUT_FRACTION = 0.25  # share of cities / animals / synonym pairs reserved for test splits
CARD_FILE = "card.json"

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

# ------------------------------------------------------------------------------------------------ vocabulary
_OCCUPATIONS: dict[str, str] = {  # occupation -> what it does (third person)
    "baker": "bakes bread", "farmer": "grows wheat", "teacher": "teaches children", "doctor": "cares for the sick",
    "painter": "paints pictures", "fisher": "catches fish", "builder": "builds houses", "singer": "sings songs",
    "writer": "writes books", "tailor": "sews coats", "miner": "digs for coal", "sailor": "sails ships",
    "potter": "makes pots", "weaver": "weaves cloth", "nurse": "helps the sick", "cook": "cooks meals",
    "guard": "guards the gate", "merchant": "sells goods", "carpenter": "makes tables", "gardener": "grows flowers",
}
_ANIMAL_CLASSES: dict[str, tuple[str, str]] = {  # class -> (plural, body part)
    "bird": ("birds", "feathers"), "fish": ("fish", "fins"), "reptile": ("reptiles", "scales"),
    "insect": ("insects", "wings"), "mammal": ("mammals", "fur"), "amphibian": ("amphibians", "skin"),
    "mollusc": ("molluscs", "tentacles"), "crustacean": ("crustaceans", "claws"),
}
_DIETS = ("seeds", "fish", "insects", "grass", "fruit", "leaves", "worms", "nuts", "berries", "roots")
_HABITATS = ("forest", "desert", "river", "mountains", "swamp", "grassland", "sea", "caves", "lakes", "hills")
_COLOURS = ("red", "blue", "green", "yellow", "grey", "brown", "white", "black", "orange", "purple", "golden", "silver")
_CITY_FEATURES = (
    "its old stone bridge", "its busy fish market", "its tall clock tower", "its green parks", "its large harbour",
    "its quiet canals", "its red roofs", "its hot springs", "its flower festival", "its long beach",
    "its ancient walls", "its windmills", "its night market", "its blue lake", "its music hall", "its olive groves",
)
_ENGLISH_VERBS = (
    "shine", "sing", "sleep", "jump", "swim", "run", "walk", "wait", "smile", "laugh", "dance", "whisper", "rest",
    "hide", "listen", "glow", "work", "fall", "grow", "wander", "cook", "read", "write", "paint", "travel", "climb",
    "tremble", "shout", "cry", "float", "hum", "nod", "wave", "blink", "dream", "yawn", "sit", "stand", "sneeze",
    "cough", "kneel", "pray", "whistle", "shiver", "sigh", "frown", "giggle", "hurry", "crawl", "dig", "hunt", "eat",
    "drink", "sail", "ride", "knit", "sew", "bake", "study", "hop", "fly", "dive", "glide", "scream", "stare",
    "learn", "play", "argue", "return", "skate", "rush", "relax", "think", "speak",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")

# Syllables for invented names; each name is checked against the English words this module writes.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "pl", "tr", "sk")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("n", "l", "r", "s", "m", "k")
_VERB_CODAS = ("lm", "rv", "nd", "sk", "mp", "lt", "rk", "ft", "rn", "sp")
_COUNTRY_ENDINGS = ("ia", "ova", "ar", "esh", "und", "ora", "ith")

# --------------------------------------------------------------------------------------------------- helpers


def _rng(*parts: Any) -> random.Random:
    """A generator of its own for each purpose: seeded by a hash of the parts, never by global state."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _third(verb: str) -> str:
    """Third person singular of a regular verb (invented or English)."""
    if verb.endswith("y") and verb[-2:-1] not in ("a", "e", "i", "o", "u"):
        return verb[:-1] + "ies"
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    return verb + "s"


def _plural(noun: str) -> str:
    return noun + "es" if noun.endswith(("s", "sh", "ch", "x", "z")) else noun + "s"


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _number(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """Split generated text into sentences (the generators end every sentence with . ! or ?)."""
    return [s for s in _SENTENCE_END.split(text) if s]


# ----------------------------------------------------------------------------------------------------- world


@dataclass(frozen=True)
class City:
    name: str
    country: str
    feature: str
    capital: bool


@dataclass(frozen=True)
class Person:
    name: str
    city: str
    occupation: str


@dataclass(frozen=True)
class Animal:
    name: str
    plural: str
    animal_class: str
    diet: str
    habitat: str
    colour: str


@dataclass(frozen=True)
class Synonym:
    word: str  # invented verb, base form
    english: str  # its meaning, an English verb in base form

    @property
    def word_s(self) -> str:
        return _third(self.word)

    @property
    def english_s(self) -> str:
        return _third(self.english)


@dataclass(frozen=True)
class World:
    """The fictional world: every fact the corpus teaches and the tasks need. Built by `build_world`."""

    seed: int
    config: tuple[tuple[str, int], ...]
    countries: tuple[str, ...]
    cities: tuple[City, ...]
    people: tuple[Person, ...]
    occupations: tuple[str, ...]
    animal_classes: tuple[str, ...]
    animals: tuple[Animal, ...]
    synonyms: tuple[Synonym, ...]
    visitors: tuple[str, ...]  # extra names for people the world states nothing about
    heldout_cities: frozenset[str]
    heldout_animals: frozenset[str]
    heldout_synonyms: frozenset[str]

    @functools.cached_property
    def _city(self) -> dict[str, City]:
        return {c.name: c for c in self.cities}

    def country_of(self, city: str) -> str:
        return self._city[city].country

    def city(self, name: str) -> City:
        return self._city[name]

    def cities_of(self, country: str) -> tuple[City, ...]:
        return tuple(c for c in self.cities if c.country == country)

    def people_of(self, city: str) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.city == city)

    @functools.cached_property
    def _animal(self) -> dict[str, Animal]:
        return {a.name: a for a in self.animals}

    def animal(self, name: str) -> Animal:
        return self._animal[name]

    @functools.cached_property
    def _synonym(self) -> dict[str, Synonym]:
        return {s.word: s for s in self.synonyms}

    def synonym(self, word: str) -> Synonym:
        return self._synonym[word]

    # The split pools: test splits are about held-out entities, training splits about the rest.
    def split_cities(self, split: str) -> tuple[City, ...]:
        return tuple(c for c in self.cities if (c.name in self.heldout_cities) == (split == "test"))

    def split_people(self, split: str) -> tuple[Person, ...]:
        return tuple(p for p in self.people if (p.city in self.heldout_cities) == (split == "test"))

    def split_animals(self, split: str) -> tuple[Animal, ...]:
        return tuple(a for a in self.animals if (a.name in self.heldout_animals) == (split == "test"))

    def split_synonyms(self, split: str) -> tuple[Synonym, ...]:
        return tuple(s for s in self.synonyms if (s.word in self.heldout_synonyms) == (split == "test"))

    def facts(self) -> list[tuple[str, str, str]]:
        """Every fact as (subject, relation, object)."""
        out = [(c.name, "city_in", c.country) for c in self.cities]
        out += [(c.name, "capital_of", c.country) for c in self.cities if c.capital]
        out += [(p.name, "lives_in", p.city) for p in self.people]
        out += [(p.name, "works_as", p.occupation) for p in self.people]
        for a in self.animals:
            out += [(a.name, "is_a", a.animal_class), (a.name, "eats", a.diet), (a.name, "lives_in", a.habitat),
                    (a.name, "has_colour", a.colour)]
        out += [(s.word, "means", s.english) for s in self.synonyms]
        return out

    def fingerprint(self) -> str:
        """A short hash of every fact: equal in the corpus card and each dataset card iff they share one world."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "config": dict(self.config),
            "countries": list(self.countries),
            "cities": [asdict(c) for c in self.cities],
            "people": [asdict(p) for p in self.people],
            "animal_classes": list(self.animal_classes),
            "animals": [asdict(a) for a in self.animals],
            "synonyms": [asdict(s) for s in self.synonyms],
            "visitors": list(self.visitors),
            "heldout": {
                "cities": sorted(self.heldout_cities),
                "animals": sorted(self.heldout_animals),
                "synonyms": sorted(self.heldout_synonyms),
            },
        }


def _check_cfg(cfg: Any, keys: Sequence[str], what: str) -> dict[str, int]:
    if not isinstance(cfg, dict):
        raise ValueError(f"{what}: expected a mapping with keys {list(keys)}, got {cfg!r}")
    unknown = sorted(set(cfg) - set(keys))
    missing = [k for k in keys if k not in cfg]
    if unknown or missing:
        raise ValueError(f"{what}: unknown keys {unknown}, missing keys {missing}; expected exactly {list(keys)}")
    for k in keys:
        if not isinstance(cfg[k], int) or isinstance(cfg[k], bool) or cfg[k] < 1:
            raise ValueError(f"{what}.{k}: expected a positive integer, got {cfg[k]!r}")
    return {k: cfg[k] for k in keys}


def _check_world_cfg(world_cfg: Any) -> dict[str, int]:
    cfg = _check_cfg(world_cfg, WORLD_KEYS, "data.world")
    limits = [
        (cfg["n_countries"] >= 2, "n_countries must be at least 2 (NLI needs a wrong country)"),
        (cfg["n_cities"] >= 2 * cfg["n_countries"],
         "n_cities must be at least 2 x n_countries (a held-out and a training city per country)"),
        (cfg["n_people"] >= cfg["n_cities"], "n_people must be at least n_cities (somebody lives in every city)"),
        (2 <= cfg["n_animal_classes"] <= len(_ANIMAL_CLASSES), f"n_animal_classes must be 2..{len(_ANIMAL_CLASSES)}"),
        (cfg["n_animals"] >= 2 * cfg["n_animal_classes"], "n_animals must be at least 2 x n_animal_classes"),
        (4 <= cfg["n_synonyms"] <= len(_ENGLISH_VERBS) - 8, f"n_synonyms must be 4..{len(_ENGLISH_VERBS) - 8}"),
    ]
    for ok, message in limits:
        if not ok:
            raise ValueError(f"data.world: {message}; got {cfg}")
    return cfg


# Real English words the syllable patterns can spell; the words of this module's own templates are added at
# first use (a name like "Baker" or "Market" would collide with the text around it).
_ENGLISH_LOOKALIKES = frozenset("""
ban bun bus dam den dim dun fan fin fun gas gem gun kin lab lad man mar mars men mom mum nun pan pen pin pun ram
ran rim run sum sun tan ten tin ton van vim zen balm helm film bend band bond bind fund fond find kind land lend
mend mind pond rand send sand tend vend bask desk disk dusk mask musk risk task tusk brisk damp dump lamp limp
lump pump ramp romp tamp bump gimp temp vamp trump tramp grump plump belt bolt dolt felt gilt kilt lilt malt melt
molt pelt salt silt tilt volt bark dark dirk dork fork lark lurk mark murk park perk pork kirk daft deft gift left
lift loft raft rift sift soft tuft graft draft drift kraft barn born burn darn fern tern turn torn morn gasp lisp
rasp grasp brand grand grind trend skimp tempo pasta mama papa tuna soda sofa data lava koala piano radio motel
panel robin lemon melon salon talon bison demon venus bonus virus minus sinus tenor manor minor donor rumor tumor
vapor liner diner tiger baker maker poker biker paper piper later moral mural rural petal metal medal pedal total
tidal vital fatal natal basil pupil lapel label navel novel level model bagel gavel sumo memo demo solo polo silo
kilo limo lima puma coma sepal bali peru oman chad cuba fiji laos togo mali kenya nepal sudan samoa tonga india
malta bona dona lola mona nina rosa tina vera zara sara dora lena kara mara tara ella anna tobin tutu toto gaga
kudu beta zeta meta sore lore more bore gore pore tore sure pure lure rude rode mode node bode tide side ride bide
made fade tube lube mule rule dune tune rune fume dome tome rome lime time mime dime pile tile file mile bile vile
pole mole role sole dole bone tone zone lone pane lane mane sane vane bane game same tame fame dame name lame gale
male pale sale tale bale kale vale date fate gate late mate rate note vote tote mute lute site bite kite mite rite
dive five live vine nine fine line mine pine tine dine sine base vase rose pose nose dose lose fuse muse ruse bike
like pike bake make rake take sake lake fake poke duke nuke tuba sima lira mesa visa diva
""".split())


@functools.cache
def _module_words() -> frozenset[str]:
    """Every word in this module's string constants (templates, vocabulary), with verb and plural forms."""
    words: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, str):
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+", obj))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(k)
                walk(v)
        elif isinstance(obj, (tuple, list, frozenset)):
            for v in obj:
                walk(v)

    for key, value in list(globals().items()):
        if key.lstrip("_").isupper():  # the module's constants
            walk(value)
    words |= {_third(w) for w in words} | {_plural(w) for w in words}
    return frozenset(words)


class _Namer:
    """Invented, pronounceable, unique names (never an English word this module uses)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.stems: set[str] = set()
        self.blocked = _ENGLISH_LOOKALIKES | _module_words()

    def _syllable(self, coda: bool) -> str:
        r = self.rng
        return r.choice(_ONSETS) + r.choice(_VOWELS) + (r.choice(_CODAS) if coda else "")

    def _fresh(self, make: Callable[[], str]) -> str:
        for _ in range(10_000):
            name = make()
            key = name.lower()
            # a distinct 4-letter stem keeps names apart (no "lerv" beside "lervo")
            if key[:4] not in self.stems and key not in self.blocked and len(key) >= 4:
                self.stems.add(key[:4])
                return name
        raise RuntimeError("ran out of invented names; the world is too large for the syllable inventory")

    def country(self) -> str:
        return self._fresh(lambda: _cap(self._syllable(True) + self.rng.choice(_ONSETS[:14]) + self.rng.choice(_COUNTRY_ENDINGS)))

    def city(self) -> str:
        return self._fresh(lambda: _cap(self._syllable(self.rng.random() < 0.5) + self._syllable(self.rng.random() < 0.4)))

    def person(self) -> str:
        return self._fresh(lambda: _cap(self._syllable(False) + self._syllable(self.rng.random() < 0.6)))

    def animal(self) -> str:
        def make() -> str:
            core = self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_VERB_CODAS[:8])
            return core if self.rng.random() < 0.5 else core + self.rng.choice(("o", "a", "i"))
        return self._fresh(make)

    def verb(self) -> str:
        def make() -> str:
            core = self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_VERB_CODAS)
            return core if self.rng.random() < 0.5 else self._syllable(False) + core
        return self._fresh(make)


def _stratified_heldout(groups: dict[str, list[str]], rng: random.Random) -> frozenset[str]:
    """About HELDOUT_FRACTION of each group, at least one, never all of it."""
    out = set()
    for key in sorted(groups):
        members = sorted(groups[key])
        k = min(len(members) - 1, max(1, round(len(members) * HELDOUT_FRACTION)))
        out.update(rng.sample(members, k))
    return frozenset(out)


def build_world(world_cfg: dict, seed: int) -> World:
    """The fictional world, a pure function of (world_cfg, seed)."""
    cfg = _check_world_cfg(world_cfg)
    rng = _rng(seed, "world")
    namer = _Namer(rng)

    countries = tuple(namer.country() for _ in range(cfg["n_countries"]))
    # Cities: an even share per country, in a seeded order.
    city_countries = [countries[i % len(countries)] for i in range(cfg["n_cities"])]
    rng.shuffle(city_countries)
    cities, has_capital = [], set()
    for country in city_countries:
        capital = country not in has_capital
        has_capital.add(country)
        cities.append(City(namer.city(), country, rng.choice(_CITY_FEATURES), capital))
    city_names = [c.name for c in cities]

    occupations = tuple(rng.sample(sorted(_OCCUPATIONS), max(2, min(len(_OCCUPATIONS), cfg["n_people"] // 2))))
    homes = city_names + [rng.choice(city_names) for _ in range(cfg["n_people"] - len(city_names))]
    rng.shuffle(homes)
    people = tuple(Person(namer.person(), home, rng.choice(occupations)) for home in homes)

    classes = tuple(rng.sample(sorted(_ANIMAL_CLASSES), cfg["n_animal_classes"]))
    animal_classes = [classes[i % len(classes)] for i in range(cfg["n_animals"])]
    rng.shuffle(animal_classes)
    animals = []
    for cls in animal_classes:
        name = namer.animal()
        animals.append(Animal(name, _plural(name), cls, rng.choice(_DIETS), rng.choice(_HABITATS), rng.choice(_COLOURS)))

    meanings = rng.sample(_ENGLISH_VERBS, cfg["n_synonyms"])
    synonyms = tuple(Synonym(namer.verb(), meaning) for meaning in meanings)
    visitors = tuple(namer.person() for _ in range(max(8, cfg["n_people"] // 4)))

    held_rng = _rng(seed, "world", "heldout")
    by_country: dict[str, list[str]] = {}
    for c in cities:
        by_country.setdefault(c.country, []).append(c.name)
    by_class: dict[str, list[str]] = {}
    for a in animals:
        by_class.setdefault(a.animal_class, []).append(a.name)
    return World(
        seed=seed,
        config=tuple(sorted(cfg.items())),
        countries=countries,
        cities=tuple(cities),
        people=people,
        occupations=occupations,
        animal_classes=classes,
        animals=tuple(animals),
        synonyms=synonyms,
        visitors=visitors,
        heldout_cities=_stratified_heldout(by_country, held_rng),
        heldout_animals=_stratified_heldout(by_class, held_rng),
        heldout_synonyms=_stratified_heldout({"all": [s.word for s in synonyms]}, held_rng),
    )


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
_NEWS_LEADS = ("On {day}, {person} {event} in {city}.", "{person} {event} in {city} on {day}.",
               "Last {day}, {person} {event} in {city}.")
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


def write_corpus(world_cfg: dict, corpus_cfg: dict, seed: int, out_path: Path) -> None:
    """Write the pre-training corpus (JSONL rows {"id", "text"}) to out_path and card.json beside it."""
    out_path = Path(out_path)
    cfg = _check_cfg(corpus_cfg, CORPUS_KEYS, "data.corpus")
    world = build_world(world_cfg, seed)
    rows = generate_corpus(world, cfg["n_documents"], seed)
    texts = [r["text"] for r in rows]
    mentions = city_country_mentions(world, texts)
    right = [m["right"] for m in mentions.values()]
    words_per_doc = [len(t.split()) for t in texts]
    card = {
        "name": "corpus",
        "seed": seed,
        "n_documents": len(rows),
        "n_characters": sum(len(t) for t in texts),
        "n_words": sum(words_per_doc),
        "words_per_document": {"mean": round(statistics.fmean(words_per_doc), 2), "min": min(words_per_doc),
                               "max": max(words_per_doc)},
        "documents_by_kind": _corpus_counts(cfg["n_documents"]),
        "description": (
            "Generated English-like text about a fictional world (invented countries, cities, people, animal species "
            "and verbs). Kinds: encyclopedic paragraphs about cities, countries, people and animals; short stories; "
            "news snippets; lists; dictionary entries for invented verbs; and a few paraphrase quizzes ('... means the "
            "same as ...: yes/no'), the only task-like text. Each fact is stated many times in varied templates; "
            "entity frequencies are skewed so that some facts are far more frequent than others."
        ),
        "city_country_sentences": {"min": min(right), "mean": round(statistics.fmean(right), 2), "max": max(right),
                                   "wrong_country": sum(m["wrong"] for m in mentions.values())},
        "world_fingerprint": world.fingerprint(),
        "world": world.to_dict(),
        "provenance": provenance("corpus", {"world": dict(world.config), "corpus": cfg}, seed=seed),
    }
    write_jsonl(out_path, rows)
    write_json(out_path.parent / CARD_FILE, card)


# -------------------------------------------------------------------------------------------------- datasets
# A generator makes one record for (world, rng, split, label); label is None for generation tasks. Records carry
# the task's fields plus "template" and "facts" ("subject|relation|object; ..."), and NLI records a "claim".

Record = dict[str, str]


def _facts(*triples: tuple[str, str, str]) -> str:
    return "; ".join("|".join(t) for t in triples)


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
    if not isinstance(spec, dict):
        raise ValueError(f"dataset {name!r}: expected a mapping with keys {list(SPEC_KEYS)}, got {spec!r}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    missing = [k for k in SPEC_KEYS if k not in spec]
    if unknown or missing:
        raise ValueError(f"dataset {name!r}: unknown keys {unknown}, missing keys {missing}; expected {list(SPEC_KEYS)}")
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
    """The records of each split. Classification labels are balanced exactly (counts differ by at most one);
    no input appears twice, within or across splits."""
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


def length_stats(texts: Sequence[str]) -> dict[str, float]:
    """Mean, least and most words of the texts, for data cards (empty for no texts: a hub set without a test split)."""
    if not texts:
        return {}
    lengths = [len(t.split()) for t in texts]
    return {"mean_words": round(statistics.fmean(lengths), 2), "min_words": min(lengths), "max_words": max(lengths)}


def dataset_card(name: str, spec: dict, world: World, seed: int, splits: dict[str, list[Record]]) -> dict[str, Any]:
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
    if family.label_words:
        card["label_distribution"] = {split: {w: sum(r[family.target_field] == w for r in rows) for w in family.label_words}
                                      for split, rows in splits.items()}
    else:
        card["target_length"] = {split: length_stats([r[family.target_field] for r in rows]) for split, rows in splits.items()}
    card["provenance"] = provenance("dataset", {"name": name, "spec": spec, "world": dict(world.config)}, seed=seed)
    return card


def write_dataset(name: str, spec: dict, world_cfg: dict, seed: int, out_dir: Path) -> None:
    """Write out_dir/train.jsonl, out_dir/test.jsonl and out_dir/card.json (and provenance.json), all at once."""
    _check_spec(name, spec)
    world = build_world(world_cfg, seed)
    splits = generate_dataset(name, spec, world, seed)
    card = dataset_card(name, spec, world, seed, splits)
    with atomic_dir(out_dir) as tmp:
        for split, rows in splits.items():
            write_jsonl(tmp / f"{split}.jsonl", rows)
        write_json(tmp / CARD_FILE, card)
        write_json(tmp / PROVENANCE_FILE, card["provenance"])
