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


def aggregate(eval_jsons: list[Path], out_csv: Path) -> pd.DataFrame:
    """One tidy long table of every evaluation result, one row per result, columns exactly COLUMNS.

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

    df = sort_results(_typed(df[COLUMNS]), ("model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric"))
    write_table(df, out_csv)
    return df


def read_results(csv: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by `aggregate`, with its column types; raises naming the file if columns differ."""
    df = pd.read_csv(csv, keep_default_na=False, na_values=[""])
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
        if ft_set in set(tuned["ft_set"]) and family not in tasks:
            raise ValueError(
                f"ft_set {ft_set!r} has task family {family!r}, but no eval_set in the results has that task "
                f"(tasks present: {sorted(tasks)})"
            )
    family = tuned["ft_set"].map(dict(ft_sets))
    tuned = tuned[tuned["task"] == family]
    base = df[df["ft_set"] == BASE]
    keys = ["model", "step", "eval_set", "prompt_format", "shots", "metric"]
    merged = tuned.merge(
        base[keys + ["value"]].rename(columns={"value": "base"}), on=keys, how="left", validate="many_to_one"
    )
    missing = merged[merged["base"].isna()]
    if not missing.empty:
        m = missing.iloc[0]
        raise ValueError(
            f"no base result to compare ft_set {m['ft_set']!r} against: model={m['model']!r} step={m['step']} "
            f"eval_set={m['eval_set']!r} prompt_format={m['prompt_format']!r} shots={m['shots']} "
            f"({len(missing)} such rows)"
        )
    out = merged.rename(columns={"value": "finetuned"})
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
