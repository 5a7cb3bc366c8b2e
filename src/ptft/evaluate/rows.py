"""What an evaluation writes: one prediction row per scored item (`<ft_set>.predictions.jsonl`), one result row per
eval set x prompt format x shots (and per metric of an lm-eval task), and the results JSON with its provenance.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ptft.evaluate.native import NATIVE_FORMAT, NATIVE_METRICS
from ptft.evaluate.plan import Condition, Plan
from ptft.evaluate.scoring import CI_LEVEL, Scoring, choose_label, choose_token, item_score, mean_with_ci, set_value
from ptft.lmeval_tasks import task_metrics
from ptft.metrics import get_metric
from ptft.provenance import provenance, write_json, write_jsonl
from ptft.settings import EvaluateSettings
from ptft.tasks import TaskFamily, get_task

log = logging.getLogger(__name__)


def score(
    planned: Plan, native: Mapping[str, str], output: Mapping[str, Any], settings: EvaluateSettings, tokenizer
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(result rows, prediction rows, example prompts) of one lm-eval run (simple_evaluate's output with its logged
    samples): the planned conditions in (eval set, prompt format, shots) order, then the lm-eval tasks of `native`
    (name -> the lm-eval task that defines it) in name order. Intervals are seeded with settings.fewshot_seed.
    Raises RuntimeError when lm-eval scored no item of a task, or scored one otherwise than ptft re-scores it.
    """
    results, predictions, example_prompts = [], [], {}
    seed, resamples = settings.fewshot_seed, settings.bootstrap_resamples
    by_order = sorted(planned.conditions.items(), key=lambda kv: (kv[1].eval_set, kv[1].prompt_format, kv[1].shots))
    for name, condition in by_order:
        samples = _samples(output, name, condition.label)
        rows = condition_rows(condition, samples, tokenizer)
        family, n_overflow = condition.family, sum(row["overflow"] for row in rows)
        value = set_value(family, rows, resamples, seed)
        results.append(result_row(condition.eval_set, family.name, condition.prompt_format, condition.shots,
                                  family.metric, value, len(rows), shots_overflow=condition.policy,
                                  n_overflow=n_overflow))  # fmt: skip
        predictions.extend(rows)
        example_prompts[condition.label] = samples[0]["arguments"][0][0]
    for name in sorted(native):
        samples = _samples(output, name, name)
        shots = int(output["n-shot"].get(name) or 0) if "n-shot" in output else 0
        # The metrics the task itself defines, among those ptft records (boolq: acc only).
        metrics = [m for m in task_metrics(native[name]) if m in NATIVE_METRICS]
        rows = [{**_native_prediction_row(sample, metrics), "eval_set": name, "prompt_format": NATIVE_FORMAT,
                 "shots": shots} for sample in samples]  # fmt: skip
        predictions.extend(rows)
        for metric in metrics:
            scores = [row["score"] if metric == "acc" else row[metric] for row in rows]
            value = mean_with_ci(scores, resamples, seed)
            results.append(result_row(name, native[name], NATIVE_FORMAT, shots, metric, value, len(scores)))
        example_prompts[f"{name}/{NATIVE_FORMAT}/{shots}"] = samples[0]["arguments"][0][0]
    return results, predictions, example_prompts


def _samples(output: Mapping[str, Any], name: str, label: str) -> list[dict[str, Any]]:
    """lm-eval's logged samples of task `name` in doc order; RuntimeError naming `label` when there are none."""
    samples = sorted(output["samples"][name], key=lambda s: s["doc_id"])
    if not samples:
        raise RuntimeError(f"lm-eval returned no scored items for {label}")
    return samples


def result_row(
    eval_set: str,
    task: str,
    prompt_format: str,
    shots: int,
    metric: str,
    estimate: tuple[float, float, float],
    n: int,
    **extra: Any,
) -> dict[str, Any]:
    """One row of the results JSON: a set's estimate = (value, ci_low, ci_high) over n items (set_value,
    mean_with_ci); extra keys (shots_overflow, n_overflow for ptft's eval sets) follow."""
    value, low, high = estimate
    return {"eval_set": eval_set, "task": task, "prompt_format": prompt_format, "shots": shots, "metric": metric,
            "value": value, "ci_low": low, "ci_high": high, "n": n, **extra}  # fmt: skip


def condition_rows(condition: Condition, samples: Sequence[Mapping[str, Any]], tokenizer) -> list[dict[str, Any]]:
    """The prediction rows of one condition's logged samples, with how each prompt fitted the budget: shots_used,
    overflow (its k-shot prompt did not fit; shots_overflow handled it), prompt_tokens and truncated (still over the
    budget: lm-eval cut it from the left). Logs a warning when prompts overflowed or were cut."""
    prompt_tokens = _prompt_tokens(tokenizer, [s["arguments"][0][0] for s in samples])
    task, budget = condition.task, condition.budget
    rows = []
    for sample, n_tokens in zip(samples, prompt_tokens, strict=True):
        row = _prediction_row(sample, condition.family, condition.scoring, condition.candidates, tokenizer)
        item = sample["doc"]["id"]
        row.update(
            eval_set=condition.eval_set,
            prompt_format=condition.prompt_format,
            shots=condition.shots,
            shots_used=task.shots_used[item],
            overflow=item in task.overflow,
            prompt_tokens=n_tokens,
            truncated=n_tokens > budget,
        )
        rows.append(row)
    head = f"{condition.label}-shot"
    n_overflow = sum(row["overflow"] for row in rows)
    if n_overflow:
        log.warning("%s: %d of %d prompts exceed the %d-token budget with all shots; shots_overflow %s applied",
                    head, n_overflow, len(rows), budget, condition.policy)  # fmt: skip
    n_truncated = sum(n > budget for n in prompt_tokens)
    if n_truncated:
        log.warning("%s: %d of %d prompts exceed the %d-token budget and were cut from the left",
                    head, n_truncated, len(rows), budget)  # fmt: skip
    return rows


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
        loglikelihoods = _loglikelihoods(sample)
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
        loglikelihoods = _loglikelihoods(sample)
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


def _loglikelihoods(sample: Mapping[str, Any]) -> list[float]:
    """The log-likelihood of each choice of a logged multiple-choice sample (lm-eval's (ll, is_greedy) pairs)."""
    return [float(ll) for ll, _is_greedy in sample["filtered_resps"]]


def _native_prediction_row(sample: Mapping[str, Any], metrics: Sequence[str] = ("acc",)) -> dict[str, Any]:
    """One scored item of an lm-eval task: `score` is its acc, and each other metric the task defines (e.g.
    acc_norm; BoolQ defines acc only, lm_eval/tasks/super_glue/boolq/default.yaml) is a key of its own."""
    loglikelihoods = _loglikelihoods(sample)
    row = {
        "doc_id": sample["doc"].get("id", sample["doc_id"]),
        "target": sample["target"],
        "prediction": int(np.argmax(loglikelihoods)),
        "score": float(sample["acc"]),
        "loglikelihoods": loglikelihoods,
    }
    row.update({metric: float(sample[metric]) for metric in metrics if metric != "acc"})
    return row


def write(
    out_json: Path,
    out_predictions: Path,
    scored: tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]],
    identity: Mapping[str, Any],
    record: Mapping[str, Any],
) -> None:
    """Write the prediction rows (JSON lines) and the results JSON: the model's identity, the result rows, the
    example prompts, lm-eval's version and the provenance record (evaluation_provenance); scored is score()'s."""
    results, predictions, example_prompts = scored
    lm_eval_version = importlib.metadata.version("lm_eval")
    write_jsonl(out_predictions, predictions)
    write_json(out_json, {**identity, "results": results, "example_prompts": example_prompts,
                          "lm_eval_version": lm_eval_version, "provenance": record})  # fmt: skip


def evaluation_provenance(
    *,
    settings: EvaluateSettings,
    planned: Plan,
    eval_sets: Mapping[str, Mapping[str, Any]],
    tokenizer,
    model_dir: Path,
    threads: int,
    dtype: str,
    backend: str,
    device: str,
    lora_eval: str,
) -> dict[str, Any]:
    """The results' provenance: the settings, seed, model folder, eval sets, the scoring protocol (ROUGE, TokenProb's
    candidate tokens, stop sequences) and how it ran (threads, dtype, backend, device, lora_eval for an adapter)."""
    scoring = planned.scoring
    return provenance(
        "evaluation",
        settings.record(),
        seed=settings.fewshot_seed,
        model_dir=str(model_dir),
        eval_sets={
            k: {"task": v["task"], "test": str(v["test"]), "train": str(v["train"]),
                "rouge_tokenizer": planned.set_scoring[k].rouge_tokenizer}
            for k, v in sorted(eval_sets.items())
        },  # fmt: skip
        rouge={"type": "rougeL", "measure": "fmeasure", "use_stemmer": scoring.rouge_stemmer},
        classification=scoring.classification,
        stop_sequences={
            name: list(scoring.stop(get_task(name)))
            for name in sorted({v["task"] for v in eval_sets.values()})
            if get_task(name).kind == "generation"
        },
        token_prob_candidates={
            name: [{"token_id": t, "token": tokenizer.convert_ids_to_tokens(t), "label": w} for t, w in c]
            for name, c in sorted(planned.candidates.items())
        },
        ci_level=CI_LEVEL,
        threads=threads,
        evaluation_dtype=dtype,  # evaluate.dtype resolved on the device that ran (auto: bf16 GPU, fp32 CPU)
        evaluation_backend=backend,
        device=device,
        # how a LoRA adapter was run (finetune.lora_eval); None for full weights
        lora_eval=lora_eval if (Path(model_dir) / "adapter_config.json").is_file() else None,
    )
