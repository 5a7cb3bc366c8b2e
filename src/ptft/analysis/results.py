"""The study's tidy results table: its columns and types, reading evaluation JSONs into it (`aggregate`), reading it
back (`read_results`), writing tables (CSV, Markdown) with their provenance, and the fine-tuning curves' reader.

Every figure, metric file and the report read the table `aggregate` writes; nothing downstream opens eval JSONs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft import variants
from ptft.provenance import atomic_write_text, provenance, sha256_file, write_json
from ptft.tasks import NATIVE_FORMAT
from ptft.train_log import OPTIMIZER_STEP, log_row


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
# How a result was computed, as its provenance records it (ptft.evaluate.rows.evaluation_provenance): one study's
# comparisons must hold one value of each (evaluate.dtype auto is bf16 on a GPU and fp32 on a CPU).
RUN_SETTINGS = {"dtype": "evaluation_dtype", "backend": "evaluation_backend", "classification": "classification"}


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
    provenance_record = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
    head["_settings"] = tuple(provenance_record.get(key) for key in RUN_SETTINGS.values())
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


def _clashing(a: tuple, b: tuple) -> bool:
    """Two results' RUN_SETTINGS differ in a setting both record (a file that records none is not checked)."""
    return any(x is not None and y is not None and x != y for x, y in zip(a, b))


def _described(file: dict) -> str:
    settings = ", ".join(f"{name} {value}" for name, value in zip(RUN_SETTINGS, file["_settings"]))
    return f"model {file['model']!r} step {file['step']} ft_set {file['ft_set']!r} ({file['_file']}: {settings})"


def check_one_precision(df: pd.DataFrame) -> None:
    """Refuse a table whose results were computed in different precisions, backends or classification methods
    (RUN_SETTINGS, from each result file's provenance): a fine-tuned model scored in bf16 against its base scored in
    fp32 shows a gain that is only rounding. df holds aggregate's rows (model, step, ft_set, _file, _settings).

    Raises ValueError naming two files that differ, with their models and settings: a base/fine-tuned pair of one
    checkpoint when there is one, else any two of the table.
    """
    files = df.drop_duplicates("_file")[["model", "step", "ft_set", "_file", "_settings"]].to_dict("records")
    clashes = [(a, b) for i, a in enumerate(files) for b in files[i + 1:] if _clashing(a["_settings"], b["_settings"])]
    if not clashes:
        return
    pairs = [(a, b) for a, b in clashes if (a["model"], a["step"]) == (b["model"], b["step"])
             and BASE in (a["ft_set"], b["ft_set"]) and a["ft_set"] != b["ft_set"]]  # fmt: skip
    a, b = sorted((pairs or clashes)[0], key=lambda f: f["ft_set"] != BASE)
    kind = "a base/fine-tuned pair" if pairs else "one table"
    raise ValueError(
        f"aggregate: {kind} mixes evaluation settings: {_described(a)} vs {_described(b)}. A comparison needs one "
        "precision, backend and classification method: set evaluate.dtype to float32 or bfloat16 (auto resolves to "
        "bfloat16 on a GPU and float32 on a CPU), evaluate.backend and evaluate.classification once for the study, "
        "and rerun the evaluations that differ"
    )


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
    Raises naming the file and key when a file is missing, malformed or lacks a key; when two files
    disagree on a checkpoint's tokens or report the same result twice; and when two files were evaluated in different
    precisions, backends or classification methods (check_one_precision).
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
    check_one_precision(df)

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


def write_markdown(
    df: pd.DataFrame, out_md: str | os.PathLike, title: str | None = None, floatfmt: str = ".4g"
) -> None:
    """Write a table as a GitHub Markdown table atomically (a `# title` line first when given)."""
    text = df.to_markdown(index=False, floatfmt=floatfmt)
    atomic_write_text(out_md, (f"# {title}\n\n" if title else "") + text + "\n")


def read_train_logs(logs: Mapping[tuple[str, int, str], str | os.PathLike]) -> pd.DataFrame:
    """Item 6: fine-tuning curves. `logs` maps (model, step, ft_set) to a train_log.jsonl (one JSON object per
    optimizer step with optimizer_step, epoch, loss, lr; or step for optimizer_step in logs written before,
    ptft.train_log.log_row). Returns model, step (the checkpoint), ft_set, train_step (the optimizer step), epoch,
    loss, lr; raises naming the file and line of a bad record."""
    rows = []
    for (model, step, ft_set), path in sorted(logs.items()):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = log_row(json.loads(line))
                    rows.append(
                        {"model": str(model), "step": int(step), "ft_set": str(ft_set),
                         "train_step": int(rec[OPTIMIZER_STEP]),
                         "epoch": int(rec["epoch"]), "loss": float(rec["loss"]), "lr": float(rec["lr"])}
                    )  # fmt: skip
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise ValueError(f"{path}: line {lineno}: not a training log record ({err!r})") from None
    cols = ["model", "step", "ft_set", "train_step", "epoch", "loss", "lr"]
    return pd.DataFrame(rows, columns=cols)
