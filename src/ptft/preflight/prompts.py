"""Preflight of prompt lengths: the longest k-shot prompt of each eval set on the sampled rows, rendered with
ptft.tasks's templates in every configured prompt format, plus its longest answer, fits each model's context."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ptft.preflight.data_sets import DatasetFacts
from ptft.preflight.models import ModelFacts
from ptft.preflight.rows import Row, ok, problem


def longest_prompt(records: Mapping[str, Sequence[Mapping[str, str]]], family: Any, prompt_format: str, shots: int,
                   count: Callable[[str], int]) -> tuple[int, str]:  # fmt: skip
    """Tokens of the longest k-shot prompt the sample allows and the prompt itself: the `shots` longest training
    examples (prompt, TARGET_DELIMITER, target) joined by FEWSHOT_DELIMITER, then the longest test prompt, as
    lm-eval lays a few-shot context out (its ContextSampler; ptft.evaluate.task_config sets the delimiters)."""
    from ptft.tasks import FEWSHOT_DELIMITER, TARGET_DELIMITER

    examples = [family.render(r, prompt_format) + TARGET_DELIMITER + family.target(r) for r in records.get("train", [])]
    examples = sorted(examples, key=count, reverse=True)[:shots]
    tests = [family.render(r, prompt_format) for r in records.get("test", [])]
    text = FEWSHOT_DELIMITER.join([*examples, max(tests, key=count)])
    return count(text), text


def answer_tokens(family: Any, records: Sequence[Mapping[str, str]], count: Callable[[str], int]) -> int:
    """Room the answer needs after the prompt: max_new_tokens for generation, the longest label word (with its
    delimiter) for classification."""
    from ptft.tasks import TARGET_DELIMITER

    if family.kind == "classification":
        return max(count(TARGET_DELIMITER + w) for w in family.label_words)
    return family.max_new_tokens


def context_rows(config: Mapping[str, Any], models: Mapping[str, ModelFacts],
                 datasets_: Mapping[str, DatasetFacts]) -> list[Row]:  # fmt: skip
    """For each eval set and model: the longest prompt over the configured formats and shots fits the context."""
    from ptft.tasks import get_task

    rows = []
    evaluate = config["evaluate"]
    for i, name in enumerate(evaluate["eval_sets"]):
        facts = datasets_.get(name)
        if facts is None or "test" not in facts.records or not facts.records["test"]:
            continue
        family = get_task(config["data"]["datasets"][name]["task"])
        for model, mfacts in models.items():
            if mfacts.tokenizer is None or mfacts.context is None:
                continue
            subject = f"evaluate.eval_sets[{i}] x models.{model}"

            def count(text: str, tok=mfacts.tokenizer) -> int:
                return len(tok(text)["input_ids"])

            worst = None
            for prompt_format in evaluate["prompt_formats"]:
                for shots in evaluate["shots"]:
                    tokens, _ = longest_prompt(facts.records, family, prompt_format, int(shots), count)
                    need = tokens + answer_tokens(family, facts.records["test"], count)
                    if worst is None or need > worst[0]:
                        worst = (need, tokens, prompt_format, int(shots))
            need, tokens, prompt_format, shots = worst
            what = (f"{name}: longest {shots}-shot prompt on {len(facts.records['test'])} test and "
                    f"{len(facts.records.get('train', []))} train rows ({prompt_format} format) is {tokens} tokens, "
                    f"{need} with the answer; context {mfacts.context} ({mfacts.context_source})")  # fmt: skip
            if need > mfacts.context:
                rows.append(problem("context", subject, what, "lower evaluate.shots, or evaluate this set with a model "
                                    "of longer context; lm-eval would cut the prompt's start and score a different task"))
            else:
                rows.append(ok("context", subject, what))
    return rows


def stop_rows(config: Mapping[str, Any], datasets_: Mapping[str, DatasetFacts]) -> list[Row]:
    """For each generation eval set with sampled test rows: no reference contains one of its stop strings
    (evaluate.stop_sequences, else the family's default; ptft.tasks.stop_in_references)."""
    from ptft.tasks import get_task, stop_in_references

    rows = []
    stops = config["evaluate"].get("stop_sequences") or {}
    for i, name in enumerate(config["evaluate"]["eval_sets"]):
        facts = datasets_.get(name)
        family = get_task(config["data"]["datasets"][name]["task"])
        if facts is None or not facts.records.get("test") or family.kind != "generation":
            continue
        subject = f"evaluate.eval_sets[{i}]"
        refused = stop_in_references(name, family, stops.get(family.name, family.stop), facts.records["test"])
        if refused:
            rows.append(problem("stop", subject, refused, f"evaluate.stop_sequences: {{{family.name}: []}}"))
        else:
            rows.append(ok("stop", subject, f"{name}: no stop string in {len(facts.records['test'])} sampled references"))
    return rows
