"""Naming and building the fictional world (ptft.data.world's types): invented names that avoid every word of the
package's templates, the held-out quarter, and `build_world`.

It sits above ptft.data.world, ptft.data.corpus and ptft.data.tasksets because the words around a name decide which
names are free: the templates of the corpus and of the task sets are read here, so neither of those modules needs
this one (their writers are in ptft.data.write).
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any, Callable

from ptft.data import corpus, tasksets, world as world_module
from ptft.data.card import CARD_FILE
from ptft.data.world import (
    _ANIMAL_CLASSES, _CITY_FEATURES, _CODAS, _COLOURS, _COUNTRY_ENDINGS, _DIETS, _ENGLISH_LOOKALIKES, _ENGLISH_VERBS,
    _HABITATS, _OCCUPATIONS, _ONSETS, _VERB_CODAS, _VOWELS, HELDOUT_FRACTION, Animal, City, Person, Synonym, World,
    _cap, _check_world_cfg, _plural, _rng, _third,
)
from ptft.provenance import PROVENANCE_FILE


@functools.cache
def _template_words() -> frozenset[str]:
    """Every word in the string constants (templates, vocabulary) of the package's text modules (ptft.data.world,
    ptft.data.corpus and ptft.data.tasksets), with verb and plural forms: the words invented names must avoid."""
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

    # The writers' file names were constants of the one module this package was split from; they stay among the
    # words, so that every world (and so every name) is what it was.
    files = {"CARD_FILE": CARD_FILE, "PROVENANCE_FILE": PROVENANCE_FILE}
    for namespace in (vars(world_module), vars(corpus), vars(tasksets), files):
        for key, value in list(namespace.items()):
            if key.lstrip("_").isupper():  # the module's constants
                walk(value)
    words |= {_third(w) for w in words} | {_plural(w) for w in words}
    return frozenset(words)


class _Namer:
    """Invented, pronounceable, unique names (never an English word the package's text uses)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.stems: set[str] = set()
        self.blocked = _ENGLISH_LOOKALIKES | _template_words()

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
    """The fictional world, a pure function of (world_cfg, seed). Raises ValueError naming the data.world key for
    unknown or missing keys, a non-positive size or sizes that cannot hold a world (e.g. n_cities < 2 x n_countries)."""
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
