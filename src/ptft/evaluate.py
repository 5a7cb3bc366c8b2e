"""Evaluate one model (a base checkpoint or a fine-tuned one) on every eval set x prompt format x shot count.

Prompts, label words, stop sequences and delimiters come from `ptft.tasks`; lm-evaluation-harness builds the
few-shot contexts and runs the model; scoring and bootstrap intervals are the small pure functions below.
Classification is scored one of two ways (evaluate.classification):
- token_prob, the paper's TokenProb (Sun & Dredze, App. C.1; the authors' eval/utils.py get_next_word_predictions,
  lines 108-143, called from eval/predict_classification.py lines 233-252): one forward pass over the prompt, the
  next-token distribution, candidate tokens = the subtokens of every label word with and without a leading space;
  the label of the most probable candidate token wins. Run through lm-eval as one-token log-likelihood requests,
  which lm-eval's HFLM groups by context and answers from one forward pass (its Collator, group_by="contexts").
- loglikelihood: lm-eval's log-likelihood of each whole label word (one continuation per label).
Generation is greedy, scored with ROUGE-L (evaluate.rouge_stemmer; ptft.metrics.rouge_l) after stopping at EOS, max_new_tokens or the
task's stop strings (evaluate.stop_sequences).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ptft.lmeval_tasks import RECORDED_METRICS, task_metrics
from ptft.metrics import ROUGE_TOKENIZERS, UnicodeWords, accuracy, get_metric, rouge_l  # noqa: F401 (re-exported for bench/ and tests)
from ptft.provenance import provenance, read_jsonl, read_provenance, write_json, write_jsonl
from ptft.settings import EvaluateSettings
from ptft.tasks import FEWSHOT_DELIMITER, TaskFamily, get_task
from ptft.tokens import encode_pair, encode_text

log = logging.getLogger(__name__)

CLASSIFICATION_METHODS = ("token_prob", "loglikelihood")
# A loglikelihood request whose continuation carries this mark is one candidate token of TokenProb: the number after
# it is the token id, scored as the single next token after the context (TokenProbLM._encode_pair).
TOKEN_MARK = "<ptft-token:"
CI_LEVEL = 0.95
# The bootstrap draws its index matrix in chunks of about this many entries (memory stays flat at paper scale).
BOOTSTRAP_CHUNK_ENTRIES = 8_000_000
FEWSHOT_SPLIT = "train"
TEST_SPLIT = "test"
# evaluate.fewshot_source: shots drawn from the train split (ours), or the first k test items as the authors' code
# took them (eval/predict_classification.py lines 154-163, eval/predict.py line 152)
FEWSHOT_SOURCES = ("train", "eval_head")


# ---------------------------------------------------------------- scoring (pure)


def candidate_tokens(tokenizer, label_words: Sequence[str]) -> list[tuple[int, str]]:
    """TokenProb's candidate tokens: (token id, label word) for every subtoken of every label word, without and with
    a leading space, in the authors' order (all bare words, then all spaced ones; eval/predict_classification.py
    lines 234-241). A token shared by two label words belongs to the first in that order, as the authors' argmax over
    the concatenated list returns the first maximum. Raises ValueError if a label word yields no token.
    """
    candidates: dict[int, str] = {}
    for prefix in ("", " "):
        for word in label_words:
            ids = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"label word {prefix + word!r} gives no tokens")
            for token_id in ids:
                candidates.setdefault(int(token_id), word)
    return list(candidates.items())


def token_continuation(token_id: int) -> str:
    """The marked continuation string of a one-token TokenProb request (read back by TokenProbLM)."""
    return f"{TOKEN_MARK}{int(token_id)}>"


def _marked_token(continuation: str) -> int | None:
    text = continuation.lstrip()
    if not text.startswith(TOKEN_MARK):
        return None
    return int(text[len(TOKEN_MARK) : -1])


def choose_token(loglikelihoods: Sequence[float], candidates: Sequence[tuple[int, str]]) -> tuple[int, str]:
    """(token id, label word) of the most probable candidate token (the first one on ties, as torch.argmax)."""
    if len(loglikelihoods) != len(candidates):
        raise ValueError(f"{len(loglikelihoods)} log-probabilities for {len(candidates)} candidate tokens")
    return tuple(candidates[int(np.argmax(np.asarray(loglikelihoods, dtype=float)))])


def choose_label(loglikelihoods: Sequence[float], label_words: Sequence[str]) -> str:
    """The label word with the highest log-likelihood (the first one on ties, as lm-eval's acc)."""
    if len(loglikelihoods) != len(label_words):
        raise ValueError(
            f"{len(loglikelihoods)} log-likelihoods for {len(label_words)} label words {tuple(label_words)}"
        )
    return label_words[int(np.argmax(np.asarray(loglikelihoods, dtype=float)))]


def item_score(family: TaskFamily, prediction: str, target: str, scoring: "Scoring") -> float:
    """One item's score under the family's metric (ptft.metrics): its correctness for a classification metric
    (accuracy, and F1, whose set value is corpus-level: set_value), ROUGE-L or exact match for generation."""
    return get_metric(family.metric).item(
        prediction, target, rouge_stemmer=scoring.rouge_stemmer, rouge_tokenizer=scoring.rouge_tokenizer
    )


def set_value(
    family: TaskFamily, rows: Sequence[Mapping[str, Any]], resamples: int, seed: int
) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of one eval set x format x shots from its prediction rows.

    The mean of the rows' scores with bootstrap_ci's interval; for a corpus-level metric (F1) the metric over all
    rows, with the percentile interval of the metric over `resamples` seeded resamples of the rows.
    """
    metric = get_metric(family.metric)
    scores = [row["score"] for row in rows]
    if metric.corpus is None:
        low, high = bootstrap_ci(scores, resamples, seed)
        return float(np.mean(scores)), low, high
    predictions, targets = [r["prediction"] for r in rows], [r["target"] for r in rows]
    value = metric.corpus(predictions, targets, family.label_words)
    if resamples <= 0:
        return value, value, value
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(0, len(rows), size=len(rows))
        draws.append(metric.corpus([predictions[i] for i in idx], [targets[i] for i in idx], family.label_words))
    tail = (1.0 - CI_LEVEL) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return value, float(low), float(high)


def bootstrap_ci(scores: Sequence[float], resamples: int, seed: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item scores (seeded, vectorised in chunks)."""
    values = np.asarray(scores, dtype=float)
    n = values.size
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one score")
    if resamples <= 0:
        mean = float(values.mean())
        return mean, mean
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_ENTRIES // n)
    means = np.concatenate(
        [
            values[rng.integers(0, n, size=(min(chunk, resamples - start), n))].mean(axis=1)
            for start in range(0, resamples, chunk)
        ]
    )
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------- lm-eval task configs (generated from tasks.py)


def _lm_task_name(eval_set: str, prompt_format: str, shots: int) -> str:
    return f"ptft__{eval_set}__{prompt_format}__{shots}shot"


def _record_key(family: TaskFamily, record: Mapping[str, Any]) -> tuple:
    return tuple(record[f] for f in family.input_fields)


def load_eval_set(name: str, spec: Mapping[str, Any]):
    """The eval set as an in-memory DatasetDict (test, train), checked against its task family.

    In memory on purpose: `datasets.load_dataset("json")` would write an Arrow cache under $HOME.
    Train records whose inputs equal a test record's are dropped from the few-shot pool, so a scored
    item can never appear among its own shots.
    """
    import datasets

    family = get_task(spec["task"])
    splits = {}
    for split in (TEST_SPLIT, FEWSHOT_SPLIT):
        path = Path(spec[split])
        records = read_jsonl(path)
        if not records:
            raise ValueError(f"eval set {name!r}: {path} has no records")
        needed = ("id", *family.input_fields, family.target_field)
        for lineno, record in enumerate(records, 1):
            missing = [f for f in needed if f not in record]
            if missing:
                raise KeyError(
                    f"eval set {name!r}: {path}, line {lineno} lacks fields {missing} (task {family.name!r})"
                )
            family.target(record)  # label words checked here
        # Only the fields the task reads: Arrow needs one type per column, and nothing else is used.
        optional = [f for f in family.optional_fields if any(f in r for r in records)]
        splits[split] = [{**{f: record[f] for f in needed}, **{f: record.get(f) for f in optional}} for record in records]
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


def _render(doc: Mapping[str, Any], *, family: TaskFamily, prompt_format: str) -> str:
    return family.render(doc, prompt_format)


def _target(doc: Mapping[str, Any], *, family: TaskFamily) -> str:
    return family.target(doc)


def _dataset(*_args: Any, dataset, **_kwargs: Any):
    # lm-eval calls custom_dataset(**metadata, **dataset_kwargs); the data are already loaded.
    return dataset


@dataclass(frozen=True)
class Scoring:
    """How items are scored (the `evaluate:` protocol keys; schemas/config.schema.yaml documents each).

    classification: "token_prob" | "loglikelihood"; rouge_stemmer: Porter stemming in ROUGE-L; stop_sequences:
    task family -> stop strings of generation (a family not named keeps its ptft.tasks default); rouge_tokenizer:
    the eval set's (data.datasets.<name>.rouge_tokenizer, set per eval set by for_eval_set).
    """

    classification: str = EvaluateSettings.classification  # the defaults' one home: ptft.settings
    rouge_stemmer: bool = EvaluateSettings.rouge_stemmer
    stop_sequences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rouge_tokenizer: str = "default"

    @classmethod
    def from_config(cls, eval_cfg: "Mapping[str, Any] | EvaluateSettings") -> "Scoring":
        settings = EvaluateSettings.from_config(eval_cfg)
        classification = settings.classification
        if classification not in CLASSIFICATION_METHODS:
            raise ValueError(f"evaluate.classification must be one of {CLASSIFICATION_METHODS}, got {classification!r}")
        stops = settings.stop_sequences
        for name, value in stops.items():
            get_task(name)  # an unknown family fails by name
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"evaluate.stop_sequences.{name} must be a list of non-empty strings, got {value!r}")
        return cls(classification, bool(settings.rouge_stemmer), {k: tuple(v) for k, v in stops.items()})

    def stop(self, family: TaskFamily) -> tuple[str, ...]:
        return self.stop_sequences.get(family.name, family.stop)

    def for_eval_set(self, eval_set: str, spec: Mapping[str, Any]) -> "Scoring":
        """This scoring with the eval set's rouge_tokenizer (its spec from rules/common.smk get_eval_sets)."""
        tokenizer = spec.get("rouge_tokenizer", self.rouge_tokenizer)
        if tokenizer not in ROUGE_TOKENIZERS:
            raise ValueError(f"data.datasets.{eval_set}.rouge_tokenizer must be one of {ROUGE_TOKENIZERS}, got {tokenizer!r}")
        return dataclasses.replace(self, rouge_tokenizer=tokenizer)


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
) -> dict[str, Any]:
    """One lm-eval task config (a dict, as a YAML task would load) for an eval set in one format and shot count.

    A classification set scored with token_prob needs its candidates (candidate_tokens of the model's tokenizer):
    its choices are then one marked one-token continuation per candidate token, instead of one per label word.
    fewshot_source "train" draws each item's shots from the train split with the seed; "eval_head" shows the first
    test items (lm-eval's first_n sampler, which skips the scored item itself where the authors' code kept it).
    """
    if fewshot_source not in FEWSHOT_SOURCES:
        raise ValueError(f"evaluate.fewshot_source must be one of {FEWSHOT_SOURCES}, got {fewshot_source!r}")
    if prompt_format not in family.formats:
        raise KeyError(f"eval set {eval_set!r}: task {family.name!r} has no prompt format {prompt_format!r}")
    pool_split = FEWSHOT_SPLIT if fewshot_source == "train" else TEST_SPLIT
    usable = len(dataset[pool_split]) - (fewshot_source == "eval_head")  # the scored item is never its own shot
    if shots > usable:
        raise ValueError(
            f"eval set {eval_set!r}: {shots} shots requested, the {pool_split} file has {usable} usable records"
        )
    metric = get_metric(family.metric).lm_eval_key
    config: dict[str, Any] = {
        "task": _lm_task_name(eval_set, prompt_format, shots),
        "custom_dataset": functools.partial(_dataset, dataset=dataset),
        "test_split": TEST_SPLIT,
        "fewshot_split": pool_split,
        "fewshot_config": {"sampler": "default" if fewshot_source == "train" else "first_n"},
        "num_fewshot": shots,
        "doc_to_text": functools.partial(_render, family=family, prompt_format=prompt_format),
        "doc_to_target": functools.partial(_target, family=family),
        "target_delimiter": family.target_delimiter,
        "fewshot_delimiter": FEWSHOT_DELIMITER,
        "process_results": functools.partial(
            _process_results, family=family, scoring=scoring, candidates=_token_prob_candidates(family, scoring, candidates)
        ),
        "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1, "eval_set": eval_set, "prompt_format": prompt_format, "shots": shots},
    }
    if family.kind == "classification":
        token_prob = _token_prob_candidates(family, scoring, candidates)
        choices = [token_continuation(t) for t, _ in token_prob] if token_prob else list(family.label_words)
        # doc_to_target stays the label word: it is what the few-shot examples show after the delimiter
        config.update(output_type="multiple_choice", doc_to_choice=choices)
    else:
        config.update(
            output_type="generate_until",
            generation_kwargs={
                "until": list(scoring.stop(family)),
                "max_gen_toks": family.max_new_tokens,
                "do_sample": False,
                "temperature": 0.0,
            },
        )
    return config


# ---------------------------------------------------------------- prompts longer than the model's context

# evaluate.shots_overflow: what happens to an item whose k-shot prompt exceeds the prompt budget (_prompt_budget).
SHOTS_OVERFLOW_POLICIES = ("drop_shots", "truncate_documents", "error")


def shots_overflow_policy(eval_cfg: "Mapping[str, Any] | EvaluateSettings", eval_set: str) -> str:
    """evaluate.shots_overflow for one eval set: one policy for every set (a string), or a mapping eval set -> policy
    that names every eval set (no second default outside the schema). Raises KeyError for an unnamed eval set,
    ValueError for an unknown policy."""
    setting = EvaluateSettings.from_config(eval_cfg).shots_overflow
    if isinstance(setting, Mapping):
        if eval_set not in setting:
            raise KeyError(f"evaluate.shots_overflow names no policy for eval set {eval_set!r} (named: {sorted(setting)})")
        policy = setting[eval_set]
    else:
        policy = setting
    if policy not in SHOTS_OVERFLOW_POLICIES:
        raise ValueError(f"evaluate.shots_overflow for {eval_set!r} must be one of {SHOTS_OVERFLOW_POLICIES}, got {policy!r}")
    return policy


class ShotsOverflowError(ValueError):
    """An item's k-shot prompt exceeds the prompt budget under evaluate.shots_overflow: error."""


def fitting_task(config: dict[str, Any], *, policy: str, budget: int, tokenizer, family: TaskFamily):
    """An lm-eval ConfigurableTask for `config` whose few-shot contexts honour evaluate.shots_overflow.

    lm-eval builds every context itself (api/task.py ConfigurableTask.fewshot_context, shots from api/samplers.py);
    this subclass only looks at the finished context. A context within `budget` tokens (tokenizer, no special
    tokens) is used as lm-eval built it, so prompts that fit are exactly lm-eval's. One that does not:
    - drop_shots: the same drawn shots minus the first ones (the farthest from the item, those lm-eval's left cut
      would lose), as many kept as fit; 0 shots if none fits (then lm-eval still cuts a 0-shot prompt that is too
      long from the left, and the item counts as truncated too).
    - truncate_documents: every input field of the shots and of the item is cut to at most c tokens (its first c),
      c the largest cap that fits (binary search), so short fields stay whole and the shots' long documents are cut
      as well as the item's (4-shot CNN/DM shots alone overflow 2,048 tokens); targets are never cut.
    - error: ShotsOverflowError naming the task (eval set, format, shots), the item id and both lengths.
    The sampler's random stream is the same under every policy: the shots are drawn once per item.
    After the run, `shots_used` maps item id -> shots in its prompt and `overflow` item id -> its k-shot length.
    """
    from lm_eval.api.task import ConfigurableTask

    if policy not in SHOTS_OVERFLOW_POLICIES:
        raise ValueError(f"shots_overflow policy must be one of {SHOTS_OVERFLOW_POLICIES}, got {policy!r}")

    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    class FittingTask(ConfigurableTask):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.shots_used: dict[Any, int] = {}
            self.overflow: dict[Any, int] = {}

        def _context(self, doc, shots: list, kwargs) -> str:
            # the given shots instead of a fresh draw: an instance attribute shadows the sampler's method
            self.sampler.sample = lambda *_a, **_k: list(shots)
            try:
                return super().fewshot_context(doc, num_fewshot=len(shots), **kwargs)
            finally:
                del self.sampler.sample

        def fewshot_context(self, doc, num_fewshot, **kwargs):
            drawn: list = []
            if num_fewshot > 0:
                sample = self.sampler.sample
                self.sampler.sample = lambda *a, **k: drawn.extend(sample(*a, **k)) or list(drawn)
                try:
                    context = super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
                finally:
                    del self.sampler.sample
            else:
                context = super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
            item = doc.get("id")
            length = n_tokens(context)
            if length <= budget or not isinstance(context, str):
                self.shots_used[item] = len(drawn)
                return context
            self.overflow[item] = length
            if policy == "error":
                raise ShotsOverflowError(
                    f"{self.config.task}: item {item!r} has a {len(drawn)}-shot prompt of {length} tokens, over the "
                    f"{budget}-token budget (evaluate.shots_overflow: error; drop_shots or truncate_documents handle it)"
                )
            if policy == "drop_shots":
                for kept in range(len(drawn) - 1, -1, -1):
                    context = self._context(doc, drawn[len(drawn) - kept :], kwargs)
                    if n_tokens(context) <= budget:
                        break
                self.shots_used[item] = kept
                return context
            self.shots_used[item] = len(drawn)
            return self._truncated_context(doc, drawn, kwargs)

        def _truncated_context(self, doc, drawn: list, kwargs) -> str:
            records = [*drawn, doc]
            ids = [
                {f: tokenizer(r[f], add_special_tokens=False)["input_ids"] for f in family.input_fields if isinstance(r.get(f), str)}
                for r in records
            ]

            def build(cap: int) -> str:
                cut = [
                    {**r, **{f: tokenizer.decode(t[:cap]) for f, t in fields.items() if len(t) > cap}}
                    for r, fields in zip(records, ids, strict=True)
                ]
                return self._context(cut[-1], cut[:-1], kwargs)

            low, high = 0, max((len(t) for fields in ids for t in fields.values()), default=0)
            while low < high:  # the largest cap whose context fits
                mid = (low + high + 1) // 2
                if n_tokens(build(mid)) <= budget:
                    low = mid
                else:
                    high = mid - 1
            return build(low)

    return FittingTask(config=config)


def _token_prob_candidates(
    family: TaskFamily, scoring: Scoring, candidates: Sequence[tuple[int, str]] | None
) -> list[tuple[int, str]] | None:
    if family.kind != "classification" or scoring.classification != "token_prob":
        return None
    if not candidates:
        raise ValueError(f"task {family.name!r}: token_prob scoring needs the candidate tokens of the model's tokenizer")
    return [(int(t), w) for t, w in candidates]


def _with_token_prob(base: type) -> type:
    """`base` (an lm-eval TemplateLM: HFLM or VLLM), with one addition: a continuation marked by
    token_continuation(id) is encoded as exactly that one token after the context (lm-eval would re-tokenise
    context + text, which can merge across the boundary). Other pairs are split by ptft.tokens.encode_pair, the
    function fine-tuning uses, which follows lm-eval's own rule (tests/test_tokens.py checks it against HFLM's
    _encode_pair for three kinds of tokenizer). Everything else is lm-eval's own code."""

    class TokenProbLM(base):
        def loglikelihood(self, requests, disable_tqdm=False):
            # lm-eval encodes an empty context without _encode_pair, which would tokenise the mark itself
            empty = [r for r in requests if r.args[0] == "" and _marked_token(r.args[1]) is not None]
            if empty:
                raise ValueError(f"TokenProb needs a prompt to predict after; {len(empty)} requests have an empty one")
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

        def _encode_pair(self, context, continuation):
            token_id = _marked_token(continuation)
            if token_id is None:
                # the rule fine-tuning uses too (ptft.tokens), which is lm-eval's own causal-model rule
                return encode_pair(self.tokenizer, context, continuation, self.add_bos_token)
            return encode_text(self.tokenizer, context, self.add_bos_token), [token_id]

    TokenProbLM.__name__ = f"TokenProb{base.__name__}"
    return TokenProbLM


def token_prob_lm(**kwargs):
    """lm-eval's HFLM with TokenProb's marked continuations (_with_token_prob).

    Batching, truncation, the forward pass and the logits cache that answers every one-token continuation of a
    context from a single pass (HFLM._loglikelihood_tokens, Collator(group_by="contexts")) are lm-eval's own code;
    requests are sorted longest first there, and generation requests likewise (by context length).
    """
    from lm_eval.models.huggingface import HFLM

    return _with_token_prob(HFLM)(**kwargs)


# ---------------------------------------------------------------- lm-eval's own tasks (the instruction-tuning benchmarks)

NATIVE_FORMAT = "native"  # prompt_format of a row scored with lm-eval's own task definition
NATIVE_METRICS = RECORDED_METRICS  # each task records those of these it defines (lmeval_tasks.task_metrics)
# A local stand-in keeps the lm-eval task's YAML (prompt, choices, metrics) and swaps only its data.
STANDIN_TASKS = ("sciq",)


def _native_yaml(task: str) -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent / task / f"{task}.yaml"


def standin_records(records: Sequence[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """SciQ-shaped multiple-choice records from question-generation records (context, question, answer).

    The support is the context and the three distractors are other records' answers to questions of the same
    template (the same kind of answer: a food, a place, a class), drawn with the seed; records whose template has
    fewer than three other distinct answers are left out.
    """
    by_template: dict[str, list[str]] = {}
    for record in records:
        by_template.setdefault(str(record.get("template", "")), []).append(record["answer"])
    rng = random.Random(seed)
    rows = []
    for record in records:
        others = sorted({a for a in by_template[str(record.get("template", ""))] if a != record["answer"]})
        if len(others) < 3:
            continue
        d1, d2, d3 = rng.sample(others, 3)
        rows.append(
            {
                "id": record["id"],
                "support": record["context"],
                "question": record["question"],
                "distractor1": d1,
                "distractor2": d2,
                "distractor3": d3,
                "correct_answer": record["answer"],
            }
        )
    return rows


def standin_config(spec: Mapping[str, Any], eval_sets: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """lm-eval's own YAML for spec["task"] (e.g. sciq) with its data replaced by records built from an eval set."""
    import datasets
    import yaml

    name, task, source = spec["name"], spec["task"], spec["from"]
    if task not in STANDIN_TASKS:
        raise KeyError(f"lm_eval_tasks entry {name!r}: no local stand-in for lm-eval task {task!r}; known: {STANDIN_TASKS}")
    if source not in eval_sets or get_task(eval_sets[source]["task"]).name != "question_generation":
        raise KeyError(
            f"lm_eval_tasks entry {name!r}: 'from' must name a question_generation set among evaluate.eval_sets, got {source!r}"
        )
    config = yaml.safe_load(_native_yaml(task).read_text())
    rows = standin_records(read_jsonl(Path(eval_sets[source]["test"])), seed)
    if not rows:
        raise ValueError(f"lm_eval_tasks entry {name!r}: {eval_sets[source]['test']} gives no multiple-choice records")
    dataset = datasets.DatasetDict({TEST_SPLIT: datasets.Dataset.from_list(rows)})
    config.update(task=name, custom_dataset=functools.partial(_dataset, dataset=dataset), num_fewshot=0)
    for key in ("dataset_path", "dataset_name", "training_split", "validation_split"):
        config.pop(key, None)
    config["test_split"] = TEST_SPLIT
    config.setdefault("metadata", {}).update(standin_for=task, source=source)
    return config


LM_EVAL_SPLITS = ("default", "validation")


def apply_native_settings(name: str, task, eval_cfg: "Mapping[str, Any] | EvaluateSettings") -> None:
    """Set evaluate.lm_eval_shots and lm_eval_split on a loaded lm-eval Task (its public set_config).

    lm_eval_shots sets num_fewshot (null keeps the task's own); lm_eval_split "validation" drops the test split so
    that lm-eval scores validation (its rule: test, else validation), as the paper's OLMo-Eval runs did (the
    authors' scripts/exp_scripts/evaluate_it_model.sh: --split validation, num_shots=4). Raises ValueError for an
    unknown split value or a task without a validation split.
    """
    settings = EvaluateSettings.from_config(eval_cfg)
    split = settings.lm_eval_split
    if split not in LM_EVAL_SPLITS:
        raise ValueError(f"evaluate.lm_eval_split must be one of {LM_EVAL_SPLITS}, got {split!r}")
    if settings.lm_eval_shots is not None:
        task.set_config(key="num_fewshot", value=int(settings.lm_eval_shots))
    if split == "validation":
        if not task.has_validation_docs():
            raise ValueError(f"evaluate.lm_eval_split: lm-eval task {name!r} has no validation split")
        task.set_config(key="test_split", value=None)


def check_native_tasks(names: Sequence[str], task_manager) -> dict[str, Any]:
    """Each name must be an lm-eval task whose data is already on this machine (nothing is downloaded here).

    Returns the loaded lm-eval Task of each name.
    """
    unknown = [n for n in names if n not in task_manager.all_tasks]
    if unknown:
        raise KeyError(f"evaluate.lm_eval_tasks: {unknown} are not lm-eval tasks (lm_eval {importlib.metadata.version('lm_eval')})")
    loaded = {}
    for name in names:
        try:
            loaded[name] = task_manager.load([name])["tasks"][name]
        except Exception as err:  # datasets raises several kinds (ConnectionError, FileNotFoundError, ValueError)
            raise RuntimeError(
                f"evaluate.lm_eval_tasks: lm-eval task {name!r} could not load its dataset offline; "
                f"its data must be downloaded first (run once with network access, HF_DATASETS_OFFLINE unset, "
                f"so the datasets cache holds it). Cause: {type(err).__name__}: {err}"
            ) from err
    return loaded


def _native_prediction_row(sample: Mapping[str, Any], metrics: Sequence[str] = ("acc",)) -> dict[str, Any]:
    """One scored item of an lm-eval task: `score` is its acc, and each other metric the task defines (e.g.
    acc_norm; BoolQ defines acc only, lm_eval/tasks/super_glue/boolq/default.yaml) is a key of its own."""
    loglikelihoods = [float(ll) for ll, _is_greedy in sample["filtered_resps"]]
    row = {
        "doc_id": sample["doc"].get("id", sample["doc_id"]),
        "target": sample["target"],
        "prediction": int(np.argmax(loglikelihoods)),
        "score": float(sample["acc"]),
        "loglikelihoods": loglikelihoods,
    }
    row.update({metric: float(sample[metric]) for metric in metrics if metric != "acc"})
    return row


# ---------------------------------------------------------------- one model, every eval set


def _model_identity(model_dir: Path) -> dict[str, Any]:
    record = read_provenance(model_dir)
    missing = [k for k in ("model", "step", "tokens") if k not in record]
    if missing:
        raise KeyError(f"{model_dir / 'provenance.json'} lacks keys {missing}")
    return {
        "model": record["model"],
        "step": record["step"],
        "tokens": record["tokens"],
        "ft_set": record.get("ft_set") or "base",
    }


EVAL_DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("hf", "vllm")
VLLM_ENV = "envs/eval-vllm.yaml"


def resolve_dtype(name: str, device: str) -> str:
    """evaluate.dtype -> the dtype that runs: "auto" is bfloat16 on a GPU ("cuda") and float32 elsewhere.

    Raises ValueError for a name outside EVAL_DTYPES.
    """
    if name not in EVAL_DTYPES:
        raise ValueError(f"evaluate.dtype must be one of {EVAL_DTYPES}, got {name!r}")
    if name != "auto":
        return name
    return "bfloat16" if device == "cuda" else "float32"


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _lora_base(model_dir: Path, base_dir: Path | None) -> Path:
    """The base checkpoint a LoRA adapter in model_dir runs on: base_dir, or the base_checkpoint its provenance records.
    Raises FileNotFoundError when that folder is missing."""
    base = Path(base_dir or read_provenance(model_dir)["base_checkpoint"])
    if not base.is_dir():
        raise FileNotFoundError(f"{model_dir} is a LoRA adapter whose base checkpoint {base} is missing")
    return base


def _load_model(model_dir: Path, lora_eval: str = "adapter", base_dir: Path | None = None, dtype: str = "float32"):
    """The model and tokenizer in model_dir; a LoRA folder (adapter_config.json) is loaded on its base checkpoint.

    lora_eval (config finetune.lora_eval) says whether a LoRA model runs through its adapter or merged into the base
    weights; both give the same scores. The base is base_dir, or the base_checkpoint its provenance records.
    dtype is a resolved evaluate.dtype (resolve_dtype): the weights are loaded in it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    is_lora = (model_dir / "adapter_config.json").is_file()
    if lora_eval not in ("adapter", "merged"):
        raise ValueError(f"finetune.lora_eval must be 'adapter' or 'merged', got {lora_eval!r}")
    if is_lora:
        base_dir = _lora_base(model_dir, base_dir)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir if is_lora else model_dir,
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=getattr(torch, resolve_dtype(dtype, _device())),
    )
    if is_lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir, is_trainable=False)
        if lora_eval == "merged":
            model = model.merge_and_unload()
    model.to(_device())  # HFLM runs on the device the model is on
    model.eval()
    return model, tokenizer


def vllm_model_args(
    model_dir: Path, dtype: str, batch_size: int | str, seed: int, base_dir: Path | None = None
) -> dict[str, Any]:
    """Keyword arguments of lm-eval's VLLM model type (lm_eval/models/vllm_causallms.py, VLLM.__init__) for one model.

    Full weights load from model_dir; a LoRA adapter (adapter_config.json) runs on its base checkpoint (base_dir or
    the provenance's base_checkpoint) through vLLM's LoRA support, with max_lora_rank the adapter's rank.
    Never trust_remote_code. Raises FileNotFoundError for a LoRA adapter whose base is missing.
    """
    model_dir = Path(model_dir)
    args: dict[str, Any] = {
        "pretrained": str(model_dir),
        "dtype": dtype,
        "batch_size": batch_size,
        "seed": seed,
        "trust_remote_code": False,
    }
    adapter = model_dir / "adapter_config.json"
    if adapter.is_file():
        import json

        base = _lora_base(model_dir, base_dir)
        rank = int(json.loads(adapter.read_text()).get("r", 16))
        args.update(pretrained=str(base), tokenizer=str(model_dir), lora_local_path=str(model_dir), max_lora_rank=rank)
    return args


def build_lm(backend: str, *, model_dir: Path, dtype: str, batch_size: int | str, seed: int, lora_eval: str = "adapter",
             base_dir: Path | None = None):
    """The lm-eval model that scores every request: (lm, tokenizer).

    backend "hf": lm-eval's HFLM on the transformers model (_load_model). backend "vllm": lm-eval's VLLM model type
    (GPU only; its own environment, VLLM_ENV). Both encode TokenProb's marked one-token continuations as exactly that
    token (TokenProbMixin). Raises ValueError for an unknown backend and ImportError, naming the environment to use,
    when vllm is asked for but not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"evaluate.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "hf":
        model, tokenizer = _load_model(model_dir, lora_eval, base_dir, dtype)
        return token_prob_lm(pretrained=model, tokenizer=tokenizer, batch_size=batch_size), tokenizer
    try:
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as err:
        raise ImportError(
            f"evaluate.backend: vllm needs the vllm package ({err}); it is not in the CPU lock. Run the evaluate rule "
            f"with --sdm conda (it uses {VLLM_ENV}), or build that environment by hand"
        ) from None
    from transformers import AutoTokenizer

    lm = _with_token_prob(VLLM)(**vllm_model_args(model_dir, dtype, batch_size, seed, base_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    return lm, tokenizer


def _set_seeds(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    model_dir: Path,
    eval_sets: dict[str, dict],
    eval_cfg: "dict | EvaluateSettings",
    out_json: Path,
    out_predictions: Path,
    threads: int,
    lora_eval: str = "adapter",
    base_dir: Path | None = None,
) -> None:
    """Evaluate the model in `model_dir` on every eval set x prompt format x shot count; write scores and predictions.

    A LoRA model is evaluated through its adapter or merged (lora_eval), on base_dir or its recorded base checkpoint.
    eval_cfg is the EvaluateSettings, or the evaluate section read by EvaluateSettings.from_config (keys left out take
    its defaults; ConfigError names an unknown key); the settings are printed at the top of the log and saved in the
    results' provenance.

    One model load and one lm-eval run: all requests of a kind are batched together across eval sets.
    """
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer must not add threads beyond `threads`
    torch.set_num_threads(threads)
    settings = EvaluateSettings.from_config(eval_cfg)
    print(f"evaluate settings:\n{settings.describe()}", file=sys.stderr, flush=True)  # the top of the job's log
    model_dir = Path(model_dir)
    identity = _model_identity(model_dir)
    seed = settings.fewshot_seed
    _set_seeds(seed)

    import lm_eval
    from lm_eval.tasks import TaskManager

    scoring = Scoring.from_config(settings)
    backend = settings.backend
    dtype = resolve_dtype(settings.dtype, _device())
    lm, tokenizer = build_lm(backend, model_dir=model_dir, dtype=dtype, batch_size=settings.scheduling.batch_size, seed=seed,
                             lora_eval=lora_eval, base_dir=base_dir)  # fmt: skip
    log.info("scoring %s with %s in %s on %s", model_dir, backend, dtype, _device())
    candidates: dict[str, list[tuple[int, str]]] = {}  # task family -> TokenProb candidate tokens
    conditions: dict[str, tuple[str, TaskFamily, str, int]] = {}
    fitting: dict[str, Any] = {}  # lm-eval task name -> its FittingTask (shots used, items that overflowed)
    set_scoring = {name: scoring.for_eval_set(name, spec) for name, spec in eval_sets.items()}
    configs = []
    for eval_set in sorted(eval_sets):
        spec = eval_sets[eval_set]
        family = get_task(spec["task"])
        if spec.get("family") not in (None, family.definition()):
            raise ValueError(f"eval set {eval_set!r}: the job's params define task {family.name!r} otherwise than this "
                             f"process does ($PTFT_TASKS); params: {spec['family']}, here: {family.definition()}")
        if family.kind == "classification" and scoring.classification == "token_prob" and family.name not in candidates:
            candidates[family.name] = candidate_tokens(tokenizer, family.label_words)
        dataset = load_eval_set(eval_set, spec)
        policy = shots_overflow_policy(settings, eval_set)
        budget = _prompt_budget(lm.max_length, family, tokenizer, scoring)
        for prompt_format in settings.prompt_formats:
            for shots in settings.shots:
                config = task_config(
                    eval_set,
                    family,
                    prompt_format,
                    int(shots),
                    dataset,
                    set_scoring[eval_set],
                    candidates.get(family.name),
                    settings.fewshot_source,
                )
                conditions[config["task"]] = (eval_set, family, prompt_format, int(shots))
                task = fitting_task(config, policy=policy, budget=budget, tokenizer=tokenizer, family=family)
                fitting[config["task"]] = task
                configs.append(task)

    # lm-eval's own tasks: native names (data from the datasets cache) and local stand-ins (lm-eval's YAML, our data).
    native: dict[str, str] = {}  # lm-eval task name -> the lm-eval task whose definition scores it
    native_names = [t for t in settings.lm_eval_tasks if isinstance(t, str)]
    # Indexing the harness's thousands of YAML tasks takes seconds: only when a native task needs it.
    task_manager = TaskManager(include_defaults=bool(native_names))
    loaded = check_native_tasks(native_names, task_manager)
    for entry in settings.lm_eval_tasks:
        if isinstance(entry, str):
            apply_native_settings(entry, loaded[entry], settings)
            configs.append(loaded[entry])
            native[entry] = entry
        else:
            configs.append(standin_config(entry, eval_sets, seed))
            native[entry["name"]] = entry["task"]
    clash = sorted(set(native) & set(eval_sets))
    if clash:
        raise KeyError(f"evaluate.lm_eval_tasks: {clash} also name eval sets; a row's eval_set must say which it is")

    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=configs,
        num_fewshot=None,  # each config carries its own shot count
        limit=settings.limit,
        bootstrap_iters=0,  # our own seeded bootstrap below
        log_samples=True,
        task_manager=task_manager,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )

    results, predictions, example_prompts = [], [], {}
    for name in sorted(conditions, key=lambda k: (conditions[k][0], conditions[k][2], conditions[k][3])):
        eval_set, family, prompt_format, shots = conditions[name]
        samples = sorted(output["samples"][name], key=lambda s: s["doc_id"])
        if not samples:
            raise RuntimeError(f"lm-eval returned no scored items for {eval_set}/{prompt_format}/{shots}")
        prompt_tokens = _prompt_tokens(tokenizer, [s["arguments"][0][0] for s in samples])
        budget = _prompt_budget(lm.max_length, family, tokenizer, scoring)
        task, policy = fitting[name], shots_overflow_policy(settings, eval_set)
        scores, rows = [], []
        for sample, n_tokens in zip(samples, prompt_tokens, strict=True):
            row = _prediction_row(sample, family, set_scoring[eval_set], candidates.get(family.name), tokenizer)
            item = sample["doc"]["id"]
            row.update(
                eval_set=eval_set,
                prompt_format=prompt_format,
                shots=shots,
                shots_used=task.shots_used[item],
                overflow=item in task.overflow,  # its k-shot prompt did not fit; shots_overflow handled it
                prompt_tokens=n_tokens,
                truncated=n_tokens > budget,  # still over the budget: lm-eval cut it from the left
            )
            predictions.append(row)
            rows.append(row)
            scores.append(row["score"])
        n_overflow = sum(sample["doc"]["id"] in task.overflow for sample in samples)
        if n_overflow:
            log.warning(
                "%s/%s/%d-shot: %d of %d prompts exceed the %d-token budget with all shots; shots_overflow %s applied",
                eval_set,
                prompt_format,
                shots,
                n_overflow,
                len(samples),
                budget,
                policy,
            )
        n_truncated = sum(n > budget for n in prompt_tokens)
        if n_truncated:
            log.warning(
                "%s/%s/%d-shot: %d of %d prompts exceed the %d-token budget and were cut from the left",
                eval_set,
                prompt_format,
                shots,
                n_truncated,
                len(samples),
                budget,
            )
        value, low, high = set_value(family, rows, settings.bootstrap_resamples, seed)
        results.append(
            {
                "eval_set": eval_set,
                "task": family.name,
                "prompt_format": prompt_format,
                "shots": shots,
                "metric": family.metric,
                "value": value,
                "ci_low": low,
                "ci_high": high,
                "n": len(scores),
                "shots_overflow": policy,
                "n_overflow": n_overflow,  # items whose k-shot prompt exceeded the budget
            }
        )
        example_prompts[f"{eval_set}/{prompt_format}/{shots}"] = samples[0]["arguments"][0][0]

    for name in sorted(native):
        samples = sorted(output["samples"][name], key=lambda s: s["doc_id"])
        if not samples:
            raise RuntimeError(f"lm-eval returned no scored items for {name}")
        shots = int(output["n-shot"].get(name) or 0) if "n-shot" in output else 0
        # The metrics the task itself defines, among those ptft records (boolq: acc only).
        metrics = [m for m in task_metrics(native[name]) if m in NATIVE_METRICS]
        rows = [_native_prediction_row(sample, metrics) for sample in samples]
        for row in rows:
            row.update(eval_set=name, prompt_format=NATIVE_FORMAT, shots=shots)
        predictions.extend(rows)
        for metric in metrics:
            scores = [row["score"] if metric == "acc" else row[metric] for row in rows]
            low, high = bootstrap_ci(scores, settings.bootstrap_resamples, seed)
            results.append(
                {
                    "eval_set": name,
                    "task": native[name],
                    "prompt_format": NATIVE_FORMAT,
                    "shots": shots,
                    "metric": metric,
                    "value": float(np.mean(scores)),
                    "ci_low": low,
                    "ci_high": high,
                    "n": len(scores),
                }
            )
        example_prompts[f"{name}/{NATIVE_FORMAT}/{shots}"] = samples[0]["arguments"][0][0]

    lm_eval_version = importlib.metadata.version("lm_eval")
    write_jsonl(out_predictions, predictions)
    write_json(
        out_json,
        {
            **identity,
            "results": results,
            "example_prompts": example_prompts,
            "lm_eval_version": lm_eval_version,
            "provenance": provenance(
                "evaluation",
                settings.record(),
                seed=seed,
                model_dir=str(model_dir),
                eval_sets={
                    k: {"task": v["task"], "test": str(v["test"]), "train": str(v["train"]),
                        "rouge_tokenizer": set_scoring[k].rouge_tokenizer}
                    for k, v in sorted(eval_sets.items())
                },
                rouge={"type": "rougeL", "measure": "fmeasure", "use_stemmer": scoring.rouge_stemmer},
                classification=scoring.classification,
                stop_sequences={
                    name: list(scoring.stop(get_task(name)))
                    for name in sorted({v["task"] for v in eval_sets.values()})
                    if get_task(name).kind == "generation"
                },
                token_prob_candidates={
                    name: [{"token_id": t, "token": tokenizer.convert_ids_to_tokens(t), "label": w} for t, w in c]
                    for name, c in sorted(candidates.items())
                },
                ci_level=CI_LEVEL,
                threads=threads,
                evaluation_dtype=dtype,  # evaluate.dtype resolved on the device that ran (auto: bf16 GPU, fp32 CPU)
                evaluation_backend=backend,
                device=_device(),
                # how a LoRA adapter was run (finetune.lora_eval); None for full weights
                lora_eval=lora_eval if (model_dir / "adapter_config.json").is_file() else None,
            ),
        },
    )


def _prompt_budget(max_length: int, family: TaskFamily, tokenizer, scoring: Scoring = Scoring()) -> int:
    """The longest prompt lm-eval scores whole; it cuts longer ones from the left (losing the first shots).

    Generation keeps max_length - max_gen_toks context tokens; log-likelihood keeps max_length + 1 tokens of
    context plus continuation (the last one is only predicted), and the longest label word sets the limit
    (TokenProb's continuations are one token).
    """
    if family.kind == "generation":
        return max_length - family.max_new_tokens
    if scoring.classification == "token_prob":
        return max_length
    longest_label = max(
        len(tokenizer(family.target_delimiter + w, add_special_tokens=False)["input_ids"]) for w in family.label_words
    )
    return max_length + 1 - longest_label


def _prompt_tokens(tokenizer, prompts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]


def _prediction_row(
    sample: Mapping[str, Any],
    family: TaskFamily,
    scoring: Scoring = Scoring(),
    candidates: Sequence[tuple[int, str]] | None = None,
    tokenizer=None,
) -> dict[str, Any]:
    """One scored item from an lm-eval logged sample: what was predicted, the gold target and the score.

    Classification rows keep each label's log-probability: of the whole label word (loglikelihood), or of the label's
    most probable candidate token (token_prob, which also names the winning token: its id and its text).
    """
    doc = sample["doc"]
    target = family.target(doc)
    row: dict[str, Any] = {"doc_id": doc["id"], "target": target}
    if family.kind == "classification" and scoring.classification == "token_prob":
        loglikelihoods = [float(ll) for ll, _is_greedy in sample["filtered_resps"]]
        token_id, prediction = choose_token(loglikelihoods, candidates)
        best: dict[str, float] = {}
        for (_, word), ll in zip(candidates, loglikelihoods, strict=True):
            best[word] = max(best.get(word, -np.inf), ll)
        row.update(
            prediction=prediction,
            score=item_score(family, prediction, target, scoring),
            token_id=token_id,
            token=tokenizer.decode([token_id]) if tokenizer is not None else None,
            loglikelihoods={w: best[w] for w in family.label_words},
        )
    elif family.kind == "classification":
        loglikelihoods = [float(ll) for ll, _is_greedy in sample["filtered_resps"]]
        prediction = choose_label(loglikelihoods, family.label_words)
        row.update(
            prediction=prediction,
            score=item_score(family, prediction, target, scoring),
            loglikelihoods=dict(zip(family.label_words, loglikelihoods, strict=True)),
        )
    else:
        prediction = sample["filtered_resps"][0]
        row.update(prediction=prediction, score=item_score(family, prediction, target, scoring))
    # lm-eval scored the same responses through _process_results; disagreement means we read its output wrongly.
    lm_score = sample[get_metric(family.metric).lm_eval_key]
    if not np.isclose(lm_score, row["score"]):
        raise RuntimeError(
            f"item {doc['id']!r}: lm-eval scored {lm_score}, re-scoring the logged response gave {row['score']}"
        )
    return row
