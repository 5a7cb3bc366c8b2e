"""Turn per-model evaluation JSONs into the study's tidy results table, fine-tuning gains and key numbers.

Every figure, metric file and the report read the table `aggregate` writes; nothing downstream opens eval JSONs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.provenance import atomic_write_text, provenance, write_json, sha256_file
from ptft import variants
from ptft.tasks import TASKS

BASE = "base"  # the ft_set value of a model that was not fine-tuned
DEFAULT_FORMAT = "default"

COLUMNS = [
    "model",
    "step",
    "tokens",
    "ft_set",
    "eval_set",
    "task",
    "prompt_format",
    "shots",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
]
GAIN_COLUMNS = [
    "model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "shots", "metric",
    "base", "finetuned", "gain", "in_domain",
]  # fmt: skip

_MODEL_KEYS = {"model": str, "step": int, "tokens": int, "ft_set": str}
_RESULT_KEYS = {
    "eval_set": str, "task": str, "prompt_format": str, "shots": int, "metric": str,
    "value": float, "ci_low": float, "ci_high": float, "n": int,
}  # fmt: skip
# A bootstrap interval can be undefined (too few items); the point estimate and its count cannot.
_NULLABLE = {"ci_low", "ci_high"}
_INT_COLUMNS = ["step", "tokens", "shots", "n"]
_FLOAT_COLUMNS = ["value", "ci_low", "ci_high"]
_STR_COLUMNS = ["model", "ft_set", "eval_set", "task", "prompt_format", "metric"]
# One evaluated number is identified by these; a second row with the same identity is a duplicate run.
_IDENTITY = ["model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric"]


# ---------------------------------------------------------------------------------------------- reading


def _checked(value: Any, kind: type, where: str, key: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return math.nan
    if kind is str:
        if isinstance(value, str) and value:
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    expected = {str: "a non-empty string", int: "an integer", float: "a number"}[kind]
    raise ValueError(f"{where}: key {key!r} must be {expected}{' or null' if nullable else ''}, got {value!r}")


def _rows_of(path: Path) -> list[dict[str, Any]]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: evaluation result file is missing") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    head = {}
    for key, kind in _MODEL_KEYS.items():
        if key not in record:
            raise KeyError(f"{path}: missing key {key!r}")
        head[key] = _checked(record[key], kind, str(path), key)
    if "results" not in record:
        raise KeyError(f"{path}: missing key 'results'")
    results = record["results"]
    if not isinstance(results, list):
        raise ValueError(f"{path}: key 'results' must be a list, got {type(results).__name__}")
    rows = []
    for i, result in enumerate(results):
        where = f"{path}: results[{i}]"
        if not isinstance(result, dict):
            raise ValueError(f"{where} must be an object, got {type(result).__name__}")
        row = dict(head)
        for key, kind in _RESULT_KEYS.items():
            if key not in result:
                raise KeyError(f"{where}: missing key {key!r}")
            row[key] = _checked(result[key], kind, where, key, nullable=key in _NULLABLE)
        row["_file"] = str(path)
        rows.append(row)
    return rows


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({c: "int64" for c in _INT_COLUMNS} | {c: "float64" for c in _FLOAT_COLUMNS})
    return df.astype({c: "str" for c in _STR_COLUMNS})


def sort_results(
    df: pd.DataFrame, by: Iterable[str] = ("model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric")
) -> pd.DataFrame:
    """Sort with "base" before every fine-tuned ft_set, other keys ascending; a stable total order for a stable CSV."""
    by = [c for c in by if c in df.columns]
    base_last = df["ft_set"].ne(BASE).rename("_not_base") if "ft_set" in df.columns else None
    keys = []
    for c in by:
        if c == "ft_set" and base_last is not None:
            keys.append("_not_base")
        keys.append(c)
    frame = df.assign(_not_base=base_last) if base_last is not None else df
    frame = frame.sort_values(keys, kind="mergesort")
    return frame.drop(columns=["_not_base"], errors="ignore").reset_index(drop=True)


def write_table(df: pd.DataFrame, out_csv: str | os.PathLike) -> None:
    """Write a table as CSV atomically (temporary file beside it, then rename)."""
    atomic_write_text(out_csv, df.to_csv(index=False, lineterminator="\n"))


def aggregate(
    eval_jsons: list[Path],
    out_csv: Path,
    runs: Mapping[str, Mapping[str, Any]] | None = None,
    lr_choices: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
) -> pd.DataFrame:
    """One tidy long table of every evaluation result, one row per result, columns exactly COLUMNS.

    With runs (fine-tuning variant label -> run, ptft.config.finetune_variants; given when a set has an lr search or
    finetune.seeds has several seeds) the rows are marked by ptft.variants.mark_runs and the table has COLUMNS +
    VARIANT_COLUMNS (lr, seed, selected); lr_choices: model -> searched set -> {str(step): chosen lr}.

    Rows are sorted by model, step, ft_set ("base" first), eval_set, prompt_format, shots (then metric).
    Raises naming the file and key when a file is missing, malformed or lacks a key; and when two files
    disagree on a checkpoint's tokens or report the same result twice.
    """
    paths = [Path(p) for p in eval_jsons]
    if not paths:
        raise ValueError("aggregate: no evaluation result files given")
    rows = [row for p in paths for row in _rows_of(p)]
    if not rows:
        raise ValueError(
            f"aggregate: the {len(paths)} evaluation result files hold no results: {[str(p) for p in paths]}"
        )
    df = pd.DataFrame(rows)

    tokens = df.groupby(["model", "step"])["tokens"].nunique()
    if (tokens > 1).any():
        model, step = tokens[tokens > 1].index[0]
        clash = df[(df["model"] == model) & (df["step"] == step)].drop_duplicates(["_file", "tokens"])
        detail = ", ".join(f"{f}: {t}" for f, t in zip(clash["_file"], clash["tokens"]))
        raise ValueError(f"model {model!r} step {step}: files disagree on key 'tokens' ({detail})")
    dup = df[df.duplicated(_IDENTITY, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        same = dup[(dup[_IDENTITY] == first[_IDENTITY]).all(axis=1)]
        ident = ", ".join(f"{k}={first[k]!r}" for k in _IDENTITY)
        raise ValueError(f"result reported more than once ({ident}) in: {sorted(set(same['_file']))}")

    df = _typed(df[COLUMNS])
    order = ("model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric")
    if runs:
        order += ("lr", "seed")
        df = variants.mark_runs(df, runs, lr_choices or {})
    df = sort_results(df, order)
    write_table(df, out_csv)
    return df


def read_results(csv: str | os.PathLike, every_run: bool = False) -> pd.DataFrame:
    """Read a table written by `aggregate`, with its column types; raises naming the file if columns differ.

    A table of fine-tuning variants (columns COLUMNS + lr, seed, selected) is read as the findings see it: selected
    runs only, seeds combined (ptft.variants.findings_view), columns COLUMNS; every_run=True keeps every run and column.
    """
    df = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    if list(df.columns) == COLUMNS + variants.VARIANT_COLUMNS:
        df = _typed(df).astype({"seed": "Int64"})
        return df if every_run else _typed(variants.findings_view(df, COLUMNS))
    if list(df.columns) != COLUMNS:
        raise ValueError(f"{csv}: columns {list(df.columns)} are not the results table's {COLUMNS}")
    return _typed(df)


def provenance_path(out: str | os.PathLike) -> Path:
    """Where the provenance of a single-file output lives: beside it, named `<file>.provenance.json`."""
    out = Path(out)
    return out.with_name(out.name + ".provenance.json")


def write_table_provenance(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike], config: Any = None, **extra: Any
) -> Path:
    """Record how a table or figure was made (inputs with their sha256, config slice, versions) beside it."""
    files = [{"path": str(p), "sha256": sha256_file(Path(p))} for p in inputs]
    out = Path(out)
    record = provenance("analysis", config, output=str(out), inputs=files, **extra)
    if out.exists():
        record["output_sha256"] = sha256_file(out)
    target = provenance_path(out)
    write_json(target, record)
    return target


# ---------------------------------------------------------------------------------------------- analysis


def _join_base(tuned: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """`tuned` rows with a `base` column: the base model's value at the same checkpoint, eval set, format and
    shots; raises naming the first row that has no base result."""
    keys = ["model", "step", "eval_set", "prompt_format", "shots", "metric"]
    base = df[df["ft_set"] == BASE][keys + ["value"]].rename(columns={"value": "base"})
    merged = tuned.merge(base, on=keys, how="left", validate="many_to_one")
    missing = merged[merged["base"].isna()]
    if not missing.empty:
        m = missing.iloc[0]
        raise ValueError(
            f"no base result to compare ft_set {m['ft_set']!r} against: model={m['model']!r} step={m['step']} "
            f"eval_set={m['eval_set']!r} prompt_format={m['prompt_format']!r} shots={m['shots']} "
            f"({len(missing)} such rows)"
        )
    return merged


def finetune_gain(df: pd.DataFrame, ft_sets: Mapping[str, str]) -> pd.DataFrame:
    """Fine-tuned minus base, per checkpoint, for every eval_set of the ft_set's own task family.

    `ft_sets` maps each ft_set name to its task family. One row per (model, step, ft_set, eval_set,
    prompt_format, shots, metric); `in_domain` is True where the eval_set is the ft_set itself.
    """
    tuned = df[df["ft_set"] != BASE]
    unknown = sorted(set(tuned["ft_set"]) - set(ft_sets))
    if unknown:
        raise KeyError(
            f"ft_sets {unknown} are in the results but have no task family in ft_sets (known: {sorted(ft_sets)})"
        )
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
    out = _join_base(tuned, df).rename(columns={"value": "finetuned"})
    out["gain"] = out["finetuned"] - out["base"]
    out["in_domain"] = out["eval_set"] == out["ft_set"]
    return sort_results(out[GAIN_COLUMNS].astype({"in_domain": "bool"}))


def base_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Base-model rows only (every eval_set, format and shots), ordered along pre-training."""
    base = df[df["ft_set"] == BASE]
    order = ["model", "task", "eval_set", "prompt_format", "shots", "metric", "step"]
    return base.sort_values(order, kind="mergesort").reset_index(drop=True)[COLUMNS]


def task_order(tasks: Iterable[str]) -> list[str]:
    """Task families in the order tasks.py defines them, any others after, alphabetically."""
    known = list(TASKS)
    return sorted(set(tasks), key=lambda t: (known.index(t) if t in known else len(known), t))


def _number(x: Any) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


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


# ---------------------------------------------------------------------------------------------- findings
# The paper's five findings, each a pure function of the tidy results table. Unless a caller says otherwise,
# every finding reads one prompt format ("default", the training format) and the largest shots evaluated,
# except prompt sensitivity, which compares the formats.

STAGE_BASE = "base"
STAGE_FINETUNED = "fine-tuned"
INSTRUCTION_TASK = "instruction"
CLASSIFICATION_TO_GENERATION = "classification \u2192 generation"
GENERATION_TO_CLASSIFICATION = "generation \u2192 classification"


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


def _paired_with_base(df: pd.DataFrame, ft_sets: Mapping[str, str]) -> pd.DataFrame:
    """Every fine-tuned row (any eval set) beside the base value of its checkpoint: columns of the table plus
    `ft_task` (the ft_set's task family) and `base`; raises naming the row when a base result is missing."""
    tuned = df[df["ft_set"] != BASE]
    unknown = sorted(set(tuned["ft_set"]) - set(ft_sets))
    if unknown:
        raise KeyError(
            f"ft_sets {unknown} are in the results but have no task family in ft_sets (known: {sorted(ft_sets)})"
        )
    merged = _join_base(tuned, df)
    merged["ft_task"] = merged["ft_set"].map(dict(ft_sets))
    return merged


def ratio_of_change(finetuned: Any, base: Any) -> Any:
    """(FT - base) / base, elementwise; NaN where base == 0 (a change from nothing has no ratio)."""
    ft = pd.Series(finetuned, dtype="float64") if not isinstance(finetuned, pd.Series) else finetuned.astype("float64")
    b = pd.Series(base, dtype="float64") if not isinstance(base, pd.Series) else base.astype("float64")
    return (ft - b) / b.where(b != 0)


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
    """
    rows = _one_setting(df, None, shots, "prompt sensitivity")
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


def out_of_domain_change(
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


def task_transfer_test(
    df: pd.DataFrame,
    ft_sets: Mapping[str, str],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
    resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Is the transfer ratio of change different from 0? Per (model, direction), over all its (checkpoint,
    ft_set, eval_set) ratios: their mean, count and the sign-flip permutation p-value (`sign_flip_test`)."""
    rows = _transfer_pairs(df, ft_sets, prompt_format, shots)
    out = []
    for (model, direction), g in rows.groupby(["model", "direction"], sort=True):
        r = g["ratio"].dropna()
        out.append(
            {"model": model, "direction": direction, "mean_ratio": float(r.mean()) if len(r) else math.nan,
             "n_pairs": int(len(r)), "n_zero_base": int(g["ratio"].isna().sum()),
             "n_negative": int((r < 0).sum()), "p_value": sign_flip_test(r, resamples, seed)}
        )  # fmt: skip
    return pd.DataFrame(
        out, columns=["model", "direction", "mean_ratio", "n_pairs", "n_zero_base", "n_negative", "p_value"]
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


def read_train_logs(logs: Mapping[tuple[str, int, str], str | os.PathLike]) -> pd.DataFrame:
    """Item 6: fine-tuning curves. `logs` maps (model, step, ft_set) to a train_log.jsonl (one JSON object per
    optimizer step with step, epoch, loss, lr). Returns model, step (the checkpoint), ft_set, train_step, epoch,
    loss, lr; raises naming the file and line of a bad record."""
    rows = []
    for (model, step, ft_set), path in sorted(logs.items()):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    rows.append(
                        {"model": str(model), "step": int(step), "ft_set": str(ft_set), "train_step": int(rec["step"]),
                         "epoch": int(rec["epoch"]), "loss": float(rec["loss"]), "lr": float(rec["lr"])}
                    )  # fmt: skip
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise ValueError(f"{path}: line {lineno}: not a training log record ({err!r})") from None
    cols = ["model", "step", "ft_set", "train_step", "epoch", "loss", "lr"]
    return pd.DataFrame(rows, columns=cols)


def write_markdown(
    df: pd.DataFrame, out_md: str | os.PathLike, title: str | None = None, floatfmt: str = ".4g"
) -> None:
    """Write a table as a GitHub Markdown table atomically (a `# title` line first when given)."""
    text = df.to_markdown(index=False, floatfmt=floatfmt)
    atomic_write_text(out_md, (f"# {title}\n\n" if title else "") + text + "\n")


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


# ---------------------------------------------------------------------------------------------- the paper's definitions
# Each finding as the authors computed it in analysis/gen_paper_figs.ipynb (KaiserWhoLearns/AmuroCharPTFTRelationship
# at commit 8b79c396cb2fef1e13ef69df1a56321fee2619db; cells numbered from 0 in file order), over the study design
# of the config (`study_design`). Where we think another statistic is better it stands beside, named as ours.

NATIVE_FORMAT = "native"  # prompt_format of a row scored with lm-eval's own task definition (ptft.evaluate)
GROUP_PRETRAINING = "learned in pre-training"
GROUP_FINETUNING = "learned in fine-tuning"
PAIR_COLUMNS = ["model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "metric", "base", "finetuned"]


def study_design(
    ft_sets: Mapping[str, str], eval_sets: Mapping[str, str], given: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per training set: its task family, in-domain and out-of-domain eval sets (the paper's Table 1).

    `ft_sets` and `eval_sets` map names to task families; `given` is config `analysis.design` (a training set ->
    {in_domain: [...], out_of_domain: [...]}). A training set the config does not describe gets in_domain [itself]
    (its own test split, when it is an eval set) and out_of_domain every other eval set of its family. Instruction
    tuning has neither: it is read off the lm-eval benchmark rows (prompt_format "native"). The first in-domain
    set is the training set's own test set (the one task transfer scores). Raises naming the key when the config
    names an unknown training set or eval set, or an eval set of another family.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(ft_sets))
    if unknown:
        raise KeyError(f"analysis.design: {unknown} are not training sets (finetune.ft_sets: {sorted(ft_sets)})")
    design: dict[str, dict[str, Any]] = {}
    for ft_set, task in ft_sets.items():
        spec = dict(given.get(ft_set) or {})
        if task == INSTRUCTION_TASK:
            default_in, default_out = [], []
        else:
            default_in = [ft_set] if ft_set in eval_sets else []
            default_out = [e for e, t in eval_sets.items() if t == task and e not in default_in]
        entry = {"task": task, "in_domain": list(spec.get("in_domain", default_in))}
        entry["out_of_domain"] = list(
            spec.get("out_of_domain", [e for e in default_out if e not in entry["in_domain"]])
        )
        for side in ("in_domain", "out_of_domain"):
            for e in entry[side]:
                if e not in eval_sets:
                    raise KeyError(f"analysis.design.{ft_set}.{side}: {e!r} is not an eval set ({sorted(eval_sets)})")
                if eval_sets[e] != task:
                    raise ValueError(
                        f"analysis.design.{ft_set}.{side}: {e!r} is a {eval_sets[e]} set, {ft_set!r} trains {task}"
                    )
        both = sorted(set(entry["in_domain"]) & set(entry["out_of_domain"]))
        if both:
            raise ValueError(f"analysis.design.{ft_set}: {both} are listed both in-domain and out-of-domain")
        design[ft_set] = entry
    return design


def _pairs(df: pd.DataFrame, wanted: Iterable[tuple[str, str, str]], metric: str | None = None) -> pd.DataFrame:
    """The (ft_set, eval_set, prompt_format) pairs of `wanted` at every checkpoint where both the fine-tuned and the
    base model were scored: PAIR_COLUMNS. `metric` picks one metric where a row set has several (native rows)."""
    wanted = pd.DataFrame(list(wanted), columns=["ft_set", "eval_set", "prompt_format"]).drop_duplicates()
    rows = df if metric is None else df[(df["prompt_format"] != NATIVE_FORMAT) | (df["metric"] == metric)]
    tuned = rows[rows["ft_set"] != BASE].merge(wanted, on=["ft_set", "eval_set", "prompt_format"])
    keys = ["model", "step", "eval_set", "prompt_format", "shots", "metric"]
    base = rows[rows["ft_set"] == BASE][keys + ["value"]].rename(columns={"value": "base"})
    out = tuned.merge(base, on=keys, how="inner", validate="many_to_one").rename(columns={"value": "finetuned"})
    return (
        out[PAIR_COLUMNS].sort_values(["model", "step", "ft_set", "eval_set"], kind="mergesort").reset_index(drop=True)
    )


def _kind(task: str) -> str:
    if task not in TASKS:
        raise KeyError(f"task family {task!r} is not in ptft.tasks.TASKS (known: {sorted(TASKS)})")
    return TASKS[task].kind


def transfer_pairs_paper(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
) -> pd.DataFrame:
    """Finding 3's pairs as the paper formed them: each classification training set scored on the own test set of
    every generation training set, and the reverse (notebook cell 25: {mnli, paws} -> {xsum, socialiqa} and
    {xsum, socialiqa} -> {mnli matched, paws}; not MNLI-mismatched or XLSum, and no out-of-domain set).

    PAIR_COLUMNS plus `direction`, `raw_change` (FT - BASE) and `ratio` ((FT - BASE) / BASE, Eq. 1; NaN where
    BASE == 0). Instruction tuning takes no part.
    """
    rows = _one_setting(df, prompt_format, shots, "task transfer")
    own = {f: d["in_domain"][0] for f, d in design.items() if d["task"] != INSTRUCTION_TASK and d["in_domain"]}
    wanted = [
        (a, own[b], prompt_format)
        for a in own for b in own if _kind(design[a]["task"]) != _kind(design[b]["task"])
    ]  # fmt: skip
    out = _pairs(rows, wanted)
    out["direction"] = [
        CLASSIFICATION_TO_GENERATION if _kind(design[f]["task"]) == "classification" else GENERATION_TO_CLASSIFICATION
        for f in out["ft_set"]
    ]
    out["raw_change"] = out["finetuned"] - out["base"]
    out["ratio"] = ratio_of_change(out["finetuned"], out["base"]).to_numpy()
    return out


def _mean_n(values: pd.Series) -> tuple[float, int]:
    v = values.to_numpy(dtype=float)
    return (float(v.mean()) if len(v) else math.nan), int(len(v))


def task_transfer_paper(pairs: pd.DataFrame) -> pd.DataFrame:
    """Finding 3 as the paper reports it (§4.3, -61.46% / +0.31%): per (model, direction) the mean of (FT - BASE) /
    BASE over every pair and checkpoint pooled (notebook cell 26: `class_to_gen_tab.mean()` over the rows of
    cell 25's table). NaN ratios (BASE == 0) propagate: the mean is then undefined, as in the notebook.

    Input: `transfer_pairs_paper`. One row per (model, direction): mean_ratio (a fraction, not %), mean_raw_change,
    n_pairs (pairs x checkpoints), n_checkpoints.
    """
    out = []
    for (model, direction), g in pairs.groupby(["model", "direction"], sort=True):
        ratio, n = _mean_n(g["ratio"])
        out.append(
            {"model": model, "direction": direction, "mean_ratio": ratio, "mean_raw_change": _mean_n(g["raw_change"])[0],
             "n_pairs": n, "n_checkpoints": int(g["step"].nunique())}
        )  # fmt: skip
    return pd.DataFrame(
        out, columns=["model", "direction", "mean_ratio", "mean_raw_change", "n_pairs", "n_checkpoints"]
    )


def transfer_cluster_test(pairs: pd.DataFrame, resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Ours: is a direction's transfer ratio different from 0, tested over checkpoint clusters.

    The paper calls the generation -> classification change "not statistically significant" (§4.3) without naming
    a test. Pairs of one checkpoint share its base model, so they are not independent; the checkpoints are the
    independent units. Per (model, direction): each checkpoint's mean ratio over its pairs, then the two-sided
    sign-flip test of their mean = 0 (`sign_flip_test`, exact up to 16 checkpoints). Columns: model, direction,
    mean_ratio (mean of checkpoint means), n_checkpoints, n_negative (checkpoints), p_value.
    """
    out = []
    for (model, direction), g in pairs.groupby(["model", "direction"], sort=True):
        per_step = g.groupby("step")["ratio"].mean().dropna()
        out.append(
            {"model": model, "direction": direction, "mean_ratio": float(per_step.mean()) if len(per_step) else math.nan,
             "n_checkpoints": int(len(per_step)), "n_negative": int((per_step < 0).sum()),
             "p_value": sign_flip_test(per_step.to_numpy(), resamples, seed)}
        )  # fmt: skip
    return pd.DataFrame(out, columns=["model", "direction", "mean_ratio", "n_checkpoints", "n_negative", "p_value"])


def ood_pairs_paper(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
) -> pd.DataFrame:
    """Finding 2's pairs: each training set on its out-of-domain eval sets (Table 1; notebook cell 29: rte, gpt3nli
    for MNLI; cnn for XSum; tweetqa, sciq for SocialIQa; qqp, stsb for PAWS). PAIR_COLUMNS plus ft_task and
    raw_change (FT - BASE)."""
    rows = _one_setting(df, prompt_format, shots, "out-of-domain change")
    wanted = [(f, e, prompt_format) for f, d in design.items() for e in d["out_of_domain"]]
    out = _pairs(rows, wanted)
    out["ft_task"] = out["ft_set"].map({f: d["task"] for f, d in design.items()})
    out["raw_change"] = out["finetuned"] - out["base"]
    return out


def out_of_domain_change_paper(pairs: pd.DataFrame) -> pd.DataFrame:
    """Finding 2 as the paper computed Fig. 5: per (model, task of the training set) the raw change FT - BASE
    averaged over every checkpoint and out-of-domain eval set of that task (notebook cell 29, the "Raw Change"
    column of `change_table_by_checkpoint_for_plot`, cell 24), whatever the caption's "ratio" says. Raw changes
    stay finite where a base score is near 0; the ratio (`out_of_domain_change`, ours before) explodes there.

    Input: `ood_pairs_paper`. Columns: model, task, mean_raw_change, n_pairs, n_checkpoints, eval_sets.
    """
    out = []
    for (model, task), g in pairs.groupby(["model", "ft_task"], sort=True):
        mean, n = _mean_n(g["raw_change"])
        out.append(
            {"model": model, "task": task, "mean_raw_change": mean, "n_pairs": n,
             "n_checkpoints": int(g["step"].nunique()), "eval_sets": " ".join(sorted(set(g["eval_set"])))}
        )  # fmt: skip
    return pd.DataFrame(out, columns=["model", "task", "mean_raw_change", "n_pairs", "n_checkpoints", "eval_sets"])


def group_pairs_paper(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
    native_metric: str = "acc",
    keep_duplicates: bool = False,
) -> pd.DataFrame:
    """Finding 5's (eval set, model) pairs per group, as the notebook forms them (cells 14-15).

    `groups` maps a group name (GROUP_PRETRAINING, GROUP_FINETUNING) to its eval sets. An eval set enters with
    every training set that has it in-domain (scored in `prompt_format`) and with every instruction-tuned model
    that has lm-eval benchmark rows for it (prompt_format "native", metric `native_metric`): the notebook reads
    HellaSwag, ARC, OBQA, BoolQ and SciQ off the Tulu model (cell 14). The authors' pre-training list names SciQ
    twice (cell 15), which moves Table 6's first cell from .037 to .048: `keep_duplicates=True` counts a repeated
    entry as often as it is listed (the paper's numbers), False once (ours). Columns: PAIR_COLUMNS, group, copy.
    Raises naming the group and eval set when no fine-tuned model was scored on it that way.
    """
    rows = df[df["prompt_format"].isin([prompt_format, NATIVE_FORMAT])]
    if rows.empty:
        raise ValueError(f"gain by group: no results in prompt_format {prompt_format!r} or {NATIVE_FORMAT!r}")
    shots = int(rows.loc[rows["prompt_format"] == prompt_format, "shots"].max()) if shots is None else shots
    rows = rows[(rows["prompt_format"] == NATIVE_FORMAT) | (rows["shots"] == shots)]
    instruction = [f for f, d in design.items() if d["task"] == INSTRUCTION_TASK]
    parts = []
    for group, eval_sets in groups.items():
        listed = list(eval_sets) if keep_duplicates else list(dict.fromkeys(eval_sets))
        for copy, eval_set in enumerate(listed):
            wanted = [(f, eval_set, prompt_format) for f, d in design.items() if eval_set in d["in_domain"]]
            wanted += [(f, eval_set, NATIVE_FORMAT) for f in instruction]
            found = _pairs(rows, wanted, metric=native_metric)
            if found.empty:
                raise ValueError(
                    f"analysis.groups.{group}: eval set {eval_set!r} has no pair of a fine-tuned and a base score: it "
                    f"is no training set's in-domain set in {prompt_format!r} and no instruction-tuned model has a "
                    f"{NATIVE_FORMAT!r} {native_metric!r} row for it"
                )
            parts.append(found.assign(group=group, copy=copy))
    if not parts:
        return pd.DataFrame(columns=PAIR_COLUMNS + ["group", "copy"])
    return pd.concat(parts, ignore_index=True)


def gain_by_group_paper(pairs: pd.DataFrame) -> pd.DataFrame:
    """Finding 5, Table 6 as the paper computed it: per checkpoint and group, the mean of FT - BASE over the
    group's (eval set, model) pairs (notebook cell 14, `avg_change_table_by_checkpoint`, "Average Raw Change";
    "Total DS" is our n_pairs). Input: `group_pairs_paper`. Columns: model, step, tokens, group, gain, n_pairs."""
    pairs = pairs.assign(gain=pairs["finetuned"] - pairs["base"])
    out = (
        pairs.groupby(["model", "step", "tokens", "group"], sort=True)
        .agg(gain=("gain", lambda g: g.to_numpy().mean()), n_pairs=("gain", "size"))  # a NaN is kept, not skipped
        .reset_index()
    )
    return out[["model", "step", "tokens", "group", "gain", "n_pairs"]]


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
