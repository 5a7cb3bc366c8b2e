"""Task data sets from local files (`source: local`): JSONL, CSV or Parquet read through `datasets`, mapped to the
task family's fields with the same `fields` / `labels` / `n_train` machinery as hub sets (ptft.hubdata), written as
data/{name}/train.jsonl, test.jsonl and card.json like every other set.

Either one file per split (`files: {train: ..., test: ...}`) or one file (`files: {all: ...}`) split by a seeded
fraction (`split: {test_fraction: 0.2, seed: 42}`, datasets' Dataset.train_test_split). Paths are relative to the
project root (where Snakemake runs). Local data are the user's own, so they are held to more than hub rows: a row
lacking a field, or whose label is not mapped, fails naming the file and the row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ptft.data.card import CARD_FILE, target_summary
from ptft.records import check_columns, field_problems, label_word, subsample, template_columns, to_records
from ptft.provenance import PROVENANCE_FILE, atomic_dir, discard_provenance, provenance, sha256_file, write_json, write_jsonl
from ptft.tasks import TaskFamily, get_task

# file extension -> datasets' packaged builder that reads it (datasets.load_dataset(builder, data_files=...))
BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
INDEX_COLUMN = "__ptft_row__"


class LocalDataError(ValueError):
    """A local data set cannot be prepared: a file is missing or unreadable, a row lacks a field or has an unmapped label."""


def builder(path: str | Path) -> str:
    """The datasets builder of a data file, by its extension; LocalDataError naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in BUILDERS:
        raise LocalDataError(f"{path}: unknown data file type {suffix!r}; expected one of {sorted(BUILDERS)}")
    return BUILDERS[suffix]


def local_files(spec: Mapping[str, Any]) -> list[str]:
    """The data files of a local set, as written in the config (relative to the project root): the rule's inputs."""
    return [spec["files"][k] for k in sorted(spec.get("files") or {})]


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


def _load(path: Path, cache_dir: Path):
    import datasets

    if not path.is_file():
        raise LocalDataError(f"{path}: no such data file")
    try:
        loaded = datasets.load_dataset(builder(path), data_files={"rows": str(path)}, split="rows", cache_dir=str(cache_dir))
    except Exception as err:  # datasets wraps parser errors in several types; name the file either way
        raise LocalDataError(f"{path}: cannot be read as {builder(path)} ({type(err).__name__}: {err})") from None
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
    files = {key: root / path for key, path in spec["files"].items()}
    if "all" in files:
        whole = _load(files["all"], cache_dir)
        parts = whole.train_test_split(test_size=float(spec["split"]["test_fraction"]), seed=int(spec["split"]["seed"]))
        loaded = {"train": (files["all"], parts["train"]), "test": (files["all"], parts["test"])}
    else:
        loaded = {role: (files[role], _load(files[role], cache_dir)) for role in ("train", "test")}
    out, sizes = {}, {}
    for role, (path, dataset) in loaded.items():
        check_columns(name, str(path), [c for c in dataset.column_names if c != INDEX_COLUMN], spec["fields"])
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


def local_dataset_card(name: str, spec: Mapping[str, Any], seed: int, files: Mapping[str, Path], sizes: dict,
                       splits: dict[str, list[dict[str, str]]], family: TaskFamily) -> dict[str, Any]:
    card: dict[str, Any] = {
        "name": name,
        "task": family.name,
        "source": "local",
        "files": {key: {"path": str(spec["files"][key]), "sha256": sha256_file(path)} for key, path in sorted(files.items())},
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
