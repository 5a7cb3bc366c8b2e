"""Fine-tuning gains: fine-tuned minus base per checkpoint (`finetune_gain`, `gain_table`), the base models'
curves along pre-training, and the study's key numbers (`summary`)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.analysis.pairs import INSTRUCTION_TASK, _check_known, _join_base, _number, _one_setting, _paired_with_base
from ptft.analysis.results import BASE, COLUMNS, DEFAULT_FORMAT, sort_results
from ptft.tasks import TASKS


GAIN_COLUMNS = [
    "model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "shots", "metric",
    "base", "finetuned", "gain", "in_domain",
]  # fmt: skip


def finetune_gain(df: pd.DataFrame, ft_sets: Mapping[str, str]) -> pd.DataFrame:
    """Fine-tuned minus base, per checkpoint, for every eval_set of the ft_set's own task family.

    `ft_sets` maps each ft_set name to its task family. One row per (model, step, ft_set, eval_set,
    prompt_format, shots, metric); `in_domain` is True where the eval_set is the ft_set itself.
    A fine-tuned row whose base model was not scored the same way (the authors' tables lack XL-Sum IO at main) is
    left out with a warning that counts and names it; attrs["missing_base"] lists every such row.
    Raises KeyError naming an ft_set with no task family, ValueError naming one whose family has no eval set.
    """
    tuned = df[df["ft_set"] != BASE]
    _check_known(tuned, ft_sets)
    tasks = set(df["task"])
    for ft_set, family in ft_sets.items():
        # An instruction set (Tulu) is scored by lm-eval's own tasks (prompt_format native), not by a set of its family.
        if ft_set in set(tuned["ft_set"]) and family not in tasks and family != INSTRUCTION_TASK:
            raise ValueError(
                f"ft_set {ft_set!r} has task family {family!r}, but no eval_set in the results has that task "
                f"(tasks present: {sorted(tasks)})"
            )
    family = tuned["ft_set"].map(dict(ft_sets))
    tuned = tuned[tuned["task"] == family]
    joined = _join_base(tuned, df, missing="skip")
    out = joined.rename(columns={"value": "finetuned"})
    out["gain"] = out["finetuned"] - out["base"]
    out["in_domain"] = out["eval_set"] == out["ft_set"]
    out = sort_results(out[GAIN_COLUMNS].astype({"in_domain": "bool"}))
    out.attrs["missing_base"] = joined.attrs["missing_base"]
    return out


def base_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Base-model rows only (every eval_set, format and shots), ordered along pre-training."""
    base = df[df["ft_set"] == BASE]
    order = ["model", "task", "eval_set", "prompt_format", "shots", "metric", "step"]
    return base.sort_values(order, kind="mergesort").reset_index(drop=True)[COLUMNS]


def task_order(tasks: Iterable[str]) -> list[str]:
    """Task families in the order tasks.py defines them, any others after, alphabetically."""
    known = list(TASKS)
    return sorted(set(tasks), key=lambda t: (known.index(t) if t in known else len(known), t))


def summary(
    df: pd.DataFrame, ft_sets: Mapping[str, str], prompt_format: str = DEFAULT_FORMAT, shots: int | None = None
) -> dict[str, Any]:
    """The study's key numbers as plain JSON types, per model, in one prompt format and one shots setting.

    For each eval_set: the base value at the first and last checkpoint and its change. For each step:
    the mean in-domain gain over ft_sets, and each ft_set's own. `shots` defaults to the largest evaluated.
    """
    rows = df[df["prompt_format"] == prompt_format]
    if rows.empty:
        raise ValueError(
            f"summary: no results in prompt_format {prompt_format!r} (have {sorted(set(df['prompt_format']))})"
        )
    if shots is None:
        shots = int(rows["shots"].max())
    rows = rows[rows["shots"] == shots]
    if rows.empty:
        raise ValueError(f"summary: no {prompt_format!r} results with shots={shots} (have {sorted(set(df['shots']))})")
    gain = finetune_gain(rows, ft_sets)
    in_domain = gain[gain["in_domain"]]

    models: dict[str, Any] = {}
    for model, mrows in rows.groupby("model", sort=True):
        base = mrows[mrows["ft_set"] == BASE].sort_values("step", kind="mergesort")
        per_eval: dict[str, Any] = {}
        for eval_set, erows in base.groupby("eval_set", sort=True):
            first, last = erows.iloc[0], erows.iloc[-1]
            per_eval[str(eval_set)] = {
                "task": str(first["task"]),
                "metric": str(first["metric"]),
                "first_step": int(first["step"]),
                "last_step": int(last["step"]),
                "first": _number(first["value"]),
                "last": _number(last["value"]),
                "change": _number(last["value"] - first["value"]),
            }
        mgain = in_domain[in_domain["model"] == model]
        mean_gain = {str(int(s)): _number(v) for s, v in mgain.groupby("step", sort=True)["gain"].mean().items()}
        by_ft_set = {
            str(ft): {str(int(s)): _number(v) for s, v in zip(g["step"], g["gain"])}
            for ft, g in mgain.sort_values(["ft_set", "step"]).groupby("ft_set", sort=True)
        }
        models[str(model)] = {
            "steps": sorted(int(s) for s in set(mrows["step"])),
            "base": per_eval,
            "in_domain_gain": mean_gain,
            "in_domain_gain_by_ft_set": by_ft_set,
        }
    return {"prompt_format": prompt_format, "shots": int(shots), "models": models}


def gain_table(
    df: pd.DataFrame,
    ft_sets: Mapping[str, str],
    groups: pd.DataFrame | None = None,
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
    boot: Any = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Finding 5 (paper Table 6, Fig. 7-10): in-domain gain (fine-tuned - base) per checkpoint and ft_set.

    CI, with `boot` (a `ptft.paired.ItemBootstrap` over the evaluations' per-item scores): the paired bootstrap
    interval at `level`; both models are scored on the same items, so the per-item difference is resampled.
    Without `boot` (results with per-cell intervals only, no item scores): the conservative
    [FT_low - base_high, FT_high - base_low], which covers the true gain whenever both intervals cover their
    values but is as wide as both together. With `groups` (`learned_in_pretraining` or
    `ptft.verdicts.learned_by_evidence`) each row carries its eval set's group, and one row per (checkpoint, group)
    is added with ft_set "mean (<group>)": the mean gain (its interval by the same bootstrap; without `boot` the
    mean of the interval ends). CI is NaN where it is undefined.
    """
    keys = ["model", "step", "eval_set", "prompt_format", "shots", "metric"]

    def table(t: pd.DataFrame, conservative: bool) -> pd.DataFrame:
        rows = _paired_with_base(_one_setting(t, prompt_format, shots, "gain table"), ft_sets)
        rows = rows[rows["eval_set"] == rows["ft_set"]]
        out = rows[["model", "step", "tokens", "ft_set", "task", "metric"]].copy()
        out["base"] = rows["base"].to_numpy()
        out["finetuned"] = rows["value"].to_numpy()
        out["gain"] = out["finetuned"] - out["base"]
        if conservative:
            base_ci = t[t["ft_set"] == BASE][keys + ["ci_low", "ci_high"]].rename(
                columns={"ci_low": "base_low", "ci_high": "base_high"}
            )
            both = rows.merge(base_ci, on=keys, how="left", validate="many_to_one")
            out["ci_low"] = (both["ci_low"] - both["base_high"]).to_numpy()
            out["ci_high"] = (both["ci_high"] - both["base_low"]).to_numpy()
        if groups is not None:
            from ptft.paired import study_model  # the bootstrap renames models; the groups know the study's names

            g = groups[["model", "eval_set", "group"]].drop_duplicates(["model", "eval_set"])
            g = g.rename(columns={"model": "_model", "eval_set": "ft_set"})
            out = out.assign(_model=study_model(out["model"]).to_numpy())
            out = out.merge(g, on=["_model", "ft_set"], how="left").drop(columns="_model")
            out["group"] = out["group"].fillna("ungrouped")
            mean = lambda s: s.to_numpy().mean()  # noqa: E731  (a NaN is kept, never skipped)
            agg = {
                c: (c, mean) for c in ["base", "finetuned", "gain"] + (["ci_low", "ci_high"] if conservative else [])
            }
            means = out.groupby(["model", "step", "tokens", "group"], sort=True).agg(**agg).reset_index()
            means["ft_set"] = "mean (" + means["group"] + ")"
            means["task"] = ""
            means["metric"] = ""
            out = pd.concat([out, means[out.columns]], ignore_index=True)
        return out.sort_values(["model", "step", "ft_set"], kind="mergesort").reset_index(drop=True)

    if boot is None:
        return table(df, conservative=True)
    from ptft.paired import bootstrap_statistic

    return bootstrap_statistic(lambda t: table(t, False), df, ["model", "step", "ft_set"], "gain", boot, level)


def gain_table_wide(gain: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 6's shape: one row per (model, step), one column per ft_set (group means last): "gain [low, high]"."""

    def cell(r: pd.Series) -> str:
        if math.isfinite(r["ci_low"]) and math.isfinite(r["ci_high"]):
            return f"{r['gain']:+.{digits}f} [{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}]"
        return f"{r['gain']:+.{digits}f}"

    g = gain.assign(cell=gain.apply(cell, axis=1))
    wide = g.pivot(index=["model", "step", "tokens"], columns="ft_set", values="cell")
    cols = sorted(wide.columns, key=lambda c: (c.startswith("mean ("), c))
    wide = wide[cols].reset_index()
    wide.columns.name = None
    return wide
