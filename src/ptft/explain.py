"""One job's settings, each with its value, role (science or scheduling, x-ptft-role in the schema) and the config
key that set it: what `python -m ptft.config explain --configfile X --job finetune:<model>/<step>/<ft_set>` prints
(ptft/config/__main__.py runs this module's main).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any


from ptft.checks import validate
from ptft.config import FINETUNE_PATHS, ROLES, ConfigError, finetune_settings, has_key, load_yaml, role_of

JOB_KINDS = ("pretrain", "materialize", "finetune", "evaluate")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """values with nested mappings flattened to dotted keys ({"a": {"b": 1}} -> {"a.b": 1}); empty mappings stay."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _parse_job(config: dict[str, Any], job: str) -> tuple[str, str, str, str | None]:
    """(kind, model, step, ft_set or "base" or None) of a job name; ConfigError for one the config does not plan."""
    kind, _, target = job.partition(":")
    parts = target.split("/")
    if kind not in JOB_KINDS or len(parts) != (2 if kind in ("pretrain", "materialize") else 3) or not all(parts):
        raise ConfigError(
            f"job {job!r}: expected pretrain:<model>/<step> (materialize:<model>/<step> for hub and local models), "
            "finetune:<model>/<step>/<ft_set> or evaluate:<model>/<step>/<ft_set or base>"
        )
    model, step, ft_set = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
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
    if ft_set not in (None, "base", *ft_sets):
        raise ConfigError(f"job {job!r}: finetune.ft_sets has no {ft_set!r}; known: {sorted(ft_sets)}")
    if kind == "finetune" and ft_set == "base":
        raise ConfigError(f"job {job!r}: a fine-tuning job names a training set, not base")
    return kind, model, step, ft_set


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
    kind, model, _, ft_set = _parse_job(config, job)
    rows: list[dict[str, Any]] = []

    def add(values: dict[str, Any], path_of, candidates, shown: str = "") -> None:
        """path_of(key) -> the setting's schema path; candidates(key) -> config keys that may have set it, in order."""
        for key, value in _flatten(values).items():
            source = next((where for where in candidates(key) if has_key(raw, f"{where}.{key}")), None)
            rows.append({
                "setting": shown + key,
                "value": value,
                "role": role_of(path_of(key)),
                "source": source or _default_source(kind, key, shown),
            })  # fmt: skip

    if kind == "finetune":
        def path_of(key: str) -> str:
            top = key.split(".")[0]
            return f"finetune.{key}" if top in FINETUNE_PATHS else f"finetune.defaults.{key}"

        def candidates(key: str) -> list[str]:
            return ["finetune"] if key.split(".")[0] in FINETUNE_PATHS else [f"finetune.ft_sets.{ft_set}", "finetune.defaults"]

        add(finetune_settings(config, ft_set), path_of, candidates)
    elif kind == "evaluate":
        add(config["evaluate"], lambda key: f"evaluate.{key}", lambda key: ["evaluate"])
        if ft_set != "base":
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
        raw = load_yaml(args.configfile)
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
