"""The study config: schema validation with readable errors, cross-reference checks, and per-job config slices.

Snakemake validates with its own `validate()` (same schema); `check_config` adds the checks a schema
cannot express (names that must refer to each other). Each job receives only its own slice, so that
changing one training set's settings re-runs only that set's jobs, and only the slice's science settings
(x-ptft-role in the schema; `split_by_role`) reach Snakemake params, so scheduling settings re-run nothing.
`python -m ptft.config explain --configfile X --job finetune:<model>/<step>/<ft_set>` prints one job's settings.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path
from typing import Any

import yaml

from ptft.settings import ConfigError, FinetuneSettings, LoraSettings

__all__ = ["ConfigError"]  # defined in ptft.settings, the lower layer; raised and caught under this name everywhere

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"




def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema (a fresh copy each call: callers may change it). Parsed once per file and process: planning
    asks for it in every fine-tuning job's settings, and parsing the YAML dominated a paper-sized plan."""
    return copy.deepcopy(_parsed_schema(Path(path).resolve()))


@functools.lru_cache(maxsize=None)
def _parsed_schema(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _where(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def validate(config: dict[str, Any], schema: dict[str, Any] | None = None, source: str = "config") -> dict[str, Any]:
    """Validate against the JSON Schema (filling defaults), then cross-check; raise ConfigError naming the key."""
    import jsonschema

    schema = schema or load_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {_where(e)}: {e.message}" for e in errors[:10]]
        raise ConfigError(f"{source} does not match schemas/config.schema.yaml:\n" + "\n".join(lines))
    config = fill_defaults(config, schema)
    check_config(config, source)
    return config


def fill_defaults(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of config with the schema's `default`s filled in (recursively, through $ref)."""
    defs = schema.get("$defs", {})

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            node = {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def fill(value, node):
        node = resolve(node)
        if not isinstance(value, dict) or not isinstance(node, dict):
            return value
        out = dict(value)
        for key, sub in node.get("properties", {}).items():
            sub = resolve(sub)
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = fill(out[key], sub)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key in out:
                if key not in node.get("properties", {}):
                    out[key] = fill(out[key], extra)
        if "if" in node:
            # Defaults that depend on another key (a data set's source): the branch that applies fills its own.
            import jsonschema

            branch = node.get("then") if jsonschema.Draft202012Validator(node["if"]).is_valid(out) else node.get("else")
            if branch:
                out = fill(out, branch)
        return out

    return fill(config, schema)


def check_config(config: dict[str, Any], source: str = "config") -> None:
    """Checks a schema cannot express: names that refer to each other, divisibility, ordering."""
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
    from ptft.memory import MemoryPlanError, plan_study

    try:
        plan_study(config, source)  # only when resources give gpu_mem_gb: memory per device, before anything runs
    except MemoryPlanError as err:
        raise ConfigError(str(err)) from None


EMBEDDED_KEYS = ("architecture", "tokenizer", "pretrain")
KEYS_OF_SOURCE = {
    "embedded": {"source", "checkpoints", *EMBEDDED_KEYS},
    "hub": {"source", "checkpoints", "repo", "family", "branches", "repo_template", "tokens_per_step", "snap", "main"},
    "local": {"source", "checkpoints", "path", "tokens_per_step"},
}
# a hub model also names its checkpoints (ptft.hub.model_family) and its repository (repo, or repo_template)
REQUIRED_OF_SOURCE = {"embedded": (), "hub": (), "local": ("path", "tokens_per_step")}


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
        from ptft.hub import model_family

        model_family(spec, model)
        if ("repo" in spec) == ("repo_template" in spec):
            raise ConfigError(f"{source}: models.{model} (source hub) needs exactly one of repo (checkpoints are its "
                              f"branches) and repo_template (one repository per step)")  # fmt: skip
    for item in spec["checkpoints"]:
        if kind != "hub" and not isinstance(item, int):
            raise ConfigError(
                f"{source}: models.{model}.checkpoints: {item!r} is not a step; only hub models take revision "
                f"names and selection rules, a {kind} model's checkpoints are integers"
            )


def _check_tasks(config: dict[str, Any], source: str) -> None:
    """The config's own task families (tasks:) are registered (ptft.tasks.register_from_config: templates checked);
    every data set names a known family, and every eval set's family has each of evaluate.prompt_formats."""
    from ptft import tasks

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
    from ptft.localdata import local_spec_problems

    for name, spec in config["data"]["datasets"].items():
        if spec.get("source") == "local":
            problems = local_spec_problems(name, spec)
            if problems:
                raise ConfigError(f"{source}: " + "; ".join(problems))


def _check_hub_datasets(config: dict[str, Any], source: str) -> None:
    """Hub data sets: every field of the task mapped, labels fit the task, a scored set has a test split."""
    from ptft.hubdata import hub_spec_problems

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
    from ptft.lmeval_tasks import RECORDED_METRICS, task_metrics

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


def finetune_settings(config: dict[str, Any], ft_set: str) -> dict[str, Any]:
    """The complete fine-tuning slice of one training set, flat (science and scheduling keys side by side):
    the defaults of ptft.settings.FinetuneSettings < finetune.defaults < the set's own; plus the study's method, and
    its lora block (LoraSettings defaults < finetune.lora) when method is lora. Raises ConfigError for an unknown set."""
    ft = config["finetune"]
    if ft_set not in ft["ft_sets"]:
        raise ConfigError(f"finetune.ft_sets has no {ft_set!r}; known: {sorted(ft['ft_sets'])}")
    defaults = {key: value for key, value in FinetuneSettings().flat().items() if key not in _FINETUNE_PATHS}
    settings = {**defaults, **ft.get("defaults", {}), **(ft["ft_sets"][ft_set] or {})}
    # The study-wide method travels with each set's slice, so switching it re-runs every fine-tuning job.
    settings["method"] = ft.get("method", FinetuneSettings.method)
    if settings["method"] == "lora":
        settings["lora"] = {**vars(LoraSettings()), **ft.get("lora", {})}
    return settings


# A fine-tuning variant's label (the {ft_set} wildcard of the finetune rule, the {ft} of evaluate): the set's name,
# then "@lr<value>" when the set's lr is a list and "@seed<n>" for a seed of finetune.seeds other than the set's own
# seed. Studies without lr lists or seeds keep today's jobs at today's paths, and seeds [<own seed>, n] add runs.
VARIANT_MARK = "@"


def ft_set_of(label: str) -> str:
    """The training set a fine-tuning variant label belongs to ("news_sum@lr2e-06@seed1" -> "news_sum")."""
    return label.split(VARIANT_MARK, 1)[0]


def finetune_variants(config: dict[str, Any], ft_set: str) -> list[dict[str, Any]]:
    """Every fine-tuning run of one training set: [{"label", "ft_set", "lr", "seed", "lr_search"}], one per lr value
    (finetune.ft_sets.<set>.lr, a number or a list) x seed (finetune.seeds, or the set's own seed). lr_search is True
    when the set's lr is a list (its runs train without the dev slice). Raises ConfigError for an unknown set."""
    settings = finetune_settings(config, ft_set)
    lrs = settings["lr"] if isinstance(settings["lr"], list) else [settings["lr"]]
    seeds = config["finetune"].get("seeds") or [settings["seed"]]
    variants = []
    for lr in lrs:
        for seed in seeds:
            # the set's own seed keeps the plain name: listing seeds [<own>, n] adds runs without renaming the first
            parts = [f"lr{lr:g}"] if len(lrs) > 1 else []
            parts += [f"seed{seed}"] if seed != settings["seed"] else []
            label = VARIANT_MARK.join([ft_set, *parts])
            variants.append({"label": label, "ft_set": ft_set, "lr": lr, "seed": seed, "lr_search": len(lrs) > 1})
    return variants


def variant_science(config: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    """The science settings of one fine-tuning variant (finetune_science with its own lr and seed): for a set with one
    run exactly finetune_science, so adding an lr value or a seed leaves the other runs' params (rerun trigger) alone."""
    settings = finetune_science(config, variant["ft_set"])
    return canonical({**settings, "lr": variant["lr"], "seed": variant["seed"]})


def checkpoint_steps(config: dict[str, Any], model: str) -> list[int]:
    """The configured steps of an embedded model, in order."""
    return sorted(config["models"][model]["checkpoints"])


def checkpoint_labels(config: dict[str, Any], model: str, lock: dict[str, Any] | None = None) -> list[int | str]:
    """Every checkpoint label of a model (the {step} wildcard): steps, revision names, and the steps a selection
    rule was pinned to in the revisions lock. Planning needs no network: an unpinned rule is an error."""
    spec = config["models"][model]
    if spec["source"] == "embedded":
        return checkpoint_steps(config, model)
    labels: list[int | str] = []
    for item in spec["checkpoints"]:
        if isinstance(item, dict):
            from ptft.hub import RESOLVE_COMMAND, rule_key, rule_labels

            picked = rule_labels(lock or {}, model, item)
            if picked is None:
                raise ConfigError(
                    f"models.{model}.checkpoints: selection rule {rule_key(item)} is not resolved yet (planning does "
                    f"not ask the hub). Pin it in the revisions lock first: "
                    + RESOLVE_COMMAND.format(configfile="<your config>")
                )
            labels.extend(picked)
        else:
            labels.append(item)
    return list(dict.fromkeys(labels))


def previous_step(config: dict[str, Any], model: str, step: int) -> int | None:
    """The configured step an embedded checkpoint continues from (None for the first)."""
    earlier = [s for s in checkpoint_steps(config, model) if s < step]
    return earlier[-1] if earlier else None


def apply_offline(config: dict[str, Any], project_dir: Path) -> None:
    """Set the hub clients' mode for the study's jobs (they inherit this process's environment): an offline study
    forbids hub access; a study with offline: false allows it even when the shell (e.g. the Makefile) set
    HF_HUB_OFFLINE. Either way every cache defaults to the project's .cache/ (an HF_HOME already set wins)."""
    import os

    flag = "1" if config.get("offline", True) else "0"
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = flag
    cache = Path(project_dir).resolve() / ".cache"
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("XDG_CACHE_HOME", str(cache))


def put_first_on_path(folder: Path) -> None:
    """Make `folder` the first entry of PATH in this process and the jobs it starts (shell rules call `python` by name
    and must get the interpreter that has ptft, not whichever comes first in the user's shell)."""
    import os

    entries = [str(folder)] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != str(folder)]
    os.environ["PATH"] = os.pathsep.join(entries)


# ---------------------------------------------------------------- science vs scheduling
# Each setting's role is written in the schema (x-ptft-role). Only science settings reach a job's Snakemake params,
# Snakemake's rerun trigger; scheduling settings reach the job through threads:, resources:, or
# scheduling_settings() outside params (see rules/common.smk), so moving a study to other hardware reruns nothing.
ROLE_KEY = "x-ptft-role"
ROLES = ("science", "scheduling", "naming")
SCHEDULING_ENV = "PTFT_SCHEDULING"


def setting_roles(schema: dict[str, Any] | None = None) -> dict[str, str]:
    """Every setting of the schema -> its role: {"finetune.ft_sets.*.lr": "science", "evaluate.threads": ...}.

    A setting is a property with no properties of its own; "*" stands for a name (a model, a data set, a training
    set). Raises ConfigError naming every setting without an x-ptft-role (or with an unknown one), so a new key
    cannot be added without deciding whether changing it reruns jobs.
    """
    schema = schema if schema is not None else load_schema()
    defs = schema.get("$defs", {})
    roles: dict[str, str] = {}
    problems: list[str] = []

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def walk(node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        children = node.get("properties", {})
        entries = node.get("additionalProperties")
        # a mapping of named entries (models, data sets, training sets), each with its own settings
        named = isinstance(entries, dict) and ROLE_KEY not in node and "properties" in resolve(entries)
        if ROLE_KEY in node or not (children or named):
            role = node.get(ROLE_KEY)
            if role not in ROLES:
                problems.append(f"{path}: {ROLE_KEY} is {role!r}, expected one of {list(ROLES)}")
            roles[path] = role
            return
        for key, sub in children.items():
            walk(sub, f"{path}.{key}" if path else key)
        if named:
            walk(entries, f"{path}.*")

    walk(schema, "")
    if problems:
        raise ConfigError("schemas/config.schema.yaml: settings without a role:\n  - " + "\n  - ".join(problems))
    return roles


@functools.lru_cache(maxsize=None)
def _roles_of_file(path: Path) -> dict[str, str]:
    return setting_roles(_parsed_schema(path))


def role_of(path: str) -> str | None:
    """The role of one setting ("evaluate.batch_size" -> "scheduling"); None when path is a section, not a setting.
    Raises ConfigError for a path the schema does not know."""
    roles = _roles_of_file(SCHEMA_PATH.resolve())
    if path in roles:
        return roles[path]
    if any(r.startswith(path + ".") for r in roles):
        return None
    raise ConfigError(f"{path} is not a setting of schemas/config.schema.yaml")


def _is_map(path: str) -> bool:
    return any(r.startswith(path + ".*") for r in _roles_of_file(SCHEMA_PATH.resolve()))


def split_by_role(values: dict[str, Any], path: str, paths: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """values (the config section at schema path `path`, e.g. "evaluate" or "models.*") split by role:
    {"science": {...}, "scheduling": {...}, "naming": {...}}, nested sections split key by key.

    paths maps a key of values to its schema path when it is not path.key (a job slice gathering several sections).
    Raises ConfigError naming a key the schema does not know.
    """
    out: dict[str, dict[str, Any]] = {role: {} for role in ROLES}
    for key, value in values.items():
        sub = (paths or {}).get(key, f"{path}.{key}" if path else key)
        role = role_of(sub)
        if role is not None:
            out[role][key] = value
        elif _is_map(sub):  # e.g. models: every named entry splits alike
            parts = {name: split_by_role(entry or {}, f"{sub}.*") for name, entry in value.items()}
            for role in ROLES:
                if any(part[role] for part in parts.values()):
                    out[role][key] = {name: part[role] for name, part in parts.items() if part[role]}
        else:
            for role, part in split_by_role(value, sub).items():
                if part:
                    out[role][key] = part
    return out


def science_slice(values: dict[str, Any], path: str, paths: dict[str, str] | None = None) -> dict[str, Any]:
    """The science settings of values (see split_by_role), canonical: what may reach a Snakemake params: block."""
    return canonical(split_by_role(values, path, paths)["science"])


def canonical(value: Any) -> Any:
    """value with every mapping's keys sorted, recursively (lists keep their order). Snakemake compares a params
    value by its repr, which follows a dict's key order: without this, reordering keys in a config file reruns jobs."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


# A fine-tuning slice (finetune_settings) holds finetune_settings keys plus the study's method and lora.
_FINETUNE_PATHS = {"method": "finetune.method", "lora": "finetune.lora"}


def finetune_science(config: dict[str, Any], ft_set: str) -> dict[str, Any]:
    """The science settings of one training set's fine-tuning jobs: the rule's params (a change reruns them)."""
    return science_slice(finetune_settings(config, ft_set), "finetune.defaults", _FINETUNE_PATHS)


def pretrain_science(config: dict[str, Any], model: str) -> dict[str, Any]:
    """A model's science settings minus its list of checkpoints (adding a step must not re-run the others)."""
    spec = {key: value for key, value in config["models"][model].items() if key != "checkpoints"}
    return science_slice(spec, "models.*")


def evaluate_science(config: dict[str, Any]) -> dict[str, Any]:
    """The science settings of every evaluation job (evaluate section minus threads and batch_size)."""
    return science_slice(config["evaluate"], "evaluate")


def scheduling_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Every job kind's scheduling settings, which reach jobs outside Snakemake params:
    {"finetune": {ft_set: {...}}, "evaluate": {...}, "pretrain": {model: {...}}} (threads included, for the record;
    jobs take threads from Snakemake's threads:). JSON-able; rules/common.smk exports it as $PTFT_SCHEDULING."""
    return {
        "finetune": {
            name: split_by_role(finetune_settings(config, name), "finetune.defaults", _FINETUNE_PATHS)["scheduling"]
            for name in config["finetune"]["ft_sets"]
        },
        "evaluate": split_by_role(config["evaluate"], "evaluate")["scheduling"],
        "pretrain": {
            model: split_by_role({k: v for k, v in spec.items() if k != "checkpoints"}, "models.*")["scheduling"]
            .get("pretrain", {})
            for model, spec in config["models"].items()
        },
    }


# ---------------------------------------------------------------- explain: one job's settings, roles and sources
JOB_KINDS = ("pretrain", "materialize", "finetune", "evaluate")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _written(raw: dict[str, Any], dotted: str) -> bool:
    """Whether the user's own config (before defaults) holds the setting at dotted (e.g. "finetune.defaults.lr")."""
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _parse_job(config: dict[str, Any], job: str) -> tuple[str, str, str, str | None]:
    """(kind, model, step, ft_set or "base" or None) of a job name; ConfigError for one the config does not plan."""
    kind, _, target = job.partition(":")
    parts = target.split("/")
    if kind not in JOB_KINDS or len(parts) != (2 if kind in ("pretrain", "materialize") else 3) or not all(parts):
        raise ConfigError(
            f"job {job!r}: expected pretrain:<model>/<step> (materialize:<model>/<step> for hub and local models), "
            "finetune:<model>/<step>/<ft_set> or evaluate:<model>/<step>/<ft_set or base>"
        )
    model, step, ft = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
    if model not in config["models"]:
        raise ConfigError(f"job {job!r}: models has no {model!r}; known: {sorted(config['models'])}")
    if kind in ("pretrain", "materialize") and (kind == "pretrain") != (config["models"][model]["source"] == "embedded"):
        wanted = "pretrain" if kind == "materialize" else "materialize"
        raise ConfigError(f"job {job!r}: models.{model} is {config['models'][model]['source']}; its checkpoints come from "
                          f"{wanted}:{model}/{step}")
    checkpoints = config["models"][model]["checkpoints"]
    labels = [str(item) for item in checkpoints if not isinstance(item, dict)]
    if step not in labels and len(labels) == len(checkpoints):  # steps picked by a hub selection rule are not known here
        raise ConfigError(f"job {job!r}: models.{model}.checkpoints has no {step!r}; known: {labels}")
    ft_sets = config["finetune"]["ft_sets"]
    if ft not in (None, "base", *ft_sets):
        raise ConfigError(f"job {job!r}: finetune.ft_sets has no {ft!r}; known: {sorted(ft_sets)}")
    if kind == "finetune" and ft == "base":
        raise ConfigError(f"job {job!r}: a fine-tuning job names a training set, not base")
    return kind, model, step, ft


def _default_source(kind: str, key: str, shown: str) -> str:
    """Where an unwritten setting's value comes from: the job kind's settings object (ptft.settings), else the schema."""
    top = key.split(".")[0]
    if shown or kind not in ("finetune", "evaluate") or top == "lora_eval":
        return "schema default"
    owner = "LoraSettings" if top == "lora" else f"{kind.capitalize()}Settings"
    return f"default (ptft.settings.{owner})"


def explain(raw: dict[str, Any], job: str) -> list[dict[str, Any]]:
    """Every setting of one job: [{"setting", "value", "role", "source"}, ...], science first.

    raw is the config as written (before defaults); job is "finetune:<model>/<step>/<ft_set>",
    "evaluate:<model>/<step>/<ft_set or base>", "pretrain:<model>/<step>" (embedded models) or
    "materialize:<model>/<step>" (hub and local models). source is the config key that set the
    value (a training set's override, finetune.defaults, the section), "default (ptft.settings.<its class>)" for a
    fine-tuning or evaluation setting nobody wrote, or "schema default" for the others.
    Raises ConfigError for an invalid config or a job the config does not plan.
    """
    config = validate(copy.deepcopy(raw))
    kind, model, _, ft = _parse_job(config, job)
    rows: list[dict[str, Any]] = []

    def add(values: dict[str, Any], path_of, candidates, shown: str = "") -> None:
        """path_of(key) -> the setting's schema path; candidates(key) -> config keys that may have set it, in order."""
        for key, value in _flatten(values).items():
            source = next((where for where in candidates(key) if _written(raw, f"{where}.{key}")), None)
            rows.append({
                "setting": shown + key,
                "value": value,
                "role": role_of(path_of(key)),
                "source": source or _default_source(kind, key, shown),
            })  # fmt: skip

    if kind == "finetune":
        def path_of(key: str) -> str:
            top = key.split(".")[0]
            return f"finetune.{key}" if top in _FINETUNE_PATHS else f"finetune.defaults.{key}"

        def candidates(key: str) -> list[str]:
            return ["finetune"] if key.split(".")[0] in _FINETUNE_PATHS else [f"finetune.ft_sets.{ft}", "finetune.defaults"]

        add(finetune_settings(config, ft), path_of, candidates)
    elif kind == "evaluate":
        add(config["evaluate"], lambda key: f"evaluate.{key}", lambda key: ["evaluate"])
        if ft != "base":
            add({"lora_eval": config["finetune"]["lora_eval"]}, lambda key: f"finetune.{key}", lambda key: ["finetune"])
    else:
        spec = {key: value for key, value in config["models"][model].items() if key != "checkpoints"}
        add(spec, lambda key: f"models.*.{key}", lambda key: [f"models.{model}"])
    add(config["resources"][kind], lambda key: f"resources.{kind}.{key}", lambda key: [f"resources.{kind}"],
        shown=f"resources.{kind}.")  # fmt: skip
    order = {role: i for i, role in enumerate(ROLES)}
    return sorted(rows, key=lambda row: order[row["role"]])


def main(argv: list[str] | None = None) -> int:
    """`python -m ptft.config explain --configfile X --job finetune:<model>/<step>/<ft_set>`: one job's settings."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m ptft.config", description="Study config tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="print one job's settings: value, role (science/scheduling) and source")
    ex.add_argument("--configfile", type=Path, default=Path("params.yaml"), help="the study config (default params.yaml)")
    ex.add_argument(
        "--job",
        required=True,
        help="finetune:<model>/<step>/<ft_set>, evaluate:<model>/<step>/<ft_set or base>, pretrain:<model>/<step> "
        "or materialize:<model>/<step>",
    )
    args = parser.parse_args(argv)
    try:
        raw = yaml.safe_load(args.configfile.read_text(encoding="utf-8"))
        rows = explain(raw, args.job)
    except (OSError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = [("setting", "value", "role", "source")] + [
        (r["setting"], json.dumps(r["value"]), r["role"], r["source"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    print(f"{args.job} ({args.configfile}): science settings reach the rule's params; scheduling ones rerun nothing")
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
