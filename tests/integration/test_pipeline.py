"""The whole pipeline under real Snakemake on a miniature config: outputs, idempotence, precise staleness."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, job_counts, outputs, snakemake

pytestmark = pytest.mark.integration

# Every job downstream of the evaluations: each runs once whenever any evaluation result changes.
ANALYSIS_JOBS = {
    "aggregate": 1,
    "plot_base_curves": 1,
    "plot_finetune_gain": 1,
    "findings_tables": 1,
    "finetune_curves_table": 1,
    "plot_prompt_sensitivity": 1,
    "plot_ratio_of_change": 1,
    "plot_paper_comparison": 1,
    "plot_gain_by_group": 1,
    "plot_base_curves_by_group": 1,
    "plot_finetune_curves": 1,
    "all": 1,
}


@pytest.fixture(scope="module")
def study(local_study) -> Path:
    return local_study


def config_of(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "params.yaml").read_text())


def test_every_expected_output_exists(study):
    config = config_of(study)
    steps = config["models"]["tiny"]["checkpoints"]
    for step in steps:
        ckpt = outputs(study) / f"checkpoints/tiny/{step}"
        assert (ckpt / "model.safetensors").is_file(), ckpt
        assert json.loads((ckpt / "provenance.json").read_text())["step"] == step
        for ft_set in config["finetune"]["ft_sets"]:
            assert (outputs(study) / f"models/tiny/{step}/{ft_set}/model.safetensors").is_file()
            assert (outputs(study) / f"models/tiny/{step}/{ft_set}/train_log.jsonl").stat().st_size > 0
        for ft in ["base", *config["finetune"]["ft_sets"]]:
            assert (outputs(study) / f"results/eval/tiny/{step}/{ft}.predictions.jsonl").stat().st_size > 0
    for name in config["data"]["datasets"]:
        card = json.loads((outputs(study) / f"data/{name}/card.json").read_text())
        assert card["seed"] == config["data"]["seed"]
    for fig in ("base_curves", "finetune_gain", "prompt_sensitivity", "ratio_of_change", "paper_comparison",
                "gain_by_group", "base_curves_by_group", "finetune_curves"):  # fmt: skip
        assert (outputs(study) / f"results/figures/{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (outputs(study) / f"results/figures/{fig}.svg").read_bytes()[:2000]
    # no half-written temporary folders or files survive a successful run
    leftovers = [p for p in study.rglob(".*tmp*") if ".snakemake" not in p.parts and ".cache" not in p.parts]
    assert leftovers == []


def test_results_table_is_complete_and_sane(study):
    config = config_of(study)
    table = pd.read_csv(outputs(study) / "results/tables/results.csv")
    steps = config["models"]["tiny"]["checkpoints"]
    n_models = len(steps) * (1 + len(config["finetune"]["ft_sets"]))
    ev = config["evaluate"]
    assert len(table) == n_models * len(ev["eval_sets"]) * len(ev["prompt_formats"]) * len(ev["shots"])
    assert set(table["prompt_format"]) == set(ev["prompt_formats"])
    assert set(table["ft_set"]) == {"base", *config["finetune"]["ft_sets"]}
    assert table["value"].between(0, 1).all()
    assert (table["ci_low"] <= table["value"] + 1e-9).all() and (table["value"] <= table["ci_high"] + 1e-9).all()
    assert (table["n"] == ev["limit"]).all()
    tokens = table.drop_duplicates("step").set_index("step")["tokens"]
    pre = config["models"]["tiny"]["pretrain"]
    assert tokens.to_dict() == {s: s * pre["batch_size"] * pre["seq_len"] for s in steps}
    assert set(table.loc[table["task"] == "nli", "metric"]) == {"accuracy"}
    assert set(table.loc[table["task"] == "summarisation", "metric"]) == {"rougeL"}


def test_findings_tables_and_report(study):
    config = config_of(study)
    steps = config["models"]["tiny"]["checkpoints"]
    for name in ("prompt_sensitivity", "sensitivity_by_checkpoint", "out_of_domain_ratio", "task_transfer",
                 "task_transfer_test", "learned_in_pretraining", "gain_table"):  # fmt: skip
        assert len(pd.read_csv(outputs(study) / f"results/tables/{name}.csv")) > 0, name
        assert (outputs(study) / f"results/tables/{name}.md").read_text().startswith("# ")
    groups = pd.read_csv(outputs(study) / "results/tables/learned_in_pretraining.csv")
    assert set(groups["eval_set"]) == set(config["evaluate"]["eval_sets"])
    assert set(groups["group"]) <= {"learned", "not learned", "undecided"}
    assert groups[["ci_low", "ci_high"]].notna().all().all()  # paired intervals from the per-item scores
    verdicts = pd.read_csv(outputs(study) / "results/tables/verdicts.csv")
    assert [f[0] for f in dict.fromkeys(verdicts["finding"])] == ["1", "2", "3", "4", "5"]
    assert set(verdicts["verdict"]) <= {"reproduced", "contradicted", "inconclusive", "not applicable"}
    assert (outputs(study) / "results/tables/verdicts.md").read_text().startswith("# Does this study reproduce the paper?")
    assert json.loads((outputs(study) / "results/tables/verdicts.json").read_text())
    for name in ("out_of_domain_raw_change_paper", "gain_by_group_paper", "format_gaps"):
        table = pd.read_csv(outputs(study) / f"results/tables/{name}.csv")
        assert len(table) > 0 and table[["ci_low", "ci_high"]].notna().all().all(), name
    # the miniature's summarisation bases score ROUGE 0, so a transfer ratio may be undefined: rows, not intervals
    assert len(pd.read_csv(outputs(study) / "results/tables/task_transfer_paper.csv")) == 2
    curves = pd.read_csv(outputs(study) / "results/tables/finetune_curves.csv")
    assert set(curves["step"]) == set(steps) and set(curves["ft_set"]) == set(config["finetune"]["ft_sets"])
    findings = json.loads((outputs(study) / "results/tables/findings.json").read_text())
    assert set(findings["models"]["tiny"]) >= {"prompt_sensitivity_spread", "task_transfer", "in_domain_gain_by_group"}

    report = study / "report.html"
    snakemake(study, "--report", str(report))
    html = report.read_text()
    for fig in ("prompt_sensitivity", "ratio_of_change", "paper_comparison", "gain_by_group", "base_curves_by_group",
                "finetune_curves"):
        assert f"results/figures/{fig}.png" in html, fig
    assert "Finding 5 (paper Table 6" in html  # a caption made it in
    assert "A verdict per finding" in html and "Does this study reproduce the paper?" in html


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_report_renders_a_figure_in_chromium(study, tmp_path):
    report = study / "report.html"
    if not report.exists():
        snakemake(study, "--report", str(report))
    shot = tmp_path / "gain.png"
    subprocess.run([str(ROOT / "tools/report_screenshot.sh"), str(report), str(shot), "gain_by_group.png"],
                   check=True, timeout=180, capture_output=True)  # fmt: skip
    import numpy as np
    from PIL import Image

    with Image.open(shot) as img:
        # the figure's coloured lines fill the content pane (right of the 370 px navbar); the front page shows
        # ~160 coloured pixels there (the rule graph's dots), the real study's figure ~4,800
        pane = np.asarray(img.convert("RGB").crop((400, 300, 1300, 700)), dtype=int)
        colourful = int(((pane.max(axis=2) - pane.min(axis=2)) > 80).sum())
        assert colourful > 1000, colourful


def test_second_run_has_nothing_to_do(study):
    dry = snakemake(study, "-n")
    assert job_counts(dry.stdout + dry.stderr) == {}, dry.stdout[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_changing_one_learning_rate_reruns_only_that_set(study):
    config = config_of(study)
    steps = config["models"]["tiny"]["checkpoints"]
    config["finetune"]["ft_sets"]["news_sum"]["lr"] = 5.0e-4
    (study / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = {p: p.stat().st_mtime_ns for p in (outputs(study) / "results/eval/tiny").rglob("*.json")}

    expected = {
        "finetune": len(steps),
        "evaluate": len(steps),
        **ANALYSIS_JOBS,
    }
    dry = snakemake(study, "-n")
    assert job_counts(dry.stdout + dry.stderr) == expected
    run = snakemake(study)
    assert job_counts(run.stdout + run.stderr) == expected

    changed = {p for p, mtime in before.items() if p.stat().st_mtime_ns != mtime}
    assert changed == {outputs(study) / f"results/eval/tiny/{s}/news_sum.json" for s in steps}
    again = snakemake(study, "-n")
    assert job_counts(again.stdout + again.stderr) == {}


def test_adding_a_checkpoint_runs_only_its_jobs(study):
    """A later step: one pre-training increment, its fine-tunes and evaluations, then aggregation."""
    config = config_of(study)
    steps = config["models"]["tiny"]["checkpoints"]
    new_step = max(steps) + 10
    config["models"]["tiny"]["checkpoints"] = [*steps, new_step]
    (study / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    n_ft = len(config["finetune"]["ft_sets"])
    expected = {
        "pretrain": 1,
        "finetune": n_ft,
        "evaluate": 1 + n_ft,
        **ANALYSIS_JOBS,
    }
    dry = snakemake(study, "-n")
    assert job_counts(dry.stdout + dry.stderr) == expected, dry.stdout[-3000:]
    run = snakemake(study)
    assert job_counts(run.stdout + run.stderr) == expected
    assert (outputs(study) / f"checkpoints/tiny/{new_step}/model.safetensors").is_file()
    again = snakemake(study, "-n")
    assert job_counts(again.stdout + again.stderr) == {}


def test_bad_config_stops_before_planning(study, tmp_path):
    config = config_of(study)
    config["finetune"]["defaults"]["epochz"] = config["finetune"]["defaults"].pop("epochs")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(study, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert "finetune.defaults.epochz: unknown key; did you mean `epochs`?" in proc.stdout + proc.stderr
