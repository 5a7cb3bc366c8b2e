"""ptft's eval sets as lm-eval tasks: an eval set loaded in memory (load_eval_set) and one lm-eval task config per
eval set x prompt format x shot count (task_config), generated from its task family (ptft.tasks) and scored with
ptft's own functions (ptft.evaluate.scoring).
"""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from ptft.evaluate.models import token_continuation
from ptft.evaluate.scoring import Scoring, choose_label, choose_token, item_score
from ptft.metrics import get_metric
from ptft.provenance import read_jsonl
from ptft.tasks import FEWSHOT_DELIMITER, TaskFamily, get_task

log = logging.getLogger(__name__)

FEWSHOT_SPLIT = "train"
TEST_SPLIT = "test"
# evaluate.fewshot_source: shots drawn per item from the train split; k train examples drawn once per eval set and
# shown to every item and format (train_fixed: the paper's "randomly sampled" shots, shown as the authors' code showed
# its shots, the same k to every item); or the first k test items as the authors' code took them
# (eval/predict_classification.py lines 154-163, eval/predict.py line 152)
FEWSHOT_SOURCES = ("train", "train_fixed", "eval_head")
FIXED_SHOTS_SPLIT = "fixed_shots"


def _lm_task_name(eval_set: str, prompt_format: str, shots: int) -> str:
    return f"ptft__{eval_set}__{prompt_format}__{shots}shot"


def _record_key(family: TaskFamily, record: Mapping[str, Any]) -> tuple:
    return tuple(record[f] for f in family.input_fields)


def load_eval_set(name: str, spec: Mapping[str, Any]):
    """The eval set as an in-memory DatasetDict (test, train), checked against its task family.

    In memory on purpose: `datasets.load_dataset("json")` would write an Arrow cache under $HOME.
    Train records whose inputs equal a test record's are dropped from the few-shot pool, so a scored
    item can never appear among its own shots. Raises ValueError for a split file without records, KeyError for a
    record that lacks a field the task reads.
    """
    import datasets

    family = get_task(spec["task"])
    splits = {split: _split_records(name, Path(spec[split]), family) for split in (TEST_SPLIT, FEWSHOT_SPLIT)}
    test_keys = {_record_key(family, r) for r in splits[TEST_SPLIT]}
    pool = [r for r in splits[FEWSHOT_SPLIT] if _record_key(family, r) not in test_keys]
    if len(pool) < len(splits[FEWSHOT_SPLIT]):
        log.warning(
            "eval set %r: %d train records repeat a test input; left out of the few-shot pool",
            name,
            len(splits[FEWSHOT_SPLIT]) - len(pool),
        )
    splits[FEWSHOT_SPLIT] = pool
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


def _split_records(name: str, path: Path, family: TaskFamily) -> list[dict[str, Any]]:
    """The records of one split file, each checked against the family and cut to the fields the task reads."""
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"eval set {name!r}: {path} has no records")
    needed = ("id", *family.input_fields, family.target_field)
    for lineno, record in enumerate(records, 1):
        missing = [f for f in needed if f not in record]
        if missing:
            raise KeyError(f"eval set {name!r}: {path}, line {lineno} lacks fields {missing} (task {family.name!r})")
        family.target(record)  # label words checked here
    # Only the fields the task reads: Arrow needs one type per column, and nothing else is used.
    optional = [f for f in family.optional_fields if any(f in r for r in records)]
    return [{**{f: record[f] for f in needed}, **{f: record.get(f) for f in optional}} for record in records]


def _render(doc: Mapping[str, Any], *, family: TaskFamily, prompt_format: str) -> str:
    return family.render(doc, prompt_format)


def _target(doc: Mapping[str, Any], *, family: TaskFamily) -> str:
    return family.target(doc)


def given_dataset(*_args: Any, dataset, **_kwargs: Any):
    """An lm-eval custom_dataset (bound to `dataset` with functools.partial) for data already loaded in memory:
    lm-eval calls custom_dataset(**metadata, **dataset_kwargs)."""
    return dataset


def _process_results(
    doc: Mapping[str, Any],
    results: list,
    *,
    family: TaskFamily,
    scoring: Scoring,
    candidates: Sequence[tuple[int, str]] | None = None,
) -> dict[str, float]:
    """Per-item score from lm-eval's raw results, with our own scoring functions."""
    target = family.target(doc)
    if family.kind == "classification":
        loglikelihoods = [ll for ll, _is_greedy in results]
        if candidates is not None:
            prediction = choose_token(loglikelihoods, candidates)[1]
        else:
            prediction = choose_label(loglikelihoods, family.label_words)
    else:
        prediction = results[0]
    return {get_metric(family.metric).lm_eval_key: item_score(family, prediction, target, scoring)}


def task_config(
    eval_set: str,
    family: TaskFamily,
    prompt_format: str,
    shots: int,
    dataset,
    scoring: Scoring = Scoring(),
    candidates: Sequence[tuple[int, str]] | None = None,
    fewshot_source: str = "train",
    fewshot_seed: int = 1234,
) -> dict[str, Any]:
    """One lm-eval task config (a dict, as a YAML task would load) for an eval set in one format and shot count.

    A classification set scored with token_prob needs its candidates (candidate_tokens of the model's tokenizer):
    its choices are then one marked one-token continuation per candidate token, instead of one per label word.
    fewshot_source "train" draws each item's shots from the train split with the seed; "train_fixed" shows every
    item the same k train examples, drawn once per eval set with fewshot_seed (fixed_shots: the same draw for every
    prompt format, and a k-shot draw is the start of the (k+1)-shot one); "eval_head" shows the first test items (lm-eval's first_n
    sampler, which skips the scored item itself where the authors' code kept it).
    Raises ValueError for an unknown fewshot_source or more shots than usable records, KeyError for a prompt format
    the family lacks.
    """
    pool_split = _fewshot_pool(eval_set, family, prompt_format, shots, dataset, fewshot_source)
    if fewshot_source == "train_fixed":
        dataset = _with_fixed_shots(dataset, shots, fewshot_seed)
        pool_split = FIXED_SHOTS_SPLIT
    metric = get_metric(family.metric).lm_eval_key
    token_prob = _token_prob_candidates(family, scoring, candidates)
    config: dict[str, Any] = {
        "task": _lm_task_name(eval_set, prompt_format, shots),
        "custom_dataset": functools.partial(given_dataset, dataset=dataset),
        "test_split": TEST_SPLIT,
        "fewshot_split": pool_split,
        "fewshot_config": {"sampler": "default" if fewshot_source == "train" else "first_n"},  # first_n: in order
        "num_fewshot": shots,
        "doc_to_text": functools.partial(_render, family=family, prompt_format=prompt_format),
        "doc_to_target": functools.partial(_target, family=family),
        "target_delimiter": family.target_delimiter,
        "fewshot_delimiter": FEWSHOT_DELIMITER,
        "process_results": functools.partial(_process_results, family=family, scoring=scoring, candidates=token_prob),
        "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1, "eval_set": eval_set, "prompt_format": prompt_format, "shots": shots},
    }
    config.update(_output_config(family, scoring, token_prob))
    return config


def _fewshot_pool(
    eval_set: str, family: TaskFamily, prompt_format: str, shots: int, dataset, fewshot_source: str
) -> str:
    """The split the shots come from, once the format and the shot count are checked (task_config's errors)."""
    if fewshot_source not in FEWSHOT_SOURCES:
        raise ValueError(f"evaluate.fewshot_source must be one of {FEWSHOT_SOURCES}, got {fewshot_source!r}")
    if prompt_format not in family.formats:
        raise KeyError(f"eval set {eval_set!r}: task {family.name!r} has no prompt format {prompt_format!r}")
    pool_split = TEST_SPLIT if fewshot_source == "eval_head" else FEWSHOT_SPLIT
    usable = len(dataset[pool_split]) - (fewshot_source == "eval_head")  # the scored item is never its own shot
    if shots > usable:
        raise ValueError(
            f"eval set {eval_set!r}: {shots} shots requested, the {pool_split} file has {usable} usable records"
        )
    return pool_split


def fixed_shots(n_pool: int, shots: int, seed: int) -> list[int]:
    """Indices (into the train pool, length n_pool) of the k = shots fixed shots, in the order they are shown: the
    first k of one seeded permutation of the pool (Python's random.Random(seed).shuffle), so one eval set's draw is
    the same for every format and its k shots are the first k of its k+1. Raises ValueError when shots > n_pool."""
    if shots > n_pool:
        raise ValueError(f"{shots} fixed shots requested from a train pool of {n_pool} records")
    order = list(range(n_pool))
    random.Random(seed).shuffle(order)
    return order[:shots]


def _with_fixed_shots(dataset, shots: int, seed: int):
    """The eval set with one more split, FIXED_SHOTS_SPLIT: its fixed shots (fixed_shots), which lm-eval's first_n
    sampler then shows, in that order, to every item."""
    import datasets

    pool = dataset[FEWSHOT_SPLIT]
    return datasets.DatasetDict({**dataset, FIXED_SHOTS_SPLIT: pool.select(fixed_shots(len(pool), shots, seed))})


def _output_config(family: TaskFamily, scoring: Scoring, token_prob: list[tuple[int, str]] | None) -> dict[str, Any]:
    """The task config's keys that say what the model outputs: choices to score, or generation settings."""
    if family.kind == "classification":
        choices = [token_continuation(t) for t, _ in token_prob] if token_prob else list(family.label_words)
        # doc_to_target stays the label word: it is what the few-shot examples show after the delimiter
        return {"output_type": "multiple_choice", "doc_to_choice": choices}
    return {
        "output_type": "generate_until",
        "generation_kwargs": {
            "until": list(scoring.stop(family)),
            "max_gen_toks": family.max_new_tokens,
            "do_sample": False,
            "temperature": 0.0,
        },
    }


def _token_prob_candidates(
    family: TaskFamily, scoring: Scoring, candidates: Sequence[tuple[int, str]] | None
) -> list[tuple[int, str]] | None:
    if family.kind != "classification" or scoring.classification != "token_prob":
        return None
    if not candidates:
        raise ValueError(f"task {family.name!r}: token_prob scoring needs the candidate tokens of the model's tokenizer")
    return [(int(t), w) for t, w in candidates]
