"""Rows of one setting and fine-tuned rows beside their base: the selection every gain and finding starts from,
and the small numeric helpers they share (ratio of change, JSON numbers, means with their count)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.analysis.results import BASE, NATIVE_FORMAT


# The task family of an instruction set (Tulu): scored by lm-eval's own tasks (prompt_format native), not by a set
# of its family, and no part of the paper's transfer finding.
INSTRUCTION_TASK = "instruction"
PAIR_COLUMNS = ["model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "metric", "base", "finetuned"]


def _one_setting(df: pd.DataFrame, prompt_format: str | None, shots: int | None, what: str) -> pd.DataFrame:
    rows = df if prompt_format is None else df[df["prompt_format"] == prompt_format]
    if rows.empty:
        raise ValueError(
            f"{what}: no results in prompt_format {prompt_format!r} (have {sorted(set(df['prompt_format']))})"
        )
    shots = int(rows["shots"].max()) if shots is None else shots
    rows = rows[rows["shots"] == shots]
    if rows.empty:
        raise ValueError(f"{what}: no results with shots={shots} (have {sorted(set(df['shots']))})")
    return rows


def _join_base(tuned: pd.DataFrame, df: pd.DataFrame, missing: str = "raise") -> pd.DataFrame:
    """`tuned` rows with a `base` column: the base model's value at the same checkpoint, eval set, format and shots.

    A fine-tuned row with no base result raises ValueError naming the first such row and their count
    (`missing="raise"`), or is left out (`missing="skip"`): the result's attrs["missing_base"] then lists every
    left-out row as a dict (ft_set, model, step, eval_set, prompt_format, shots, metric) and a warning says how many.
    """
    keys = ["model", "step", "eval_set", "prompt_format", "shots", "metric"]
    base = df[df["ft_set"] == BASE][keys + ["value"]].rename(columns={"value": "base"})
    merged = tuned.merge(base, on=keys, how="left", validate="many_to_one")
    absent = merged[merged["base"].isna()]
    if absent.empty:
        merged.attrs["missing_base"] = []
        return merged
    m = absent.iloc[0]
    what = (
        f"no base result to compare ft_set {m['ft_set']!r} against: model={m['model']!r} step={m['step']} "
        f"eval_set={m['eval_set']!r} prompt_format={m['prompt_format']!r} shots={m['shots']} ({len(absent)} such rows)"
    )
    if missing == "raise":
        raise ValueError(what)
    warnings.warn(f"{what}: left out", stacklevel=3)
    out = merged.dropna(subset=["base"]).reset_index(drop=True)
    out.attrs["missing_base"] = absent[["ft_set"] + keys].to_dict("records")
    return out


def _check_known(tuned: pd.DataFrame, ft_sets: Mapping[str, str]) -> None:
    """Raise KeyError naming the ft_sets of fine-tuned rows that `ft_sets` (name -> task family) does not know."""
    unknown = sorted(set(tuned["ft_set"]) - set(ft_sets))
    if unknown:
        raise KeyError(
            f"ft_sets {unknown} are in the results but have no task family in ft_sets (known: {sorted(ft_sets)})"
        )


def _paired_with_base(df: pd.DataFrame, ft_sets: Mapping[str, str]) -> pd.DataFrame:
    """Every fine-tuned row (any eval set) beside the base value of its checkpoint: columns of the table plus
    `ft_task` (the ft_set's task family) and `base`; raises naming the row when a base result is missing."""
    tuned = df[df["ft_set"] != BASE]
    _check_known(tuned, ft_sets)
    merged = _join_base(tuned, df)
    merged["ft_task"] = merged["ft_set"].map(dict(ft_sets))
    return merged


def _pairs(
    df: pd.DataFrame, wanted: Iterable[tuple[str, str, str]], metric: str | None = None, required: str | None = None
) -> pd.DataFrame:
    """The (ft_set, eval_set, prompt_format) pairs of `wanted` at every checkpoint where both the fine-tuned and the
    base model were scored: PAIR_COLUMNS. `metric` picks one metric where a row set has several (native rows).

    `required` (the finding's name, for the message) makes the design binding: a wanted pair with no fine-tuned row,
    or whose fine-tuned rows have no base row at any checkpoint, raises ValueError naming every such pair, instead of
    vanishing in the inner join (a design eval set named differently in the results used to drop out silently).
    Checkpoints where only one side was scored are skipped, as the authors' notebook does (cell 14 keeps a pair only
    with exactly one row on each side); their number is in the result's attrs["n_unpaired"].
    """
    wanted = pd.DataFrame(list(wanted), columns=["ft_set", "eval_set", "prompt_format"]).drop_duplicates()
    rows = df if metric is None else df[(df["prompt_format"] != NATIVE_FORMAT) | (df["metric"] == metric)]
    tuned = rows[rows["ft_set"] != BASE].merge(wanted, on=["ft_set", "eval_set", "prompt_format"])
    keys = ["model", "step", "eval_set", "prompt_format", "shots", "metric"]
    base = rows[rows["ft_set"] == BASE][keys + ["value"]].rename(columns={"value": "base"})
    joined = tuned.merge(base, on=keys, how="left", validate="many_to_one").rename(columns={"value": "finetuned"})
    if required is not None:
        found = joined.dropna(subset=["base"])[["ft_set", "eval_set", "prompt_format"]].drop_duplicates()
        absent = wanted.merge(found, how="left", indicator=True).query("_merge == 'left_only'")
        if not absent.empty:
            names = ", ".join(f"({r.ft_set}, {r.eval_set}, {r.prompt_format})" for r in absent.itertuples())
            raise ValueError(
                f"{required}: {len(absent)} pair(s) of the study design have no fine-tuned score beside a base score "
                f"in the results: {names} (ft_set, eval_set, prompt_format). Have eval_sets "
                f"{sorted(set(df['eval_set']))} and ft_sets {sorted(set(df['ft_set']))}: is an eval set named "
                f"differently in the results than in the design?"
            )
    out = joined.dropna(subset=["base"])
    out = (
        out[PAIR_COLUMNS].sort_values(["model", "step", "ft_set", "eval_set"], kind="mergesort").reset_index(drop=True)
    )
    out.attrs["n_unpaired"] = int(joined["base"].isna().sum())
    return out


def ratio_of_change(finetuned: Any, base: Any) -> Any:
    """(FT - base) / base, elementwise; NaN where base == 0 (a change from nothing has no ratio)."""
    ft = pd.Series(finetuned, dtype="float64") if not isinstance(finetuned, pd.Series) else finetuned.astype("float64")
    b = pd.Series(base, dtype="float64") if not isinstance(base, pd.Series) else base.astype("float64")
    return (ft - b) / b.where(b != 0)


def _number(x: Any) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _mean_n(values: pd.Series) -> tuple[float, int]:
    v = values.to_numpy(dtype=float)
    return (float(v.mean()) if len(v) else math.nan), int(len(v))
