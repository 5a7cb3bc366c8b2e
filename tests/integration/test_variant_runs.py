"""Fine-tuning variants on a real miniature run: an lr search (two values, chosen on a dev slice) x two seeds, one
checkpoint and one training set; then dry runs show that adding an lr value or a seed plans only its own jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow, job_counts, outputs, snakemake
from ptft.analysis import read_results

pytestmark = pytest.mark.integration

TABLE = "results/tables/results.csv"
LRS = [1.0e-3, 3.0e-3]
SEEDS = [7, 8]  # 7 is the miniature's own seed: its runs keep the plain name


def variants_config() -> dict:
    config = yaml.safe_load(Path(__file__).with_name("config.yaml").read_text())
    config["models"]["tiny"]["checkpoints"] = [0]
    config["finetune"]["ft_sets"] = {"places_nli": {"lr": list(LRS)}}
    config["finetune"]["seeds"] = list(SEEDS)
    config["finetune"]["lr_search"] = {"n_dev": 6, "seed": 0, "select": "per_set"}
    config["evaluate"]["eval_sets"] = ["places_nli"]
    config["evaluate"]["prompt_formats"] = ["default"]
    return config


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("variants"))
    (workdir / "params.yaml").write_text(yaml.safe_dump(variants_config(), sort_keys=False))
    snakemake(workdir, TABLE)
    return workdir


def plan(study: Path, config: dict) -> dict[str, int]:
    path = study / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    dry = snakemake(study, TABLE, "-n", "--profile", "profiles/local", "--configfile", str(path), cores="")
    return job_counts(dry.stdout + dry.stderr)


def test_the_chosen_lr_has_the_best_dev_score_and_every_run_stays_marked(study):
    table = read_results(outputs(study) / TABLE, every_run=True)
    tuned = table[table["ft_set"] == "places_nli"]
    assert sorted(set(zip(tuned["lr"], tuned["seed"]))) == [(lr, s) for lr in LRS for s in SEEDS]
    # the dev scores as ptft.evaluate wrote them, one file per run (lr x seed), averaged over seeds per lr
    dev = {}
    for path in (outputs(study) / "results/lr_search/tiny/0").glob("*.json"):
        record = json.loads(path.read_text())  # its ft_set is the run's label, places_nli@lr<value>[@seed<n>]
        lr = float(record["ft_set"].split("@lr")[1].split("@")[0])
        dev.setdefault(lr, []).extend(r["value"] for r in record["results"])
    assert sorted(dev) == LRS
    means = {lr: sum(v) / len(v) for lr, v in dev.items()}
    best = min(lr for lr in LRS if means[lr] == max(means.values()))
    choice = json.loads((outputs(study) / "results/lr_search/tiny/places_nli.json").read_text())
    assert choice["chosen"] == {"0": best} and len(choice["candidates"]) == len(LRS) * len(SEEDS)
    assert (tuned["selected"] == (tuned["lr"] == best)).all()
    assert table[table["ft_set"] == "base"]["selected"].all()


def test_per_seed_rows_and_the_combined_interval_is_at_least_either_seeds(study):
    every = read_results(outputs(study) / TABLE, every_run=True)
    chosen = every[(every["ft_set"] == "places_nli") & every["selected"]]
    findings = read_results(outputs(study) / TABLE)
    assert len(findings[findings["ft_set"] == "places_nli"]) == len(chosen) // len(SEEDS)
    for _, row in findings[findings["ft_set"] == "places_nli"].iterrows():
        seeds = chosen[(chosen["metric"] == row["metric"]) & (chosen["prompt_format"] == row["prompt_format"])]
        assert sorted(seeds["seed"]) == SEEDS
        assert row["value"] == pytest.approx(seeds["value"].mean())
        assert row["ci_high"] - row["ci_low"] >= (seeds["ci_high"] - seeds["ci_low"]).max() - 1e-12


def test_adding_an_lr_value_or_a_seed_plans_only_its_own_jobs(study):
    assert plan(study, variants_config()) == {}
    more_lr = variants_config()
    more_lr["finetune"]["ft_sets"]["places_nli"]["lr"].append(2.0e-3)
    per_run = {"finetune": 2, "evaluate": 2, "evaluate_dev": 2, "select_lr": 1, "aggregate": 1}
    assert plan(study, more_lr) == per_run
    more_seeds = variants_config()
    more_seeds["finetune"]["seeds"].append(9)
    assert plan(study, more_seeds) == per_run
