"""The DVC pipeline of any study, generated from its config: one coarse stage per phase, each running that phase's
Snakemake target (phase_* in the Snakefile) on the study's config, with every science key of the config a `params`
dependency of the stages it reaches and every local file (data sets, checkpoint folders) a `deps`.

    python -m ptft.dvc_stages --configfile configs/x.yaml    # writes studies/<study>/dvc.yaml
    dvc repro studies/<study>/dvc.yaml                        # (params.yaml's study: dvc.yaml at the root, `dvc repro`)

Outputs are whole folders of the study's folder (ptft.studies) and persist, so DVC never deletes them before a stage
runs and Snakemake's per-job staleness decides what is rebuilt. A section the config leaves out (no `analysis:`, no
`tasks:`) is no dependency: its defaults live in the schema, a code dependency of every stage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from ptft.config import has_key
from ptft.studies import LayoutError, study_dir

EMBEDDED_CONFIG = "params.yaml"  # the embedded study: its pipeline is the project's own dvc.yaml
CODE_DEPS = ["Snakefile", "rules", "scripts", "schemas/config.schema.yaml", "src/ptft"]
PHASES = ("data", "checkpoints", "finetune", "evaluate", "analysis")
# The config keys each phase's jobs read (top-level keys or one level down). Not here: study (naming; it picks the
# folder), offline and resources (where and how a job runs, never what it produces).
STAGE_PARAMS = {
    "data": ["rehearsal", "data", "tasks"],  # prepare_dataset reads a task family's fields and labels
    "checkpoints": ["seed", "models", "revisions_lock"],
    "finetune": ["finetune", "tasks"],
    "evaluate": ["evaluate", "finetune", "tasks"],  # finetune: method and lora_eval decide how a model is loaded
    "analysis": ["analysis", "finetune.ft_sets", "data.datasets", "evaluate.eval_sets", "tasks"],
}
# Keys no stage reads, with the reason (tests/test_dvc_stages.py fails for a top-level science key in neither list).
NOT_PARAMS = {"study": "names the study's folder", "offline": "scheduling", "resources": "scheduling"}
METRICS = ["results/tables/summary.json", "results/tables/findings.json", "results/tables/verdicts.json"]
FIGURES = ["base_curves", "finetune_gain", "prompt_sensitivity", "ratio_of_change", "paper_comparison", "gain_by_group",
           "base_curves_by_group", "finetune_curves"]  # fmt: skip
TABLE_PLOTS = {
    "results/tables/sensitivity_by_checkpoint.csv": {"x": "step", "y": "spread"},
    "results/tables/gain_table.csv": {"x": "step", "y": "gain"},
    "results/tables/finetune_curves.csv": {"x": "train_step", "y": "loss"},
    "results/tables/results.csv": {"template": "bar_horizontal", "x": "value", "y": "eval_set"},
}


def pipeline_path(configfile: str | os.PathLike, config: Mapping[str, Any]) -> str:
    """Where a study's dvc.yaml goes (relative to the project root): the root's for params.yaml, else its folder's."""
    if Path(configfile).as_posix() == EMBEDDED_CONFIG:
        return "dvc.yaml"
    return f"{study_dir(config)}/dvc.yaml"


def local_files(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every local file a study reads, relative to the project root, by the stage that reads it: the files of
    `source: local` data sets (data) and the checkpoint folders of `source: local` models (checkpoints)."""
    data = [str(p) for spec in config.get("data", {}).get("datasets", {}).values() if spec.get("source") == "local"
            for p in spec.get("files", {}).values()]  # fmt: skip
    folders = [str(spec["path"]).replace("{checkpoint}", str(step)) for spec in config.get("models", {}).values()
               if spec.get("source") == "local" for step in spec.get("checkpoints", [])]  # fmt: skip
    return {"data": sorted(set(data)), "checkpoints": sorted(set(folders))}


def _has_lr_search(config: Mapping[str, Any]) -> bool:
    """Whether any training set's lr is a list (the evaluate phase then writes results/lr_search/)."""
    ft = config.get("finetune", {})
    sets = [ft.get("defaults", {}), *(o or {} for o in ft.get("ft_sets", {}).values())]
    return any(isinstance(s.get("lr"), list) for s in sets)


def stages(configfile: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The dvc.yaml of a study (a mapping ready for yaml.safe_dump). configfile: the config's path relative to the
    project root. Raises LayoutError for a study name that cannot be a folder."""
    folder = study_dir(config)
    where = Path(pipeline_path(configfile, config)).parent
    wdir = os.path.relpath(".", where)  # every path in a stage is relative to the project root
    outs = {"data": ["data"], "checkpoints": ["checkpoints"], "finetune": ["models"],
            "evaluate": ["results/eval", *(["results/lr_search"] if _has_lr_search(config) else [])],
            "analysis": ["results/tables", "results/figures"]}  # fmt: skip
    # hub checkpoints are hard links into the shared Hugging Face cache and a local model's are copies of the user's
    # folders: DVC's cache would hold each again (the revisions lock pins a hub checkpoint to a commit instead)
    uncached = {"checkpoints"} if any(m.get("source") != "embedded" for m in config["models"].values()) else set()
    files = local_files(config)
    result: dict[str, Any] = {}
    previous: list[str] = []
    for phase in PHASES:
        keys = [k for k in STAGE_PARAMS[phase] if has_key(config, k)]
        # the target first: --configfile takes every word after it
        stage: dict[str, Any] = {"cmd": f"snakemake phase_{phase} --profile profiles/local --configfile {configfile}"}
        if wdir != ".":
            stage["wdir"] = wdir
        stage["deps"] = [*CODE_DEPS, configfile, *files.get(phase, []), *previous]
        stage["params"] = [{configfile: keys}]
        stage["outs"] = [{f"{folder}/{o}": {"persist": True, **({"cache": False} if phase in uncached else {})}}
                         for o in outs[phase]]  # fmt: skip
        previous = previous + [f"{folder}/{o}" for o in outs[phase]]
        result[phase] = stage
    # the config file is a dependency only through its params (a comment edit must not rerun a stage)
    for stage in result.values():
        stage["deps"].remove(configfile)
    tables = os.path.relpath(folder, where)  # metrics and plots are relative to the dvc.yaml's folder
    rel = (lambda p: p) if tables == "." else (lambda p: f"{tables}/{p}")
    return {
        "stages": result,
        "metrics": [rel(m) for m in METRICS],
        "plots": [*(rel(f"results/figures/{f}.png") for f in FIGURES),
                  *({rel(t): dict(spec)} for t, spec in TABLE_PLOTS.items())],  # fmt: skip
    }


HEADER = """\
# Generated by `python -m ptft.dvc_stages --configfile {configfile}` (make dvc-stages): do not edit, regenerate.
# `dvc repro{target}` runs one coarse stage per phase, each the phase's Snakemake target (phase_* in the
# Snakefile) on this study; its outputs persist in {folder}/, so Snakemake's per-job staleness decides what is
# rebuilt. Every config key a phase's jobs read is a `params` dependency and every local file a `deps`.
# After `dvc checkout`/`dvc pull` or a git switch, run `make touch CONFIG={configfile}` so Snakemake's mtimes agree.
"""


def render(configfile: str, config: Mapping[str, Any]) -> str:
    """The dvc.yaml text of a study: the header comment and `stages`."""
    path = pipeline_path(configfile, config)
    target = "" if path == "dvc.yaml" else f" {path}"
    head = HEADER.format(configfile=configfile, target=target, folder=study_dir(config))
    return head + yaml.safe_dump(stages(configfile, config), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    """Write the study's dvc.yaml (studies/<study>/dvc.yaml; the root's for params.yaml); run from the project root."""
    parser = argparse.ArgumentParser(prog="python -m ptft.dvc_stages", description=main.__doc__)
    parser.add_argument("--configfile", default=EMBEDDED_CONFIG, help="the study's config, relative to the project root")
    parser.add_argument("--check", action="store_true", help="only say whether the written dvc.yaml is up to date")
    parser.add_argument("--path", action="store_true", help="only print where the study's dvc.yaml goes")
    args = parser.parse_args(argv)
    configfile = Path(os.path.relpath(args.configfile)).as_posix()
    config = yaml.safe_load(Path(configfile).read_text(encoding="utf-8")) or {}
    try:
        path, text = Path(pipeline_path(configfile, config)), render(configfile, config)
    except (LayoutError, KeyError) as err:
        print(f"error: {configfile}: {err}", file=sys.stderr)
        return 1
    if args.path:
        print(path)
        return 0
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        print(f"{path}: {'up to date' if current == text else 'out of date: regenerate it'}")
        return 0 if current == text else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}: `dvc repro{'' if str(path) == 'dvc.yaml' else ' ' + str(path)}` reproduces study "
          f"{config.get('study')!r} in {study_dir(config)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
