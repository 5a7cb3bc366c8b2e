"""Preflight of evaluate.lm_eval_tasks: every native task is known to the installed harness, its config resolves
and its data set and splits exist on the hub; no task (native or stand-in) shares a name with an eval set."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

from ptft import hubclient, hubdata
from ptft.preflight.rows import Row, ok, problem

# `datasets`' builders that read files named in data_files (an lm-eval task may use one instead of a hub repo)
FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


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

    subject = f"evaluate.lm_eval_tasks[{i}]"
    if task not in manager.all_tasks:
        close = difflib.get_close_matches(task, list(manager.all_tasks), n=4)
        return [problem("lm-eval task", subject, f"{task!r} is not a task of lm_eval {_version('lm_eval')}",
                        f"use an lm-eval task name{f', e.g. {close}' if close else ''}")]
    try:
        config = lm_eval_task_config(manager, task)
    except Exception as err:  # noqa: BLE001 - the harness raises several kinds for a broken config
        return [problem("lm-eval task", subject, f"{task!r}: its config does not resolve: {hubclient.first_line(err)}",
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
        commit, _ = hubdata.retrying(name, f"{repo} revision {revision!r}",
                                     lambda: hubdata.pin_revision(name, repo, revision))  # fmt: skip
        files = hubdata.retrying(name, where, lambda: hubdata.split_data_files(
            name, repo, config.get("dataset_name"), commit, hubclient.datasets_cache_dir(), kwargs.get("data_dir")))
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
    """The installed version of a distribution (for messages)."""
    import importlib.metadata

    return importlib.metadata.version(package)
