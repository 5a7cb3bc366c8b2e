"""What one evaluation runs: every eval set x prompt format x shot count (a Condition), each with its scoring, its
evaluate.shots_overflow policy, its prompt budget and the lm-eval task that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ptft.evaluate.overflow import fitting_task, shots_overflow_policy
from ptft.evaluate.scoring import Scoring, candidate_tokens
from ptft.evaluate.task_configs import load_eval_set, task_config
from ptft.settings import EvaluateSettings
from ptft.tasks import TaskFamily, get_task, stop_in_references


@dataclass(frozen=True, eq=False)
class Condition:
    """One eval set x prompt format x shot count, as lm-eval runs it (task) and ptft scores it."""

    eval_set: str
    family: TaskFamily
    prompt_format: str
    shots: int
    scoring: Scoring  # the eval set's (Scoring.for_eval_set: its rouge_tokenizer)
    candidates: list[tuple[int, str]] | None  # TokenProb's candidate tokens of the family; None unless token_prob
    policy: str  # evaluate.shots_overflow for the eval set
    budget: int  # prompt_budget in tokens: the longest prompt lm-eval scores whole
    task: Any  # its FittingTask (fitting_task): after the run, the shots each item used and the items that overflowed

    @property
    def label(self) -> str:
        """eval_set/prompt_format/shots: the key of its example prompt and the name in its messages."""
        return f"{self.eval_set}/{self.prompt_format}/{self.shots}"


@dataclass(frozen=True)
class Plan:
    """Every condition of one evaluation, and the scoring they share."""

    scoring: Scoring  # the evaluate settings' (Scoring.from_config)
    set_scoring: dict[str, Scoring]  # eval set -> its scoring
    candidates: dict[str, list[tuple[int, str]]]  # task family -> TokenProb candidate tokens (token_prob only)
    conditions: dict[str, Condition]  # lm-eval task name -> its condition, in the order the tasks were built


def plan(
    eval_sets: Mapping[str, Mapping[str, Any]], settings: EvaluateSettings, scoring: Scoring, max_length: int, tokenizer
) -> Plan:
    """The conditions of one evaluation: eval sets in name order, then settings.prompt_formats and settings.shots in
    their order. max_length is the lm-eval model's context in tokens and tokenizer its tokenizer: they set each eval
    set's prompt_budget and TokenProb's candidate tokens.

    Each eval set is loaded (load_eval_set) and each condition's lm-eval task is built here. Raises what
    Scoring.for_eval_set, load_eval_set, shots_overflow_policy and task_config raise, and ValueError for an eval set
    whose job params define its task family otherwise than this process does, or whose references contain one of its
    stop strings (ptft.tasks.stop_in_references), before any model runs.
    """
    set_scoring = {name: scoring.for_eval_set(name, spec) for name, spec in eval_sets.items()}
    candidates: dict[str, list[tuple[int, str]]] = {}
    conditions: dict[str, Condition] = {}
    for eval_set in sorted(eval_sets):
        spec = eval_sets[eval_set]
        family = _checked_family(eval_set, spec)
        if family.kind == "classification" and scoring.classification == "token_prob" and family.name not in candidates:
            candidates[family.name] = candidate_tokens(tokenizer, family.label_words)
        dataset = load_eval_set(eval_set, spec)
        refused = stop_in_references(eval_set, family, set_scoring[eval_set].stop(family), dataset["test"])
        if refused:
            raise ValueError(refused)
        policy = shots_overflow_policy(settings, eval_set)
        budget = prompt_budget(max_length, family, tokenizer, scoring)
        for prompt_format in settings.prompt_formats:
            for shots in settings.shots:
                config = task_config(eval_set, family, prompt_format, int(shots), dataset, set_scoring[eval_set],
                                     candidates.get(family.name), settings.fewshot_source,
                                     settings.fewshot_seed)  # fmt: skip
                task = fitting_task(config, policy=policy, budget=budget, tokenizer=tokenizer, family=family)
                conditions[config["task"]] = Condition(
                    eval_set, family, prompt_format, int(shots), set_scoring[eval_set], candidates.get(family.name),
                    policy, budget, task,
                )  # fmt: skip
    return Plan(scoring, set_scoring, candidates, conditions)


def _checked_family(eval_set: str, spec: Mapping[str, Any]) -> TaskFamily:
    """The eval set's task family, checked against the definition its job params carry (spec["family"])."""
    family = get_task(spec["task"])
    if spec.get("family") not in (None, family.definition()):
        raise ValueError(f"eval set {eval_set!r}: the job's params define task {family.name!r} otherwise than this "
                         f"process does ($PTFT_TASKS); params: {spec['family']}, here: {family.definition()}")
    return family


def prompt_budget(max_length: int, family: TaskFamily, tokenizer, scoring: Scoring = Scoring()) -> int:
    """The longest prompt (tokens) lm-eval scores whole; it cuts longer ones from the left (losing the first shots).

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
