"""Fine-tuning variants: the learning-rate search (dev slice, choice of lr) and seeds (per-seed rows, combined intervals).

A variant is one fine-tuning run of a training set (ptft.config.finetune_variants): one lr value x one seed.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ptft.provenance import atomic_write_text

# z of a two-sided 95% normal interval: turns a percentile interval's width into a standard error.
Z95 = 1.959963984540054


def _read_jsonl(path: str | os.PathLike) -> list[str]:
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {i} is not JSON ({err.msg})") from None
    return lines


def split_dev(train: str | os.PathLike, out_train: str | os.PathLike, out_dev: str | os.PathLike,
              n_dev: int, seed: int) -> None:
    """Hold out n_dev examples of a training split (JSONL, one example a line) as the lr-search dev slice.

    A seeded draw (random.Random(seed)); both outputs keep the input's order. Every lr value of the set trains on
    out_train, so no run sees the items it is scored on. Raises ValueError naming the file when n_dev leaves fewer
    than one training example (config key finetune.lr_search.n_dev).
    """
    lines = _read_jsonl(train)
    if not 0 < n_dev < len(lines):
        raise ValueError(
            f"{train}: finetune.lr_search.n_dev is {n_dev}, but the training split has {len(lines)} examples; "
            f"expected 1 <= n_dev < {len(lines)}"
        )
    dev = set(random.Random(seed).sample(range(len(lines)), n_dev))
    atomic_write_text(out_train, "".join(f"{line}\n" for i, line in enumerate(lines) if i not in dev))
    atomic_write_text(out_dev, "".join(f"{line}\n" for i, line in enumerate(lines) if i in dev))


def dev_score(eval_json: str | os.PathLike) -> float:
    """The dev score of one evaluation written by ptft.evaluate on the dev slice: the mean of its results' values
    (one eval set x the default prompt format x the configured shots, the eval set's own metric). Raises ValueError
    naming the file when it holds no results."""
    record = json.loads(Path(eval_json).read_text(encoding="utf-8"))
    values = [r["value"] for r in record.get("results", []) if r.get("metric") != "n_overflow"]
    if not values:
        raise ValueError(f"{eval_json}: no results to score the lr search on")
    return float(sum(values) / len(values))


def select_lr(candidates: Iterable[Mapping[str, Any]], select: str) -> dict[str, Any]:
    """Choose a training set's learning rate from its dev scores (higher is better: accuracy, ROUGE-L).

    candidates: one per (step, lr, seed) run: {"step", "lr", "seed", "score"}. select "per_set": the lr with the best
    mean score over checkpoints and seeds (one lr per set, as the authors report; paper Sec. 3); "per_checkpoint":
    per step, the lr with the best mean over seeds. Ties go to the smaller lr. Returns {"select", "chosen":
    {str(step): lr}, "candidates": [...]} (per_set gives every step the same lr). Raises ValueError for an unknown
    select or no candidates.
    """
    rows = pd.DataFrame(list(candidates))
    if rows.empty:
        raise ValueError("select_lr: no candidate runs")
    steps = sorted(rows["step"].astype(str).unique())
    if select == "per_set":
        means = rows.groupby("lr")["score"].mean()
        best = _best(means)
        chosen = {step: best for step in steps}
    elif select == "per_checkpoint":
        means = rows.groupby([rows["step"].astype(str), "lr"])["score"].mean()
        chosen = {step: _best(means.loc[step]) for step in steps}
    else:
        raise ValueError(f"finetune.lr_search.select must be per_set or per_checkpoint, got {select!r}")
    return {"select": select, "chosen": chosen, "candidates": rows.to_dict("records")}


def _best(means: pd.Series) -> float:
    top = means.max()
    return float(min(lr for lr, score in means.items() if score == top))


def combine_seeds(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per keys over seeds: the mean value and an interval holding both sources of variance.

    per_seed: rows with columns keys + value, ci_low, ci_high, n (one row per seed). Within a seed the interval is the
    item bootstrap's; its variance is taken as ((ci_high - ci_low) / (2 z))^2 with z = 1.96 (95%). The combined
    variance is the largest within-seed variance plus the between-seed variance of the per-seed values (sample
    variance, ddof 1; 0 with one seed): a random-effects sum for the result of one fine-tuning run of unknown seed,
    conservative in its within-seed term, so the interval, value +- z sqrt(variance), is never narrower than any
    seed's own. An undefined within-seed interval (NaN) makes the combined one NaN. n is the per-seed item count.
    A group of one row (one seed) keeps its own interval.
    """
    width = per_seed["ci_high"] - per_seed["ci_low"]
    frame = per_seed.assign(_within=(width / (2 * Z95)) ** 2, _undefined=width.isna())
    out = frame.groupby(keys, sort=False, dropna=False).agg(
        value=("value", "mean"), between=("value", "var"), within=("_within", "max"), undefined=("_undefined", "any"),
        n=("n", "first"), n_seeds=("value", "size"), own_low=("ci_low", "first"), own_high=("ci_high", "first"),
    )  # fmt: skip
    half = Z95 * np.sqrt(out["within"] + out["between"].fillna(0.0))
    half[out["undefined"]] = np.nan
    single = out["n_seeds"] == 1
    out["ci_low"] = np.where(single, out["own_low"], out["value"] - half)
    out["ci_high"] = np.where(single, out["own_high"], out["value"] + half)
    return out[["value", "ci_low", "ci_high", "n", "n_seeds"]].reset_index()


VARIANT_COLUMNS = ["lr", "seed", "selected"]


def mark_runs(df: pd.DataFrame, variants: Mapping[str, Mapping[str, Any]],
              choices: Mapping[str, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """Mark every result row with its fine-tuning run: ft_set (the set, not the variant label), lr, seed, selected.

    df: the results table with ft_set holding variant labels (ptft.config.finetune_variants) or "base". variants:
    label -> {"ft_set", "lr", "seed", "lr_search"}. choices: model -> ft_set -> {str(step): chosen lr} (select_lr's "chosen")
    for every set with an lr search. Base rows get lr and seed empty and selected True; a run is selected when its
    set has no lr search or its lr is the one chosen for its step. Raises KeyError naming an unknown label or a set
    or step missing from choices.
    """
    out = df.copy()
    lr, seed, selected, ft_set = [], [], [], []
    for model, label, step in zip(df["model"], df["ft_set"], df["step"]):
        if label == "base":
            ft_set.append(label), lr.append(math.nan), seed.append(pd.NA), selected.append(True)
            continue
        if label not in variants:
            raise KeyError(f"results: ft_set {label!r} is not a fine-tuning run of this config; known: {sorted(variants)}")
        run = variants[label]
        ft_set.append(run["ft_set"]), lr.append(float(run["lr"])), seed.append(int(run["seed"]))
        if run["lr_search"]:
            try:
                chosen = choices[model][run["ft_set"]][str(step)]
            except KeyError:
                raise KeyError(f"lr search of {model!r} on {run['ft_set']!r}: no choice for step {step}") from None
            selected.append(math.isclose(chosen, run["lr"]))
        else:
            selected.append(True)
    out["ft_set"], out["lr"], out["seed"], out["selected"] = ft_set, lr, pd.array(seed, dtype="Int64"), selected
    return out


def findings_view(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows the findings use, in the given columns: selected runs only, seeds combined (combine_seeds) per result."""
    chosen = df[df["selected"].astype(bool)]
    keys = [c for c in columns if c not in ("value", "ci_low", "ci_high", "n")]
    combined = combine_seeds(chosen, keys)
    return combined[columns]


def findings_items(items: pd.DataFrame, runs: Mapping[str, Mapping[str, Any]] | None,
                   table: pd.DataFrame) -> pd.DataFrame:
    """The per-item scores (ptft.paired.read_items, ft_set = run label) of the runs the findings use: base models
    and the selected runs of `table` (the every-run results table), ft_set set to the training set and a `seed`
    column added, which ptft.paired.ItemBootstrap resamples before items. Without runs: items unchanged.
    """
    if not runs:
        return items
    chosen = table[table["selected"].astype(bool) & table["ft_set"].ne("base")]
    wanted = set(zip(chosen["model"], chosen["step"].astype(int), chosen["ft_set"], chosen["lr"], chosen["seed"]))
    keep, ft_set, seed = [], [], []
    for model, step, label in zip(items["model"], items["step"], items["ft_set"]):
        if label == "base":
            keep.append(True), ft_set.append(label), seed.append(pd.NA)
            continue
        run = runs[label]
        keep.append((model, int(step), run["ft_set"], float(run["lr"]), int(run["seed"])) in wanted)
        ft_set.append(run["ft_set"]), seed.append(int(run["seed"]))
    out = items.assign(ft_set=ft_set, seed=pd.array(seed, dtype="Int64"))
    return out[keep].reset_index(drop=True)
