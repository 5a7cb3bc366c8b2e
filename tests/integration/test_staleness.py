"""The staleness contract on a finished miniature study: changing a scheduling setting (or the profile) plans no
job; changing a science setting plans exactly the jobs it reaches. Dry runs with the profiles' rerun triggers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import job_counts, outputs, snakemake
from ptft.checks import validate
from ptft.config import finetune_settings, setting_roles

pytestmark = pytest.mark.integration

PHASES = ("pretrain", "materialize", "finetune", "evaluate")
# A different, valid value for every setting whose role is not science (the test fails for one missing here, so a new
# scheduling key cannot go untested). Micro-batch 1 on 2 GPUs still divides the miniature's batch of 4.
# Not here: study, which names the study's folder (studies/<study>/, ptft.studies): another name is another study,
# planned from scratch in its own folder while this one stays as it is (tests/integration/test_two_studies.py).
FOLDER_KEYS = {"study"}
CHANGES: dict[str, object] = {
    "offline": False,
    "evaluate.batch_size": 3,
    "evaluate.threads": 2,
    "evaluate.min_test_items": 5,
    "evaluate.share_prefix": False,
    "evaluate.decode_cache": "static",
    "models.*.pretrain.threads": 2,
    **{f"resources.{phase}.gpu": 2 for phase in PHASES},
    **{f"resources.{phase}.cpus_per_gpu": 3 for phase in PHASES},
    **{f"resources.{phase}.mem_mb": 3000 for phase in PHASES},
    **{f"resources.{phase}.runtime": 77 for phase in PHASES},
    # 2 nodes x 2 processes x micro-batch 1 still divides the miniature's batch of 4; FSDP trains like one process
    **{f"resources.{phase}.gpu_mem_gb": 80 for phase in PHASES},
    **{f"resources.{phase}.nodes": 2 for phase in PHASES},
    **{f"resources.{phase}.processes_per_node": 2 for phase in PHASES},
    "finetune.sharding": "fsdp",
    **{
        f"finetune.{where}.{key}": value
        for where in ("defaults", "ft_sets.*")
        for key, value in {
            "threads": 2, "save_steps": 3, "micro_batch_size": 1, "packing": False, "gradient_checkpointing": True,
        }.items()
    },
}
ANALYSIS_JOBS = {
    "aggregate": 1, "plot_base_curves": 1, "plot_finetune_gain": 1, "findings_tables": 1, "finetune_curves_table": 1,
    "plot_prompt_sensitivity": 1, "plot_ratio_of_change": 1, "plot_gain_by_group": 1, "plot_base_curves_by_group": 1,
    "plot_paper_comparison": 1,
    "plot_finetune_curves": 1, "all": 1,
}  # fmt: skip
# after a change of evaluations only: the fine-tuning curves read the training logs, not the results
AFTER_EVALUATION = {rule: n for rule, n in ANALYSIS_JOBS.items() if rule not in ("finetune_curves_table", "plot_finetune_curves")}


@pytest.fixture(scope="module")
def study(local_study) -> Path:
    """The finished miniature study (shared with test_pipeline, which may have changed its params.yaml and rerun)."""
    return local_study


def config_of(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "params.yaml").read_text())


def plan(study: Path, config: dict, tmp_path: Path, profile: str = "local") -> dict[str, int]:
    """Job counts of a dry run of `config` on the finished study under profiles/<profile> (its rerun triggers)."""
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    dry = snakemake(study, "-n", "--profile", f"profiles/{profile}", "--configfile", str(path), cores="")
    return job_counts(dry.stdout + dry.stderr)


def places(config: dict, path: str) -> list[tuple[dict, str]]:
    """(section, key) of every place a schema path ("finetune.ft_sets.*.lr") names in config; absent sections are
    created (a setting left to its default is set explicitly)."""
    *sections, key = path.split(".")
    nodes = [config]
    for part in sections:
        if part == "*":
            nodes = [entry for node in nodes for entry in node.values()]
        else:
            nodes = [node.setdefault(part, {}) for node in nodes]
    return [(node, key) for node in nodes]


def effective(config: dict) -> dict:
    """The settings jobs see: validated with defaults, and each training set's full fine-tuning slice."""
    full = validate(copy.deepcopy(config))
    full["finetune"]["ft_sets"] = {name: finetune_settings(full, name) for name in full["finetune"]["ft_sets"]}
    full["finetune"]["defaults"] = finetune_settings(full, next(iter(full["finetune"]["ft_sets"])))
    return full


def test_a_plan_is_empty_only_when_snakemake_says_nothing_to_be_done():
    """job_counts reads Snakemake's own words: output it cannot read (another format, an error) fails the reading
    test instead of passing as an empty plan."""
    table = "Job stats:\njob         count\n--------  -------\nevaluate        2\nall             1\ntotal           3\n"
    assert job_counts(table) == {"evaluate": 2, "all": 1}
    assert job_counts("Building DAG of jobs...\nNothing to be done (all requested files are present and up to date).") == {}
    for unreadable in ("", "Building DAG of jobs...\nJobs: evaluate x2", "WorkflowError: cannot parse"):
        with pytest.raises(AssertionError, match="Nothing to be done"):
            job_counts(unreadable)


def test_the_finished_study_plans_nothing_under_either_profile(study, tmp_path):
    """Moving a finished study from a workstation to SLURM reruns nothing."""
    config = config_of(study)
    assert plan(study, config, tmp_path, "local") == {}
    assert plan(study, config, tmp_path, "slurm") == {}


def test_a_gpu_workstation_plans_no_job(study, tmp_path, monkeypatch):
    """Issue 24: the finished study planned on a GPU workstation (a faked pool of 3 GPUs, 2 jobs per GPU): GPU slots,
    the `gpu` requests and the finetune launcher are scheduling, so nothing reruns."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.setenv("PTFT_JOBS_PER_GPU", "2")
    assert plan(study, config_of(study), tmp_path, "local") == {}


def test_changing_every_scheduling_setting_plans_no_job(study, tmp_path):
    roles = setting_roles()
    not_science = {path for path, role in roles.items() if role != "science"} - FOLDER_KEYS
    assert not_science - set(CHANGES) == set(), "give these settings a change in CHANGES"
    assert set(CHANGES) - not_science == set(), "CHANGES names settings that are science (or gone) now"

    before = config_of(study)
    changed = copy.deepcopy(before)
    for path, value in CHANGES.items():
        targets = places(changed, path)
        assert targets, f"{path}: the miniature config has no place for it"
        for node, key in targets:
            node[key] = value
    old, new = effective(before), effective(changed)
    for path in CHANGES:
        for (was, key), (now, _) in zip(places(copy.deepcopy(old), path), places(copy.deepcopy(new), path)):
            assert was.get(key) != now[key], f"{path} did not change ({now[key]!r})"
    assert plan(study, changed, tmp_path, "local") == {}
    assert plan(study, changed, tmp_path, "slurm") == {}


def test_reordering_the_config_file_plans_no_job(study, tmp_path):
    """Snakemake compares params by repr, which follows key order: the rules pass canonical (sorted) mappings."""
    config = config_of(study)
    reordered = json.loads(json.dumps(config, sort_keys=True))
    reordered = {key: reordered[key] for key in reversed(list(reordered))}
    assert list(reordered) != list(config)
    assert plan(study, reordered, tmp_path) == {}


def test_scheduling_settings_reach_the_jobs_and_their_provenance(study):
    """They left params, not the jobs: fine-tuning and evaluation record the values they ran with."""
    config = effective(config_of(study))
    step = config["models"]["tiny"]["checkpoints"][0]
    ft_set = next(iter(config["finetune"]["ft_sets"]))
    record = json.loads((outputs(study) / f"models/tiny/{step}/{ft_set}/provenance.json").read_text())
    for key in ("micro_batch_size", "packing", "save_steps", "gradient_checkpointing"):
        assert record["config"]["scheduling"][key] == config["finetune"]["ft_sets"][ft_set][key], key
    evaluation = json.loads((outputs(study) / f"results/eval/tiny/{step}/base.json").read_text())["provenance"]["config"]
    scheduling = evaluation["scheduling"]
    assert (scheduling["batch_size"], scheduling["threads"]) == (config["evaluate"]["batch_size"], config["evaluate"]["threads"])
    log = (outputs(study) / f"logs/evaluate/tiny/{step}/base.log").read_text()  # printed at the top of the job's log
    assert f"scheduling.batch_size: {config['evaluate']['batch_size']!r}" in log.splitlines()
    ft_log = (outputs(study) / f"logs/finetune/tiny/{step}/{ft_set}.log").read_text()
    assert f"lr: {config['finetune']['ft_sets'][ft_set]['lr']!r}" in ft_log.splitlines()


def _science_cases():
    def set_value(path, value):
        def change(config):
            for node, key in places(config, path):
                node[key] = value

        return change

    def counts(steps, ft_sets):
        return {
            "finetune.ft_sets.places_nli.lr": {"finetune": steps, "evaluate": steps, **ANALYSIS_JOBS},
            "finetune.defaults.epochs": {"finetune": steps * ft_sets, "evaluate": steps * ft_sets, **ANALYSIS_JOBS},
            "evaluate.fewshot_seed": {"evaluate": steps * (1 + ft_sets), **AFTER_EVALUATION},
            "models.tiny.pretrain.lr": {
                "pretrain": steps, "finetune": steps * ft_sets, "evaluate": steps * (1 + ft_sets), **ANALYSIS_JOBS,
            },
            "data.datasets.story_sum.n_test": {"prepare_dataset": 1, "evaluate": steps * (1 + ft_sets), **AFTER_EVALUATION},
            # the rules given the analysis section, and the figures drawn from the findings tables
            "analysis.transfer_test.seed": {
                "findings_tables": 1, "plot_base_curves_by_group": 1, "plot_gain_by_group": 1,
                "plot_prompt_sensitivity": 1, "plot_ratio_of_change": 1, "plot_paper_comparison": 1, "all": 1,
            },
            # LoRA: every fine-tune again and the fine-tuned models' evaluations, not the base models'
            "finetune.method": {"finetune": steps * ft_sets, "evaluate": steps * ft_sets, **ANALYSIS_JOBS},
            # reaches LoRA adapters only; this study fine-tunes all weights
            "finetune.lora_eval": {},
            # a second seed beside the sets' own (7): its runs only, the finished ones keep their paths
            "finetune.seeds": {"finetune": steps * ft_sets, "evaluate": steps * ft_sets, **ANALYSIS_JOBS},
            # reaches sets whose lr is a list only; none here
            "finetune.lr_search.n_dev": {},
        }  # fmt: skip

    changes = {
        "finetune.ft_sets.places_nli.lr": set_value("finetune.ft_sets.places_nli.lr", 4.0e-3),
        "finetune.defaults.epochs": set_value("finetune.defaults.epochs", 2),
        "evaluate.fewshot_seed": set_value("evaluate.fewshot_seed", 99),
        "models.tiny.pretrain.lr": set_value("models.tiny.pretrain.lr", 1.0e-3),
        "data.datasets.story_sum.n_test": set_value("data.datasets.story_sum.n_test", 5),
        "analysis.transfer_test.seed": set_value("analysis.transfer_test.seed", 11),
        "finetune.method": set_value("finetune.method", "lora"),
        "finetune.lora_eval": set_value("finetune.lora_eval", "merged"),
        "finetune.seeds": set_value("finetune.seeds", [7, 8]),
        "finetune.lr_search.n_dev": set_value("finetune.lr_search.n_dev", 5),
    }
    return [pytest.param(path, change, counts, id=path) for path, change in changes.items()]


@pytest.mark.parametrize("path, change, counts", _science_cases())
def test_a_science_setting_plans_exactly_the_jobs_it_reaches(study, tmp_path, path, change, counts):
    config = config_of(study)
    changed = copy.deepcopy(config)
    change(changed)
    assert effective(changed) != effective(config), path
    steps, ft_sets = len(config["models"]["tiny"]["checkpoints"]), len(config["finetune"]["ft_sets"])
    assert plan(study, changed, tmp_path) == counts(steps, ft_sets)[path]
