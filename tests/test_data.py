"""Tests of ptft.data: the generated world, corpus and task datasets of the embedded mini-study."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from ptft import data
from ptft.data.names import _template_words
from ptft.data.world import _third
from ptft.provenance import read_jsonl
from ptft.tasks import TASKS, get_task

WORLD = {"n_countries": 3, "n_cities": 9, "n_people": 18, "n_animal_classes": 3, "n_animals": 9, "n_synonyms": 8}
# The smallest world a config uses (tests/integration/config.yaml): every dataset must still be buildable.
TINY_WORLD = {"n_countries": 3, "n_cities": 6, "n_people": 10, "n_animal_classes": 2, "n_animals": 6, "n_synonyms": 6}
SEED = 7
ALL_SETS = [(task, domain) for task, domains in data.DOMAINS.items() for domain in domains]


def spec(task: str, domain: str, n_train: int = 30, n_test: int = 18) -> dict:
    return {"task": task, "domain": domain, "n_train": n_train, "n_test": n_test}


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z']+", text))


def triples(text: str) -> list[tuple[str, ...]]:
    return [tuple(t.split("|")) for t in text.split("; ")]


@pytest.fixture(scope="module")
def world() -> data.World:
    return data.build_world(WORLD, SEED)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    data.write_corpus(WORLD, {"n_documents": 600}, SEED, path)
    return path, read_jsonl(path)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every (task, domain) written once: {"dir", "train", "test", "card"}."""
    root = tmp_path_factory.mktemp("datasets")
    out = {}
    for task, domain in ALL_SETS:
        name = f"{domain}_{task}"
        n_train, n_test = (30, 18) if task == "nli" else (24, 16)
        data.write_dataset(name, spec(task, domain, n_train, n_test), WORLD, SEED, root / name)
        out[(task, domain)] = {
            "dir": root / name,
            "train": read_jsonl(root / name / "train.jsonl"),
            "test": read_jsonl(root / name / "test.jsonl"),
            "card": json.loads((root / name / "card.json").read_text()),
        }
    return out


# ------------------------------------------------------------------------------------------------------- world


def test_world_is_deterministic_and_seeded():
    a, b = data.build_world(WORLD, SEED), data.build_world(dict(reversed(WORLD.items())), SEED)
    c = data.build_world(WORLD, SEED + 1)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_world_has_the_configured_sizes_and_a_heldout_part_everywhere(world):
    assert len(world.countries) == 3 and len(world.cities) == 9 and len(world.people) == 18
    assert len(world.animal_classes) == 3 and len(world.animals) == 9 and len(world.synonyms) == 8
    for country in world.countries:
        names = {c.name for c in world.cities_of(country)}
        assert names & world.heldout_cities and names - world.heldout_cities, country
        assert sum(c.capital for c in world.cities_of(country)) == 1
    for cls in world.animal_classes:
        names = {a.name for a in world.animals if a.animal_class == cls}
        assert names & world.heldout_animals and names - world.heldout_animals, cls
    assert 0 < len(world.heldout_synonyms) < len(world.synonyms)
    assert all(world.people_of(c.name) for c in world.cities)  # somebody lives in every city


def test_world_names_are_unique_invented_words(world):
    names = [*world.countries, *(c.name for c in world.cities), *(p.name for p in world.people), *world.visitors,
             *(a.name for a in world.animals), *(s.word for s in world.synonyms)]
    assert len({n.lower() for n in names}) == len(names)
    english = _template_words()
    assert not [n for n in names if n.lower() in english]
    assert len({s.english for s in world.synonyms}) == len(world.synonyms)


def test_invented_names_avoid_the_template_words_of_every_text_module():
    # one word only in ptft.data.world's vocabulary, ptft.data.corpus's templates, ptft.data.tasksets's frames
    assert {"tentacles", "belongs", "proud", "photographed", "smiling"} <= _template_words()


@pytest.mark.parametrize(
    "change, message",
    [({"n_cities": 5}, "n_cities"), ({"n_animals": 3}, "n_animals"), ({"n_countries": 0}, "n_countries"),
     ({"n_synonims": 4}, "n_synonims")],
)
def test_world_config_errors_name_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        data.build_world({**WORLD, **change}, SEED)


# ------------------------------------------------------------------------------------------------------ corpus


def test_corpus_is_byte_identical_for_a_seed_and_differs_across_seeds(tmp_path, corpus):
    path, _ = corpus
    again, other = tmp_path / "a" / "corpus.jsonl", tmp_path / "b" / "corpus.jsonl"
    data.write_corpus(WORLD, {"n_documents": 600}, SEED, again)
    data.write_corpus(WORLD, {"n_documents": 600}, SEED + 1, other)
    assert again.read_bytes() == path.read_bytes()
    assert (again.parent / "card.json").read_bytes() == (path.parent / "card.json").read_bytes()
    assert other.read_bytes() != path.read_bytes()


def test_corpus_rows_and_card(corpus):
    path, rows = corpus
    assert len(rows) == 600
    assert all(set(r) == {"id", "text"} and r["text"].strip() for r in rows)
    assert len({r["id"] for r in rows}) == 600
    card = json.loads((path.parent / "card.json").read_text())
    assert card["n_documents"] == 600 and card["seed"] == SEED
    assert card["n_words"] == sum(len(r["text"].split()) for r in rows)
    assert card["n_characters"] == sum(len(r["text"]) for r in rows)
    assert sum(card["documents_by_kind"].values()) == 600 and set(card["documents_by_kind"]) == set(data.CORPUS_MIX)
    assert card["description"] and card["world"] == data.build_world(WORLD, SEED).to_dict()
    assert card["world_fingerprint"] == data.build_world(WORLD, SEED).fingerprint() != data.build_world(WORLD, 8).fingerprint()
    assert card["provenance"]["kind"] == "corpus" and card["provenance"]["seed"] == SEED
    assert card["provenance"]["config"]["corpus"] == {"n_documents": 600}


K_CITY_FACT = 30  # 600 documents over 9 cities give 55+ per city; the params.yaml corpus gives 230+


def test_corpus_states_every_city_country_fact_at_least_k_times_and_never_a_wrong_one(world, corpus):
    _, rows = corpus
    right, wrong = Counter(), Counter()
    for row in rows:
        for sentence in re.split(r"(?<=[.!?])\s+", row["text"]):
            ws = words(sentence)
            for city in world.cities:
                if city.name in ws:
                    right[city.name] += city.country in ws
                    wrong[city.name] += bool(ws & (set(world.countries) - {city.country}))
    assert min(right[c.name] for c in world.cities) >= K_CITY_FACT, right
    assert sum(wrong.values()) == 0, wrong


def test_corpus_teaches_people_animals_and_synonyms(world, corpus):
    _, rows = corpus
    texts = [r["text"] for r in rows]

    def co_mentions(a: str, b: str) -> int:
        return sum(a in ws and b in ws for ws in (words(s) for t in texts for s in data.sentences(t)))

    for p in world.people:
        assert co_mentions(p.name, p.occupation) >= 2, p
        assert co_mentions(p.name, p.city) >= 2, p
    for a in world.animals:
        assert co_mentions(a.name, a.animal_class) >= 2, a
    for s in world.synonyms:
        assert co_mentions(s.word, s.english) >= 2, s


def test_corpus_text_has_no_template_or_object_leftovers(world, corpus):
    _, rows = corpus
    everything = "\n".join(r["text"] for r in rows)
    for leftover in ("{", "}", "(name=", "Person(", "City(", "Animal(", "Synonym(", "None", "  "):
        assert leftover not in everything, leftover
    assert {p.name for p in world.people} <= words(everything)


def test_corpus_has_task_like_text_only_for_paraphrase(corpus):
    _, rows = corpus
    quizzes = [r["text"] for r in rows if "means the same as" in r["text"] or "Same meaning?" in r["text"]]
    assert 0.02 * len(rows) <= len(quizzes) <= 0.10 * len(rows)
    assert all(q.count(": yes") + q.count("-> yes") + q.count("? yes") + q.count(": no") + q.count("-> no")
               + q.count("? no") >= 2 for q in quizzes)
    everything = "\n".join(r["text"] for r in rows)
    # Nothing in the wording of any prompt format, and no NLI labels or summaries.
    for marker in ("###", "Premise", "Hypothesis", "entailment", "contradiction", "neutral", "Summary", "summary",
                   "Paraphrase", "Sentence 1", "Answer yes or no", "Question:"):
        assert marker not in everything, marker


def test_corpus_size_follows_n_documents(tmp_path):
    data.write_corpus(WORLD, {"n_documents": 50}, SEED, tmp_path / "c.jsonl")
    assert len(read_jsonl(tmp_path / "c.jsonl")) == 50
    with pytest.raises(ValueError, match="n_documents"):
        data.write_corpus(WORLD, {"n_docs": 50}, SEED, tmp_path / "d.jsonl")


# ---------------------------------------------------------------------------------------------------- datasets


def test_domains_cover_every_task_family_but_hub_only_instruction_tuning():
    assert set(data.DOMAINS) == set(TASKS) - {"instruction"}
    assert data.DOMAINS["summarisation"] == ("news", "story") and data.DOMAINS["nli"][0] == "places"


@pytest.mark.parametrize("task, domain", ALL_SETS)
def test_records_have_the_task_fields_valid_targets_and_stable_ids(datasets, task, domain):
    family = get_task(task)
    d = datasets[(task, domain)]
    name = d["dir"].name
    for split in data.SPLITS:
        rows = d[split]
        assert len(rows) == d["card"]["splits"][split]
        assert [r["id"] for r in rows] == [f"{name}-{split}-{i:05d}" for i in range(len(rows))]
        for r in rows:
            for f in (*family.input_fields, family.target_field):
                assert isinstance(r[f], str) and r[f].strip(), (r["id"], f)
                assert not re.search(r"[{}]|\(name=|  |None", r[f]), (r["id"], f, r[f])
            family.target(r)  # raises on a label outside the label words
            for fmt in ("default", "instruct", "io"):
                family.render(r, fmt)


@pytest.mark.parametrize("task, domain", ALL_SETS)
def test_train_and_test_inputs_are_disjoint_and_unique(datasets, task, domain):
    family = get_task(task)
    d = datasets[(task, domain)]
    keys = {split: [tuple(r[f] for f in family.input_fields) for r in d[split]] for split in data.SPLITS}
    for split in data.SPLITS:
        assert len(set(keys[split])) == len(keys[split]), split
    assert not set(keys["train"]) & set(keys["test"])


@pytest.mark.parametrize("task, domain", [s for s in ALL_SETS if TASKS[s[0]].kind == "classification"])
def test_classification_labels_are_balanced(datasets, task, domain):
    family = get_task(task)
    for split in data.SPLITS:
        counts = Counter(r["label"] for r in datasets[(task, domain)][split])
        assert set(counts) == set(family.label_words)
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)  # exact balance, up to rounding


@pytest.mark.parametrize("task, domain", ALL_SETS)
def test_test_splits_are_about_heldout_entities(world, datasets, task, domain):
    heldout = world.heldout_cities | world.heldout_animals | world.heldout_synonyms
    for split in data.SPLITS:
        for r in datasets[(task, domain)][split]:
            subjects = {s for s, _, _ in triples(r["facts"])}
            deciding = {s for s in subjects if s in {c.name for c in world.cities} | {a.name for a in world.animals}
                        | {s.word for s in world.synonyms}}
            deciding |= {world.people[[p.name for p in world.people].index(s)].city for s in subjects
                         if s in {p.name for p in world.people}}
            assert deciding, r["id"]
            assert all((s in heldout) == (split == "test") for s in deciding), (r["id"], deciding)


def test_places_nli_labels_agree_with_the_world(world, datasets):
    for split in data.SPLITS:
        for r in datasets[("nli", "places")][split]:
            [(city, rel, country)] = triples(r["facts"])
            assert rel == "city_in" and world.country_of(city) == country, r
            assert city in words(r["premise"]) and not set(world.countries) & words(r["premise"]), r
            [(subject, claim_rel, claimed)] = triples(r["claim"])
            assert claimed in words(r["hypothesis"]), r
            if claim_rel == "city_in":
                assert subject == city
                assert r["label"] == ("entailment" if world.country_of(city) == claimed else "contradiction"), r
            else:
                assert r["label"] == "neutral", r


def test_animals_nli_labels_agree_with_the_world(world, datasets):
    for split in data.SPLITS:
        for r in datasets[("nli", "animals")][split]:
            [(name, rel, value)] = triples(r["facts"])
            animal = world.animal(name)
            assert value == {"is_a": animal.animal_class, "lives_in": animal.habitat}[rel], r
            assert name in words(r["premise"]) and name not in words(r["hypothesis"]), r
            [(_, claim_rel, claimed)] = triples(r["claim"])
            if claim_rel == rel:
                assert claimed in r["hypothesis"]
                assert r["label"] == ("entailment" if claimed == value else "contradiction"), r
            else:
                assert r["label"] == "neutral", r


@pytest.mark.parametrize("domain", data.DOMAINS["paraphrase"])
def test_paraphrase_labels_agree_with_the_world(world, datasets, domain):
    for split in data.SPLITS:
        for r in datasets[("paraphrase", domain)][split]:
            w1, w2 = words(r["sentence1"]), words(r["sentence2"])
            [(word, rel, meaning)] = triples(r["claim"])
            if rel == "means":  # the verb was replaced: yes iff by its synonym
                forms = {word, _third(word)}, {meaning, _third(meaning)}
                assert (forms[0] & w1 and forms[1] & w2) or (forms[0] & w2 and forms[1] & w1), r
                assert r["label"] == ("yes" if world.synonym(word).english == meaning else "no"), r
            else:  # two people swapped: the same words, another meaning
                assert rel == "swap" and r["label"] == "no", r
                assert r["sentence1"] != r["sentence2"]
    questions = [r for r in datasets[("paraphrase", domain)]["test"] if r["sentence1"].endswith("?")]
    assert len(questions) == (len(datasets[("paraphrase", domain)]["test"]) if domain == "question" else 0)


@pytest.mark.parametrize("domain", data.DOMAINS["summarisation"])
def test_summaries_copy_the_event_and_add_knowledge(world, datasets, domain):
    people = {p.name: p for p in world.people}
    for split in data.SPLITS:
        for r in datasets[("summarisation", domain)][split]:
            person = next(people[w] for w in words(r["document"]) if w in people)
            country = world.country_of(person.city)
            assert person.city in words(r["document"]) and country not in words(r["document"]), r
            assert country in words(r["summary"]) and person.occupation in words(r["summary"]), r
            assert person.occupation not in words(r["document"]), r
            copied = words(r["summary"]) & words(r["document"])
            assert len(copied) >= 2, r
            assert len(r["document"].split()) < 80 and 3 <= len(data.sentences(r["document"])) <= 5, r


@pytest.mark.parametrize("domain", data.DOMAINS["question_generation"])
def test_question_generation_answers_are_spans_and_targets_are_questions(datasets, domain):
    for split in data.SPLITS:
        for r in datasets[("question_generation", domain)][split]:
            assert r["answer"] in r["context"], r
            assert r["question"].endswith("?") and r["question"] not in r["context"], r


@pytest.mark.parametrize("task", list(data.DOMAINS))
def test_out_of_domain_sets_use_other_templates(datasets, task):
    in_domain, out_domain = data.DOMAINS[task]
    templates = {d: {r["template"] for s in data.SPLITS for r in datasets[(task, d)][s]} for d in (in_domain, out_domain)}
    assert not templates[in_domain] & templates[out_domain]


def test_dataset_files_are_byte_identical_for_a_seed_order_independent_and_seeded(tmp_path, datasets):
    d = datasets[("nli", "places")]
    s = spec("nli", "places", 30, 18)
    data.write_dataset("animals_nli", spec("nli", "animals"), WORLD, SEED, tmp_path / "other")  # another call first
    data.write_dataset(d["dir"].name, s, WORLD, SEED, tmp_path / "same")
    data.write_dataset(d["dir"].name, s, WORLD, SEED + 1, tmp_path / "seeded")
    for file in ("train.jsonl", "test.jsonl", "card.json"):
        assert (tmp_path / "same" / file).read_bytes() == (d["dir"] / file).read_bytes(), file
    assert (tmp_path / "seeded" / "train.jsonl").read_bytes() != (d["dir"] / "train.jsonl").read_bytes()


def test_dataset_card_contents(datasets):
    for (task, domain), d in datasets.items():
        card, family = d["card"], get_task(task)
        assert card["name"] == d["dir"].name and card["task"] == task and card["domain"] == domain
        assert card["seed"] == SEED and card["in_domain"] == (domain == data.DOMAINS[task][0])
        assert card["world_fingerprint"] == data.build_world(WORLD, SEED).fingerprint()
        assert card["splits"] == {s: len(d[s]) for s in data.SPLITS}
        assert card["description"] and card["provenance"]["kind"] == "dataset" and card["provenance"]["seed"] == SEED
        assert card["provenance"]["config"]["spec"]["task"] == task
        assert json.loads((d["dir"] / "provenance.json").read_text()) == card["provenance"]
        for s in data.SPLITS:
            if family.label_words:
                assert card["label_distribution"][s] == {w: sum(r["label"] == w for r in d[s]) for w in family.label_words}
            else:
                lengths = [len(r[family.target_field].split()) for r in d[s]]
                assert card["target_length"][s]["max_words"] == max(lengths)
                assert card["target_length"][s]["min_words"] == min(lengths)


def test_unknown_domain_or_task_raises_with_the_dataset_name(tmp_path):
    with pytest.raises(ValueError, match=r"my_set.*'sports'.*\['news', 'story'\]"):
        data.write_dataset("my_set", spec("summarisation", "sports"), WORLD, SEED, tmp_path / "x")
    with pytest.raises(ValueError, match=r"my_set.*'translation'.*nli"):
        data.write_dataset("my_set", spec("translation", "news"), WORLD, SEED, tmp_path / "y")
    with pytest.raises(ValueError, match=r"my_set.*n_test"):
        data.write_dataset("my_set", spec("nli", "places", 10, 0), WORLD, SEED, tmp_path / "z")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("task, domain", ALL_SETS)
def test_the_smallest_configured_world_supports_every_dataset(tmp_path, task, domain):
    world = data.build_world(TINY_WORLD, 7)
    splits = data.generate_dataset("tiny", spec(task, domain, 24, 9), world, 7)
    assert len(splits["train"]) == 24 and len(splits["test"]) == 9


def test_too_many_records_for_the_world_is_a_clear_error():
    world = data.build_world(TINY_WORLD, 7)
    with pytest.raises(ValueError, match="could not make 5000 distinct test records"):
        data.generate_dataset("huge", spec("question_generation", "science", 10, 5000), world, 7)


def test_files_are_identical_across_processes_and_hash_seeds(tmp_path):
    """Nothing may depend on Python's per-process string hashing (set order) or on global random state."""
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from ptft import data; out = Path(sys.argv[1]);"
        f"data.write_corpus({WORLD!r}, {{'n_documents': 80}}, {SEED}, out / 'corpus' / 'corpus.jsonl');"
        f"data.write_dataset('places_nli', {spec('nli', 'places')!r}, {WORLD!r}, {SEED}, out / 'places_nli')"
    )
    for hash_seed in ("1", "2"):
        env = {"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / hash_seed)], check=True, env=env)
    for file in ("corpus/corpus.jsonl", "corpus/card.json", "places_nli/train.jsonl", "places_nli/test.jsonl"):
        assert (tmp_path / "1" / file).read_bytes() == (tmp_path / "2" / file).read_bytes(), file


def test_the_params_yaml_datasets_are_buildable():
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["data"]
    world = data.build_world(cfg["world"], cfg["seed"])
    for name, s in cfg["datasets"].items():
        splits = data.generate_dataset(name, s, world, cfg["seed"])
        assert [len(splits["train"]), len(splits["test"])] == [s["n_train"], s["n_test"]], name
