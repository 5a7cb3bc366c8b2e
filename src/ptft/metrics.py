"""The metrics a task family can name (its `metric:`), each defined once: which family kinds it scores, the key
lm-eval records it under, its per-item score and, for a corpus-level metric, how the items combine.

A later metric joins by adding one entry to METRICS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


def accuracy(prediction: str, target: str, **_options) -> float:
    """1.0 when the predicted label word is the gold one, else 0.0."""
    return float(prediction == target)


def _exact_match(prediction: str, target: str, **_options) -> float:
    # lm-eval's exact_match with its common setting ignore_punctuation=False, strip leading/trailing whitespace
    # (lm_eval/api/metrics.py exact_match_hf_evaluate on stripped strings, as its generate_until tasks filter them)
    return float(prediction.strip() == target.strip())


def _rouge_l(prediction: str, target: str, rouge_stemmer: bool = False, rouge_tokenizer: str = "default",
             **_options) -> float:  # fmt: skip
    # ROUGE-L stays defined in ptft.evaluate (evaluate.rouge_l documents its source); imported here at call time so
    # that this module, which ptft.tasks reads to check a family's metric, stays free of the evaluation stack.
    from ptft.evaluate import rouge_l

    return rouge_l(prediction, target, rouge_stemmer, rouge_tokenizer)


def macro_f1(predictions: Sequence[str], targets: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-averaged F1 over the label words, in [0, 1]: the unweighted mean over labels of 2PR/(P+R).

    A label that is neither predicted nor gold anywhere is left out of the mean; one predicted or gold but never
    right scores 0 (scikit-learn's f1_score(average="macro", labels=<those present>, zero_division=0)).
    Raises ValueError when the two sequences differ in length or are empty.
    """
    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"macro_f1 needs as many predictions as targets (> 0), got {len(predictions)} and {len(targets)}")
    scores = []
    for label in labels:
        tp = sum(p == label and t == label for p, t in zip(predictions, targets))
        predicted = sum(p == label for p in predictions)
        gold = sum(t == label for t in targets)
        if predicted == 0 and gold == 0:
            continue
        scores.append(2.0 * tp / (predicted + gold))
    return float(sum(scores) / len(scores)) if scores else 0.0


@dataclass(frozen=True)
class Metric:
    """One metric. item(prediction, target, **options) -> the item's score in [0, 1] (options: the evaluate
    protocol's, e.g. rouge_stemmer; a metric ignores those it does not read); corpus(predictions, targets, label_words)
    -> the set's value for a corpus-level metric (None: the mean of the item scores is the value)."""

    name: str
    kinds: tuple[str, ...]  # the family kinds it can score: "classification", "generation"
    lm_eval_key: str  # the key of lm-eval's per-sample record (and metric_list) that holds the item score
    item: Callable[..., float]
    corpus: Callable[[Sequence[str], Sequence[str], Sequence[str]], float] | None = None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", ("classification",), "acc", accuracy),
        # F1 is corpus-level: a results row carries macro-F1 over the scored items (its CI from resampled items);
        # each prediction row keeps its correctness (0/1) as `score` and its label, so F1 can be recomputed.
        Metric("f1", ("classification",), "acc", accuracy, corpus=macro_f1),
        Metric("rougeL", ("generation",), "rougeL", _rouge_l),
        Metric("exact_match", ("generation",), "exact_match", _exact_match),
    )
}


def get_metric(name: str) -> Metric:
    """The registered metric; KeyError naming it and the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)}") from None
