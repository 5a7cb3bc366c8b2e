"""The example study with its own task families and local data (configs/examples/custom-tasks.yaml) under real
Snakemake: it runs end to end, scores both custom tasks, and editing a template or a data file reruns exactly the jobs
that read it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import copy_workflow, job_counts, outputs, snakemake

pytestmark = pytest.mark.integration

CONFIG = "configs/examples/custom-tasks.yaml"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("custom_tasks"), extra=("configs",))
    snakemake(workdir, "--configfile", CONFIG)
    return workdir


def test_both_custom_tasks_are_scored_from_local_data(example):
    config = yaml.safe_load((example / CONFIG).read_text())
    table = pd.read_csv(outputs(example, "custom-tasks") / "results/tables/results.csv")
    steps = config["models"]["tiny-olmo"]["checkpoints"]
    for eval_set, task, metric in (("reviews", "sentiment", "f1"), ("headlines", "headline", "rougeL")):
        rows = table[table["eval_set"] == eval_set]
        assert set(rows["task"]) == {task} and set(rows["metric"]) == {metric}
        assert sorted(rows["step"].unique()) == steps
        assert set(rows["ft_set"]) == {"base", *config["finetune"]["ft_sets"]}
        assert rows["value"].between(0, 1).all() and (rows["n"] == config["evaluate"]["limit"]).all()
    for name, files in (("reviews", {"train", "test"}), ("headlines", {"all"})):
        card = json.loads((outputs(example, "custom-tasks") / f"data/{name}/card.json").read_text())
        assert card["source"] == "local" and set(card["files"]) == files
    results = json.loads((outputs(example, "custom-tasks") / "results/eval/tiny-olmo/0/base.json").read_text())
    # 1-shot: the shot, then the scored item, each in the config's own template
    prompt = results["example_prompts"]["reviews/default/1"]
    assert prompt.startswith("### Review: ") and prompt.endswith("\n ### Sentiment:") and prompt.count("### Review:") == 2
    assert results["example_prompts"]["headlines/default/1"].endswith("\n ### Headline:")


def test_editing_a_template_or_a_data_file_reruns_exactly_its_jobs(example):
    config_text = (example / CONFIG).read_text()
    edited = example / "configs/examples/edited.yaml"
    def plan_of(text: str) -> dict[str, int]:
        edited.write_text(text)
        return job_counts(snakemake(example, "-n", "--configfile", str(edited.relative_to(example)), cores="").stdout)

    # the training template of sentiment: its fine-tuning (2 checkpoints) and every evaluation (2 x (base + 1))
    plan = plan_of(config_text.replace("### Sentiment:", "### Mood:"))
    assert plan.get("finetune") == 2 and plan.get("evaluate") == 4 and "prepare_dataset" not in plan
    # headline is evaluated, not trained on; sentiment's instruct format is not evaluated here and never trained on
    for text in (config_text.replace("### Headline:", "### Title:"),
                 config_text.replace('instruct: "Read the review', 'instruct: "Please read the review')):  # fmt: skip
        plan = plan_of(text)
        assert "finetune" not in plan and plan.get("evaluate") == 4 and "prepare_dataset" not in plan
    # a new row (Snakemake does not rerun for a newer mtime alone when the content's checksum is unchanged)
    data = example / "configs/examples/data/sentiment_test.csv"
    original = data.read_text()
    data.write_text(original + "The kettle was a real delight.,5\n")
    try:
        plan = job_counts(snakemake(example, "-n", "--configfile", CONFIG, cores="").stdout)
    finally:
        data.write_text(original)
    assert plan.get("prepare_dataset") == 1 and plan.get("finetune") == 2 and "pretrain" not in plan
