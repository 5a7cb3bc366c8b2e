# ptft: pre-training checkpoints -> fine-tuning -> evaluation -> tables and figures.
# This file is the table of contents; the rules live in rules/, the code in src/ptft/.
from snakemake.utils import min_version, validate

from ptft import config as study_config

min_version("9.0")


# A study config given on the command line (--configfile) replaces params.yaml rather than being merged into it:
# another study must not inherit the mini-study's models and data sets. DVC and plain `snakemake` read params.yaml.
if not workflow.overwrite_configfiles:

    configfile: "params.yaml"


report: "report/workflow.rst"


# ptft's own check first: a key written twice in a config file (Snakemake's reader keeps the second silently) and a
# misspelt key, one line each with the nearest valid name (Snakemake's validate would print the whole schema).
try:
    study_config.check_study_config(workflow.configfiles, config)
except study_config.ConfigError as err:
    raise WorkflowError(str(err))
validate(config, schema="schemas/config.schema.yaml")


# A rehearsal (make rehearse CONFIG=..., i.e. --config rehearsal=True) runs the same grid with tiny stand-ins, with
# every output, log and lock in rehearsal/<study>/ so that it never mixes with real results (ptft.rehearsal).
if config["rehearsal"]:

    workdir: f"rehearsal/{config['study']}"


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
