"""Paired bootstrap over items: intervals for any statistic of the results table whose models were scored on the
same items (a gain FT - base, a change across checkpoints, a gap between prompt formats).

Every evaluation writes its per-item scores beside its result JSON (ptft.evaluate: `<ft_set>.predictions.jsonl`,
one row per item with eval_set, prompt_format, shots, doc_id and score; lm-eval benchmark rows also carry
acc_norm). One resample draws, per eval set, n of its items with replacement, and the SAME draw re-scores every
model, checkpoint and prompt format on that eval set; so differences keep their pairing, and a statistic that
averages over several eval sets resamples each independently (a stratified bootstrap, Efron & Tibshirani 1993,
ch. 6). The interval is the percentile interval of the statistic over resamples.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

ITEM_COLUMNS = ["model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric", "doc_id", "score"]
CELL = ["model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric"]


def predictions_path(eval_json: str | os.PathLike) -> Path:
    """Where evaluation writes the per-item predictions of `results/eval/{model}/{step}/{ft}.json`."""
    p = Path(eval_json)
    return p.with_name(p.stem + ".predictions.jsonl")


def read_items(eval_jsons: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per-item scores of every evaluation: ITEM_COLUMNS, one row per (cell, item).

    The model, step and ft_set come from the result JSON; each prediction row gives eval_set, prompt_format,
    shots, doc_id and score (the metric of that result; lm-eval benchmark rows give `acc` as score and
    `acc_norm` beside it). Raises naming the file and line of a malformed row.
    """
    frames = []
    for path in eval_jsons:
        path = Path(path)
        record = json.loads(path.read_text(encoding="utf-8"))
        metrics: dict[tuple[str, str, int], list[str]] = {}
        for r in record["results"]:
            metrics.setdefault((r["eval_set"], r["prompt_format"], int(r["shots"])), []).append(r["metric"])
        rows = []
        preds = predictions_path(path)
        with open(preds, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    p = json.loads(line)
                    key = (p["eval_set"], p["prompt_format"], int(p["shots"]))
                    for metric in metrics[key]:
                        score = p["acc_norm"] if metric == "acc_norm" else p["score"]
                        rows.append((key[0], key[1], key[2], metric, str(p["doc_id"]), float(score)))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise ValueError(f"{preds}: line {lineno}: not a prediction row of {path} ({err!r})") from None
        df = pd.DataFrame(rows, columns=["eval_set", "prompt_format", "shots", "metric", "doc_id", "score"])
        df.insert(0, "ft_set", str(record["ft_set"]))
        df.insert(0, "step", int(record["step"]))
        df.insert(0, "model", str(record["model"]))
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=ITEM_COLUMNS)
    return pd.concat(frames, ignore_index=True)[ITEM_COLUMNS]


class ItemBootstrap:
    """Resampled means of every cell (model, step, ft_set, eval_set, prompt_format, shots, metric) of `items`.

    `resamples` draws per eval set, seeded by (seed, eval set name), so adding an eval set leaves the others' draws
    unchanged. With a `seed` column (fine-tuning seeds), a cell's seeds are resampled too (_over_seeds). All cells of one eval set must hold the same items (same doc_ids); raises naming the cell otherwise.
    """

    def __init__(self, items: pd.DataFrame, resamples: int, seed: int = 0):
        if resamples < 1:
            raise ValueError(f"bootstrap resamples must be >= 1, got {resamples}")
        self.resamples = resamples
        self.seed = seed
        self._means: dict[tuple, np.ndarray] = {}
        self._observed: dict[tuple, float] = {}
        for eval_set, rows in items.groupby("eval_set", sort=True):
            docs = sorted(set(rows["doc_id"]))
            n = len(docs)
            rng = np.random.default_rng([seed, zlib.crc32(str(eval_set).encode())])
            draws = rng.integers(0, n, size=(resamples, n))
            weights = np.stack([np.bincount(row, minlength=n) for row in draws]) / n
            for cell, g in rows.groupby(CELL, sort=False):
                # fine-tuning seeds (ptft.variants.findings_items adds a seed column): one score vector per seed
                runs = [r for _, r in g.groupby("seed", sort=True, dropna=False)] if "seed" in g.columns else [g]
                means, observed = [], []
                for run in runs:
                    if len(run) != n or set(run["doc_id"]) != set(docs):
                        raise ValueError(
                            f"cell {dict(zip(CELL, cell))} holds {len(run)} items, not the {n} items every model was "
                            f"scored on for eval set {eval_set!r}: a paired bootstrap needs the same items"
                        )
                    scores = run.set_index("doc_id")["score"].reindex(docs).to_numpy(dtype=float)
                    means.append(weights @ scores)
                    observed.append(scores.mean())
                self._means[tuple(cell)] = self._over_seeds(means, seed, cell)
                self._observed[tuple(cell)] = float(np.mean(observed))

    def _over_seeds(self, means: list[np.ndarray], seed: int, cell: tuple) -> np.ndarray:
        """A cell's resampled means over its seeds: each resample draws k of its k seeds with replacement (seeded by
        the cell) and averages their item-resampled means; a bootstrap over seeds, then items (Davison & Hinkley
        1997, Sec. 3.8, two-stage sampling). One seed: its item-resampled means."""
        if len(means) == 1:
            return means[0]
        stacked = np.stack(means, axis=1)  # (resamples, seeds)
        rng = np.random.default_rng([seed, zlib.crc32(repr(cell).encode())])
        pick = rng.integers(0, len(means), size=stacked.shape)
        return np.take_along_axis(stacked, pick, axis=1).mean(axis=1)

    def draws(self, cells: pd.DataFrame) -> np.ndarray:
        """Resampled means, shape (len(cells), resamples), of the cells named by the rows of `cells` (columns CELL);
        a row of NaN where a cell has no items."""
        out = np.full((len(cells), self.resamples), np.nan)
        for i, key in enumerate(cells[CELL].itertuples(index=False, name=None)):
            key = (key[0], int(key[1]), *key[2:5], int(key[5]), key[6])
            if key in self._means:
                out[i] = self._means[key]
        return out


_SEP = "\x1f#"  # joins a model name and a resample number: one call of a statistic serves many resamples


def study_model(model: pd.Series) -> pd.Series:
    """The model names of a table as the study knows them: inside `bootstrap_statistic` a statistic sees each model
    once per resample under a renamed copy; a statistic that joins another table on model joins on this."""
    return model.astype(str).str.split(_SEP, n=1, regex=False).str[0]


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The (1 - level)/2 and (1 + level)/2 quantiles of the finite `samples`; NaN when there are none or any is
    NaN (a statistic that needs a cell without items has no interval)."""
    samples = np.asarray(samples, dtype=float)
    if samples.size == 0 or np.isnan(samples).any():
        return math.nan, math.nan
    alpha = (1 - level) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_statistic(
    statistic: Callable[[pd.DataFrame], pd.DataFrame],
    df: pd.DataFrame,
    keys: list[str],
    column: str,
    boot: ItemBootstrap | None,
    level: float = 0.95,
    chunk: int = 100,
) -> pd.DataFrame:
    """`statistic(df)` with a paired-bootstrap interval on its `column`, the same function applied to every
    resample of the items (`ItemBootstrap`), its rows matched on `keys` (which must include "model").

    A statistic must treat models independently (every finding does): `chunk` resamples go through one call as
    `chunk` renamed copies of every model, which is what makes a thousand resamples cost seconds, not minutes.
    Returns statistic(df) with `ci_low` and `ci_high` added (NaN without `boot`, or where a contributing cell
    had no items: a NaN inside a resample is kept, never skipped, so such an interval is NaN).
    """
    observed = statistic(df).reset_index(drop=True)
    observed["ci_low"], observed["ci_high"] = math.nan, math.nan
    if boot is None or observed.empty:
        return observed
    if "model" not in keys:
        raise ValueError(f"bootstrap_statistic: keys {keys} must include 'model' (resamples are renamed models)")
    draws = boot.draws(df)
    samples = np.full((len(observed), boot.resamples), np.nan)
    index = pd.MultiIndex.from_frame(observed[keys]) if len(keys) > 1 else pd.Index(observed[keys[0]])
    for start in range(0, boot.resamples, chunk):
        stop = min(start + chunk, boot.resamples)
        reps = stop - start
        big = df.iloc[np.tile(np.arange(len(df)), reps)].copy()
        big["value"] = draws[:, start:stop].T.reshape(-1)
        big["model"] = (
            big["model"].astype(str).to_numpy() + _SEP + np.repeat(np.arange(start, stop).astype(str), len(df))
        )
        stat = statistic(big)
        if stat.empty:
            continue
        split = stat["model"].astype(str).str.split(_SEP, n=1, expand=True, regex=False)
        stat = stat.assign(model=split[0].to_numpy(), _b=split[1].astype(int).to_numpy())
        wide = stat.set_index(keys + ["_b"])[column].unstack("_b").reindex(index)
        cols = wide.columns.to_numpy(dtype=int)
        samples[:, cols] = wide.to_numpy(dtype=float)
    alpha = (1 - level) / 2
    bounds = np.quantile(samples, [alpha, 1 - alpha], axis=1)  # a NaN anywhere in a row makes its bounds NaN
    observed["ci_low"], observed["ci_high"] = bounds[0], bounds[1]
    return observed
