"""The evaluation side of `make estimate` (ptft.estimate): prompt tokens one eval set costs per evaluate job, with a
shared few-shot prefix counted once (evaluate.fewshot_source train_fixed with evaluate.share_prefix, the hf
backend), and the precision its item count buys: the expected half-width of its 95% interval.

Counting: a k-shot prompt is k shots (input + target + a delimiter token each) and the item's input, capped at the
prompt budget. With a shared prefix, the shot block is computed once per eval set x format x shots and each item
computes the rest (its input, or its input and the label word for whole-word log-likelihood). A prompt capped by the
budget keeps its input and shares what is left of its shots (evaluate.shots_overflow drop_shots).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ptft.tasks import get_task

Z95 = 1.959964  # the standard normal's 97.5% quantile: a 95% interval is mean +- Z95 x standard error
# Item-score spread assumed when no pilot is given: the binomial maximum for accuracy (p = 0.5) and, for ROUGE-L, a
# per-item standard deviation of 0.15 (assumed: per-item ROUGE-L of 1B-scale models' summaries and questions spreads
# over roughly 0 to 0.5; a pilot run's predictions replace it).
ASSUMED_ACCURACY_P = 0.5
ASSUMED_ROUGE_SD = 0.15


def kshot_tokens(shots: int, lengths: Mapping[str, Any]) -> float:
    """Tokens of a k-shot prompt: (k + 1) inputs and k targets, each target + 1 delimiter token."""
    return (shots + 1) * lengths["input"] + shots * (lengths["target"] + 1)


def shares_prefix(evaluate: Mapping[str, Any]) -> bool:
    """Whether this evaluate section's prompts share one prefix per eval set x format x shots, computed once:
    fixed shots (fewshot_source train_fixed), evaluate.share_prefix (default true) and the hf backend."""
    return (evaluate.get("fewshot_source") == "train_fixed" and evaluate.get("share_prefix", True)
            and evaluate.get("backend", "hf") == "hf")  # fmt: skip


def set_tokens(config: Mapping[str, Any], name: str, context: int, lengths: Mapping[str, Any], n: int,
               shared: bool) -> tuple[float, float]:  # fmt: skip
    """(prompt tokens computed, tokens generated) for eval set `name` in one evaluate job: every prompt format and
    shot count, n items each. lengths: {"input", "target"} mean tokens; context: the model's, in tokens; shared:
    the shot block computed once per format and shot count (shares_prefix)."""
    evaluate = config["evaluate"]
    family = get_task(config["data"]["datasets"][name]["task"])
    formats = len(evaluate["prompt_formats"])
    scored = generated = 0.0
    for shots in evaluate["shots"]:
        whole = kshot_tokens(shots, lengths)
        if family.kind == "generation":
            prompt = min(whole, context - family.max_new_tokens)
            per_item, repeats, extra = prompt, 1, 0.0
            generated += n * family.max_new_tokens * formats
        else:
            prompt = min(whole, context - 1)
            token_prob = evaluate.get("classification") == "token_prob"
            repeats = 1 if token_prob else len(family.label_words)  # whole-word log-likelihood: prompt + each label
            extra = 0.0 if token_prob else lengths["target"]
        prefix = max(0.0, prompt - lengths["input"]) if shared and shots > 0 else 0.0
        scored += formats * (prefix + n * repeats * (prompt - prefix + extra))
    return scored, generated


def interval_half_width(metric: str, n: int, pilot_sd: float | None = None) -> tuple[float, str]:
    """(expected half-width of the 95% interval of the eval set's mean score at n items, its basis).

    Z95 x sd / sqrt(n), the normal approximation the percentile bootstrap tends to at these n. sd: the pilot's
    per-item standard deviation when given; else for accuracy the binomial maximum sqrt(p(1 - p)) at p = 0.5, for
    ROUGE-L ASSUMED_ROUGE_SD; both labelled assumed. Raises ValueError for n < 1."""
    if n < 1:
        raise ValueError(f"an interval needs at least one item, got n={n}")
    if pilot_sd is not None:
        sd, basis = pilot_sd, f"pilot per-item sd {pilot_sd:.3f}"
    elif metric in ("accuracy", "f1", "exact_match"):
        sd = math.sqrt(ASSUMED_ACCURACY_P * (1 - ASSUMED_ACCURACY_P))
        basis = f"assumed: binomial at p = {ASSUMED_ACCURACY_P} (the widest)"
    else:
        sd, basis = ASSUMED_ROUGE_SD, f"assumed: per-item sd {ASSUMED_ROUGE_SD}"
    return Z95 * sd / math.sqrt(n), basis


def precision_rows(config: Mapping[str, Any], items: Mapping[str, Any], per_set_hours: Mapping[str, float],
                   pilot_sd: Mapping[str, float] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per eval set of the study's own sets: {"eval_set", "n", "metric", "half_width", "basis", "gpu_hours"}.
    items: eval set -> {"n"}; per_set_hours: eval set -> GPU-hours of all its evaluate jobs; pilot_sd: eval set ->
    measured per-item standard deviation (optional)."""
    rows = []
    for name in config["evaluate"]["eval_sets"]:
        metric = get_task(config["data"]["datasets"][name]["task"]).metric
        half, basis = interval_half_width(metric, items[name]["n"], (pilot_sd or {}).get(name))
        rows.append({"eval_set": name, "n": items[name]["n"], "metric": metric, "half_width": half, "basis": basis,
                     "gpu_hours": per_set_hours.get(name, 0.0)})  # fmt: skip
    return rows


def format_precision(rows: list[dict[str, Any]]) -> list[str]:
    """The per-eval-set table of format_bill: items, the 95% interval's half-width, GPU-hours."""
    lines = ["Per eval set: items per condition, expected 95% interval half-width of its score at that count, and the "
             "GPU-hours of its evaluations (half-width shrinks as 1/sqrt(n); GPU-hours grow as n):"]  # fmt: skip
    for row in rows:
        lines.append(f"  {row['eval_set']:<18}{row['n']:>8,} items  +-{row['half_width']:.3f} {row['metric']}  "
                     f"{row['gpu_hours']:>7.2f} GPU-h  ({row['basis']})")  # fmt: skip
    return lines
