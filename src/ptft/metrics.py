"""The metrics a task family can name (its `metric:`), each defined once: which family kinds it scores, the key
lm-eval records it under, its per-item score and, for a corpus-level metric, how the items combine; and ROUGE-L
itself (rouge_l, with the UnicodeWords tokenizer for non-English eval sets).

A later metric joins by adding one entry to METRICS. This module stays free of the evaluation stack (ptft.tasks reads
it to check a family's metric): rouge-score is imported when ROUGE-L is first computed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

# data.datasets.<name>.rouge_tokenizer: default is rouge-score's own ([a-z0-9] words, English only), unicode keeps
# the words of every script (UnicodeWords)
ROUGE_TOKENIZERS = ("default", "unicode")
# Scripts written without spaces between words: each character is a token (UnicodeWords). CJK ranges are those of
# XL-Sum's multilingual_rouge_scoring/tokenizers.py (_is_chinese_char); Thai, Lao, Myanmar, Khmer, kana added here.
_UNSPACED_SCRIPTS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),  # CJK ideographs, extension A, compatibility
    (0x20000, 0x2A6DF), (0x2A700, 0x2CEAF), (0x2F800, 0x2FA1F),  # CJK extensions B-E, compatibility supplement
)  # fmt: skip


class UnicodeWords:
    """rouge-score tokenizer (a tokenize() method) that keeps the words of every script, for non-English eval sets.

    Lower-cased text is split at white space and at every character of Unicode category P (punctuation), S
    (symbols), Z (separators) or C (control): XL-Sum's language-agnostic path (csebuetnlp/xl-sum
    multilingual_rouge_scoring/tokenizers.py BasicTokenizer: clean text, split on white space and Unicode
    punctuation), so combining marks stay inside their word (Hindi's vowel signs; a `\\w+` regex would cut there).
    Characters of scripts written without spaces (_UNSPACED_SCRIPTS: Chinese, Japanese kana, Thai, Lao, Burmese,
    Khmer) are one token each, as XL-Sum's fallback does for CJK; XL-Sum segments Chinese, Thai, Japanese and
    Burmese into words with jieba, pythainlp, fugashi and a Burmese segmenter when given a language, which ptft
    does not (they are not in the lock file), so those languages' scores are character-level ROUGE-L and not
    comparable with XL-Sum's published numbers. No stemming (rouge-score applies its Porter stemmer only in its
    own tokenizer).
    """

    @staticmethod
    def tokenize(text: str) -> list[str]:
        import unicodedata

        tokens: list[str] = []
        word: list[str] = []
        for char in text.lower():
            if char.isspace() or unicodedata.category(char)[0] in "PSZC":
                tokens.append("".join(word))
                word = []
            elif any(lo <= ord(char) <= hi for lo, hi in _UNSPACED_SCRIPTS):
                tokens.extend(["".join(word), char])
                word = []
            else:
                word.append(char)
        tokens.append("".join(word))
        return [t for t in tokens if t]


@functools.lru_cache(maxsize=4)
def _rouge_scorer(use_stemmer: bool, tokenizer: str = "default"):
    from rouge_score import rouge_scorer

    if tokenizer not in ROUGE_TOKENIZERS:
        raise ValueError(f"rouge_tokenizer must be one of {ROUGE_TOKENIZERS}, got {tokenizer!r}")
    custom = UnicodeWords() if tokenizer == "unicode" else None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer, tokenizer=custom)


def rouge_l(prediction: str, target: str, use_stemmer: bool = False, tokenizer: str = "default") -> float:
    """ROUGE-L F-measure in [0, 1] of one prediction against one reference.

    use_stemmer=False is what HF `evaluate`'s rouge computes by default (evaluate 0.4.6, metrics/rouge/rouge.py,
    `_compute(..., use_stemmer=False)`), the call the authors made (eval/eval_pred.py lines 33-34, no use_stemmer);
    True applies rouge-score's Porter stemmer (evaluate.rouge_stemmer). tokenizer "default" is rouge-score's own:
    it lower-cases and keeps [a-z0-9] tokens only, so line breaks do not count (a perfect copy of a multi-line
    reference scores 1.0) and a Thai, Hindi or Chinese text has no tokens at all (every score 0.0); "unicode"
    (UnicodeWords, for non-English eval sets) keeps the words of every script and ignores use_stemmer.
    Raises ValueError for another tokenizer name.
    """
    return float(_rouge_scorer(bool(use_stemmer), tokenizer).score(target, prediction)["rougeL"].fmeasure)



def accuracy(prediction: str, target: str, **_options) -> float:
    """1.0 when the predicted label word is the gold one, else 0.0."""
    return float(prediction == target)


def _exact_match(prediction: str, target: str, **_options) -> float:
    # lm-eval's exact_match with its common setting ignore_punctuation=False, strip leading/trailing whitespace
    # (lm_eval/api/metrics.py exact_match_hf_evaluate on stripped strings, as its generate_until tasks filter them)
    return float(prediction.strip() == target.strip())


def _rouge_l(prediction: str, target: str, rouge_stemmer: bool = False, rouge_tokenizer: str = "default",
             **_options) -> float:  # fmt: skip
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
