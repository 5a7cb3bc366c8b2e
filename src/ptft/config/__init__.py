"""The study config: schema validation with readable errors, defaults, and per-job config slices.

Snakemake validates with its own `validate()` (same schema); ptft.checks adds the checks a schema cannot express
(names that must refer to each other, task families, hub specs, the memory plan), which need other modules of ptft:
this package imports none but ptft.settings, so that every module may import it. Each job receives only its own
slice, so that changing one training set's settings re-runs only that set's jobs, and only the slice's science
settings (x-ptft-role in the schema; `split_by_role`) reach Snakemake params, so scheduling settings re-run nothing.
`python -m ptft.config explain --configfile X --job finetune:<model>/<step>/<ft_set>` prints one job's settings
(ptft.explain).
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ptft.settings import ConfigError, FinetuneSettings, LoraSettings

__all__ = ["ConfigError"]  # defined in ptft.settings, the lower layer; raised and caught under this name everywhere

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "config.schema.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping naming one key twice (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # a merge key (<<) may be overridden on purpose
            continue
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"{loader.name}, line {line}: key {key!r} appears twice in one mapping (first at line "
                              f"{seen[key]}); YAML would keep only the second silently, so ptft refuses it")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def has_key(config: Mapping[str, Any], dotted: str) -> bool:
    """Whether `config` holds a value at the dotted key (e.g. "finetune.defaults.lr"), through nested mappings."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def load_yaml(path: str | Path) -> Any:
    """One YAML file parsed as yaml.safe_load parses it, but a mapping that names a key twice raises ConfigError
    naming the file, the key and both 1-based lines (every study config read by ptft goes through here)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_configfiles(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The study config as written in one or more YAML files, merged as snakemake --configfile merges them (a later
    file's top-level keys replace an earlier one's); nothing validated or filled in. ConfigError for a key written
    twice in one mapping (load_yaml)."""
    config: dict[str, Any] = {}
    for path in paths:
        config.update(load_yaml(path) or {})
    return config


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


def validate_schema(config: dict[str, Any], schema: dict[str, Any] | None = None,
                    source: str = "config") -> dict[str, Any]:  # fmt: skip
    """config validated against the JSON Schema, as a copy with its defaults filled; ConfigError naming each key that
    does not match (the first ten). The checks a schema cannot express are ptft.checks.validate's."""
    schema = schema or load_schema()
    errors = _schema_errors(config, schema)
    if errors:
        raise ConfigError(schema_error_message(errors, source))
    return fill_defaults(config, schema)


def _schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[Any]:
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema)
    return sorted(validator_cls(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])


def check_study_config(paths: Sequence[str | Path], config: dict[str, Any]) -> None:
    """The Snakefile's first check, before Snakemake's own validate(): every config file Snakemake read (paths:
    workflow.configfiles) is read again with load_yaml, which refuses a key written twice with its lines (Snakemake's
    reader silently keeps the second), then config is held to the schema with schema_error_message's one line per
    problem (Snakemake's validate prints the whole schema after its message). Raises ConfigError."""
    for path in paths:
        load_yaml(path)
    errors = _schema_errors(config, load_schema())
    if errors:
        raise ConfigError(schema_error_message(errors, ", ".join(str(p) for p in paths) or "config"))


MAX_ERRORS, MAX_EXCERPT_LINES, MAX_LINE = 10, 4, 160


def schema_error_message(errors: Sequence[Any], source: str = "config") -> str:
    """jsonschema errors as a message a user can act on: one line per error (the first MAX_ERRORS), an unknown key
    with the nearest valid name ("did you mean `lr`?", difflib), then at most MAX_EXCERPT_LINES lines of schema (the
    suggested keys' descriptions) rather than the schema itself."""
    lines, excerpt = [], []
    for error in errors[:MAX_ERRORS]:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            for key, line, hint in _unknown_keys(error):
                lines.append(line)
                if hint and len(excerpt) < MAX_EXCERPT_LINES:
                    excerpt.append(hint)
        else:
            lines.append(_clip(f"  - {_where(error)}: {_brief(error)}"))
    more = f"\n  ({len(errors) - MAX_ERRORS} more not shown)" if len(errors) > MAX_ERRORS else ""
    message = f"{source} does not match schemas/config.schema.yaml:\n" + "\n".join(lines) + more
    if excerpt:
        message += "\nfrom schemas/config.schema.yaml:\n" + "\n".join(excerpt)
    return message


def _brief(error: Any) -> str:
    """jsonschema's message without its copy of a whole mapping or list in front ("{...} should not be valid under
    {'required': ['domain']}"): the key is already named, and the copy would push the reason past the line's end."""
    shown = repr(error.instance)
    if isinstance(error.instance, (dict, list)) and error.message.startswith(shown):
        kind = "this mapping" if isinstance(error.instance, dict) else "this list"
        return kind + error.message[len(shown):]
    return error.message


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def _unknown_keys(error: Any) -> list[tuple[str, str, str]]:
    """(key, its message line, the schema line of the nearest valid key or "") per unknown key of one mapping."""
    import difflib

    known = error.schema.get("properties", {})
    where = _where(error)
    prefix = "" if where == "<top level>" else where + "."
    out = []
    for key in [k for k in error.instance if k not in known]:
        close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
        if close:
            line = f"  - {prefix}{key}: unknown key; did you mean `{close[0]}`?"
            description = " ".join(str(known[close[0]].get("description", "")).split())
            hint = _clip(f"  {prefix}{close[0]}: {description}") if description else ""
        else:
            line, hint = _clip(f"  - {prefix}{key}: unknown key; valid keys here: {', '.join(sorted(known))}"), ""
        out.append((str(key), line, hint))
    return out


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


def finetune_settings(config: dict[str, Any], ft_set: str) -> dict[str, Any]:
    """The complete fine-tuning slice of one training set, flat (science and scheduling keys side by side):
    the defaults of ptft.settings.FinetuneSettings < finetune.defaults < the set's own; plus the study's method, and
    its lora block (LoraSettings defaults < finetune.lora) when method is lora. Raises ConfigError for an unknown set."""
    finetune = config["finetune"]
    if ft_set not in finetune["ft_sets"]:
        raise ConfigError(f"finetune.ft_sets has no {ft_set!r}; known: {sorted(finetune['ft_sets'])}")
    defaults = {key: value for key, value in FinetuneSettings().flat().items() if key not in FINETUNE_PATHS}
    settings = {**defaults, **finetune.get("defaults", {}), **(finetune["ft_sets"][ft_set] or {})}
    # The study-wide method travels with each set's slice, so switching it re-runs every fine-tuning job.
    settings["method"] = finetune.get("method", FinetuneSettings.method)
    if settings["method"] == "lora":
        settings["lora"] = {**vars(LoraSettings()), **finetune.get("lora", {})}
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



def previous_step(config: dict[str, Any], model: str, step: int) -> int | None:
    """The configured step an embedded checkpoint continues from (None for the first)."""
    earlier = [s for s in checkpoint_steps(config, model) if s < step]
    return earlier[-1] if earlier else None


def apply_offline(config: dict[str, Any], project_dir: Path) -> None:
    """Set the hub clients' mode for the study's jobs (they inherit this process's environment): an offline study
    forbids hub access; a study with offline: false allows it even when the shell (e.g. the Makefile) set
    HF_HUB_OFFLINE. Either way every cache defaults to the project's .cache/ (an HF_HOME already set wins)."""
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


# A fine-tuning slice (finetune_settings) holds finetune.defaults keys plus the study's method and lora: their paths.
FINETUNE_PATHS = {"method": "finetune.method", "lora": "finetune.lora"}


def finetune_science(config: dict[str, Any], ft_set: str) -> dict[str, Any]:
    """The science settings of one training set's fine-tuning jobs: the rule's params (a change reruns them)."""
    return science_slice(finetune_settings(config, ft_set), "finetune.defaults", FINETUNE_PATHS)


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
            name: split_by_role(finetune_settings(config, name), "finetune.defaults", FINETUNE_PATHS)["scheduling"]
            for name in config["finetune"]["ft_sets"]
        },
        "evaluate": split_by_role(config["evaluate"], "evaluate")["scheduling"],
        "pretrain": {
            model: split_by_role({k: v for k, v in spec.items() if k != "checkpoints"}, "models.*")["scheduling"]
            .get("pretrain", {})
            for model, spec in config["models"].items()
        },
    }
