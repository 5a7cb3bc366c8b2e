# ptft: pre-training checkpoints -> fine-tuning -> evaluation -> tables and figures.
# This file is the table of contents; the rules live in rules/, the code in src/ptft/.
from pathlib import Path

from snakemake.utils import min_version, validate

from ptft import config as study_config
from ptft import studies

min_version("9.0")


# A study config given on the command line (--configfile) replaces params.yaml rather than being merged into it:
# another study must not inherit the mini-study's models and data sets. DVC and plain `snakemake` read params.yaml.
# Its absolute path: the report reads the config file again after the workdir (the study's folder) is entered.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "params.yaml")


report: "report/workflow.rst"


# ptft's own check first: a key written twice in a config file (Snakemake's reader keeps the second silently) and a
# misspelt key, one line each with the nearest valid name (Snakemake's validate would print the whole schema).
try:
    study_config.check_study_config(workflow.configfiles, config)
except study_config.ConfigError as err:
    raise WorkflowError(str(err))
validate(config, schema="schemas/config.schema.yaml")


# Each study writes everything (data, checkpoints, models, results, logs, benchmarks, .snakemake/) under its own folder,
# studies/<study>/, and a rehearsal (make rehearse CONFIG=..., i.e. --config rehearsal=True) under rehearsal/<study>/
# (ptft.studies, ptft.rehearsal): several studies live in one clone and never overwrite each other. Paths in the
# config stay relative to the project root (ptft.studies.project_path). Outputs of the old layout (at the project
# root) stop the run with what to do: `make migrate-layout` moves them without rerunning anything.
try:
    STUDY_DIR = studies.study_dir(config)
except studies.LayoutError as err:
    raise WorkflowError(f"config: {err}")
if not config["rehearsal"] and studies.old_layout_message(workflow.basedir, config):
    raise WorkflowError(studies.old_layout_message(workflow.basedir, config))


workdir: str(Path(workflow.basedir) / STUDY_DIR)


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/checkpoints.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/variants.smk"
include: "rules/analysis.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


# One target per phase: the DVC stages in dvc.yaml each run one of these.
rule phase_data:
    input:
        get_phase_output("data"),


rule phase_checkpoints:
    input:
        get_phase_output("checkpoints"),


rule phase_finetune:
    input:
        get_phase_output("finetune"),


rule phase_evaluate:
    input:
        get_phase_output("evaluate"),


rule phase_analysis:
    input:
        get_phase_output("analysis"),
