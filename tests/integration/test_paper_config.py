"""The study configs under configs/ plan with no network, and a hub model runs the whole pipeline from a fake hub."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ptft import checks
from ptft import estimate

from conftest import MINI_CONFIG, ROOT, copy_workflow, job_counts, outputs, snakemake

sys.path.insert(0, str(ROOT / "tests"))
from hubserver import FakeHub, tiny_model_files, tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.integration

ANALYSIS_RULES = ["aggregate", "plot_base_curves", "plot_finetune_gain", "findings_tables", "finetune_curves_table",
                  "plot_prompt_sensitivity", "plot_ratio_of_change", "plot_gain_by_group", "plot_base_curves_by_group",
                  "plot_finetune_curves", "plot_paper_comparison", "all"]  # fmt: skip


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("configs"), extra=("configs",))


@pytest.mark.parametrize("name", ["paper-olmo1b", "pythia-160m", "paper-llama3-8b"])
def test_a_study_config_plans_its_whole_grid_with_no_network(workflow, name):
    config = yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text())
    (model,) = config["models"].values()
    n_ckpt = len(model["checkpoints"])
    n_ft = len(config["finetune"]["ft_sets"])
    # The workflow copy's params.yaml is the miniature embedded study: none of it may leak into this plan.
    proc = snakemake(workflow, "-n", "--configfile", f"configs/{name}.yaml")
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts == {
        "materialize": n_ckpt,
        "prepare_dataset": len(config["data"]["datasets"]),
        "finetune": n_ckpt * n_ft,
        "evaluate": n_ckpt * (1 + n_ft),
        **{rule: 1 for rule in ANALYSIS_RULES},
    }, proc.stdout[-3000:]
    # `make estimate` bills the same jobs as Snakemake plans
    assert estimate.job_counts(checks.validate(config, source=name), workflow) == counts
    assert not (workflow / config["revisions_lock"]).exists()  # revisions are pinned by the jobs, not by planning


def test_a_selection_rule_plans_from_the_lock_only(workflow):
    config = yaml.safe_load((ROOT / "configs/pythia-160m.yaml").read_text())
    config["models"]["pythia-160m"]["checkpoints"] = [{"uniform_by_tokens": 3}, "main"]
    config.update(study="rules", revisions_lock="configs/rules.lock.yaml")
    (workflow / "configs/rules.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workflow, "-n", "--configfile", "configs/rules.yaml", check=False)
    assert proc.returncode != 0
    assert "uniform_by_tokens=3 is not resolved yet" in proc.stdout + proc.stderr
    assert "python -m ptft.hub resolve --configfile" in proc.stdout + proc.stderr
    # What `python -m ptft.hub resolve` writes; planning then expands the rule from it, still with no network.
    (workflow / "configs/rules.lock.yaml").write_text(yaml.safe_dump({"models": {"pythia-160m": {
        "repo": "EleutherAI/pythia-160m", "family": "pythia", "checkpoints": {},
        "rules": {"uniform_by_tokens=3": [0, 71000, 143000]}}}}))  # fmt: skip
    proc = snakemake(workflow, "-n", "--configfile", "configs/rules.yaml")
    assert job_counts(proc.stdout + proc.stderr)["materialize"] == 4
    assert "checkpoints/pythia-160m/71000" in proc.stdout + proc.stderr


def test_the_paper_config_is_the_papers_grid(workflow):
    config = yaml.safe_load((ROOT / "configs/paper-olmo1b.yaml").read_text())
    model = config["models"]["olmo-1b"]
    assert (model["repo"], model["family"]) == ("allenai/OLMo-1B-hf", "olmo")
    assert model["checkpoints"] == [1000, 18000, 342000, 424000, 505000, 592000, 738000, "main"]
    ft = config["finetune"]
    assert {name: s["lr"] for name, s in ft["ft_sets"].items()} == {
        "xsum": 2e-7, "social_i_qa": 2e-6, "mnli": 2e-6, "paws": 2e-6, "tulu": 2e-6}  # fmt: skip
    assert ft["defaults"]["epochs"] == 3 and ft["ft_sets"]["tulu"]["epochs"] == 5
    assert (ft["defaults"]["batch_size"], ft["defaults"]["max_length"]) == (8, 2048)
    datasets = config["data"]["datasets"]
    assert {datasets[s]["n_train"] for s in ft["ft_sets"] if s != "tulu"} == {6000}
    assert datasets["tulu"]["train_fraction"] == 0.05 and "n_train" not in datasets["tulu"]  # 5% of the mixture
    # the paper's recipe (docs/fidelity.md): no clipping, each example's mean loss weighs the same, every Tulu turn
    assert (ft["defaults"]["max_grad_norm"], ft["defaults"]["loss_weighting"]) == (None, "example")
    assert ft["defaults"]["assistant_turns"] == "all"
    assert datasets["rte"]["splits"]["test"] == "train" and datasets["tweet_qa"]["splits"]["test"] == "train"
    ev = config["evaluate"]
    assert (ev["prompt_formats"], ev["shots"]) == (["default", "instruct", "io"], [4])
    assert len(ev["eval_sets"]) == 13
    assert ev["lm_eval_tasks"] == ["arc_easy", "arc_challenge", "openbookqa", "hellaswag", "boolq", "sciq"]
    assert (ev["classification"], ev["rouge_stemmer"]) == ("token_prob", False)
    assert ev["stop_sequences"] == {"summarisation": [], "question_generation": [], "instruction": []}
    assert (ev["lm_eval_shots"], ev["lm_eval_split"]) == (4, "validation")


@pytest.fixture(scope="module")
def hub_study(tmp_path_factory):
    """A tiny OLMo on the fake hub with two step branches and main (its own commit), and a study of it."""
    base = tmp_path_factory.mktemp("hubstudy")
    tokenizer = tiny_tokenizer(base)
    server = FakeHub()
    for seed, branch in enumerate(["step1000-tokens4B", "step2000-tokens8B"]):
        server.commit("acme/tiny-olmo-hf", tiny_model_files("olmo", seed, tokenizer, base, context=512), branch=branch)
    server.commit("acme/tiny-olmo-hf", tiny_model_files("olmo", 7, tokenizer, base, context=512), branch="main")
    config = yaml.safe_load(MINI_CONFIG.read_text())
    config.update(study="hubstudy", offline=False, revisions_lock="configs/hubstudy.lock.yaml")
    config["models"] = {"tiny-hub": {"source": "hub", "repo": "acme/tiny-olmo-hf", "family": "olmo",
                                     "checkpoints": [1000, "main"], "main": {"step": 2500, "tokens": 10**10}}}  # fmt: skip
    workdir = copy_workflow(base / "wf", extra=("configs",))
    (workdir / "configs/hubstudy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with server:
        yield workdir, server, config


def test_a_hub_model_runs_materialize_finetune_evaluate_and_analysis(hub_study, monkeypatch):
    workdir, server, config = hub_study
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(workdir / ".cache/huggingface"))
    snakemake(workdir, "--configfile", "configs/hubstudy.yaml")

    lock = yaml.safe_load((workdir / "configs/hubstudy.lock.yaml").read_text())["models"]["tiny-hub"]
    repo = server.repos[("model", "acme/tiny-olmo-hf")]
    assert lock["checkpoints"]["1000"]["commit"] == repo.branches["step1000-tokens4B"]
    assert lock["checkpoints"]["main"]["commit"] == repo.branches["main"]
    main = json.loads((outputs(workdir, "hubstudy") / "checkpoints/tiny-hub/main/provenance.json").read_text())
    assert (main["step"], main["tokens"], main["branch"]) == (2500, 10**10, "main")

    table = pd.read_csv(outputs(workdir, "hubstudy") / "results/tables/results.csv")
    assert sorted(table["step"].unique()) == [1000, 2500]  # the numeric step of main, not its label
    assert dict(zip(table["step"], table["tokens"])) == {1000: 4 * 10**9, 2500: 10**10}
    assert set(table["ft_set"]) == {"base", *config["finetune"]["ft_sets"]}
    curves = pd.read_csv(outputs(workdir, "hubstudy") / "results/tables/finetune_curves.csv")
    assert sorted(curves["step"].unique()) == [1000, 2500]
    again = snakemake(workdir, "-n", "--configfile", "configs/hubstudy.yaml")
    assert job_counts(again.stdout + again.stderr) == {}
