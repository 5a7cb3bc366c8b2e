"""Preflight: before a study spends a GPU-hour, check against the hub everything it will touch, without
downloading weights or whole data sets, and print one table of what is ok and what to fix.

    python -m ptft.preflight --configfile configs/paper-olmo1b.yaml [--json preflight.json]
    make preflight CONFIG=configs/paper-olmo1b.yaml

Checked: every hub checkpoint resolves to a branch and commit (ptft.hub's resolution, snap rules, selection rules and
the revisions lock); every hub data set, config and split exists (ptft.hubdata's pinning and its errors, a loading-
script repo included); every configured field names a real column; every raw label of a sample of rows is mapped by
`labels` (or is a number for `label_threshold`), as is every name of a ClassLabel column; every lm-eval task of
`evaluate.lm_eval_tasks` is known to the harness and its data set and splits exist, and none shares a name with an
eval set; each model's tokenizer loads (tokenizer and config files only); and the longest k-shot prompt of each eval
set on the sample, rendered with ptft.tasks's templates in every configured prompt format, plus its longest answer,
fits the model's context. The exit code is 1 when any check finds a problem.

Modules: rows (the table's rows), models, data_sets, lmeval and prompts (the checks), driver (all of them, in threads;
the table), __main__ (the command line).
"""

from ptft.preflight.data_sets import PARQUET_CONVERSION, SAMPLE_ROWS, DatasetFacts, check_dataset
from ptft.preflight.driver import (
    PROJECT_DIR,
    THREADS,
    check_configfile,
    format_table,
    hub_unreachable,
    run_checks,
    run_in_subprocess,
)
from ptft.preflight.lmeval import FILE_BUILDERS, check_lm_eval_task, lm_eval_task_config, name_clash_rows, task_manager
from ptft.preflight.models import ModelFacts, check_model, model_context
from ptft.preflight.prompts import answer_tokens, context_rows, longest_prompt, stop_rows
from ptft.preflight.rows import OK, PROBLEM, Row, ok, problem

__all__ = [
    "FILE_BUILDERS", "OK", "PARQUET_CONVERSION", "PROBLEM", "PROJECT_DIR", "SAMPLE_ROWS", "THREADS", "DatasetFacts",
    "ModelFacts", "Row", "answer_tokens", "check_configfile", "check_dataset", "check_lm_eval_task", "check_model",
    "context_rows", "stop_rows", "format_table", "hub_unreachable", "lm_eval_task_config", "longest_prompt", "model_context",
    "name_clash_rows", "ok", "problem", "run_checks", "run_in_subprocess", "task_manager",
]  # fmt: skip
