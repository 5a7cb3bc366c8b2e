# All Python helpers of the workflow: config checks, wildcard constraints, input functions.
import json
import os
import re
import sys
from pathlib import Path

from ptft import analysis
from ptft import checks
from ptft import config as study_config
from ptft import gpu_slots
from ptft import hub
from ptft import hubdata
from ptft import launch
from ptft import localdata
from ptft import snakemake_log
from ptft import studies
from ptft import tasks

# A failed job's report without Snakemake's `message: None` line (ptft.snakemake_log).
snakemake_log.drop_empty_job_messages()

# Jobs run in the study's folder (the Snakefile's workdir); paths in the config are relative to the project root, which
# the jobs find here (ptft.studies.project_path). A SLURM job re-reads this file and sets it again.
PROJECT_DIR = Path(workflow.basedir)
os.environ[studies.PROJECT_ENV] = str(PROJECT_DIR)

# A rehearsal shrinks the settings that cost time (ptft.rehearsal) before the checks, so they check what runs.
if config["rehearsal"]:
    from ptft.rehearsal import rehearsal_config

    rehearsal_config(config)

# The schema (validated in the Snakefile) filled the defaults; now the checks a schema cannot express.
# Local checkpoint folders and data files are read when the study is planned, before any job queues (data files
# relative to the project root); not again in each job's own Snakemake (a cluster job re-reads this file).
try:
    checks.check_config(config, source="config")
    if workflow.is_main_process:
        checks.check_files(
            config,
            Path(workflow.basedir),
            ", ".join(map(str, workflow.configfiles)) or "config",
        )
except study_config.ConfigError as err:
    raise WorkflowError(str(err))

# Test splits too small to say anything: warned loudly at every plan (a rehearsal shrinks them on purpose).
if workflow.is_main_process and not config["rehearsal"]:
    for warning in checks.small_test_warnings(config, Path(workflow.basedir)):
        print(f"\n*** WARNING: {warning}\n", file=sys.stderr)

# Offline studies never touch the network; online ones (hub models) may. Every cache stays inside the project, at its
# root: one Hugging Face cache for every study (hub checkpoints are hard-linked from it, never copied).
study_config.apply_offline(config, PROJECT_DIR)

# Scheduling settings (x-ptft-role in the schema: threads, save interval, micro-batch, evaluation batch size, ...)
# never reach params (Snakemake's rerun trigger): jobs read them from this variable, or from the config in script
# rules. Jobs inherit it; a SLURM job re-reads this file in its own Snakemake and sets it again.
os.environ[study_config.SCHEDULING_ENV] = json.dumps(
    study_config.scheduling_settings(config), sort_keys=True
)

MODELS = sorted(config["models"])
EMBEDDED_MODELS = [m for m in MODELS if config["models"][m]["source"] == "embedded"]
# Hub and local models: their checkpoints are materialized (downloaded or copied), not pre-trained here.
MATERIALIZED_MODELS = [m for m in MODELS if m not in EMBEDDED_MODELS]
# Relative to the project root (the materialize job resolves it there: ptft.studies.project_path).
REVISIONS_LOCK = hub.lock_path(config)
# Read once: planning expands selection rules from it; the materialize jobs add entries as they pin revisions.
REVISIONS = hub.read_lock(PROJECT_DIR / REVISIONS_LOCK)
# The prepare_dataset jobs pin hub data sets in the same lock (ptft.hubdata.locked_revision): they inherit this
# process's environment, locally and under SLURM, so the lock reaches them without a param (no job reruns for it).
os.environ[hubdata.LOCK_ENV] = str((PROJECT_DIR / REVISIONS_LOCK).resolve())
DATASETS = sorted(config["data"]["datasets"])
FT_SETS = sorted(config["finetune"]["ft_sets"])
EVAL_SETS = list(config["evaluate"]["eval_sets"])
# Fine-tuning runs by label (ptft.config.finetune_variants): one per training set, or per lr value x seed. A set with
# one run is labelled by its name, so a study without lr lists or seeds plans today's jobs at today's paths.
FT_RUNS = {
    run["label"]: run
    for ft_set in FT_SETS
    for run in study_config.finetune_variants(config, ft_set)
}
FT_LABELS = sorted(FT_RUNS)
LR_SEARCH_SETS = sorted({run["ft_set"] for run in FT_RUNS.values() if run["lr_search"]})
HAS_VARIANTS = len(FT_LABELS) > len(FT_SETS)


def model_steps(model):
    """A model's checkpoint labels (the {step} wildcard): steps, hub revision names, steps a rule was pinned to."""
    try:
        return hub.checkpoint_labels(config, model, REVISIONS)
    except study_config.ConfigError as err:
        raise WorkflowError(str(err))


STEPS = sorted({str(s) for m in MODELS for s in model_steps(m)})


def alternatives(names):
    # An empty list must match nothing (an empty alternative would match an empty path segment).
    return "|".join(re.escape(str(n)) for n in names) or "(?!x)x"


wildcard_constraints:
    model=alternatives(MODELS),
    step=alternatives(STEPS),
    dataset=alternatives(DATASETS),
    ft_set=alternatives(FT_SETS),
    searched_set=alternatives(LR_SEARCH_SETS),


def get_model_config(wildcards):
    return config["models"][wildcards.model]


def get_pretrain_config(wildcards):
    """A model's science settings minus its list of checkpoints: adding a step must not re-run (or re-download) the
    others, and its threads must not re-run any."""
    return study_config.pretrain_science(config, wildcards.model)


def get_previous_checkpoint(wildcards):
    """The embedded checkpoint a step continues from (none for the first configured step)."""
    previous = study_config.previous_step(config, wildcards.model, int(wildcards.step))
    if previous is None:
        return []
    return f"checkpoints/{wildcards.model}/{previous}"


def canonical(value):
    """A params value whose repr does not depend on the order of keys in the config file (ptft.config.canonical)."""
    return study_config.canonical(value)


# Keys of a data set's spec that only its scoring reads (they reach the evaluate rule through get_eval_sets): they
# are not preparation settings, so changing one must not remake the set.
SCORING_ONLY_DATASET_KEYS = ("rouge_tokenizer",)


def get_dataset_spec(wildcards):
    """The set's preparation settings: its spec less SCORING_ONLY_DATASET_KEYS."""
    spec = config["data"]["datasets"][wildcards.dataset]
    return canonical(
        {k: v for k, v in spec.items() if k not in SCORING_ONLY_DATASET_KEYS}
    )


def get_dataset_family(wildcards):
    """What data preparation reads of the set's task family (fields, labels): a change reruns the set."""
    return tasks.family_science(
        config["data"]["datasets"][wildcards.dataset]["task"], "data"
    )


def get_local_files(wildcards):
    """A local set's data files (inputs: editing one reruns its preparation); none for other sources."""
    spec = config["data"]["datasets"][wildcards.dataset]
    if spec.get("source") != "local":
        return []
    # relative to the project root; a study runs in studies/<study>/, so the paths are made relative to there
    return [os.path.relpath(PROJECT_DIR / path) for path in localdata.local_files(spec)]


def get_ft_task(wildcards):
    return config["data"]["datasets"][study_config.ft_set_of(wildcards.ft_set)]["task"]


def get_ft_family(wildcards):
    """What fine-tuning reads of the set's task family (fields, training template, delimiter): the rerun trigger;
    the job itself finds the family by name (ptft.tasks, $PTFT_TASKS)."""
    return tasks.family_science(get_ft_task(wildcards), "finetune")


def get_finetune_settings_json(wildcards):
    """The run's science settings (its set's, with the run's lr and seed) as one JSON argument of the finetune command
    (sorted: same settings, same command); its scheduling settings travel in $PTFT_SCHEDULING.
    """
    return json.dumps(
        study_config.variant_science(config, FT_RUNS[wildcards.ft_set]), sort_keys=True
    )


def get_ft_train(wildcards):
    """The training split of a run: without the lr-search dev slice when its set's lr is a list."""
    run = FT_RUNS[wildcards.ft_set]
    if run["lr_search"]:
        return f"data/{run['ft_set']}/lr_search/train.jsonl"
    return f"data/{run['ft_set']}/train.jsonl"


def get_lr_search_runs(wildcards):
    """The dev-slice evaluations of every run of a searched set: every checkpoint x lr x seed."""
    return [
        f"results/lr_search/{wildcards.model}/{step}/{label}.json"
        for step in model_steps(wildcards.model)
        for label in FT_LABELS
        if FT_RUNS[label]["ft_set"] == wildcards.searched_set
    ]


def get_lr_search_params(wildcards):
    """select_lr's runs: each dev evaluation's path -> its run (ft_set, lr, seed)."""
    return {path: FT_RUNS[Path(path).stem] for path in get_lr_search_runs(wildcards)}


def get_dev_data(wildcards):
    """The training part and dev slice of a searched run's set."""
    ft_set = FT_RUNS[wildcards.ft_set]["ft_set"]
    return [f"data/{ft_set}/lr_search/{part}.jsonl" for part in ("train", "dev")]


def get_dev_eval_set(wildcards):
    """The dev slice of a run's set as ptft.evaluate's one eval set (few-shot examples from the training part)."""
    ft_set = FT_RUNS[wildcards.ft_set]["ft_set"]
    spec = config["data"]["datasets"][ft_set]
    return {
        ft_set: {
            "task": spec["task"],
            "train": f"data/{ft_set}/lr_search/train.jsonl",
            "test": f"data/{ft_set}/lr_search/dev.jsonl",
            "rouge_tokenizer": spec["rouge_tokenizer"],
        }
    }


def get_dev_evaluate_settings():
    """The evaluation science settings on the dev slice: the default prompt format only (the training format)."""
    return {**get_evaluate_settings(), "prompt_formats": ["default"]}


def get_lr_choices():
    """Every searched set's choice file (select_lr), which aggregate marks the selected runs by."""
    return [
        f"results/lr_search/{model}/{ft_set}.json"
        for model in MODELS
        for ft_set in LR_SEARCH_SETS
    ]


def get_aggregate_variants():
    """aggregate's params for a study with variants (runs by label); none otherwise, so its params stay today's."""
    if not HAS_VARIANTS:
        return {}
    return {"runs": canonical(FT_RUNS)}


# Shell rules call `python` (and `accelerate` through it): make that the interpreter running Snakemake, the environment
# ptft is installed in, whatever else is on PATH. Jobs inherit it (a SLURM job re-reads this file in its own Snakemake);
# under --sdm conda the rule's env is activated inside the job's shell and comes first again.
study_config.put_first_on_path(Path(sys.executable).parent)


def get_finetune_slurm_resources():
    """Extra resources of a multi-node fine-tuning job for the SLURM executor: `mpi` makes it run the job's shell
    command in the batch script (not inside `srun -n1`), so the command's own srun starts one launcher per node;
    `tasks` = nodes places one per node, and gres asks for the GPUs per node (sbatch --gpus counts the whole job).
    """
    res = config["resources"]["finetune"]
    if res["nodes"] == 1:
        return {}
    # tasks_per_gpu 0: the executor would otherwise turn tasks into --ntasks-per-gpu
    extra = {"mpi": "srun", "tasks": res["nodes"], "tasks_per_gpu": 0}
    if res["gpu"]:
        extra["gres"] = f"gpu:{res['gpu']}"
    return extra


# GPU slots on a workstation (ptft.gpu_slots): the GPU ids local jobs may hold ($PTFT_GPUS, $CUDA_VISIBLE_DEVICES or
# what torch sees); empty on a CPU machine, inside a SLURM job and when a cluster executor submits the jobs (a login
# node's GPUs are not the jobs'), where nothing below changes. Resources are not params: the `gpu` requests below
# schedule jobs and rerun none.
try:
    GPU_POOL = gpu_slots.gpu_pool() if getattr(workflow, "local_exec", True) else []
except ValueError as err:
    raise WorkflowError(str(err))
# Job families that run on a GPU when there is one (pre-training and materialize run on CPU).
GPU_PHASES = ("finetune", "evaluate")


def get_finetune_gpus():
    """The `gpu` resource of a fine-tuning job (sbatch --gpus, the job's total): a multi-node job asks per node
    through gres instead (get_finetune_slurm_resources), so SLURM puts the same number on every node. On a
    workstation with GPUs: the GPU slots the job holds, one per process (so `--resources gpu=G` counts them).
    """
    res = config["resources"]["finetune"]
    if GPU_POOL:
        return launch.processes_per_node(res)
    return res["gpu"] if res["nodes"] == 1 else 0


# The launcher depends on scheduling settings and the machine only (GPUs, nodes, processes, sharding, memory budget,
# GPU slots): it travels in the environment, like $PTFT_SCHEDULING, so the finetune rule's shell text (Snakemake's
# code trigger) never changes with it.
os.environ[launch.COMMAND_ENV] = launch.finetune_command(config, GPU_POOL)


def get_resource(phase, name):
    """A cluster request of one job family (config key resources.<phase>.<name>; see the schema). On a workstation
    with GPUs a GPU job family asks at least `gpu: 1`, its GPU slot, so `snakemake -j N --resources gpu=G` schedules it.
    """
    value = config["resources"][phase][name]
    if name == "gpu" and phase in GPU_PHASES and GPU_POOL:
        return max(1, value)
    return value


def get_threads(section):
    def threads(wildcards):
        if section == "pretrain":
            return config["models"][wildcards.model]["pretrain"]["threads"]
        if section == "finetune":
            ft_set = study_config.ft_set_of(wildcards.ft_set)
            return study_config.finetune_settings(config, ft_set)["threads"]
        return config[section]["threads"]

    return threads


def get_eval_model(wildcards):
    if wildcards.ft_set == "base":
        return f"checkpoints/{wildcards.model}/{wildcards.step}"
    return f"models/{wildcards.model}/{wildcards.step}/{wildcards.ft_set}"


def get_eval_lora_base(wildcards):
    """The base checkpoint a LoRA adapter runs on (nothing for full fine-tuning or a base model)."""
    if wildcards.ft_set == "base" or config["finetune"]["method"] != "lora":
        return []
    return f"checkpoints/{wildcards.model}/{wildcards.step}"


def get_evaluate_settings():
    """The science settings of every evaluation job (the evaluate section minus threads and batch_size)."""
    return study_config.evaluate_science(config)


def get_eval_env():
    """The evaluate rule's conda env: the locked one, or vLLM's own (evaluate.backend: vllm pins its own torch)."""
    if config["evaluate"].get("backend", "hf") == "vllm":
        return "../envs/eval-vllm.yaml"
    return "../envs/eval.yaml"


def get_eval_lora_mode(wildcards):
    """finetune.lora_eval where it applies (a LoRA adapter), else the inert "adapter": switching it must not rerun the
    evaluations of base models or of fully fine-tuned ones."""
    if wildcards.ft_set == "base" or config["finetune"]["method"] != "lora":
        return "adapter"
    return config["finetune"]["lora_eval"]


def get_eval_data():
    return [
        f"data/{name}/{split}.jsonl"
        for name in EVAL_SETS
        for split in ("train", "test")
    ]


def get_eval_sets():
    return {
        name: {
            "task": config["data"]["datasets"][name]["task"],
            # the family's whole definition: editing a template or a metric reruns the evaluations
            "family": tasks.family_science(config["data"]["datasets"][name]["task"]),
            "train": f"data/{name}/train.jsonl",
            "test": f"data/{name}/test.jsonl",
            "rouge_tokenizer": config["data"]["datasets"][name]["rouge_tokenizer"],
        }
        for name in EVAL_SETS
    }


def get_eval_results():
    return [
        f"results/eval/{model}/{step}/{run}.json"
        for model in MODELS
        for step in model_steps(model)
        for run in ["base"] + FT_LABELS
    ]


def get_eval_predictions():
    """The per-item scores evaluation writes beside each result JSON (the paired bootstrap reads them)."""
    return [p.replace(".json", ".predictions.jsonl") for p in get_eval_results()]


def get_eval_set_tasks():
    return {
        name: config["data"]["datasets"][name]["task"]
        for name in config["evaluate"]["eval_sets"]
    }


def get_ft_set_tasks():
    return {name: config["data"]["datasets"][name]["task"] for name in FT_SETS}


# The study design (analysis.design) is checked at planning, not by the findings tables after the whole grid ran.
try:
    analysis.study_design(
        get_ft_set_tasks(), get_eval_set_tasks(), config["analysis"]["design"]
    )
except (KeyError, ValueError) as err:
    raise WorkflowError(f"config: {err.args[0]}")


def get_finetuned_models():
    """Every fine-tuned model folder; each holds the train_log.jsonl of its run."""
    return [
        f"models/{model}/{step}/{ft_set}"
        for model in MODELS
        for step in model_steps(model)
        for ft_set in FT_LABELS
    ]


def get_analysis_settings():
    return canonical(config["analysis"])


FINDINGS_TABLES = [
    "prompt_sensitivity",
    "sensitivity_by_checkpoint",
    "out_of_domain_ratio",
    "task_transfer",
    "task_transfer_test",
    "learned_in_pretraining",
    "gain_table",
    "task_transfer_paper",
    "transfer_cluster_test",
    "out_of_domain_raw_change_paper",
    "gain_by_group_paper",
    "format_gaps",
    "verdicts",
]
FINDINGS_FIGURES = [
    "prompt_sensitivity",
    "ratio_of_change",
    "paper_comparison",
    "gain_by_group",
    "base_curves_by_group",
    "finetune_curves",
]


def get_paper_comparison_inputs(wildcards):
    """The findings tables the paper comparison draws, plus the authors' CSVs when they are there
    (ptft.paper_results.results_dir: $PTFT_AUTHORS_RESULTS or ../shared/authors-results/), so that the figure is
    redrawn when they appear or change; without them it quotes ptft's stored constants and says so."""
    from ptft.paper_results import OFFICIAL_TABLE, SFT_TABLE, results_dir

    tables = {
        name: f"results/tables/{name}.csv"
        for name in (
            "sensitivity_by_checkpoint",
            "out_of_domain_raw_change_paper",
            "task_transfer_paper",
            "gain_by_group_paper",
        )
    }
    folder = results_dir()
    csvs = [folder / SFT_TABLE, folder / OFFICIAL_TABLE]
    if all(p.is_file() for p in csvs):
        tables["authors"] = [str(p) for p in csvs]
    return tables


def get_final_output():
    return [
        "results/tables/results.csv",
        "results/tables/summary.json",
        "results/tables/findings.json",
        "results/tables/finetune_curves.csv",
        *[f"data/{name}/card.json" for name in DATASETS],
        *[
            f"results/tables/{table}.{ext}"
            for table in FINDINGS_TABLES
            for ext in ("csv", "md")
        ],
        *[
            f"results/figures/{fig}.{ext}"
            for fig in ["base_curves", "finetune_gain", *FINDINGS_FIGURES]
            for ext in ("png", "svg")
        ],
    ]


def get_phase_output(phase):
    """Every file target of one phase for this config: what the phase_<name> rule (and its DVC stage) builds."""
    if phase == "data":
        corpus = ["data/corpus/train.jsonl", "data/corpus/card.json"]
        return [
            *(corpus if EMBEDDED_MODELS else []),
            *[
                f"data/{name}/{part}"
                for name in DATASETS
                for part in ("train.jsonl", "test.jsonl", "card.json")
            ],
            *[
                f"data/{name}/lr_search/{part}.jsonl"
                for name in LR_SEARCH_SETS
                for part in ("train", "dev")
            ],
        ]
    if phase == "checkpoints":
        return [
            path
            for model in MODELS
            for path in (
                [f"checkpoints/{model}/tokenizer"] if model in EMBEDDED_MODELS else []
            )
            + [f"checkpoints/{model}/{step}" for step in model_steps(model)]
        ]
    if phase == "finetune":
        return [
            f"models/{model}/{step}/{ft_set}"
            for model in MODELS
            for step in model_steps(model)
            for ft_set in FT_LABELS
        ]
    if phase == "evaluate":
        # with an lr search: every run's dev score and each searched set's choice
        return get_eval_results() + get_lr_choices()
    if phase == "analysis":
        return [
            path
            for path in get_final_output()
            if path.startswith(("results/tables/", "results/figures/"))
        ]
    raise WorkflowError(f"unknown phase {phase!r}")
