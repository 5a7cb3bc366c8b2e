"""The hub replica (tests/replica.py) serves the recorded shapes of tests/hub_facts.yaml, and the paper config's
data sets, as configured now, prepare from it while the shapes that crashed the study (issue 11) fail as on the hub."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from replica import build_replica, load_facts, model_branches
from hubserver import FakeHub
from test_hubdata import ROOT, _failed, _ok, _rows, prepare

PAPER = yaml.safe_load((ROOT / "configs/paper-olmo1b.yaml").read_text())
REPOS = {"lighteval/siqa", "allenai/social_i_qa", "pietrolesci/gpt3_nli", "EdinburghNLP/xsum", "nyu-mll/glue"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with build_replica(FakeHub(), tmp_path_factory.mktemp("replica"), only=REPOS) as server:
        yield server


def test_the_olmo_and_pythia_branches_follow_the_recorded_lists():
    facts = load_facts()["models"]
    olmo = model_branches(facts["allenai/OLMo-1B-hf"])
    assert len(olmo) == 351 and olmo[0] == "step1000-tokens4B" and olmo[-1] == "step738020-tokens3094B"
    pythia = model_branches(facts["EleutherAI/pythia-160m"])
    assert len(pythia) == 154 and pythia[:3] == ["step0", "step1", "step2"] and pythia[-1] == "step143000"
    assert model_branches(facts["meta-llama/Meta-Llama-3-8B"]) == []


def test_a_replica_split_loads_with_the_recorded_columns_and_label_names(hub, tmp_path):
    code = ("import datasets, json; d = datasets.load_dataset('nyu-mll/glue', 'mnli', split='validation_matched'); "
            "print(json.dumps([d.column_names, d.features['label'].names, len(d)]))")
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    columns, names, n = json.loads(proc.stdout.strip().splitlines()[-1])
    assert columns == ["premise", "hypothesis", "label", "idx"]
    assert names == ["entailment", "neutral", "contradiction"] and n == 24


def test_the_loading_script_repo_of_social_i_qa_fails_as_on_the_hub_and_its_mirror_prepares(hub, tmp_path):
    old = {**PAPER["data"]["datasets"]["social_i_qa"],
           "hub": {"repo": "allenai/social_i_qa", "config": None, "revision": "main"}}  # fmt: skip
    proc, _ = prepare(hub, tmp_path / "old", "social_i_qa", old)
    assert "defined by a loading script" in _failed(proc)
    new = {**PAPER["data"]["datasets"]["social_i_qa"], "n_train": 8}  # the replica's splits have 24 rows
    proc, out = prepare(hub, tmp_path / "new", "social_i_qa", new)
    _ok(proc)
    assert _rows(out / "test.jsonl")[0]["answer"].startswith("Answer A: answerA validation 0")


def test_gpt3_nli_prepares_from_its_only_split_with_its_real_columns(hub, tmp_path):
    spec = PAPER["data"]["datasets"]["gpt3_nli"]
    old = {**spec, "splits": {"train": "train", "test": "test"}, "n_test": None,
           "fields": {"premise": "premise", "hypothesis": "hypothesis", "label": "label"}}  # fmt: skip
    proc, _ = prepare(hub, tmp_path / "old", "gpt3_nli", old)
    assert "has no split 'test'" in _failed(proc)
    small = {**spec, "n_train": 8, "n_test": 12}  # the replica's split has 24 rows
    proc, out = prepare(hub, tmp_path / "new", "gpt3_nli", small)
    _ok(proc)
    test, train = _rows(out / "test.jsonl"), _rows(out / "train.jsonl")
    assert len(test) == 12 and len(train) == 8 and not {r["id"] for r in test} & {r["id"] for r in train}
    assert {r["label"] for r in test} <= {"entailment", "neutral", "contradiction"}
