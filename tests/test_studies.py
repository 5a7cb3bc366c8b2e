"""ptft.studies: each study's folder, config paths from the project root, and moving a study of the old layout (outputs
at the project root) into its folder with Snakemake's records of them. (A real old-layout study migrated under
Snakemake: tests/integration/test_two_studies.py.)"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from ptft.snakemake_log import drop_empty_job_messages
from ptft.studies import (LayoutError, discard, migrate, old_layout_message, old_layout_records, project_path,
                          study_dir)  # fmt: skip


def test_a_study_s_folder_is_named_by_its_study_key():
    assert study_dir({"study": "lab-a"}) == "studies/lab-a"
    assert study_dir({"study": "lab-a", "rehearsal": True}) == "rehearsal/lab-a"
    for bad in ("../up", "a/b", "", ".hidden"):
        with pytest.raises(LayoutError, match="study:"):
            study_dir({"study": bad})


def test_config_paths_resolve_from_the_project_root(monkeypatch, tmp_path):
    monkeypatch.delenv("PTFT_PROJECT_DIR", raising=False)
    assert project_path("configs/x.lock.yaml") == Path("configs/x.lock.yaml")
    monkeypatch.setenv("PTFT_PROJECT_DIR", str(tmp_path))
    assert project_path("configs/x.lock.yaml") == tmp_path / "configs/x.lock.yaml"
    assert project_path("/abs/ckpt") == Path("/abs/ckpt")


def record(root: Path, output: str, rule: str, inputs: list[str]) -> None:
    folder = root / ".snakemake/metadata"
    folder.mkdir(parents=True, exist_ok=True)
    name = base64.urlsafe_b64encode(output.encode()).decode()
    data = {"rule": rule, "input": inputs, "input_checksums": {p: "sha256:0" for p in inputs}, "params": []}
    (folder / name).write_text(json.dumps(data))
    (root / output).parent.mkdir(parents=True, exist_ok=True)
    (root / output).write_text("made")


def old_layout(root: Path) -> None:
    """A finished study at the project root: a local set's preparation, its evaluation, and a user's own data/ files."""
    record(root, "data/reviews/train.jsonl", "prepare_dataset", ["my/reviews.csv"])
    record(root, "results/eval/m/0/base.json", "evaluate", ["data/reviews/train.jsonl", "checkpoints/m/0"])
    record(root, "checkpoints/m/0", "materialize", [])
    (root / "logs").mkdir()
    (root / "data/raw").mkdir(parents=True)
    (root / "data/raw/mine.csv").write_text("a user's own file")


def test_migrate_moves_the_outputs_and_rebases_the_records_inputs(tmp_path):
    old_layout(tmp_path)
    assert "make migrate-layout" in old_layout_message(tmp_path, {"study": "lab-a"})
    moved = migrate(tmp_path, {"study": "lab-a"})
    assert moved == ["checkpoints", "data/reviews", "logs", "results"]
    study = tmp_path / "studies/lab-a"
    assert (study / "data/reviews/train.jsonl").read_text() == "made" and (study / "results/eval/m/0/base.json").is_file()
    assert (tmp_path / "data/raw/mine.csv").is_file()  # not a study's output: stays
    records = old_layout_records(study)
    assert set(records) == {"data/reviews/train.jsonl", "results/eval/m/0/base.json", "checkpoints/m/0"}
    prepared = json.loads(records["data/reviews/train.jsonl"].read_text())
    # a project file is now reached from the study's folder; the study's own outputs stay where they were relative to it
    assert prepared["input"] == ["../../my/reviews.csv"] and list(prepared["input_checksums"]) == ["../../my/reviews.csv"]
    evaluated = json.loads(records["results/eval/m/0/base.json"].read_text())
    assert evaluated["input"] == ["data/reviews/train.jsonl", "checkpoints/m/0"]
    assert old_layout_records(tmp_path) == {} and old_layout_message(tmp_path, {"study": "lab-a"}) is None
    shutil.rmtree(tmp_path / "data/raw")
    discard(tmp_path)  # nothing left to delete; the emptied data/ goes
    assert not (tmp_path / "data").exists()


def test_migrate_refuses_to_overwrite_a_study_folder(tmp_path):
    old_layout(tmp_path)
    (tmp_path / "studies/lab-a/results").mkdir(parents=True)
    with pytest.raises(LayoutError, match="already holds results"):
        migrate(tmp_path, {"study": "lab-a"})
    assert (tmp_path / "results/eval/m/0/base.json").is_file()


def test_discard_deletes_only_the_old_layout_s_outputs(tmp_path):
    old_layout(tmp_path)
    assert discard(tmp_path) == ["checkpoints", "data/reviews", "logs", "results"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snakemake", "data"]
    assert (tmp_path / "data/raw/mine.csv").is_file() and old_layout_records(tmp_path) == {}


def test_a_failed_job_s_report_has_no_message_none_line():
    """Snakemake 9 prints `message: None` for a failed job of a rule without a message (ptft.snakemake_log)."""
    from snakemake.logging import DefaultFormatter

    error = {"rule_name": "prepare_dataset", "msg": "None", "rule_msg": None, "jobid": 3, "input": [], "output": ["x"],
             "log": ["logs/x.log"], "conda_env": None, "shellcmd": None, "aux": {}}  # fmt: skip
    assert drop_empty_job_messages()
    lines = DefaultFormatter()._format_job_error(error)
    assert lines[0] == "Error in rule prepare_dataset:" and "    jobid: 3" in lines
    assert not any(line.strip().startswith("message:") for line in lines)
