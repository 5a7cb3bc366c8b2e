"""Two studies of one lab in one clone (issue 27): the example study with its own tasks and local data
(configs/examples/custom-tasks.yaml, in miniature) as `lab-a` and, with another learning rate, as `lab-b`.

`lab-a` is first run by the workflow of the old layout (outputs at the project root, the commit before each study had
its folder) and moved with `python -m ptft.studies migrate`: nothing reruns. Then each is reproduced with DVC from its
generated pipeline (studies/<study>/dvc.yaml): each study's outputs lie in its own folder, neither reruns after the
other ran, and `dvc repro` of each runs only the jobs a template edit or a one-row data edit reaches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, WORKFLOW_FILES, copy_workflow, dvc, job_counts, outputs, snakemake

pytestmark = pytest.mark.integration

EXAMPLE = "configs/examples/custom-tasks.yaml"
OLD_LAYOUT = "55251c2"  # the last commit whose workflow wrote a study's outputs at the project root
ANALYSIS = {"aggregate", "findings_tables", "finetune_curves_table", "plot_base_curves", "plot_base_curves_by_group",
            "plot_finetune_curves", "plot_finetune_gain", "plot_gain_by_group", "plot_prompt_sensitivity",
            "plot_ratio_of_change", "plot_paper_comparison"}  # fmt: skip


def study_config(name: str, lr: float) -> dict:
    config = yaml.safe_load((ROOT / EXAMPLE).read_text())
    config["study"] = name
    config["finetune"]["defaults"]["lr"] = lr
    config["evaluate"]["limit"] = 4  # 4 items a condition: the cheapest grid that still runs every job
    return config


def executed(output: str) -> dict[str, int]:
    """The jobs every Snakemake run in a `dvc repro` output ran ({rule: count}, summed over its stages; the phase_*
    targets left out)."""
    counts: dict[str, int] = {}
    for table in re.finditer(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*total", output, re.S):
        for line in table.group(1).splitlines():
            rule, count = line.split()[:2]
            if not rule.startswith("phase_"):
                counts[rule] = counts.get(rule, 0) + int(count)
    return counts


def repro(workdir: Path, study: str) -> dict[str, int]:
    run = dvc(workdir, "repro", f"studies/{study}/dvc.yaml")
    (workdir / f"repro-{study}.log").open("a").write(run.stdout + run.stderr)
    return executed(run.stdout + run.stderr)


def nothing_to_do(workdir: Path, study: str) -> bool:
    dry = snakemake(workdir, "-n", "--configfile", f"configs/{study}.yaml", cores="")
    return job_counts(dry.stdout + dry.stderr) == {} and "Nothing to be done" in dry.stdout + dry.stderr


def old_layout_available() -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{OLD_LAYOUT}^{{commit}}"], cwd=ROOT, capture_output=True).returncode == 0


def put_new_workflow(workdir: Path) -> None:
    """Replace the workflow files by this checkout's (copy2 keeps their mtimes, older than the outputs, as in a clone
    that pulls the new layout: Snakemake reruns a script rule whose script is newer than its outputs)."""
    for name in WORKFLOW_FILES:
        target = workdir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, target)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict:
    """The clone: lab-a run in the old layout and migrated (when the old commit is in this repository's history),
    both studies' DVC pipelines generated, each reproduced once."""
    workdir = copy_workflow(tmp_path_factory.mktemp("lab"), extra=("configs", ".dvcignore"))
    shutil.copytree(ROOT / "src/ptft", workdir / "src/ptft", ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(ROOT / ".dvc" / name, workdir / ".dvc" / name)
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    for name, lr in (("lab-a", 1.0e-3), ("lab-b", 2.0e-3)):
        (workdir / f"configs/{name}.yaml").write_text(yaml.safe_dump(study_config(name, lr), sort_keys=False))
    facts: dict = {"workdir": workdir, "migrated": None}
    if old_layout_available():
        for name in WORKFLOW_FILES:
            shutil.rmtree(workdir / name) if (workdir / name).is_dir() else (workdir / name).unlink()
        archive = subprocess.run(["git", "archive", OLD_LAYOUT, *WORKFLOW_FILES], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "x"], cwd=workdir, input=archive.stdout, check=True)
        # the old workflow with its own package (its scripts import names that have since moved), as a clone that
        # ran the study before pulling: PYTHONPATH comes before the venv's editable path to this checkout's src
        old_src = subprocess.run(["git", "archive", "--prefix=old-layout/", OLD_LAYOUT, "src/ptft", "schemas"],
                                 cwd=ROOT, capture_output=True, check=True)  # fmt: skip (the package reads ../schemas)
        subprocess.run(["tar", "x"], cwd=workdir, input=old_src.stdout, check=True)
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(workdir / "old-layout" / "src")
        try:
            snakemake(workdir, "--configfile", "configs/lab-a.yaml")
        finally:
            os.environ.pop("PYTHONPATH") if before is None else os.environ.__setitem__("PYTHONPATH", before)
        shutil.rmtree(workdir / "old-layout")
        facts["old_outputs"] = sorted(p.name for p in workdir.iterdir() if p.name in ("data", "results", "models"))
        put_new_workflow(workdir)
        facts["refused"] = snakemake(workdir, "-n", "--configfile", "configs/lab-a.yaml", cores="", check=False)
        migrated = subprocess.run([sys.executable, "-m", "ptft.studies", "migrate", "--configfile", "configs/lab-a.yaml"],
                                  cwd=workdir, capture_output=True, text=True, check=True)  # fmt: skip
        facts["migrated"] = migrated.stdout
        # since 55251c2 the findings_tables script changed and the paper_comparison figure is new: the migrated study
        # plans those analysis jobs again (seconds), never a preparation, fine-tune or evaluation
        dry = snakemake(workdir, "-n", "--configfile", "configs/lab-a.yaml", cores="")
        facts["after_migration"] = job_counts(dry.stdout + dry.stderr)
    for name in ("lab-a", "lab-b"):
        subprocess.run([sys.executable, "-m", "ptft.dvc_stages", "--configfile", f"configs/{name}.yaml"], cwd=workdir,
                       check=True)  # fmt: skip
        facts[name] = repro(workdir, name)
    return facts


def test_a_study_of_the_old_layout_moves_to_its_folder_without_rerunning(lab):
    if lab["migrated"] is None:
        pytest.skip(f"commit {OLD_LAYOUT} (the old layout's workflow) is not in this repository's history")
    assert lab["old_outputs"] == ["data", "models", "results"]
    refused = lab["refused"]
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "make migrate-layout CONFIG=" in said and "studies/lab-a/" in said, said[-2000:]
    assert "into studies/lab-a/; nothing reruns" in lab["migrated"]
    assert set(lab["after_migration"]) <= ANALYSIS | {"all"}, lab["after_migration"]
    # DVC adopts the migrated study: each stage's Snakemake target reruns nothing but those analysis jobs
    assert set(lab["lab-a"]) <= ANALYSIS, lab["lab-a"]


def test_each_study_writes_in_its_own_folder_and_neither_reruns_after_the_other(lab):
    workdir = lab["workdir"]
    assert lab["lab-b"].get("finetune") == 2 and lab["lab-b"].get("evaluate") == 4  # 2 checkpoints x (base + reviews)
    for name in ("lab-a", "lab-b"):
        assert (outputs(workdir, name) / "results/tables/results.csv").is_file()
        assert (outputs(workdir, name) / "logs").is_dir() and (outputs(workdir, name) / ".snakemake/metadata").is_dir()
        assert nothing_to_do(workdir, name), name
        status = dvc(workdir, "status", f"studies/{name}/dvc.yaml")
        assert "up to date" in status.stdout, status.stdout
    # nothing at the project root; each study fine-tuned with its own learning rate
    assert not any((workdir / d).exists() for d in ("data", "checkpoints", "models", "results", "logs", "benchmarks"))
    lrs = {name: yaml.safe_load((outputs(workdir, name) / "models/tiny-olmo/20/reviews/provenance.json").read_text())
           ["config"]["lr"] for name in ("lab-a", "lab-b")}  # fmt: skip
    assert lrs == {"lab-a": 1.0e-3, "lab-b": 2.0e-3}


def only(ran: dict[str, int], **jobs: int) -> bool:
    """Whether `ran` is exactly `jobs` plus analysis jobs (which run when a result's content changed: evaluations that
    score the same items the same way write the same files, and then neither DVC nor Snakemake reruns the analysis)."""
    return {rule: n for rule, n in ran.items() if rule not in ANALYSIS} == jobs


def test_dvc_repro_runs_only_what_a_template_edit_reaches(lab):
    workdir = lab["workdir"]
    config = workdir / "configs/lab-a.yaml"
    config.write_text(config.read_text().replace("### Headline:", "### Title:"))
    # headline is evaluated, not trained on: every evaluation (2 checkpoints x (base + reviews)), then the analysis
    ran = repro(workdir, "lab-a")
    assert only(ran, evaluate=4) and "aggregate" in ran, ran  # the prompts in the results changed
    assert nothing_to_do(workdir, "lab-a") and nothing_to_do(workdir, "lab-b")


def test_dvc_repro_of_each_study_runs_only_what_a_one_row_data_edit_reaches(lab):
    workdir = lab["workdir"]
    data = workdir / "configs/examples/data/headlines.jsonl"  # both studies evaluate on it
    lines = data.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"headline": "', '"headline": "Breaking: ', 1)
    assert lines[0] != data.read_text().splitlines(keepends=True)[0]
    data.write_text("".join(lines))
    for name in ("lab-a", "lab-b"):
        status = dvc(workdir, "status", f"studies/{name}/dvc.yaml")
        assert "configs/examples/data/headlines.jsonl" in status.stdout, status.stdout
        ran = repro(workdir, name)
        # the set is prepared again and every evaluation reruns; no fine-tuning (headlines is not trained on)
        assert only(ran, prepare_dataset=1, evaluate=4), (name, ran)
        assert nothing_to_do(workdir, name)
