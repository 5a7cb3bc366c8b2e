"""Writing the generated data: the pre-training corpus and the task data sets, each with its card.

The writers sit above ptft.data.names (which builds the world from the config) and the generators
(ptft.data.corpus, ptft.data.tasksets).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ptft.data.card import CARD_FILE
from ptft.data.corpus import CORPUS_KEYS, _corpus_counts, city_country_mentions, generate_corpus
from ptft.data.names import build_world
from ptft.data.tasksets import _check_spec, dataset_card, generate_dataset
from ptft.data.world import _check_cfg
from ptft.provenance import PROVENANCE_FILE, atomic_dir, discard_provenance, provenance, write_json, write_jsonl


def write_corpus(world_cfg: dict, corpus_cfg: dict, seed: int, out_path: Path) -> None:
    """Write the pre-training corpus (JSONL rows {"id", "text"}) to out_path and card.json beside it. Raises
    ValueError for a data.corpus other than {n_documents: positive int} or a bad data.world (build_world)."""
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


def write_dataset(name: str, spec: dict, world_cfg: dict, seed: int, out_dir: Path) -> None:
    """Write out_dir/train.jsonl, out_dir/test.jsonl and out_dir/card.json (and provenance.json), all at once.
    Raises ValueError as generate_dataset and build_world do, before anything is written."""
    discard_provenance(out_dir)  # a failure below must not leave the previous run's record
    _check_spec(name, spec)
    world = build_world(world_cfg, seed)
    splits = generate_dataset(name, spec, world, seed)
    card = dataset_card(name, spec, world, seed, splits)
    with atomic_dir(out_dir) as tmp:
        for split, rows in splits.items():
            write_jsonl(tmp / f"{split}.jsonl", rows)
        write_json(tmp / CARD_FILE, card)
        write_json(tmp / PROVENANCE_FILE, card["provenance"])
