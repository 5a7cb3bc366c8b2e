"""Preflight: before a study spends a GPU-hour, check against the hub everything it will touch, without
downloading weights or whole data sets, and print one table of what is ok and what to fix.

    python -m ptft.preflight --configfile configs/paper-olmo1b.yaml [--json preflight.json]
    make preflight CONFIG=configs/paper-olmo1b.yaml

Checked: every hub checkpoint resolves to a branch and commit (ptft.hub's resolution, snap rules, selection rules and
the revisions lock); every hub data set, config and split exists (ptft.hubdata's pinning and its errors, a loading-
script repo included); every configured field names a real column; every raw label of a sample of rows is mapped by
`labels` (or is a number for `label_threshold`), as is every name of a ClassLabel column; every lm-eval task of
`evaluate.lm_eval_tasks` is known to the harness and its data set and splits exist, and none shares a name with an
eval set; each model's tokenizer loads (tokenizer and config files only); and the longest k-shot prompt of each eval
set on the sample, rendered with ptft.tasks's templates in every configured prompt format, plus its longest answer,
fits the model's context. The exit code is 1 when any check finds a problem.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from ptft.config import ConfigError

SAMPLE_ROWS = 64  # rows read from the start of each split: enough to see label codings and typical lengths
PROJECT_DIR = Path(__file__).resolve().parents[2]
THREADS = 8  # checks wait on the network, not the CPU
OK, PROBLEM = "ok", "problem"
# `datasets`' builders that read files named in data_files (an lm-eval task may use one instead of a hub repo)
FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
PARQUET_CONVERSION = "refs/convert/parquet"  # the hub's branch holding its parquet export of a data set


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the preflight table: what was checked (check), the config key it concerns (subject), ok or
    problem (status), what was found (detail) and, for a problem, what to change (fix)."""

    check: str
    subject: str
    status: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def ok(check: str, subject: str, detail: str) -> Row:
    return Row(check, subject, OK, detail)


def problem(check: str, subject: str, detail: str, fix: str) -> Row:
    return Row(check, subject, PROBLEM, detail, fix)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ------------------------------------------------------------------------------------------------ checkpoints


@dataclasses.dataclass
class ModelFacts:
    """What the checkpoint checks learned about one hub model: the commit whose tokenizer and config are read."""

    repo: str
    commit: str | None = None
    label: str | None = None
    tokenizer: Any = None
    context: int | None = None  # tokens, as lm-eval resolves it (model_context)
    context_source: str = ""


def check_model(model: str, spec: Mapping[str, Any], lock: Mapping[str, Any]) -> tuple[list[Row], ModelFacts]:
    """Rows for every configured checkpoint of a hub model (one call for the list of refs), then its tokenizer."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    from ptft import hub

    rows: list[Row] = []
    facts = ModelFacts(hub.model_repo(spec))
    base = f"models.{model}"
    try:
        family = hub.model_family(spec, model)
        if family.repo_template is not None:
            return _check_step_repos(model, spec, family)
        refs = hub.list_refs(spec["repo"], family, os.environ.get("HF_TOKEN"))
    except (hub.HubError, ConfigError) as err:
        return [problem("checkpoint", f"{base}.repo", str(err), "fix models.<name>.repo / family, or set HF_TOKEN")], facts
    commits = {r.commit for r in refs}
    pinned = lock.get("models", {}).get(model, {})
    if pinned and pinned.get("repo") != spec["repo"]:
        rows.append(problem("lock", f"{base}.repo", f"the revisions lock pins {model} to repo {pinned.get('repo')!r}, "
                            f"the config names {spec['repo']!r}", f"delete models.{model} from the lock file"))
        pinned = {}
    used: list[tuple[str, str]] = []  # (label, commit) of every checkpoint that resolved
    for i, item in enumerate(spec["checkpoints"]):
        subject = f"{base}.checkpoints[{i}]"
        if isinstance(item, dict):
            key = hub.rule_key(item)
            try:
                picked = hub.select(item, refs, repo=spec["repo"], model=model)
            except hub.HubError as err:
                rows.append(problem("checkpoint", subject, str(err), "choose another selection rule or repo"))
                continue
            locked = pinned.get("rules", {}).get(key)
            steps = [r.step for r in picked]
            if locked is not None and [int(s) for s in locked] != steps:
                rows.append(problem("lock", subject, f"rule {key} is pinned in the revisions lock to steps {locked}; "
                                    f"the hub's branches now give {steps}", "keep the lock (it wins), or delete the "
                                    f"rule's entry to re-resolve: make lock-revisions"))  # fmt: skip
            else:
                rows.append(ok("checkpoint", subject, f"{key} -> steps {steps}"))
            used += [(str(r.step), r.commit) for r in picked]
            continue
        entry = pinned.get("checkpoints", {}).get(str(item))
        if entry is not None:
            commit = entry["commit"]
            if commit not in commits:  # the branch moved on since it was pinned: the pinned commit must still exist
                try:
                    with hub.hub_errors(spec["repo"], f"read pinned commit {commit}"):
                        HfApi(endpoint=hub._endpoint(), token=os.environ.get("HF_TOKEN")).model_info(spec["repo"], revision=commit)
                except RevisionNotFoundError:
                    rows.append(problem("checkpoint", subject, f"{item!r} is pinned in the revisions lock to commit "
                                        f"{commit}, which {spec['repo']} no longer has", "delete that entry of the "
                                        "lock file to resolve the checkpoint again (the weights may differ)"))  # fmt: skip
                    continue
                except hub.HubError as err:
                    rows.append(problem("checkpoint", subject, str(err), "see the message"))
                    continue
            rows.append(ok("checkpoint", subject, f"{item!r} pinned: branch {entry['branch']} commit {commit[:10]}"))
            used.append((str(item), commit))
            continue
        try:
            entry = hub.resolve(item, refs, repo=spec["repo"], model=model, snap=spec.get("snap", "exact"),
                                main=spec.get("main"))  # fmt: skip
        except hub.HubError as err:
            fix = (f"request a step that has a branch, or set {base}.snap: nearest" if isinstance(item, int)
                   else f"name an existing branch or tag, or set {base}.main")  # fmt: skip
            rows.append(problem("checkpoint", subject, str(err), fix))
            continue
        snapped = f" (snapped from {item})" if entry["snapped"] else ""
        rows.append(ok("checkpoint", subject, f"{item!r} -> branch {entry['branch']}{snapped}, step {entry['step']}, "
                       f"commit {entry['commit'][:10]}"))  # fmt: skip
        used.append((str(item), entry["commit"]))
    if used:
        facts.label, facts.commit = used[-1]
        rows.append(_check_tokenizer(model, spec, facts))
    return rows, facts


def _check_step_repos(model: str, spec: Mapping[str, Any], family) -> tuple[list[Row], ModelFacts]:
    """Rows for a model published one repository per step (repo_template): each step's repository and its main."""
    from ptft import hub

    rows: list[Row] = []
    facts = ModelFacts(spec["repo_template"])
    for i, item in enumerate(spec["checkpoints"]):
        subject = f"models.{model}.checkpoints[{i}]"
        try:
            entry = hub.step_repo_entry(item, family, model=model, token=os.environ.get("HF_TOKEN"))
        except hub.HubError as err:
            rows.append(problem("checkpoint", subject, str(err), f"fix models.{model}.repo_template or the step"))
            continue
        rows.append(ok("checkpoint", subject, f"{item!r} -> {entry['repo']} main, commit {entry['commit'][:10]}"))
        facts.repo, facts.label, facts.commit = entry["repo"], str(item), entry["commit"]
    if facts.commit is not None:
        rows.append(_check_tokenizer(model, spec, facts))
    return rows, facts


def _check_tokenizer(model: str, spec: Mapping[str, Any], facts: ModelFacts) -> Row:
    """Load the tokenizer and model config of one checkpoint (their files only, never weights, no remote code)."""
    from transformers import AutoConfig, AutoTokenizer

    from ptft import hub

    subject = f"models.{model}"
    where = f"{facts.repo}@{facts.commit[:10]} (checkpoint {facts.label!r})"
    kwargs = dict(revision=facts.commit, cache_dir=hub._cache_dir(), token=os.environ.get("HF_TOKEN"),
                  trust_remote_code=False)  # fmt: skip
    try:
        config = AutoConfig.from_pretrained(facts.repo, **kwargs)
        facts.tokenizer = AutoTokenizer.from_pretrained(facts.repo, **kwargs)
    except Exception as err:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError for these
        return problem("tokenizer", subject, f"{where}: tokenizer or config.json does not load without remote code: "
                       f"{_first_line(err)}", "use the repository's native transformers version (e.g. the -hf repo); "
                       "for a gated repo set HF_TOKEN to a token of an account that accepted its terms")  # fmt: skip
    facts.context, facts.context_source = model_context(config, facts.tokenizer)
    return ok("tokenizer", subject, f"{where}: {type(facts.tokenizer).__name__}, vocabulary {len(facts.tokenizer)}, "
              f"context {facts.context} ({facts.context_source})")  # fmt: skip


def model_context(config: Any, tokenizer: Any) -> tuple[int, str]:
    """The longest sequence, in tokens, that lm-eval gives the model, and where that number came from: lm-eval's own
    resolve_max_length (lm_eval/models/utils.py, which HFLM.max_length calls) reads the model config's n_positions /
    max_position_embeddings / n_ctx (of text_config first), else the tokenizer's model_max_length, else 2048."""
    from lm_eval.models.utils import resolve_max_length

    context = resolve_max_length(config, tokenizer)
    text_config = getattr(config, "text_config", None) or config
    named = [a for a in ("n_positions", "max_position_embeddings", "n_ctx") if getattr(text_config, a, None) == context]
    if named:
        return context, f"config.{named[0]}"
    if getattr(tokenizer, "model_max_length", None) == context:
        return context, "tokenizer.model_max_length"
    return context, "lm-eval's default: neither the config nor the tokenizer says"


# ----------------------------------------------------------------------------------------------------- data sets


@dataclasses.dataclass
class DatasetFacts:
    """What the data set checks read: the sampled rows of each role's split, turned into records."""

    records: dict[str, list[dict[str, str]]] = dataclasses.field(default_factory=dict)


def _sample_rows(name: str, repo: str, config: str | None, split: str, commit: str, files: Sequence[str],
                 data_dir: str | None, k: int) -> tuple[list[dict[str, Any]], list[str], Any]:  # fmt: skip
    """The first k rows of a split (streamed: only the bytes of the first batches are read), its column names and
    its features (None when datasets cannot tell them without reading the data)."""
    import datasets

    from ptft import hubdata

    def load():
        stream = datasets.load_dataset(repo, config, split=split, revision=commit, data_dir=data_dir,
                                       data_files={split: list(files)}, streaming=True)  # fmt: skip
        rows = list(stream.take(k))
        features = stream.features
        columns = list(features) if features else list(rows[0]) if rows else []
        return rows, columns, features

    return hubdata._retrying(name, f"{repo} (config {config!r}, split {split!r}, first {k} rows)", load)


def check_dataset(name: str, spec: Mapping[str, Any], k: int = SAMPLE_ROWS) -> tuple[list[Row], DatasetFacts]:
    """Rows for a hub data set: its repo and revision, each configured split, each field's columns, its labels."""
    from ptft import hubdata
    from ptft.tasks import get_task

    base = f"data.datasets.{name}"
    facts = DatasetFacts()
    hub_spec = spec["hub"]
    repo, config, data_dir = hub_spec["repo"], hub_spec.get("config"), hub_spec.get("data_dir")
    revision = str(hub_spec.get("revision") or "main")
    try:
        commit, _ = hubdata._retrying(name, f"{repo} revision {revision!r}", lambda: hubdata._pin(name, repo, revision))
    except hubdata.HubDataError as err:
        if "has no revision" not in str(err):
            return [problem("dataset", f"{base}.hub.repo", str(err), "fix the repo id; for a gated or private repo "
                            "set HF_TOKEN to a token with access")], facts  # fmt: skip
        fix = (f"name a branch, tag or commit of {repo} in {base}.hub.revision")
        if revision == PARQUET_CONVERSION:
            fix = (f"the hub has no parquet conversion of {repo} (a loading-script repo it did not convert): choose "
                   "a copy of the data set stored as data files (parquet, json, csv), e.g. the one lm-eval's task uses")
        return [problem("dataset", f"{base}.hub.revision", str(err), fix)], facts
    try:
        files = hubdata._retrying(name, f"{repo} (config {config!r})", lambda: hubdata.split_data_files(
            name, repo, config, commit, hubdata._cache_dir(), data_dir))  # fmt: skip
    except hubdata.HubDataError as err:
        text = str(err)
        if "loading script" in text:
            fix = ("read the hub's parquet conversion (hub.revision: refs/convert/parquet, hub.data_dir: its config "
                   "folder, hub.config: null) if the repo has one, or choose a script-free copy of the data set")
            return [problem("dataset", f"{base}.hub", text, fix)], facts
        key = f"{base}.hub.config" if "no config" in text else f"{base}.hub"
        return [problem("dataset", key, text, "name one of the configs listed")], facts
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
                facts.records[role], _ = hubdata.to_records(name, split, sample, range(len(sample)), spec, family)
    return rows, facts


def _field_rows(name: str, spec: Mapping[str, Any], sampled: Mapping[str, tuple]) -> list[Row]:
    """One row per configured field: every column it reads exists in every split used (hubdata.check_columns)."""
    from ptft import hubdata

    rows = []
    for field_name, source in spec["fields"].items():
        subject = f"data.datasets.{name}.fields.{field_name}"
        errors = []
        for split, (_, columns, _) in sampled.items():
            try:
                hubdata.check_columns(name, split, columns, {field_name: source})
            except hubdata.HubDataError as err:
                errors.append(str(err))
        if errors:
            rows.append(problem("columns", subject, "; ".join(errors), f"name a column of the split in {subject}"))
        else:
            rows.append(ok("columns", subject, f"{source!r} reads {hubdata.template_columns(str(source))}"))
    return rows


def _label_rows(name: str, spec: Mapping[str, Any], family: Any, sampled: Mapping[str, tuple]) -> list[Row]:
    """Every raw label in the sample (and every name of a ClassLabel column) has a label word."""
    from ptft import hubdata

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
            if hubdata.label_word(raw, spec, family) is None:
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


# ------------------------------------------------------------------------------------------------ lm-eval tasks


def name_clash_rows(config: Mapping[str, Any]) -> list[Row]:
    """An lm-eval task (native or stand-in) named like an eval set: results rows could not say which is which."""
    eval_sets = set((config.get("evaluate") or {}).get("eval_sets") or [])
    rows = []
    for i, entry in enumerate((config.get("evaluate") or {}).get("lm_eval_tasks") or []):
        task = entry if isinstance(entry, str) else entry.get("name")
        subject = f"evaluate.lm_eval_tasks[{i}]"
        if task in eval_sets:
            rows.append(problem("name clash", subject, f"lm-eval task {task!r} is also an eval set "
                                f"(evaluate.eval_sets); a results row's eval_set would not say which it is",
                                f"rename the data set (data.datasets.{task} and its uses), or drop one of the two"))
        else:
            rows.append(ok("name clash", subject, f"{task!r} names no eval set"))
    return rows


def task_manager(names: Sequence[str]) -> Any:
    """An lm-eval TaskManager that knows the named tasks. Indexing all of the harness's ~14,000 task YAML files takes
    half a minute here, so it first indexes only the folders of files that declare `task: <name>` (a text scan
    takes a second); a name no file declares (a typo, a group, a Python-defined task) gets the full index."""
    import re

    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    root = Path(lm_eval.tasks.__file__).parent
    wanted = set(names)
    declares = re.compile(rb"^task:[ \t]*['\"]?([\w.-]+)['\"]?[ \t]*$", re.M)
    folders: dict[str, Path] = {}
    for path in root.rglob("*.yaml"):
        for match in declares.finditer(path.read_bytes()):
            if match.group(1).decode() in wanted:
                folders.setdefault(match.group(1).decode(), path.parent)
    if set(folders) == wanted:
        manager = TaskManager(include_defaults=False, include_path=sorted({str(f) for f in folders.values()}))
        if wanted <= set(manager.all_tasks):
            return manager
    return _full_task_manager()


@functools.lru_cache(maxsize=1)
def _full_task_manager() -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=True)


def check_lm_eval_task(i: int, task: str, manager: Any) -> list[Row]:
    """A native lm-eval task: the harness knows it, its config resolves, its data set and splits exist on the hub."""
    import difflib

    from ptft import hubdata

    subject = f"evaluate.lm_eval_tasks[{i}]"
    if task not in manager.all_tasks:
        close = difflib.get_close_matches(task, list(manager.all_tasks), n=4)
        return [problem("lm-eval task", subject, f"{task!r} is not a task of lm_eval {_version('lm_eval')}",
                        f"use an lm-eval task name{f', e.g. {close}' if close else ''}")]
    try:
        config = lm_eval_task_config(manager, task)
    except Exception as err:  # noqa: BLE001 - the harness raises several kinds for a broken config
        return [problem("lm-eval task", subject, f"{task!r}: its config does not resolve: {_first_line(err)}",
                        "choose another task or lm_eval version")]
    if config is None:
        return [ok("lm-eval task", subject, f"{task!r} is a group of lm-eval tasks (its members are not checked)")]
    repo = config.get("dataset_path")
    kwargs = config.get("dataset_kwargs") or {}
    if not repo or config.get("custom_dataset") or repo in FILE_BUILDERS or kwargs.get("data_files"):
        return [ok("lm-eval task", subject, f"{task!r}: config resolves; its data are not a hub data set "
                   f"(dataset_path {repo!r}), so they are not checked here")]  # fmt: skip
    name, revision = f"lm-eval task {task}", str(kwargs.get("revision") or "main")
    splits = [config[k] for k in ("test_split", "validation_split", "training_split", "fewshot_split") if config.get(k)]
    where = f"{repo} (config {config.get('dataset_name')!r})"
    try:
        commit, _ = hubdata._retrying(name, f"{repo} revision {revision!r}", lambda: hubdata._pin(name, repo, revision))
        files = hubdata._retrying(name, where, lambda: hubdata.split_data_files(
            name, repo, config.get("dataset_name"), commit, hubdata._cache_dir(), kwargs.get("data_dir")))  # fmt: skip
    except hubdata.HubDataError as err:
        return [problem("lm-eval task", subject, f"{task!r} reads {where}: {err}",
                        "use another task, or an lm_eval version whose task reads a script-free data set")]
    missing = [s for s in dict.fromkeys(splits) if s not in files]
    if missing:
        return [problem("lm-eval task", subject, f"{task!r} reads splits {missing} of {where}, which has "
                        f"{sorted(files)}", "use another task or lm_eval version")]
    return [ok("lm-eval task", subject, f"{task!r}: {where} commit {commit[:10]}, splits {list(dict.fromkeys(splits))}")]


def lm_eval_task_config(manager: Any, task: str) -> dict[str, Any] | None:
    """The task's YAML config with its `include`s applied (the harness's task index, functions unresolved), or None
    for a group or tag of tasks (lm_eval/tasks/_index.py: Entry.kind, Entry.cfg)."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index[task]
    if entry.kind not in (Kind.TASK, Kind.PY_TASK):
        return None
    return dict(entry.cfg or {})


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


# --------------------------------------------------------------------------------------------- prompt lengths


def longest_prompt(records: Mapping[str, Sequence[Mapping[str, str]]], family: Any, prompt_format: str, shots: int,
                   count: Callable[[str], int]) -> tuple[int, str]:  # fmt: skip
    """Tokens of the longest k-shot prompt the sample allows and the prompt itself: the `shots` longest training
    examples (prompt, TARGET_DELIMITER, target) joined by FEWSHOT_DELIMITER, then the longest test prompt, as
    lm-eval lays a few-shot context out (its ContextSampler; ptft.evaluate.task_config sets the delimiters)."""
    from ptft.tasks import FEWSHOT_DELIMITER, TARGET_DELIMITER

    examples = [family.render(r, prompt_format) + TARGET_DELIMITER + family.target(r) for r in records.get("train", [])]
    examples = sorted(examples, key=count, reverse=True)[:shots]
    tests = [family.render(r, prompt_format) for r in records.get("test", [])]
    text = FEWSHOT_DELIMITER.join([*examples, max(tests, key=count)])
    return count(text), text


def answer_tokens(family: Any, records: Sequence[Mapping[str, str]], count: Callable[[str], int]) -> int:
    """Room the answer needs after the prompt: max_new_tokens for generation, the longest label word (with its
    delimiter) for classification."""
    from ptft.tasks import TARGET_DELIMITER

    if family.kind == "classification":
        return max(count(TARGET_DELIMITER + w) for w in family.label_words)
    return family.max_new_tokens


def context_rows(config: Mapping[str, Any], models: Mapping[str, ModelFacts],
                 datasets_: Mapping[str, DatasetFacts]) -> list[Row]:  # fmt: skip
    """For each eval set and model: the longest prompt over the configured formats and shots fits the context."""
    from ptft.tasks import get_task

    rows = []
    evaluate = config["evaluate"]
    for i, name in enumerate(evaluate["eval_sets"]):
        facts = datasets_.get(name)
        if facts is None or "test" not in facts.records or not facts.records["test"]:
            continue
        family = get_task(config["data"]["datasets"][name]["task"])
        for model, mfacts in models.items():
            if mfacts.tokenizer is None or mfacts.context is None:
                continue
            subject = f"evaluate.eval_sets[{i}] x models.{model}"

            def count(text: str, tok=mfacts.tokenizer) -> int:
                return len(tok(text)["input_ids"])

            worst = None
            for prompt_format in evaluate["prompt_formats"]:
                for shots in evaluate["shots"]:
                    tokens, _ = longest_prompt(facts.records, family, prompt_format, int(shots), count)
                    need = tokens + answer_tokens(family, facts.records["test"], count)
                    if worst is None or need > worst[0]:
                        worst = (need, tokens, prompt_format, int(shots))
            need, tokens, prompt_format, shots = worst
            what = (f"{name}: longest {shots}-shot prompt on {len(facts.records['test'])} test and "
                    f"{len(facts.records.get('train', []))} train rows ({prompt_format} format) is {tokens} tokens, "
                    f"{need} with the answer; context {mfacts.context} ({mfacts.context_source})")  # fmt: skip
            if need > mfacts.context:
                rows.append(problem("context", subject, what, "lower evaluate.shots, or evaluate this set with a model "
                                    "of longer context; lm-eval would cut the prompt's start and score a different task"))
            else:
                rows.append(ok("context", subject, what))
    return rows


# ------------------------------------------------------------------------------------------------------- driver


def _import_clients() -> None:
    """Import datasets and transformers (with the tokenizer base class datasets reaches for) in this thread, before
    the checks' threads start: transformers' lazy module, first imported by several threads at once, can hand one of
    them a half-initialised module ("module 'transformers' has no attribute 'PreTrainedTokenizerBase'", seen in a
    fresh clone's test run)."""
    import datasets  # noqa: F401
    import transformers

    transformers.PreTrainedTokenizerBase  # noqa: B018 (resolves the lazy attribute now)


def run_checks(config: Mapping[str, Any], *, lock: Mapping[str, Any] | None = None, k: int = SAMPLE_ROWS,
               threads: int = THREADS) -> list[Row]:  # fmt: skip
    """Every preflight check of a validated study config, network waits in parallel threads; rows in config order."""
    lock = lock or {"models": {}}
    jobs: dict[tuple[int, str], concurrent.futures.Future] = {}
    native = [(i, t) for i, t in enumerate(config["evaluate"].get("lm_eval_tasks") or []) if isinstance(t, str)]
    rows: list[Row] = []
    for model, spec in config["models"].items():
        if spec.get("source") != "hub":
            rows.append(ok("model", f"models.{model}", f"source {spec.get('source')}: not on the hub, not checked here"))
    for name, spec in config["data"]["datasets"].items():
        if spec.get("source") != "hub":
            rows.append(ok("dataset", f"data.datasets.{name}", f"source {spec.get('source', 'generated')}: built by "
                           "the study, not checked here"))  # fmt: skip
    asks_hub = any(spec.get("source") == "hub" for part in (config["models"], config["data"]["datasets"])
                   for spec in part.values()) or bool(native)  # fmt: skip
    unreachable = hub_unreachable() if asks_hub else None
    if unreachable:  # one row, now, rather than every check retrying a dead connection with backoff
        return [*rows, problem("hub", "HF_ENDPOINT", unreachable, "preflight needs the network: check the connection, "
                               "a proxy (HTTPS_PROXY) or HF_ENDPOINT, then rerun")]  # fmt: skip
    _import_clients()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        manager = pool.submit(task_manager, [t for _, t in native]) if native else None
        for model, spec in config["models"].items():
            if spec.get("source") == "hub":
                jobs[(0, model)] = pool.submit(_guard, f"models.{model}", check_model, model, spec, lock)
        for name, spec in config["data"]["datasets"].items():
            if spec.get("source") == "hub":
                jobs[(1, name)] = pool.submit(_guard, f"data.datasets.{name}", check_dataset, name, spec, k)
        for i, task in native:
            jobs[(2, str(i))] = pool.submit(_guard, f"evaluate.lm_eval_tasks[{i}]",
                                            lambda i=i, task=task: (check_lm_eval_task(i, task, manager.result()), None))
        results = {key: future.result() for key, future in jobs.items()}
    models: dict[str, ModelFacts] = {}
    data: dict[str, DatasetFacts] = {}
    for (kind, name), (found, facts) in sorted(results.items(), key=lambda kv: kv[0][0]):
        rows += found
        if kind == 0 and facts is not None:
            models[name] = facts
        elif kind == 1 and facts is not None:
            data[name] = facts
    rows += name_clash_rows(config)
    rows += context_rows(config, models, data)
    return rows


def hub_unreachable(timeout_s: float = 15.0) -> str | None:
    """Why the hub cannot be reached (a connection or DNS failure, a timeout), or None when it answers anything."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    from ptft.hub import transient_http_error

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s)
    except Exception as err:  # noqa: BLE001 - sorted just below: only a failure to connect means unreachable
        if transient_http_error(err):
            return f"cannot reach the hub at {constants.ENDPOINT}: {type(err).__name__}: {_first_line(err)}"
        raise
    return None


def _guard(subject: str, check: Callable, *args: Any) -> tuple[list[Row], Any]:
    """Run one check; an error nobody foresaw becomes a problem row instead of ending the other checks."""
    try:
        return check(*args)
    except Exception as err:  # noqa: BLE001 - reported, with its type, in the table
        return [problem("unexpected", subject, f"{type(err).__name__}: {_first_line(err)}",
                        "a preflight check failed in a way it does not know; see the message")], None


def check_configfile(paths: Sequence[str | Path], k: int = SAMPLE_ROWS) -> list[Row]:
    """Load and validate a study config (several files merge, as in snakemake --configfile) and check it."""
    from ptft.config import validate
    from ptft.hub import lock_path, read_lock

    raw: dict[str, Any] = {}
    for p in paths:
        raw.update(yaml.safe_load(Path(p).read_text(encoding="utf-8")) or {})
    source = ", ".join(str(p) for p in paths)
    try:
        config = validate(raw, source=source)
    except ConfigError as err:
        # The name clash is found before validation so that it is named even where validation also refuses it.
        return [*[r for r in name_clash_rows(raw) if not r.ok],
                problem("config", source, str(err), "fix the key named (schemas/config.schema.yaml documents each)")]
    return run_checks(config, lock=read_lock(lock_path(config)), k=k)


def format_table(rows: Iterable[Row]) -> str:
    """The rows as a text table: check, subject, ok/problem with what was found, and the fix."""
    rows = list(rows)
    head = ("check", "subject", "result", "fix")
    cells = [(r.check, r.subject, f"{r.status}: {r.detail}", r.fix) for r in rows]
    widths = [max([len(head[0])] + [len(c[0]) for c in cells]), max([len(head[1])] + [len(c[1]) for c in cells])]
    lines = [f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]}"]
    for check, subject, result, fix in cells:
        lines.append(f"{check:<{widths[0]}}  {subject:<{widths[1]}}  {result}")
        if fix:
            lines.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}  fix: {fix}")
    problems = sum(not r.ok for r in rows)
    lines.append(f"{len(rows)} checks, {problems} problem(s)")
    return "\n".join(lines)


def run_in_subprocess(configfiles: Sequence[Sequence[str | Path]], *, endpoint: str, hf_home: str | Path,
                      token: str | None = None, k: int = SAMPLE_ROWS, timeout_s: float = 600,
                      cwd: str | Path = PROJECT_DIR) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Preflight of each config (a list of files each) against the hub at `endpoint`, in one fresh Python process
    (huggingface_hub, datasets and transformers read HF_ENDPOINT and the offline switches once, at import); returns
    each config's rows as dicts (Row's fields). `token` becomes HF_TOKEN (gated repos). Relative paths in the configs (revisions_lock) are read from `cwd`.
    For tests against a local hub (tests/hubserver.py). Raises RuntimeError with the process's stderr if it fails."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
               TRANSFORMERS_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
    if token:
        env["HF_TOKEN"] = token
    code = ("import json, sys, dataclasses; from ptft.preflight import check_configfile; "
            "print(json.dumps([[dataclasses.asdict(r) for r in check_configfile(files, int(sys.argv[2]))] "
            "for files in json.loads(sys.argv[1])]))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps([[str(f) for f in c] for c in configfiles]), str(k)],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"preflight process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptft.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, nargs="+", help="the study config (as given to snakemake)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--rows", type=int, default=SAMPLE_ROWS, help=f"rows sampled per split (default {SAMPLE_ROWS})")
    args = parser.parse_args(argv)
    # Preflight asks the hub, whatever the shell or the study's offline setting say; caches stay in the project.
    # Set before huggingface_hub, datasets and transformers are imported: they read these once.
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "0"
    os.environ.setdefault("HF_HOME", str(Path.cwd() / ".cache" / "huggingface"))
    rows = check_configfile(args.configfile, k=args.rows)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1) + "\n", encoding="utf-8")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
