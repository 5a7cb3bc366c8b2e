"""The checks that run when a study is planned (ptft.checks.check_files, small_test_warnings): what a job would find
missing on disk is found before anything queues."""

import json
from pathlib import Path

import pytest
import yaml

from ptft.checks import small_test_warnings, validate
from ptft.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def study(tmp_path):
    """params.yaml plus a local NLI set (one JSONL file per split) and a local model, all under tmp_path."""
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows = [{"p": f"A{i} sat.", "h": f"An animal {i} sat.", "g": i % 3} for i in range(40)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config["data"]["datasets"]["mine"] = {
        "task": "nli", "source": "local", "files": {"train": "train.jsonl", "test": "test.jsonl"},
        "fields": {"premise": "p", "hypothesis": "h", "label": "g"},
        "labels": {0: "entailment", 1: "neutral", 2: "contradiction"},
    }
    config["evaluate"]["eval_sets"].append("mine")
    for step in (10, 20):
        (tmp_path / f"run/step{step}").mkdir(parents=True)
        (tmp_path / f"run/step{step}/config.json").write_text("{}")
    config["models"]["theirs"] = {"source": "local", "path": str(tmp_path / "run/step{checkpoint}"),
                                  "tokens_per_step": 1000, "checkpoints": [10, 20]}
    return config


def test_a_study_whose_files_are_there_passes(study, tmp_path):
    assert validate(study, root=tmp_path)["data"]["datasets"]["mine"]["source"] == "local"


def test_a_local_checkpoint_folder_that_does_not_exist_is_named(study, tmp_path):
    study["models"]["theirs"]["checkpoints"] = [10, 30]
    with pytest.raises(ConfigError, match=rf"models\.theirs\.path: {tmp_path}/run/step30 \(checkpoint 30\) is not a folder"):
        validate(study, root=tmp_path)


def test_a_column_missing_from_a_local_file_is_called_a_column(study, tmp_path):
    study["data"]["datasets"]["mine"]["fields"]["hypothesis"] = "hyp"
    with pytest.raises(ConfigError) as err:
        validate(study, root=tmp_path)
    assert "data.datasets.mine.fields.hypothesis = 'hyp' reads column 'hyp', which test.jsonl lacks" in str(err.value)
    assert "split" not in str(err.value).replace("not a split", "")


def test_a_malformed_jsonl_line_is_named_by_its_1_based_line(study, tmp_path):
    lines = (tmp_path / "test.jsonl").read_text().splitlines()
    lines[6] = lines[6][:-1]  # the closing brace of line 7
    (tmp_path / "test.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"data\.datasets\.mine\.files\.test: .*test\.jsonl, line 7: not valid JSON"):
        validate(study, root=tmp_path)


def test_an_empty_local_file_is_named_as_empty(study, tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match=r"data\.datasets\.mine\.files\.train: .*train\.jsonl is empty"):
        validate(study, root=tmp_path)


def test_a_test_split_under_the_minimum_is_warned_about_and_the_minimum_is_a_key(study, tmp_path):
    study["data"]["datasets"]["mine"]["n_test"] = 1
    config = validate(study, root=tmp_path)
    warnings = small_test_warnings(config, tmp_path)
    assert len(warnings) == 1 and warnings[0].startswith(
        "eval set 'mine' will score 1 test item(s), fewer than evaluate.min_test_items (30)")
    study["evaluate"]["min_test_items"] = 0
    assert small_test_warnings(validate(study, root=tmp_path), tmp_path) == []
    # a one-file set's test share is datasets' train_test_split's: ceil(0.05 x 40) = 2 rows
    study["evaluate"]["min_test_items"] = 3
    del study["data"]["datasets"]["mine"]["n_test"]
    study["data"]["datasets"]["mine"]["files"] = {"all": "train.jsonl"}
    study["data"]["datasets"]["mine"]["split"] = {"test_fraction": 0.05, "seed": 1}
    assert "will score 2 test item(s)" in small_test_warnings(validate(study, root=tmp_path), tmp_path)[0]
