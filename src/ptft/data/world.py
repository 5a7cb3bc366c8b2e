"""The fictional world of the generated data (ptft.data): invented countries and their cities, people with a home
city and an occupation, animal species with a class, diet, habitat and colour, and invented verbs with an English
synonym, plus the word helpers every generator of the package writes with.

A world is a pure function of (data.world config, seed) (`build_world`); a quarter of the cities (and the people
living there), of the animal species and of the synonym pairs is held out for the test splits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

WORLD_KEYS = ("n_countries", "n_cities", "n_people", "n_animal_classes", "n_animals", "n_synonyms")
HELDOUT_FRACTION = 0.25  # share of cities / animals / synonym pairs reserved for test splits

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

# Syllables for invented names; each name is checked against the English words this package writes.
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


def _exact_keys(cfg: Any, keys: Sequence[str], what: str) -> None:
    """Raise ValueError naming `what` unless cfg is a mapping with exactly these keys."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{what}: expected a mapping with keys {list(keys)}, got {cfg!r}")
    unknown = sorted(set(cfg) - set(keys))
    missing = [k for k in keys if k not in cfg]
    if unknown or missing:
        raise ValueError(f"{what}: unknown keys {unknown}, missing keys {missing}; expected exactly {list(keys)}")


def _check_cfg(cfg: Any, keys: Sequence[str], what: str) -> dict[str, int]:
    _exact_keys(cfg, keys, what)
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


# Real English words the syllable patterns can spell; the words of the package's own templates are added at
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


