"""The generated dvc.yaml (python -m ptft.dvc_stages) against Snakemake: the declared outs are what the phase targets
produce (for any grid), `dvc repro` is idempotent, and push / wipe / pull / touch leaves Snakemake nothing to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_workflow, dvc, job_counts, outputs, snakemake

pytestmark = pytest.mark.integration

DVC_FILES = (".dvcignore",)
STUDY = "studies/integration"  # the miniature's folder (tests/integration/config.yaml: study: integration)
PHASE_RULES = {"data", "checkpoints", "finetune", "evaluate", "analysis"}


def generate(workdir: Path) -> None:
    """The study's dvc.yaml from its params.yaml, as `make dvc-stages` writes it."""
    subprocess.run([sys.executable, "-m", "ptft.dvc_stages", "--configfile", "params.yaml"], cwd=workdir, check=True)


def stage_outs(workdir: Path) -> dict[str, list[str]]:
    stages = yaml.safe_load((workdir / "dvc.yaml").read_text())["stages"]
    return {name: [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]] for name, stage in stages.items()}


def dvc_project(workdir: Path) -> Path:
    copy_workflow(workdir, extra=DVC_FILES)
    shutil.copytree(ROOT / "src/ptft", workdir / "src/ptft", ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(ROOT / ".dvc" / name, workdir / ".dvc" / name)
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    generate(workdir)
    return workdir


def planned_outputs(workdir: Path, target: str) -> list[str]:
    """Every output file of the jobs behind one target (relative to the project, like DVC's outs), from Snakemake's own
    summary of the DAG (relative to the study's folder)."""
    proc = snakemake(workdir, target, "--summary", cores="")
    lines = proc.stdout.splitlines()
    header = lines.index(next(l for l in lines if l.startswith("output_file")))
    return [f"{STUDY}/{line.split(chr(9))[0]}" for line in lines[header + 1 :] if line.strip()]


def under(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def assert_agreement(workdir: Path) -> None:
    outs = stage_outs(workdir)
    assert set(outs) == PHASE_RULES
    declared: list[str] = []
    for phase in ("data", "checkpoints", "finetune", "evaluate", "analysis"):  # dvc.yaml's order
        produced = planned_outputs(workdir, f"phase_{phase}")
        declared += outs[phase]
        # everything a phase builds lies in its own outs or an earlier stage's (never unversioned)
        stray = [p for p in produced if not under(p, declared)]
        assert stray == [], (phase, stray)
        # and each of its own outs gets something from this phase's target
        for out in outs[phase]:
            assert any(under(p, [out]) for p in produced), (phase, out)
    every = planned_outputs(workdir, "all")
    assert [p for p in every if not under(p, declared)] == []


def test_dvc_outs_agree_with_snakemake_for_any_grid(tmp_path):
    workdir = dvc_project(tmp_path / "agree")
    assert_agreement(workdir)
    # a new checkpoint and a new data set (evaluated and fine-tuned on): still no hand edit of dvc.yaml
    config = yaml.safe_load((workdir / "params.yaml").read_text())
    config["models"]["tiny"]["checkpoints"].append(90)
    config["data"]["datasets"]["extra_nli"] = {"task": "nli", "domain": "animals", "n_train": 8, "n_test": 9}
    config["evaluate"]["eval_sets"].append("extra_nli")
    config["finetune"]["ft_sets"]["extra_nli"] = {}
    (workdir / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    generate(workdir)
    assert_agreement(workdir)
    assert f"{STUDY}/checkpoints/tiny/90" in planned_outputs(workdir, "phase_checkpoints")
    assert f"{STUDY}/models/tiny/90/extra_nli" in planned_outputs(workdir, "phase_finetune")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    workdir = dvc_project(tmp_path_factory.mktemp("dvc"))
    run = dvc(workdir, "repro")
    (workdir / "repro.log").write_text(run.stdout + run.stderr)
    return workdir


def test_dvc_repro_builds_the_study(reproduced, local_study):
    results = outputs(reproduced) / "results/tables/results.csv"
    assert results.read_bytes() == (local_study / "reference_results.csv").read_bytes()
    dry = snakemake(reproduced, "-n")
    assert job_counts(dry.stdout + dry.stderr) == {}
    assert "summary.json" in dvc(reproduced, "metrics", "show").stdout


def test_second_dvc_repro_does_nothing(reproduced):
    again = dvc(reproduced, "repro")
    output = again.stdout + again.stderr
    assert "Running stage" not in output, output[-3000:]
    for stage in PHASE_RULES:
        assert f"Stage '{stage}' didn't change, skipping" in output, output[-3000:]


def test_push_wipe_pull_touch_leaves_nothing_to_do(reproduced):
    dvc(reproduced, "push")
    reference = (outputs(reproduced) / "results/tables/results.csv").read_bytes()
    for folder in ("data", "checkpoints", "models", "results"):
        shutil.rmtree(outputs(reproduced) / folder)
    shutil.rmtree(reproduced / ".dvc/cache")
    dvc(reproduced, "pull")
    assert (outputs(reproduced) / "results/tables/results.csv").read_bytes() == reference
    assert (outputs(reproduced) / "checkpoints/tiny/30/model.safetensors").is_file()
    snakemake(reproduced, "--touch")  # `make touch`: realign mtimes after checkout/pull
    dry = snakemake(reproduced, "-n")
    assert job_counts(dry.stdout + dry.stderr) == {}, dry.stdout[-3000:]
    status = dvc(reproduced, "status")
    assert "up to date" in status.stdout, status.stdout
