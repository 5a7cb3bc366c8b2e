"""One evaluate job: load the model, plan its conditions, run lm-eval once, score, write (evaluate)."""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ptft import gpu_slots
from ptft.evaluate.models import attention_implementation, build_lm, compute_device, device_description, resolve_dtype
from ptft.evaluate.native import native_tasks
from ptft.evaluate.plan import Plan, plan
from ptft.evaluate.rows import evaluation_provenance, score, write
from ptft.evaluate.scoring import Scoring
from ptft.provenance import read_provenance
from ptft.settings import EvaluateSettings


@dataclass(frozen=True)
class LoadedModel:
    """What load() returns: the lm-eval model that scores every request, its tokenizer, the dtype it runs in
    (resolve_dtype) and the backend (evaluate.backend)."""

    lm: Any
    tokenizer: Any
    dtype: str
    backend: str


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

    eval_sets: eval set name -> its spec (task, test and train files, rouge_tokenizer; rules/common.smk
    get_eval_sets). eval_cfg: the job's settings, an EvaluateSettings or the evaluate section read by
    EvaluateSettings.from_config (keys left out take its defaults; ConfigError names an unknown key); they are printed
    at the top of the log and saved in the results' provenance. A LoRA model is evaluated through its adapter or
    merged (lora_eval), on base_dir (the pre-training checkpoint it was tuned from) or its recorded base checkpoint.
    The names eval_cfg and base_dir are the keywords scripts/evaluate.py passes (editing that script would rerun
    every evaluate job); inside they are `settings` and `checkpoint_dir`.

    On a workstation with GPUs the job first takes a GPU slot (ptft.gpu_slots.hold) and runs on that GPU only.
    One model load and one lm-eval run: all requests of a kind are batched together across eval sets. Steps: load
    (model), plan (conditions, prompt budgets: they need the model's tokenizer and context), run, score, write.
    """
    # On a workstation with GPUs the job holds a GPU of its own before CUDA starts (a no-op on CPU and under SLURM)
    gpu_slots.hold(1)
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer must not add threads beyond `threads`
    torch.set_num_threads(threads)
    settings = EvaluateSettings.from_config(eval_cfg)
    print(f"evaluate settings:\n{settings.describe()}", file=sys.stderr, flush=True)  # the top of the job's log
    model_dir = Path(model_dir)
    identity = _model_identity(model_dir)
    _set_seeds(settings.fewshot_seed)
    scoring = Scoring.from_config(settings)
    model = load(model_dir, settings, lora_eval, checkpoint_dir=base_dir)
    planned = plan(eval_sets, settings, scoring, model.lm.max_length, model.tokenizer)
    output, native = run(planned, eval_sets, settings, model.lm)
    sharing = _log_prefix_stats(model.lm)
    scored = score(planned, native, output, settings, model.tokenizer)
    record = evaluation_provenance(settings=settings, planned=planned, eval_sets=eval_sets, tokenizer=model.tokenizer,
                                   model_dir=model_dir, threads=threads, dtype=model.dtype, backend=model.backend,
                                   device=compute_device(), lora_eval=lora_eval)  # fmt: skip
    record = {**record, "attention_implementation": attention_implementation(model.lm)}
    if sharing:
        record = {**record, "shared_prefix": sharing}
    write(out_json, out_predictions, scored, identity, record)


def _log_prefix_stats(lm) -> dict[str, int]:
    """The shared-prefix counts of the run (ptft.evaluate.prefix, SharedPrefixMixin), printed in the job's log and
    returned for the results' provenance; {} when the model shares nothing (vllm, evaluate.share_prefix false)."""
    stats = dict(sorted(getattr(lm, "prefix_stats", {}).items()))
    if stats:
        print(f"shared prefixes: {stats}", file=sys.stderr, flush=True)
    return stats


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


def _set_seeds(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load(model_dir: Path, settings: EvaluateSettings, lora_eval: str, checkpoint_dir: Path | None) -> LoadedModel:
    """The model in model_dir as settings.backend runs it, in settings.dtype resolved for this device (build_lm)."""
    backend = settings.backend
    dtype = resolve_dtype(settings.dtype, compute_device())
    lm, tokenizer = build_lm(
        backend,
        model_dir=model_dir,
        dtype=dtype,
        batch_size=settings.scheduling.batch_size,
        seed=settings.fewshot_seed,
        lora_eval=lora_eval,
        checkpoint_dir=checkpoint_dir,
        share_prefix=settings.scheduling.share_prefix,
        decode_cache=settings.scheduling.decode_cache,
    )
    print(f"scoring {model_dir} with {backend} in {dtype} on {device_description()}, attention "
          f"{attention_implementation(lm)}", file=sys.stderr, flush=True)  # fmt: skip
    return LoadedModel(lm, tokenizer, dtype, backend)


def run(
    planned: Plan, eval_sets: Mapping[str, Mapping[str, Any]], settings: EvaluateSettings, lm
) -> tuple[dict[str, Any], dict[str, str]]:
    """One lm-eval run over every planned condition and every task of evaluate.lm_eval_tasks (native_tasks):
    (simple_evaluate's output with its logged samples, lm-eval task name -> the lm-eval task that scores it)."""
    import lm_eval

    seed = settings.fewshot_seed
    natives, native, task_manager = native_tasks(settings, eval_sets, seed)
    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=[condition.task for condition in planned.conditions.values()] + natives,
        num_fewshot=None,  # each config carries its own shot count
        limit=settings.limit,
        bootstrap_iters=0,  # our own seeded bootstrap (ptft.evaluate.scoring)
        log_samples=True,
        task_manager=task_manager,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    return output, native
