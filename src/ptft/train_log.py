"""The fine-tuning train log, train_log.jsonl: one JSON object per optimizer step of a fine-tune.

Keys: optimizer_step (the fine-tune's optimizer step, from 1), epoch (from 1), loss, lr, grad_norm (null when not
computed), step_tokens (the tokens trained in that optimizer step, over all processes), tokens_per_s and mfu (null
when unknown). Logs written before these names call the first and the sixth `step` and `tokens`, which everywhere
else in ptft mean a pre-training checkpoint's step and its tokens seen; `read_train_log` and `log_row` read both, so
finished studies' logs still read. A pre-training checkpoint's own train_log.jsonl (ptft.checkpoints) has the same
file name and keeps `step`: there it is the pre-training step.

No torch, no pandas: the fine-tuning job, resumption and the analysis all read the log through here.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ptft.provenance import read_jsonl

TRAIN_LOG_FILE = "train_log.jsonl"
OPTIMIZER_STEP = "optimizer_step"
STEP_TOKENS = "step_tokens"
_FORMER_NAMES = {OPTIMIZER_STEP: "step", STEP_TOKENS: "tokens"}  # a key -> its name in logs written before


def log_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One train log row under today's keys (a new dict): a row written before the rename has its `step` and `tokens`
    renamed to optimizer_step and step_tokens; a current row is returned unchanged."""
    out = dict(row)
    for key, former in _FORMER_NAMES.items():
        if key not in out and former in out:
            out[key] = out.pop(former)
    return out


def read_train_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of a fine-tuning train_log.jsonl under today's keys (`log_row`), in file order."""
    return [log_row(r) for r in read_jsonl(path)]
