"""How items are scored (the `evaluate:` protocol: Scoring) and the pure scoring functions: TokenProb's candidate
tokens and choice, the label of the best log-likelihood, one item's score, and a set's value with its bootstrap
interval.

The metrics themselves (accuracy, macro-F1, ROUGE-L, exact match) are defined once in ptft.metrics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ptft.metrics import ROUGE_TOKENIZERS, get_metric
from ptft.settings import EvaluateSettings
from ptft.tasks import TaskFamily, get_task

CLASSIFICATION_METHODS = ("token_prob", "loglikelihood")
CI_LEVEL = 0.95
# The bootstrap draws its index matrix in chunks of about this many entries (memory stays flat at paper scale).
BOOTSTRAP_CHUNK_ENTRIES = 8_000_000


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
    def from_config(cls, settings: "Mapping[str, Any] | EvaluateSettings") -> "Scoring":
        """The scoring of the evaluate settings (EvaluateSettings, or the mapping it is built from). Raises ValueError
        for an unknown classification method or a stop_sequences value that is not a list of non-empty strings,
        KeyError for a stop_sequences key that is no task family."""
        settings = EvaluateSettings.from_config(settings)
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


def item_score(family: TaskFamily, prediction: str, target: str, scoring: Scoring) -> float:
    """One item's score under the family's metric (ptft.metrics): its correctness for a classification metric
    (accuracy, and F1, whose set value is corpus-level: set_value), ROUGE-L or exact match for generation."""
    return get_metric(family.metric).item(
        prediction, target, rouge_stemmer=scoring.rouge_stemmer, rouge_tokenizer=scoring.rouge_tokenizer
    )


def set_value(
    family: TaskFamily, rows: Sequence[Mapping[str, Any]], resamples: int, seed: int
) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of one eval set x format x shots from its prediction rows.

    The mean of the rows' scores with bootstrap_ci's interval (mean_with_ci); for a corpus-level metric (F1) the
    metric over all rows, with the percentile interval of the metric over `resamples` seeded resamples of the rows.
    """
    metric = get_metric(family.metric)
    if metric.corpus is None:
        return mean_with_ci([row["score"] for row in rows], resamples, seed)
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


def mean_with_ci(scores: Sequence[float], resamples: int, seed: int) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of per-item scores: their mean with bootstrap_ci's interval at CI_LEVEL."""
    low, high = bootstrap_ci(scores, resamples, seed)
    return float(np.mean(scores)), low, high


def bootstrap_ci(scores: Sequence[float], resamples: int, seed: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item scores (seeded, vectorised in chunks of about
    BOOTSTRAP_CHUNK_ENTRIES resampled entries). resamples <= 0 gives (mean, mean). Raises ValueError without scores."""
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
