"""The study config: schema validation with readable errors, cross-reference checks, and per-job config slices.

Snakemake validates with its own `validate()` (same schema); `check_config` adds the checks a schema
cannot express (names that must refer to each other). Each job receives only its own slice, so that
changing one training set's settings re-runs only that set's jobs.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value is missing, misspelt, ill-typed or refers to something that does not exist."""


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
    gpus = max(1, config.get("resources", {}).get("finetune", {}).get("gpu", 0))
    for name in config["finetune"]["ft_sets"]:
        settings = finetune_settings(config, name)
        if settings["batch_size"] % (settings["micro_batch_size"] * gpus):
            raise ConfigError(
                f"{source}: finetune.ft_sets.{name}: batch_size {settings['batch_size']} is not a multiple of "
                f"micro_batch_size {settings['micro_batch_size']} x resources.finetune.gpu {gpus} "
                "(effective batch = micro-batch x gradient accumulation x GPUs)"
            )
    for model, spec in config["models"].items():
        check_model(config, model, spec, source)
        ctx = spec.get("architecture", {}).get("max_position_embeddings")
        seq = spec.get("pretrain", {}).get("seq_len")
        if ctx and seq and seq > ctx:
            raise ConfigError(f"{source}: models.{model}.pretrain.seq_len {seq} exceeds architecture.max_position_embeddings {ctx}")


EMBEDDED_KEYS = ("architecture", "tokenizer", "pretrain")
KEYS_OF_SOURCE = {
    "embedded": {"source", "checkpoints", *EMBEDDED_KEYS},
    "hub": {"source", "checkpoints", "repo", "family", "snap", "main"},
    "local": {"source", "checkpoints", "path", "tokens_per_step"},
}
REQUIRED_OF_SOURCE = {"embedded": (), "hub": ("repo", "family"), "local": ("path", "tokens_per_step")}


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
        from ptft.hub import get_family

        get_family(spec["family"], model)
    for item in spec["checkpoints"]:
        if kind != "hub" and not isinstance(item, int):
            raise ConfigError(
                f"{source}: models.{model}.checkpoints: {item!r} is not a step; only hub models take revision "
                f"names and selection rules, a {kind} model's checkpoints are integers"
            )


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
    """The complete fine-tuning settings of one training set: schema defaults < finetune.defaults < the set's own."""
    schema_defaults = _finetune_schema()["properties"]["defaults"]["default"]
    ft = config["finetune"]
    if ft_set not in ft["ft_sets"]:
        raise ConfigError(f"finetune.ft_sets has no {ft_set!r}; known: {sorted(ft['ft_sets'])}")
    settings = {**schema_defaults, **ft.get("defaults", {}), **(ft["ft_sets"][ft_set] or {})}
    # The study-wide method travels with each set's slice, so switching it re-runs every fine-tuning job.
    settings["method"] = ft.get("method", "full")
    if settings["method"] == "lora":
        lora_defaults = {k: v["default"] for k, v in _finetune_schema()["properties"]["lora"]["properties"].items()}
        settings["lora"] = {**lora_defaults, **ft.get("lora", {})}
    return settings


def _finetune_schema() -> dict[str, Any]:
    return load_schema()["properties"]["finetune"]


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
