"""The paper's five findings, each a pure function of the tidy results table, as we define them.

Unless a caller says otherwise, every finding reads one prompt format ("default", the training format) and the
largest shots evaluated, except prompt sensitivity, which compares the formats. The paper's own definitions stand
beside them in ptft.analysis.paper.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.analysis.pairs import (
    INSTRUCTION_TASK,
    _mean_n,
    _number,
    _one_setting,
    _paired_with_base,
    _pairs,
    ratio_of_change,
)
from ptft.analysis.results import BASE, DEFAULT_FORMAT, NATIVE_FORMAT
from ptft.tasks import TASKS


STAGE_BASE = "base"
STAGE_FINETUNED = "fine-tuned"
CLASSIFICATION_TO_GENERATION = "classification \u2192 generation"
GENERATION_TO_CLASSIFICATION = "generation \u2192 classification"


def _mean_ratio(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = rows.assign(ratio=ratio_of_change(rows["value"], rows["base"]).to_numpy())
    out = (
        rows.groupby(by, sort=True)
        .agg(
            mean_ratio=("ratio", "mean"),
            n_pairs=("ratio", "count"),
            n_zero_base=("ratio", lambda r: int(r.isna().sum())),
            mean_base=("base", "mean"),
            mean_finetuned=("value", "mean"),
        )
        .reset_index()
    )
    return out


def prompt_sensitivity(df: pd.DataFrame, ft_sets: Mapping[str, str], shots: int | None = None) -> pd.DataFrame:
    """Finding 1 (paper Fig. 2/14): each checkpoint's score in every prompt format, and its spread.

    Base checkpoints are scored on every eval set; fine-tuned ones on their in-domain set (eval_set == ft_set),
    as in the paper. One row per (model, step, stage, ft_set, eval_set): the value of each format in a column
    of its own, `mean` over formats, `spread` = max - min over formats and `std` (population, ddof=0).
    lm-eval's own benchmark rows (prompt_format "native") have one format, hence no spread: they take no part
    (they used to enter with spread 0 and pull the base mean towards 0).
    """
    rows = _one_setting(df[df["prompt_format"] != NATIVE_FORMAT], None, shots, "prompt sensitivity")
    unknown = sorted(set(rows.loc[rows["ft_set"] != BASE, "ft_set"]) - set(ft_sets))
    if unknown:
        raise KeyError(f"ft_sets {unknown} are in the results but not in ft_sets (known: {sorted(ft_sets)})")
    rows = rows[(rows["ft_set"] == BASE) | (rows["eval_set"] == rows["ft_set"])]
    rows = rows.assign(stage=rows["ft_set"].map(lambda f: STAGE_BASE if f == BASE else STAGE_FINETUNED))
    keys = ["model", "step", "tokens", "stage", "ft_set", "eval_set", "task", "metric", "shots"]
    wide = rows.pivot_table(index=keys, columns="prompt_format", values="value", aggfunc="first")
    formats = list(wide.columns)
    values = wide[formats]
    out = wide.reset_index()
    out.columns.name = None
    out["n_formats"] = values.notna().sum(axis=1).to_numpy()
    out["mean"] = values.mean(axis=1).to_numpy()
    out["spread"] = (values.max(axis=1) - values.min(axis=1)).to_numpy()
    out["std"] = values.std(axis=1, ddof=0).to_numpy()
    out["_s"] = out["stage"].ne(STAGE_BASE)
    return (
        out.sort_values(["model", "step", "_s", "ft_set", "eval_set"], kind="mergesort")
        .drop(columns="_s")
        .reset_index(drop=True)
    )


def sensitivity_by_checkpoint(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """One sensitivity number per checkpoint and stage: the mean over eval sets of the spread across formats
    (and of the std), so "more pre-training reduces sensitivity" reads as a falling column."""
    out = (
        sensitivity.groupby(["model", "step", "tokens", "stage"], sort=True)
        .agg(spread=("spread", "mean"), std=("std", "mean"), n_eval_sets=("spread", "count"))
        .reset_index()
    )
    out["_s"] = out["stage"].ne(STAGE_BASE)
    return out.sort_values(["model", "_s", "step"], kind="mergesort").drop(columns="_s").reset_index(drop=True)


def out_of_domain_ratio(
    df: pd.DataFrame, ft_sets: Mapping[str, str], prompt_format: str = DEFAULT_FORMAT, shots: int | None = None
) -> pd.DataFrame:
    """Finding 2 (paper Fig. 4/5/11): what fine-tuning does to the other eval sets of its own task family.

    Per (model, step, task): the mean ratio of change (see `task_transfer`) over every ft_set of that task and
    every eval set of the same task that is not the ft_set. A negative mean ratio is forgetting of the domain.
    Pairs whose base is 0 have no ratio; they are counted in `n_zero_base` and left out of the mean.
    """
    rows = _paired_with_base(_one_setting(df, prompt_format, shots, "out-of-domain change"), ft_sets)
    rows = rows[(rows["task"] == rows["ft_task"]) & (rows["eval_set"] != rows["ft_set"])]
    return _mean_ratio(rows, ["model", "step", "tokens", "task"])


def _transfer_pairs(
    df: pd.DataFrame, ft_sets: Mapping[str, str], prompt_format: str, shots: int | None
) -> pd.DataFrame:
    rows = _paired_with_base(_one_setting(df, prompt_format, shots, "task transfer"), ft_sets)
    # Instruction tuning (Tulu) is neither direction of the paper's transfer finding: it trains on many tasks at once
    # and the paper reads it off lm-eval's own benchmarks instead.
    rows = rows[rows["ft_task"] != INSTRUCTION_TASK]
    kind = {name: t.kind for name, t in TASKS.items()}
    unknown = sorted((set(rows["task"]) | set(rows["ft_task"])) - set(kind))
    if unknown:
        raise KeyError(f"task transfer: task families {unknown} are not in ptft.tasks.TASKS (known: {sorted(kind)})")
    train_kind, eval_kind = rows["ft_task"].map(kind), rows["task"].map(kind)
    rows = rows[train_kind != eval_kind].copy()
    rows["direction"] = [
        CLASSIFICATION_TO_GENERATION if k == "classification" else GENERATION_TO_CLASSIFICATION
        for k in train_kind[train_kind != eval_kind]
    ]
    rows["ratio"] = ratio_of_change(rows["value"], rows["base"]).to_numpy()
    return rows


def task_transfer(
    df: pd.DataFrame, ft_sets: Mapping[str, str], prompt_format: str = DEFAULT_FORMAT, shots: int | None = None
) -> pd.DataFrame:
    """Finding 3 (paper Fig. 12/13, Eq. 1): the mean ratio of change across task kinds.

    For models fine-tuned on a classification set and scored on the generation eval sets (and the reverse):
    RC = (1/N) * sum_i (FT_i - base_i) / base_i over the N (ft_set, eval_set) pairs of a checkpoint, where FT_i
    and base_i are the fine-tuned and base model of the same checkpoint on eval set i. Pairs with base_i == 0
    are left out (counted in `n_zero_base`). One row per (model, step, direction).
    """
    rows = _transfer_pairs(df, ft_sets, prompt_format, shots)
    rows = rows.drop(columns="ratio")
    return _mean_ratio(rows, ["model", "step", "tokens", "direction"])


def sign_flip_test(x: Iterable[float], resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(x) == 0: the share of sign assignments whose mean is
    at least as far from 0 as the observed one. Exact (all 2^n assignments) for n <= 16, otherwise `resamples`
    random ones with `seed`, counting the observed one ((k + 1) / (resamples + 1))."""
    import numpy as np

    x = np.asarray([v for v in x if math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan
    observed = abs(x.mean())
    tol = 1e-12 * max(1.0, observed)
    if n <= 16:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ x / n) >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(resamples, n))
    return float((np.sum(np.abs(signs @ x / n) >= observed - tol) + 1) / (resamples + 1))


MIN_SIGN_FLIP_N = 6  # the smallest two-sided sign-flip p with n values is 2 / 2^n: 0.0625 at n = 5, 0.03125 at 6


def sign_flip_needs(n: int) -> str:
    """'' when `n` values can give a sign-flip p below 0.05, else what the test needs: with fewer values its p can
    never fall below 0.05 (and with one value it is always 1, so the tables print none)."""
    if n >= MIN_SIGN_FLIP_N:
        return ""
    return f"needs at least {MIN_SIGN_FLIP_N} values to reach p < 0.05 (has {n})"


def task_transfer_test(
    df: pd.DataFrame,
    ft_sets: Mapping[str, str],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
    resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Is the transfer ratio of change different from 0? Per (model, direction), over all its (checkpoint,
    ft_set, eval_set) ratios: their mean, count and the sign-flip permutation p-value (`sign_flip_test`); with
    fewer than MIN_SIGN_FLIP_N ratios `needs` says p cannot fall below 0.05, and with one p is NaN (it used to
    print p = 1)."""
    rows = _transfer_pairs(df, ft_sets, prompt_format, shots)
    out = []
    for (model, direction), g in rows.groupby(["model", "direction"], sort=True):
        r = g["ratio"].dropna()
        needs = sign_flip_needs(len(r))
        out.append(
            {"model": model, "direction": direction, "mean_ratio": float(r.mean()) if len(r) else math.nan,
             "n_pairs": int(len(r)), "n_zero_base": int(g["ratio"].isna().sum()),
             "n_negative": int((r < 0).sum()), "p_value": sign_flip_test(r, resamples, seed) if len(r) > 1 else math.nan,
             "needs": needs}
        )  # fmt: skip
    return pd.DataFrame(
        out, columns=["model", "direction", "mean_ratio", "n_pairs", "n_zero_base", "n_negative", "p_value", "needs"]
    )


def chance_level(task: str) -> float:
    """The score of guessing: 1 / number of labels for a classification family, 0 for generation (ROUGE)."""
    family = TASKS.get(task)
    if family is None:
        raise KeyError(f"task {task!r} is not in ptft.tasks.TASKS (known: {sorted(TASKS)})")
    return 1.0 / len(family.label_words) if family.kind == "classification" else 0.0


# The group of an eval set whose model has one checkpoint: learning during pre-training needs a first and a last one.
SINGLE_CHECKPOINT_GROUP = "undetermined (needs several checkpoints)"


def learned_in_pretraining(
    df: pd.DataFrame,
    min_gain: float = 0.05,
    min_above_chance: float = 0.0,
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
) -> pd.DataFrame:
    """Finding 4 (paper Fig. 6): which eval sets the base model learns during pre-training.

    An eval set is "learned" when its base value rises by at least `min_gain` from the first to the last
    checkpoint AND the last value exceeds chance (`chance_level`) by more than `min_above_chance`;
    otherwise "not learned"; with a single checkpoint, SINGLE_CHECKPOINT_GROUP. One row per (model, eval_set).
    """
    rows = _one_setting(df[df["ft_set"] == BASE], prompt_format, shots, "learned in pre-training")
    out = []
    for (model, eval_set), g in rows.groupby(["model", "eval_set"], sort=True):
        g = g.sort_values("step", kind="mergesort")
        first, last = g.iloc[0], g.iloc[-1]
        change = float(last["value"] - first["value"])
        chance = chance_level(str(first["task"]))
        learned = change >= min_gain - 1e-12 and float(last["value"]) > chance + min_above_chance
        group = "learned" if learned else "not learned"
        if g["step"].nunique() < 2:  # a single-checkpoint study (e.g. Llama-3-8B's final model) has no change to read
            group = SINGLE_CHECKPOINT_GROUP
        out.append(
            {"model": model, "eval_set": eval_set, "task": first["task"], "metric": first["metric"],
             "first_step": int(first["step"]), "last_step": int(last["step"]), "first": float(first["value"]),
             "last": float(last["value"]), "change": change, "chance": chance,
             "group": group}
        )  # fmt: skip
    return pd.DataFrame(out)


def findings_summary(
    sensitivity: pd.DataFrame,
    out_of_domain: pd.DataFrame,
    transfer: pd.DataFrame,
    transfer_test: pd.DataFrame,
    groups: pd.DataFrame,
    gain: pd.DataFrame,
) -> dict[str, Any]:
    """The headline number of each finding per model, as plain JSON (the DVC metrics file): sensitivity per
    stage and step, out-of-domain mean ratio per task and step, transfer per direction (mean ratio, p-value,
    per step), each eval set's group, and the mean in-domain gain per group and step."""

    def by_step(frame: pd.DataFrame, column: str) -> dict[str, Any]:
        return {str(int(s)): _number(v) for s, v in zip(frame["step"], frame[column])}

    models: dict[str, Any] = {}
    names = sorted(set(sensitivity["model"]) | set(groups["model"]) | set(gain["model"]))
    for model in names:
        sens = sensitivity[sensitivity["model"] == model]
        ood = out_of_domain[out_of_domain["model"] == model]
        tr = transfer[transfer["model"] == model]
        test = transfer_test[transfer_test["model"] == model]
        grp = groups[groups["model"] == model]
        means = gain[(gain["model"] == model) & gain["ft_set"].str.startswith("mean (")]
        models[str(model)] = {
            "prompt_sensitivity_spread": {
                str(stage): by_step(g.sort_values("step"), "spread") for stage, g in sens.groupby("stage", sort=True)
            },
            "out_of_domain_mean_ratio": {
                str(task): by_step(g.sort_values("step"), "mean_ratio") for task, g in ood.groupby("task", sort=True)
            },
            "task_transfer": {
                str(row["direction"]): {
                    "mean_ratio": _number(row["mean_ratio"]),
                    "p_value": _number(row["p_value"]),
                    "n_pairs": int(row["n_pairs"]),
                    "by_step": by_step(tr[tr["direction"] == row["direction"]].sort_values("step"), "mean_ratio"),
                }
                for _, row in test.iterrows()
            },
            "learned_in_pretraining": {str(e): str(g) for e, g in zip(grp["eval_set"], grp["group"])},
            "in_domain_gain_by_group": {
                str(g): by_step(rows.sort_values("step"), "gain") for g, rows in means.groupby("group", sort=True)
            },
        }
    return {"models": models}


def format_gaps(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    shots: int | None = None,
    reference: str = DEFAULT_FORMAT,
) -> pd.DataFrame:
    """Finding 1, as two separate gaps (ours; the paper shows per-format curves, Figs. 2 and 14, no statistic):
    per (model, step, stage, metric, prompt_format), the mean over in-domain eval sets of reference - format,
    i.e. the Default - Instruct gap and the Default - IO gap apart. Base and fine-tuned models are averaged over
    the same (ft_set, eval_set) pairs (each training set's in-domain sets), accuracy and ROUGE-L never together.
    Columns: model, step, tokens, stage, metric, prompt_format, gap, n_pairs.
    """
    rows = _one_setting(df[df["prompt_format"] != NATIVE_FORMAT], None, shots, "format gaps")
    wanted = [(f, e) for f, d in design.items() for e in d["in_domain"]]
    formats = sorted(set(rows["prompt_format"]) - {reference})
    out = []
    for other in formats:
        pairs = _pairs(rows, [(f, e, fmt) for f, e in wanted for fmt in (reference, other)])
        wide = pairs.pivot_table(
            index=["model", "step", "tokens", "ft_set", "eval_set", "metric"], columns="prompt_format",
            values=["base", "finetuned"], aggfunc="first",
        )  # fmt: skip
        if (
            wide.empty
            or (reference not in wide.columns.get_level_values(1))
            or (other not in wide.columns.get_level_values(1))
        ):
            continue
        for stage, col in ((STAGE_BASE, "base"), (STAGE_FINETUNED, "finetuned")):
            gap = (wide[(col, reference)] - wide[(col, other)]).dropna().rename("gap").reset_index()
            for (model, step, tokens, metric), g in gap.groupby(["model", "step", "tokens", "metric"], sort=True):
                mean, n = _mean_n(g["gap"])
                out.append(
                    {"model": model, "step": int(step), "tokens": int(tokens), "stage": stage, "metric": metric,
                     "prompt_format": other, "gap": mean, "n_pairs": n}
                )  # fmt: skip
    cols = ["model", "step", "tokens", "stage", "metric", "prompt_format", "gap", "n_pairs"]
    out = pd.DataFrame(out, columns=cols)
    out["_s"] = out["stage"].ne(STAGE_BASE)
    return (
        out.sort_values(["model", "metric", "prompt_format", "_s", "step"], kind="mergesort")
        .drop(columns="_s")
        .reset_index(drop=True)
    )
