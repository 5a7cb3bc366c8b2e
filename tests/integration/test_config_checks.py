"""What `snakemake -n` refuses before any job queues, and how it says so: a key written twice in the config file
Snakemake was given, a misspelt key (one line, the nearest valid name, no schema dump), a local checkpoint folder
that does not exist and a local data file that does not parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("checks"))


def _plan(workdir: Path, config: dict | str, name: str = "study.yaml") -> tuple[int, str]:
    """(snakemake -n's exit status, what it printed: Snakemake writes a parse error to stdout)."""
    (workdir / name).write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, "-n", "--configfile", name, check=False, cores="")
    return proc.returncode, proc.stdout + proc.stderr


def _config(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "params.yaml").read_text())


def test_a_key_written_twice_in_the_configfile_is_refused_with_its_line(workdir):
    text = (workdir / "params.yaml").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("seed:"))
    lines.insert(at + 1, lines[at])  # the same top-level key again, on the next line
    status, printed = _plan(workdir, "\n".join(lines) + "\n")
    assert status != 0
    assert f"study.yaml, line {at + 2}: key 'seed' appears twice in one mapping (first at line {at + 1})" in printed


def test_a_misspelt_key_is_one_line_with_the_nearest_name_not_the_schema(workdir):
    config = _config(workdir)
    config["finetune"]["defaults"]["lrr"] = config["finetune"]["defaults"].pop("lr")
    status, printed = _plan(workdir, config)
    assert status != 0
    assert "  - finetune.defaults.lrr: unknown key; did you mean `lr`?" in printed
    assert "x-ptft-role" not in printed and len(printed.splitlines()) < 20


def test_a_local_checkpoint_folder_that_does_not_exist_stops_the_plan(workdir):
    config = _config(workdir)
    config["models"]["theirs"] = {"source": "local", "path": "runs/mine/step{checkpoint}", "tokens_per_step": 100,
                                  "checkpoints": [5]}
    status, printed = _plan(workdir, config)
    assert status != 0
    assert "models.theirs.path: runs/mine/step5 (checkpoint 5) is not a folder" in printed


def test_a_local_file_that_does_not_parse_stops_the_plan_naming_its_line(workdir):
    config = _config(workdir)
    rows = [json.dumps({"a": f"A{i}.", "b": f"B{i}."}) for i in range(9)]
    rows[4] = rows[4][:-1]
    (workdir / "mine.jsonl").write_text("\n".join(rows) + "\n")
    config["data"]["datasets"]["mine"] = {"task": "summarisation", "source": "local", "files": {"all": "mine.jsonl"},
                                          "split": {"test_fraction": 0.5, "seed": 1},
                                          "fields": {"document": "a", "summary": "b"}}
    status, printed = _plan(workdir, config)
    assert status != 0, printed[-2000:]
    assert f"data.datasets.mine.files.all: {workdir / 'mine.jsonl'}, line 5: not valid JSON" in printed


def test_a_test_split_under_the_minimum_is_warned_about_when_planned(workdir):
    config = _config(workdir)
    name = config["evaluate"]["eval_sets"][0]
    config["data"]["datasets"][name]["n_test"] = 1
    status, printed = _plan(workdir, config)
    assert status == 0, printed[-2000:]
    assert f"*** WARNING: eval set {name!r} will score 1 test item(s), fewer than evaluate.min_test_items (30)" in printed
