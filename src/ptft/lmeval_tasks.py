"""lm-evaluation-harness's own task definitions, read from the installed package's YAML files without importing the
harness (planning checks a config with them in milliseconds): where a task is defined, which data set it loads and
which metrics it defines (BoolQ defines only `acc`; ARC, OpenBookQA, HellaSwag and SciQ `acc` and `acc_norm`).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

# The multiple-choice metrics ptft records for a native task (a row per metric the task defines among these).
RECORDED_METRICS = ("acc", "acc_norm")
_TASK_LINE = re.compile(r"^task:\s*['\"]?([^'\"\s#]+)", re.M)


class _Loader(yaml.SafeLoader):
    """A YAML loader that reads `!function module.name` tags as plain strings (never imports or runs them)."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix} {loader.construct_scalar(node)}")


@functools.lru_cache(maxsize=1)
def tasks_root() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("lm_eval is not installed (envs/requirements.lock pins it)")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, Path]:
    """{task name: the YAML file that defines it} over every YAML file of lm_eval/tasks (first definition wins)."""
    index: dict[str, Path] = {}
    for path in sorted(tasks_root().rglob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        match = _TASK_LINE.search(text)
        if match:
            index.setdefault(match.group(1), path)
    return index


def task_yaml(name: str) -> Path:
    """The YAML file defining lm-eval task `name`. Raises KeyError naming the task when the harness has none."""
    try:
        return _index()[name]
    except KeyError:
        raise KeyError(f"{name!r} is not an lm-eval task of the installed lm_eval ({tasks_root()})") from None


def task_definition(name: str) -> dict[str, Any]:
    """The task's YAML with its `include:` chain merged in (the including file's keys win), tags left as text."""

    def load(path: Path) -> dict[str, Any]:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
        base = data.pop("include", None)
        if base:
            return {**load(path.parent / base), **data}
        return data

    return load(task_yaml(name))


def task_metrics(name: str) -> list[str]:
    """The metrics the task defines (its metric_list), in its order: e.g. ['acc'] for boolq."""
    metrics = [m["metric"] for m in task_definition(name).get("metric_list") or [] if isinstance(m, dict)]
    if not metrics:
        raise KeyError(f"lm-eval task {name!r} ({task_yaml(name)}) defines no metric_list")
    return metrics
