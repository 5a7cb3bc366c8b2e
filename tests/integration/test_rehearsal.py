"""Every study config in configs/ rehearsed end to end against the hub replica (tests/replica.py, built from
tests/hub_facts.yaml): the real Snakemake workflow, the real hub clients, datasets and lm-eval loading the replica's
repos through HF_ENDPOINT, every job of the config's whole grid with tiny stand-ins. One rehearsal per config, shared
by the assertions below."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, copy_workflow, job_counts, snakemake

sys.path.insert(0, str(ROOT / "tests"))
from replica import REPLICA_TOKEN, replica_hub  # noqa: E402

pytestmark = pytest.mark.integration

# A rehearsal stands in for hub checkpoints before GPU time: every config with a hub model. The real-model study
# (configs/smollm2-135m.yaml: a packaged GGUF model and packaged data, minutes on a CPU) runs whole in test_real_model.
CONFIGS = sorted(
    p.stem for p in (ROOT / "configs").glob("*.yaml") if not p.name.endswith(".lock.yaml")
    and any(m.get("source") == "hub" for m in yaml.safe_load(p.read_text())["models"].values())
)
ANALYSIS_RULES = ["aggregate", "plot_base_curves", "plot_finetune_gain", "findings_tables", "finetune_curves_table",
                  "plot_prompt_sensitivity", "plot_ratio_of_change", "plot_gain_by_group", "plot_base_curves_by_group",
                  "plot_finetune_curves", "plot_paper_comparison", "all"]  # fmt: skip


@pytest.fixture(scope="session")
def replica(tmp_path_factory):
    with replica_hub(tmp_path_factory.mktemp("replica")) as hub:
        yield hub


@pytest.fixture(scope="session")
def rehearsals(replica, tmp_path_factory):
    """{config name: (workflow copy, its config, the rehearsal's Snakemake output)}, each rehearsed once on demand."""
    done: dict[str, tuple[Path, dict, str]] = {}

    def rehearse(name: str) -> tuple[Path, dict, str]:
        if name not in done:
            workdir = copy_workflow(tmp_path_factory.mktemp(f"rehearse-{name}"), extra=("configs",))
            env = {"HF_ENDPOINT": replica.url, "HF_TOKEN": REPLICA_TOKEN, "HF_HOME": str(workdir / ".cache/huggingface")}
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                # The paper's grid is ~120 jobs: about 10 minutes on an idle 2-core runner, more on a busy one.
                proc = snakemake(workdir, "--configfile", f"configs/{name}.yaml", "--config", "rehearsal=True",
                                 timeout=3600)
            finally:
                for key, value in old.items():
                    os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
            config = yaml.safe_load((workdir / f"configs/{name}.yaml").read_text())
            done[name] = (workdir, config, proc.stdout + proc.stderr)
        return done[name]

    return rehearse


@pytest.mark.parametrize("name", CONFIGS)
def test_a_rehearsal_runs_every_job_of_the_configs_grid(rehearsals, name):
    workdir, config, output = rehearsals(name)
    n_ckpt = sum(len(m["checkpoints"]) for m in config["models"].values())
    n_ft = len(config["finetune"]["ft_sets"])
    assert job_counts(output) == {
        "materialize": n_ckpt,
        "prepare_dataset": len(config["data"]["datasets"]),
        "finetune": n_ckpt * n_ft,
        "evaluate": n_ckpt * (1 + n_ft),
        **{rule: 1 for rule in ANALYSIS_RULES},
    }, output[-3000:]
    # Everything in the rehearsal's own folder; nothing where a real study writes.
    out = workdir / "rehearsal" / config["study"]
    assert (out / "results/tables/results.csv").is_file()
    assert not any((workdir / d).exists() for d in ("studies", "results", "models", "checkpoints", "data"))
    assert not (workdir / config["revisions_lock"]).exists()  # the real lock is never written by a rehearsal


@pytest.mark.parametrize("name", CONFIGS)
def test_a_rehearsal_scores_every_condition_the_config_asks_for(rehearsals, name):
    workdir, config, _ = rehearsals(name)
    out = workdir / "rehearsal" / config["study"]
    table = pd.read_csv(out / "results/tables/results.csv")
    ev = config["evaluate"]
    fts = ["base", *config["finetune"]["ft_sets"]]
    n_ckpt = sum(len(m["checkpoints"]) for m in config["models"].values())
    have = set(zip(table["step"], table["ft_set"], table["eval_set"], table["prompt_format"], table["shots"]))
    steps = sorted(table["step"].unique())
    assert len(steps) == n_ckpt
    wanted = {(step, ft, eval_set, fmt, shots) for step in steps for ft in fts for eval_set in ev["eval_sets"]
              for fmt in ev["prompt_formats"] for shots in ev["shots"]}  # fmt: skip
    assert wanted - have == set()
    for task in ev.get("lm_eval_tasks", []):
        rows = table[table["eval_set"] == task]
        assert set(zip(rows["step"], rows["ft_set"])) == {(s, ft) for s in steps for ft in fts}, task
        assert set(rows["prompt_format"]) == {"native"}
    if "boolq" in ev.get("lm_eval_tasks", []):  # lm-eval's boolq defines acc only
        assert set(table[table["eval_set"] == "boolq"]["metric"]) == {"acc"}


@pytest.mark.parametrize("name", CONFIGS)
def test_each_rehearsed_checkpoint_is_a_standin_of_its_real_architecture(rehearsals, replica, name):
    workdir, config, _ = rehearsals(name)
    out = workdir / "rehearsal" / config["study"]
    lock = yaml.safe_load((out / "rehearsal.lock.yaml").read_text())
    for model, spec in config["models"].items():
        repo = replica.repos[("model", spec["repo"])]
        for label, entry in lock["models"][model]["checkpoints"].items():
            assert entry["commit"] == repo.branches[entry["branch"]]  # resolved on the (replica) hub, pinned
            record = json.loads((out / f"checkpoints/{model}/{label}/provenance.json").read_text())
            assert record["rehearsal"]["num_hidden_layers"] == 1
            cfg = json.loads((out / f"checkpoints/{model}/{label}/config.json").read_text())
            real = json.loads(repo.commits[entry["commit"]]["config.json"])
            assert (cfg["model_type"], cfg["vocab_size"]) == (real["model_type"], real["vocab_size"])
            assert (out / f"checkpoints/{model}/{label}/tokenizer.json").read_bytes() == \
                repo.commits[entry["commit"]]["tokenizer.json"]  # fmt: skip
