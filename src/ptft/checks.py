"""The checks of a study config that a schema cannot express and that need other modules of ptft: task families
(ptft.tasks), hub and local data set specs (ptft.hubdata, ptft.localdata), checkpoint naming (ptft.hub), lm-eval
tasks (ptft.lmeval_tasks) and the memory plan (ptft.memory). ptft.config, which every module imports, imports none
of these; `validate` here is the whole check: the schema with its defaults, then these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptft import tasks
from ptft.config import ConfigError, fill_defaults, finetune_settings, load_schema, validate_schema
from ptft.hub import model_family
from ptft.hubdata import hub_spec_problems
from ptft.lmeval_tasks import RECORDED_METRICS, task_metrics
from ptft.localdata import local_file_problems, local_spec_problems, local_test_size
from ptft.memory import MemoryPlanError, plan_study
from ptft.settings import FinetuneSettings


def validate(config: dict[str, Any], schema: dict[str, Any] | None = None, source: str = "config",
             root: Path | None = Path(".")) -> dict[str, Any]:  # fmt: skip
    """A study config validated against the JSON Schema (a copy, defaults filled), then cross-checked
    (check_config), then its local files checked under root (check_files; root None skips them); raises
    ConfigError naming the key. source names the config in messages (its file)."""
    config = validate_schema(config, schema, source)
    check_config(config, source)
    if root is not None:
        check_files(config, root, source)
    return config


def check_files(config: dict[str, Any], root: Path = Path("."), source: str = "config") -> None:
    """What a job would find missing on disk, found before anything queues: every local model's checkpoint folders
    (path with {checkpoint} replaced, relative to the working directory as the materialize job resolves it; a step
    already copied to checkpoints/<model>/<step> is not looked for again) hold a config.json, and every local data
    file exists, parses and has the columns its fields read (ptft.localdata.local_file_problems, relative to root).
    Raises ConfigError listing every problem, each naming its key and file (and line)."""
    problems = []
    for model, spec in config["models"].items():
        if spec["source"] != "local":
            continue
        for step in spec["checkpoints"]:
            written = Path(str(spec["path"]).replace("{checkpoint}", str(step))).expanduser()
            folder = written if written.is_absolute() else Path(root) / written  # config paths: from the project root
            looked = "" if written.is_absolute() else f" (looked for {folder})"
            if Path("checkpoints", model, str(step)).is_dir():  # already copied into the study's folder (cwd)
                continue
            if not folder.is_dir():
                problems.append(f"models.{model}.path: {written} (checkpoint {step}) is not a folder{looked}")
            elif not (folder / "config.json").is_file():
                problems.append(f"models.{model}.path: {written} (checkpoint {step}) has no config.json{looked}")
    for name, spec in config["data"]["datasets"].items():
        if spec.get("source") == "local":
            problems += local_file_problems(name, spec, root)[0]
    if problems:
        raise ConfigError(f"{source}:\n  - " + "\n  - ".join(problems))


def small_test_warnings(config: dict[str, Any], root: Path = Path(".")) -> list[str]:
    """One warning per eval set whose test split will hold fewer than evaluate.min_test_items items, where the size is
    known before preparation: a local set's files (its test file, or its share of one file), else n_test; capped by
    evaluate.limit. Empty when min_test_items is 0 or every known size reaches it."""
    least, limit = config["evaluate"].get("min_test_items", 0), config["evaluate"].get("limit")
    warnings = []
    for name in config["evaluate"]["eval_sets"]:
        spec = config["data"]["datasets"][name]
        if spec.get("source") == "local":
            problems, rows = local_file_problems(name, spec, root)
            n = None if problems else local_test_size(spec, rows)
        else:
            n = spec.get("n_test")
        n = min(n, limit) if n is not None and limit is not None else n
        if n is not None and n < least:
            warnings.append(f"eval set {name!r} will score {n} test item(s), fewer than evaluate.min_test_items "
                            f"({least}): its scores and every statistic over them rest on {n} item(s). Give it more "
                            f"test rows, or set evaluate.min_test_items lower (0 turns this warning off)")
    return warnings


def check_config(config: dict[str, Any], source: str = "config") -> None:
    """Checks a schema cannot express, on a config whose defaults are filled (validate_schema, or Snakemake's
    validate): names that refer to each other, task families and their templates, hub and local data set specs,
    lm-eval tasks, divisibility, ordering, and the memory plan. Raises ConfigError naming the key; drops the schema's
    defaults of embedded-only keys from hub and local models (check_model) and registers the config's task families
    (ptft.tasks.register_from_config)."""
    datasets = config["data"]["datasets"]
    _check_tasks(config, source)
    _check_hub_datasets(config, source)
    for name in config["finetune"]["ft_sets"]:
        if name not in datasets:
            raise ConfigError(f"{source}: finetune.ft_sets.{name} is not a data set; known data.datasets: {sorted(datasets)}")
    for name in config["evaluate"]["eval_sets"]:
        if name not in datasets:
            raise ConfigError(f"{source}: evaluate.eval_sets lists {name!r}, which is not in data.datasets {sorted(datasets)}")
    for entry in config["evaluate"].get("lm_eval_tasks", []):
        if isinstance(entry, dict):
            origin = entry["from"]
            if origin not in config["evaluate"]["eval_sets"] or datasets[origin]["task"] != "question_generation":
                raise ConfigError(
                    f"{source}: evaluate.lm_eval_tasks stand-in {entry['name']!r}: 'from' must name a "
                    f"question_generation set among evaluate.eval_sets, got {origin!r}"
                )
    _check_lm_eval_tasks(config, source)
    fmt, formats = config["analysis"]["prompt_format"], config["evaluate"]["prompt_formats"]
    if fmt not in formats:  # every figure and table but prompt sensitivity reads this one format
        raise ConfigError(f"{source}: analysis.prompt_format {fmt!r} is not among evaluate.prompt_formats {formats}")
    overflow, eval_sets = config["evaluate"].get("shots_overflow"), set(config["evaluate"]["eval_sets"])
    if isinstance(overflow, dict) and set(overflow) != eval_sets:
        unnamed, unknown = sorted(eval_sets - set(overflow)), sorted(set(overflow) - eval_sets)
        raise ConfigError(
            f"{source}: evaluate.shots_overflow as a mapping names every eval set's policy; "
            f"eval sets not named: {unnamed}; names that are not eval sets: {unknown}"
        )
    ft_res = config.get("resources", {}).get("finetune", {})
    per_node, nodes = ft_res.get("processes_per_node") or max(1, ft_res.get("gpu", 0)), ft_res.get("nodes", 1)
    for name in config["finetune"]["ft_sets"]:
        settings = finetune_settings(config, name)
        FinetuneSettings.from_config(settings, name)  # validated once, before any job: unknown keys fail by name
        if settings["batch_size"] % (settings["micro_batch_size"] * per_node * nodes):
            raise ConfigError(
                f"{source}: finetune.ft_sets.{name}: batch_size {settings['batch_size']} is not a multiple of "
                f"micro_batch_size {settings['micro_batch_size']} x {per_node * nodes} processes (resources.finetune: "
                f"{per_node} per node x nodes {nodes}; effective batch = micro-batch x gradient accumulation x processes)"
            )
    for model, spec in config["models"].items():
        check_model(config, model, spec, source)
        ctx = spec.get("architecture", {}).get("max_position_embeddings")
        seq = spec.get("pretrain", {}).get("seq_len")
        if ctx and seq and seq > ctx:
            raise ConfigError(f"{source}: models.{model}.pretrain.seq_len {seq} exceeds architecture.max_position_embeddings {ctx}")
    try:
        plan_study(config, source)  # only when resources give gpu_mem_gb: memory per device, before anything runs
    except MemoryPlanError as err:
        raise ConfigError(str(err)) from None


EMBEDDED_KEYS = ("architecture", "tokenizer", "pretrain")
KEYS_OF_SOURCE = {
    "embedded": {"source", "checkpoints", *EMBEDDED_KEYS},
    "hub": {"source", "checkpoints", "repo", "family", "branches", "repo_template", "tokens_per_step", "snap", "main"},
    "local": {"source", "checkpoints", "path", "tokens_per_step"},
    "gguf": {"source", "checkpoints", "gguf", "main"},
}
# a hub model also names its checkpoints (ptft.hub.model_family) and its repository (repo, or repo_template)
REQUIRED_OF_SOURCE = {"embedded": (), "hub": (), "local": ("path", "tokens_per_step"), "gguf": ("gguf", "main")}


def check_model(config: dict[str, Any], model: str, spec: dict[str, Any], source: str = "config") -> None:
    """A model's keys must fit its source. Schema defaults of embedded-only keys are dropped from hub/local models."""
    kind = spec["source"]
    if kind != "embedded":
        # The schema's defaults fill architecture/tokenizer/pretrain for every model; keep only what the user wrote.
        schema = load_schema()
        model_schema = {**schema["properties"]["models"]["additionalProperties"], "$defs": schema["$defs"]}
        for key in EMBEDDED_KEYS:
            if key in spec and spec[key] == fill_defaults({key: {}}, model_schema)[key]:
                del spec[key]
    extra = sorted(set(spec) - KEYS_OF_SOURCE[kind])
    if extra:
        raise ConfigError(
            f"{source}: models.{model} (source {kind}) has {extra}, which apply to other sources only; "
            f"its keys are {sorted(KEYS_OF_SOURCE[kind])}"
            + (" (a hub model's architecture and tokenizer come from its repository)" if kind == "hub" else "")
        )
    missing = [key for key in REQUIRED_OF_SOURCE[kind] if key not in spec]
    if missing:
        raise ConfigError(f"{source}: models.{model} (source {kind}) needs {missing}")
    if kind == "hub":
        model_family(spec, model)
        if ("repo" in spec) == ("repo_template" in spec):
            raise ConfigError(f"{source}: models.{model} (source hub) needs exactly one of repo (checkpoints are its "
                              f"branches) and repo_template (one repository per step)")  # fmt: skip
    if kind == "gguf" and (spec["checkpoints"] != ["main"] or ("package" in spec["gguf"]) != ("version" in spec["gguf"])):
        raise ConfigError(f"{source}: models.{model} (source gguf) has one checkpoint, [main], and gguf.package comes "
                          f"with gguf.version")  # fmt: skip
    for item in spec["checkpoints"]:
        if kind not in ("hub", "gguf") and not isinstance(item, int):
            raise ConfigError(
                f"{source}: models.{model}.checkpoints: {item!r} is not a step; only hub models take revision "
                f"names and selection rules, a {kind} model's checkpoints are integers"
            )


def _check_tasks(config: dict[str, Any], source: str) -> None:
    """The config's own task families (tasks:) are registered (ptft.tasks.register_from_config: templates checked);
    every data set names a known family, and every eval set's family has each of evaluate.prompt_formats."""
    try:
        tasks.register_from_config(config)
    except tasks.TaskDefinitionError as err:
        raise ConfigError(f"{source}: {err}") from None
    for name, spec in config["data"]["datasets"].items():
        if spec["task"] not in tasks.TASKS:
            raise ConfigError(f"{source}: data.datasets.{name}.task: {spec['task']!r} is not a task family; known: "
                              f"{sorted(tasks.TASKS)} (define your own under tasks:)")
    for name in config["evaluate"]["eval_sets"]:
        family = tasks.TASKS.get(config["data"]["datasets"].get(name, {}).get("task"))
        missing = [f for f in config["evaluate"].get("prompt_formats", []) if family and f not in family.formats]
        if missing:
            raise ConfigError(f"{source}: evaluate.prompt_formats lists {missing}, which task {family.name!r} of eval set "
                              f"{name!r} has no template for (tasks.{family.name}.formats)")
    for name, spec in config["data"]["datasets"].items():
        if spec.get("source") == "local":
            problems = local_spec_problems(name, spec)
            if problems:
                raise ConfigError(f"{source}: " + "; ".join(problems))


def _check_hub_datasets(config: dict[str, Any], source: str) -> None:
    """Hub data sets: every field of the task mapped, labels fit the task, a scored set has a test split."""
    datasets = config["data"]["datasets"]
    for name, spec in datasets.items():
        if spec.get("source") != "hub":
            continue
        problems = hub_spec_problems(name, spec)
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
    for name in config["evaluate"]["eval_sets"]:
        spec = datasets.get(name, {})
        if spec.get("source") == "hub" and spec["splits"].get("test") is None:
            raise ConfigError(f"{source}: evaluate.eval_sets lists {name!r}, whose data.datasets.{name}.splits.test is "
                              "null (a set only fine-tuned on); give it a test split or leave it out of eval_sets")


def _check_lm_eval_tasks(config: dict[str, Any], source: str) -> None:
    """evaluate.lm_eval_tasks: no name is also an eval set (a results row's eval_set must say which it is), and each
    native task exists in the installed lm-eval and defines a metric ptft records (read from the task's own YAML)."""
    eval_sets = set(config["evaluate"]["eval_sets"])
    for entry in config["evaluate"].get("lm_eval_tasks", []):
        name = entry if isinstance(entry, str) else entry["name"]
        if name in eval_sets:
            raise ConfigError(
                f"{source}: evaluate.lm_eval_tasks entry {name!r} is also the name of an eval set in evaluate.eval_sets; "
                f"rows of both would share eval_set {name!r}. Rename the data set (e.g. data.datasets.{name}_qg and "
                "its entries in evaluate.eval_sets / finetune.ft_sets)"
            )
        if not isinstance(entry, str):
            continue
        try:
            metrics = task_metrics(entry)
        except KeyError as err:
            raise ConfigError(f"{source}: evaluate.lm_eval_tasks: {err.args[0]}") from None
        if "acc" not in metrics:
            raise ConfigError(
                f"{source}: evaluate.lm_eval_tasks: lm-eval task {entry!r} defines metrics {metrics}; ptft scores "
                f"native multiple-choice tasks by {list(RECORDED_METRICS)} and needs at least acc"
            )
    natives = [t for t in config["evaluate"].get("lm_eval_tasks", []) if isinstance(t, str)]
    stray = sorted(set(config["evaluate"].get("lm_eval_data") or {}) - set(natives))
    if stray:
        raise ConfigError(f"{source}: evaluate.lm_eval_data names {stray}, which are not lm-eval task names in "
                          f"evaluate.lm_eval_tasks {natives}")
