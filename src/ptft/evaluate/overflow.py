"""Prompts longer than the model's context: evaluate.shots_overflow, and the lm-eval task that applies it to every
few-shot context lm-eval builds (fitting_task).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

from ptft.settings import EvaluateSettings
from ptft.tasks import TaskFamily

# evaluate.shots_overflow: what happens to an item whose k-shot prompt exceeds the prompt budget
# (ptft.evaluate.plan.prompt_budget).
SHOTS_OVERFLOW_POLICIES = ("drop_shots", "truncate_documents", "error")


def shots_overflow_policy(settings: "Mapping[str, Any] | EvaluateSettings", eval_set: str) -> str:
    """evaluate.shots_overflow for one eval set: one policy for every set (a string), or a mapping eval set -> policy
    that names every eval set (no second default outside the schema). Raises KeyError for an unnamed eval set,
    ValueError for an unknown policy."""
    setting = EvaluateSettings.from_config(settings).shots_overflow
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


@dataclass(frozen=True, eq=False)
class _PromptFit:
    """What a FittingTask fits its contexts to: the policy, the budget in tokens, the tokenizer that counts them (no
    special tokens) and the family whose input fields truncate_documents cuts."""

    policy: str
    budget: int
    tokenizer: Any
    family: TaskFamily

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def n_tokens(self, text: str) -> int:
        return len(self.token_ids(text))


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
    Raises ValueError for an unknown policy.
    """
    if policy not in SHOTS_OVERFLOW_POLICIES:
        raise ValueError(f"shots_overflow policy must be one of {SHOTS_OVERFLOW_POLICIES}, got {policy!r}")
    return _fitting_task_class()(_PromptFit(policy, budget, tokenizer, family), config=config)


@functools.cache
def _fitting_task_class() -> type:
    """The FittingTask class, made on first use (lm-eval is imported only when a task is built)."""
    from lm_eval.api.task import ConfigurableTask

    class FittingTask(ConfigurableTask):
        def __init__(self, fit: _PromptFit, **kwargs):
            super().__init__(**kwargs)
            self.fit = fit
            self.shots_used: dict[Any, int] = {}
            self.overflow: dict[Any, int] = {}

        def context_with(self, doc, shots: list, kwargs) -> str:
            """lm-eval's context for doc with the given shots instead of a fresh draw."""
            # an instance attribute shadows the sampler's method
            self.sampler.sample = lambda *_a, **_k: list(shots)
            try:
                return super().fewshot_context(doc, num_fewshot=len(shots), **kwargs)
            finally:
                del self.sampler.sample

        def fewshot_context(self, doc, num_fewshot, **kwargs):
            drawn, context = self._drawn_context(doc, num_fewshot, kwargs)
            fit, item = self.fit, doc.get("id")
            length = fit.n_tokens(context)
            if length <= fit.budget or not isinstance(context, str):
                self.shots_used[item] = len(drawn)
                return context
            self.overflow[item] = length
            if fit.policy == "error":
                raise ShotsOverflowError(
                    f"{self.config.task}: item {item!r} has a {len(drawn)}-shot prompt of {length} tokens, over the "
                    f"{fit.budget}-token budget (evaluate.shots_overflow: error; drop_shots or truncate_documents "
                    "handle it)"
                )
            if fit.policy == "drop_shots":
                kept, context = _dropped_shots_context(self, doc, drawn, context, kwargs)
                self.shots_used[item] = kept
                return context
            self.shots_used[item] = len(drawn)
            return _truncated_context(self, doc, drawn, kwargs)

        def _drawn_context(self, doc, num_fewshot, kwargs) -> tuple[list, str]:
            """lm-eval's own context for doc, and the shots its sampler drew for it."""
            drawn: list = []
            if num_fewshot <= 0:
                return drawn, super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
            sample = self.sampler.sample
            self.sampler.sample = lambda *a, **k: drawn.extend(sample(*a, **k)) or list(drawn)
            try:
                return drawn, super().fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
            finally:
                del self.sampler.sample

    return FittingTask


def _dropped_shots_context(task, doc, drawn: list, context: str, kwargs) -> tuple[int, str]:
    """drop_shots: (shots kept, context) with the last shots of the draw, as many as fit, from context (the prompt
    with every drawn shot, over the budget). With no shot left (or none drawn: a 0-shot prompt over the budget) the
    item's own prompt is returned as it is, still over the budget: lm-eval cuts it from the left, and the row counts it
    in n_overflow."""
    kept = len(drawn)
    while kept > 0 and task.fit.n_tokens(context) > task.fit.budget:
        kept -= 1
        context = task.context_with(doc, drawn[len(drawn) - kept :], kwargs)
    return kept, context


def _truncated_context(task, doc, drawn: list, kwargs) -> str:
    """truncate_documents: the context with every input field of shots and item cut to the largest cap that fits."""
    fit = task.fit
    records = [*drawn, doc]
    ids = [{f: fit.token_ids(r[f]) for f in fit.family.input_fields if isinstance(r.get(f), str)} for r in records]

    def build(cap: int) -> str:
        cut = [
            {**r, **{f: fit.tokenizer.decode(t[:cap]) for f, t in fields.items() if len(t) > cap}}
            for r, fields in zip(records, ids, strict=True)
        ]
        return task.context_with(cut[-1], cut[:-1], kwargs)

    low, high = 0, max((len(t) for fields in ids for t in fields.values()), default=0)
    while low < high:  # the largest cap whose context fits
        mid = (low + high + 1) // 2
        if fit.n_tokens(build(mid)) <= fit.budget:
            low = mid
        else:
            high = mid - 1
    return build(low)
