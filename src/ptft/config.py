"""The study config: schema validation with readable errors, cross-reference checks, and per-job config slices.

Snakemake validates with its own `validate()` (same schema); `check_config` adds the checks a schema
cannot express (names that must refer to each other). Each job receives only its own slice, so that
changing one training set's settings re-runs only that set's jobs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value is missing, misspelt, ill-typed or refers to something that does not exist."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
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
        return out

    return fill(config, schema)


def check_config(config: dict[str, Any], source: str = "config") -> None:
    """Checks a schema cannot express: names that refer to each other, divisibility, ordering."""
    datasets = config["data"]["datasets"]
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
        ctx = spec.get("architecture", {}).get("max_position_embeddings")
        seq = spec.get("pretrain", {}).get("seq_len")
        if ctx and seq and seq > ctx:
            raise ConfigError(f"{source}: models.{model}.pretrain.seq_len {seq} exceeds architecture.max_position_embeddings {ctx}")


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
    return sorted(config["models"][model]["checkpoints"])


def previous_step(config: dict[str, Any], model: str, step: int) -> int | None:
    """The configured step an embedded checkpoint continues from (None for the first)."""
    earlier = [s for s in checkpoint_steps(config, model) if s < step]
    return earlier[-1] if earlier else None


def apply_offline(config: dict[str, Any], project_dir: Path) -> None:
    """For an offline study: forbid hub access and keep every cache inside the project (jobs inherit this)."""
    import os

    if not config.get("offline", True):
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    cache = Path(project_dir).resolve() / ".cache"
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    os.environ.setdefault("XDG_CACHE_HOME", str(cache))
