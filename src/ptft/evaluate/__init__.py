"""Evaluate one model (a base checkpoint or a fine-tuned one) on every eval set x prompt format x shot count.

Prompts, label words, stop sequences and delimiters come from `ptft.tasks`; lm-evaluation-harness builds the
few-shot contexts and runs the model; scoring and bootstrap intervals are small pure functions (scoring).
Classification is scored one of two ways (evaluate.classification):
- token_prob, the paper's TokenProb (Sun & Dredze, App. C.1; the authors' eval/utils.py get_next_word_predictions,
  lines 108-143, called from eval/predict_classification.py lines 233-252): one forward pass over the prompt, the
  next-token distribution, candidate tokens = the subtokens of every label word with and without a leading space;
  the label of the most probable candidate token wins. Run through lm-eval as one-token log-likelihood requests,
  which lm-eval's HFLM groups by context and answers from one forward pass (its Collator, group_by="contexts").
- loglikelihood: lm-eval's log-likelihood of each whole label word (one continuation per label).
Generation is greedy, scored with ROUGE-L (evaluate.rouge_stemmer; ptft.metrics.rouge_l) after stopping at EOS,
max_new_tokens or the task's stop strings (evaluate.stop_sequences).

Modules, in the order one job uses them (job.evaluate: load -> plan -> run -> score -> write):
- models: dtype, device, the transformers model or LoRA adapter, lm-eval's HFLM/VLLM with TokenProb's continuations
- plan: the conditions (eval set x format x shots), each with its scoring, shots_overflow policy and prompt budget
- task_configs: an eval set in memory and its lm-eval task configs; overflow: evaluate.shots_overflow (fitting_task)
- native: lm-eval's own tasks (evaluate.lm_eval_tasks) and local stand-ins
- scoring: the Scoring protocol and the pure scoring functions; rows: prediction and result rows, the written files
"""

from ptft.evaluate.job import evaluate
from ptft.evaluate.models import (
    BACKENDS,
    EVAL_DTYPES,
    build_lm,
    resolve_dtype,
    token_continuation,
    token_prob_lm,
    vllm_model_args,
)
from ptft.evaluate.native import (
    NATIVE_FORMAT,
    apply_native_settings,
    check_native_tasks,
    standin_config,
    standin_records,
)
from ptft.evaluate.overflow import SHOTS_OVERFLOW_POLICIES, ShotsOverflowError, fitting_task, shots_overflow_policy
from ptft.evaluate.scoring import (
    CLASSIFICATION_METHODS,
    Scoring,
    bootstrap_ci,
    candidate_tokens,
    choose_label,
    choose_token,
    item_score,
    set_value,
)
from ptft.evaluate.task_configs import load_eval_set, task_config

__all__ = [
    "BACKENDS",
    "CLASSIFICATION_METHODS",
    "EVAL_DTYPES",
    "NATIVE_FORMAT",
    "SHOTS_OVERFLOW_POLICIES",
    "Scoring",
    "ShotsOverflowError",
    "apply_native_settings",
    "bootstrap_ci",
    "build_lm",
    "candidate_tokens",
    "check_native_tasks",
    "choose_label",
    "choose_token",
    "evaluate",
    "fitting_task",
    "item_score",
    "load_eval_set",
    "resolve_dtype",
    "set_value",
    "shots_overflow_policy",
    "standin_config",
    "standin_records",
    "task_config",
    "token_continuation",
    "token_prob_lm",
    "vllm_model_args",
]
