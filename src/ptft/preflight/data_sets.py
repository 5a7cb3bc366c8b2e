"""Preflight of hub data sets: the repo, revision, config and each configured split exist (ptft.hubdata's pinning
and its errors, a loading-script repo included), every field names a real column, and every raw label of a sample
of rows (and every name of a ClassLabel column) has a label word."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from ptft import hubclient, hubdata, records
from ptft.preflight.rows import Row, ok, problem
from ptft.tasks import get_task

SAMPLE_ROWS = 64  # rows read from the start of each split: enough to see label codings and typical lengths
PARQUET_CONVERSION = "refs/convert/parquet"  # the hub's branch holding its parquet export of a data set


@dataclasses.dataclass
class DatasetFacts:
    """What the data set checks read: the sampled rows of each role's split, turned into records."""

    records: dict[str, list[dict[str, str]]] = dataclasses.field(default_factory=dict)


def _sample_rows(name: str, repo: str, config: str | None, split: str, commit: str, files: Sequence[str],
                 data_dir: str | None, k: int) -> tuple[list[dict[str, Any]], list[str], Any]:  # fmt: skip
    """The first k rows of a split (streamed: only the bytes of the first batches are read), its column names and
    its features (None when datasets cannot tell them without reading the data)."""
    import datasets

    def load():
        stream = datasets.load_dataset(repo, config, split=split, revision=commit, data_dir=data_dir,
                                       data_files={split: list(files)}, streaming=True)  # fmt: skip
        rows = list(stream.take(k))
        features = stream.features
        columns = list(features) if features else list(rows[0]) if rows else []
        return rows, columns, features

    return hubdata.retrying(name, f"{repo} (config {config!r}, split {split!r}, first {k} rows)", load)


def check_dataset(name: str, spec: Mapping[str, Any], k: int = SAMPLE_ROWS) -> tuple[list[Row], DatasetFacts]:
    """Rows for a hub data set: its repo and revision, each configured split, each field's columns, its labels; the
    facts (the first k rows of each split as records) for the context checks."""
    base = f"data.datasets.{name}"
    facts = DatasetFacts()
    hub_spec = spec["hub"]
    repo, config, data_dir = hub_spec["repo"], hub_spec.get("config"), hub_spec.get("data_dir")
    revision = str(hub_spec.get("revision") or "main")
    found = _revision_files(name, repo, config, data_dir, revision)
    if isinstance(found, Row):
        return [found], facts
    commit, files = found
    rows = [ok("dataset", f"{base}.hub", f"{repo} revision {revision} = commit {commit[:10]}, splits {sorted(files)}")]
    family = get_task(spec["task"])
    sampled: dict[str, tuple[list[dict[str, Any]], list[str], Any]] = {}
    for role in ("test", "train"):
        split = (spec.get("splits") or {}).get(role)
        if split is None:
            continue
        subject = f"{base}.splits.{role}"
        if split not in files:
            rows.append(problem("split", subject, hubdata.no_split_message(name, repo, config, split, files),
                                f"set {subject} to one of {sorted(files)}"))
            continue
        if split not in sampled:
            try:
                sampled[split] = _sample_rows(name, repo, config, split, commit, files[split], data_dir, k)
            except hubdata.HubDataError as err:
                rows.append(problem("split", subject, str(err), "see the message"))
                continue
        rows.append(ok("split", subject, f"{split!r}: {len(files[split])} data file(s), columns {sampled[split][1]}"))
    if not sampled:
        return rows, facts
    rows += _field_rows(name, spec, sampled)
    if family.kind == "classification":
        rows += _label_rows(name, spec, family, sampled)
    if all(r.ok for r in rows):
        for role in ("test", "train"):
            split = (spec.get("splits") or {}).get(role)
            if split in sampled:
                sample = sampled[split][0]
                facts.records[role], _ = records.to_records(name, split, sample, range(len(sample)), spec, family)
    return rows, facts


def _revision_files(name: str, repo: str, config: str | None, data_dir: str | None,
                    revision: str) -> tuple[str, dict[str, list[str]]] | Row:  # fmt: skip
    """The commit a data set's revision names and the data files of each split of its config there (hub metadata
    only), or the problem row that says why they cannot be had."""
    base = f"data.datasets.{name}"
    try:
        commit, _ = hubdata.retrying(name, f"{repo} revision {revision!r}",
                                     lambda: hubdata.pin_revision(name, repo, revision))  # fmt: skip
    except hubdata.HubDataError as err:
        if "has no revision" not in str(err):
            return problem("dataset", f"{base}.hub.repo", str(err), "fix the repo id; for a gated or private repo "
                           "set HF_TOKEN to a token with access")  # fmt: skip
        fix = (f"name a branch, tag or commit of {repo} in {base}.hub.revision")
        if revision == PARQUET_CONVERSION:
            fix = (f"the hub has no parquet conversion of {repo} (a loading-script repo it did not convert): choose "
                   "a copy of the data set stored as data files (parquet, json, csv), e.g. the one lm-eval's task uses")
        return problem("dataset", f"{base}.hub.revision", str(err), fix)
    try:
        files = hubdata.retrying(name, f"{repo} (config {config!r})", lambda: hubdata.split_data_files(
            name, repo, config, commit, hubclient.datasets_cache_dir(), data_dir))  # fmt: skip
    except hubdata.HubDataError as err:
        text = str(err)
        if "loading script" in text:
            fix = ("read the hub's parquet conversion (hub.revision: refs/convert/parquet, hub.data_dir: its config "
                   "folder, hub.config: null) if the repo has one, or choose a script-free copy of the data set")
            return problem("dataset", f"{base}.hub", text, fix)
        key = f"{base}.hub.config" if "no config" in text else f"{base}.hub"
        return problem("dataset", key, text, "name one of the configs listed")
    return commit, files


def _field_rows(name: str, spec: Mapping[str, Any], sampled: Mapping[str, tuple]) -> list[Row]:
    """One row per configured field: every column it reads exists in every split used (records.check_columns)."""
    rows = []
    for field_name, source in spec["fields"].items():
        subject = f"data.datasets.{name}.fields.{field_name}"
        errors = []
        for split, (_, columns, _) in sampled.items():
            try:
                records.check_columns(name, split, columns, {field_name: source})
            except hubdata.HubDataError as err:
                errors.append(str(err))
        if errors:
            rows.append(problem("columns", subject, "; ".join(errors), f"name a column of the split in {subject}"))
        else:
            rows.append(ok("columns", subject, f"{source!r} reads {records.template_columns(str(source))}"))
    return rows


def _label_rows(name: str, spec: Mapping[str, Any], family: Any, sampled: Mapping[str, tuple]) -> list[Row]:
    """Every raw label in the sample (and every name of a ClassLabel column) has a label word."""
    threshold = spec.get("label_threshold")
    subject = f"data.datasets.{name}.{'label_threshold' if threshold is not None else 'labels'}"
    column = spec["fields"][family.target_field]
    unmapped: dict[str, list[str]] = {}
    seen: set[str] = set()
    for split, (rows, columns, features) in sampled.items():
        if column not in columns:
            return []  # the columns row already says so
        raw_values = [row[column] for row in rows]
        feature = features.get(column) if features else None
        names = getattr(feature, "names", None)
        if names and threshold is None:  # a ClassLabel: every class must be mapped, not only those in the sample
            raw_values += list(range(len(names)))
        for raw in raw_values:
            seen.add(repr(raw))
            if records.label_word(raw, spec, family) is None:
                shown = f"{raw!r}" + (f" ({names[raw]})" if names and isinstance(raw, int) and 0 <= raw < len(names) else "")
                unmapped.setdefault(split, [])
                if shown not in unmapped[split]:
                    unmapped[split].append(shown)
    if unmapped:
        found = "; ".join(f"split {s!r}: {v}" for s, v in unmapped.items())
        fix = ("every raw value must be a number" if threshold is not None else
               f"map each raw value to one of {list(family.label_words)} in {subject}")
        if any(v.startswith("-1") for values in unmapped.values() for v in values):
            fix += "; -1 is how GLUE-style sets hide test labels: choose a labelled split in splits"
        return [problem("labels", subject, f"column {column!r} has values with no label word: {found}", fix)]
    return [ok("labels", subject, f"column {column!r}: every sampled value mapped ({len(seen)} distinct)")]
