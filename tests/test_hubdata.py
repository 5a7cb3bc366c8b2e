"""ptft.hubdata against a local stand-in of the hub (tests/hubserver.py): the real huggingface_hub and datasets
client code downloads tiny parquet data sets laid out like the paper's hub repos.

Each preparation runs in a fresh Python process, because huggingface_hub and datasets read HF_ENDPOINT,
HF_HOME and the offline switches once, when first imported.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubserver import FakeHub
from ptft import hubclient, hubdata, records
from ptft.checks import validate
from ptft.config import ConfigError
from ptft.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
N_MNLI = 60


def _parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _readme(configs: dict[str, list[str]]) -> bytes:
    """A dataset card whose YAML `configs:` section maps each config's splits to files, as on the hub."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {config}/{split}-*" for split in splits]
    return ("\n".join(lines) + "\n---\n# a tiny test data set\n").encode()


def _mnli_rows(split: str, n: int) -> list[dict]:
    return [{"premise": f"{split} premise {i}", "hypothesis": f"{split} hypothesis {i}", "label": i % 3, "idx": i}
            for i in range(n)]


GLUE = {
    "mnli": {"train": _mnli_rows("train", N_MNLI), "validation_matched": _mnli_rows("vm", 9)},
    "rte": {"train": [{"sentence1": "x", "sentence2": "y", "label": 1, "idx": 0}],
            "validation": [{"sentence1": f"s{i}", "sentence2": f"t{i}", "label": i % 2, "idx": i} for i in range(6)]},
    "qqp": {"train": [{"question1": f"tq{i}?", "question2": f"tr{i}?", "label": i % 2, "idx": i} for i in range(8)],
            "validation": [{"question1": f"q{i}?", "question2": f"r{i}?", "label": i % 2, "idx": i} for i in range(6)],
            "test": [{"question1": f"q{i}?", "question2": f"r{i}?", "label": -1, "idx": i} for i in range(4)]},
    "stsb": {"train": [{"sentence1": "x", "sentence2": "y", "label": 4.0, "idx": 0}],
             "validation": [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": score, "idx": i}
                            for i, score in enumerate([0.0, 3.5, 3.6, 5.0, 2.2])]},
}
ARTICLES = [{"document": f"Article {i} text.", "summary": f"Summary {i}.", "id": str(i)} for i in range(5)]
TWEETS = [
    {"Tweet": "Rain all day in Leeds.", "Question": "where did it rain?", "Answer": ["Leeds", "in Leeds"], "qid": "a"},
    {"Tweet": "No answer here.", "Question": "what?", "Answer": [], "qid": "b"},
    {"Tweet": "Sun in Rome.", "Question": "where was the sun?", "Answer": ["Rome"], "qid": "c"},
    {"Tweet": "", "Question": "who?", "Answer": ["me"], "qid": "d"},
    {"Tweet": "Snow.", "Question": " ", "Answer": ["snow"], "qid": "e"},
]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour. "},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": " Red. "},
]
TULU = [
    {"dataset": "sharegpt", "id": "c1", "messages": CONVERSATION},
    {"dataset": "flan", "id": "c2", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
]


def _glue_files(glue: dict = GLUE) -> dict[str, bytes]:
    files = {"README.md": _readme({c: list(s) for c, s in glue.items()})}
    for config, splits in glue.items():
        for split, rows in splits.items():
            files[f"{config}/{split}-00000-of-00001.parquet"] = _parquet(rows)
    return files


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        server.commit("nyu-mll/glue", _glue_files(), repo_type="dataset")
        # No `configs:` section: datasets infers the splits from data/{split}-*.parquet, as for many hub repos.
        server.commit("cardiffnlp/tweet_qa", {"README.md": b"# tweets\n", "data/train-00000-of-00001.parquet": _parquet(TWEETS),
                                              "data/validation-00000-of-00001.parquet": _parquet(TWEETS[:1])},
                      repo_type="dataset")
        server.commit("allenai/tulu-v2-sft-mixture", {"README.md": b"# tulu\n",
                                                      "data/train-00000-of-00001.parquet": _parquet(TULU)}, repo_type="dataset")
        server.create_repo("someone/gated-set", "dataset", gated=True)
        server.commit("someone/gated-set", _glue_files(), repo_type="dataset")
        # A repo still defined by a loading script, and the hub's parquet conversion of it on another branch.
        server.commit("EdinburghNLP/xsum", {"README.md": b"# xsum\n", "xsum.py": b"import datasets\n"}, repo_type="dataset")
        server.commit("EdinburghNLP/xsum", {"default/train/0000.parquet": _parquet(ARTICLES),
                                            "default/test/0000.parquet": _parquet(ARTICLES[:2])},
                      branch="refs/convert/parquet", repo_type="dataset")
        # Files of their own name, so that the faults injected for them hit nothing else.
        server.commit("someone/flaky", _glue_files({"flaky": GLUE["mnli"]}), repo_type="dataset")
        yield server


def commit_of(hub, repo_id: str, branch: str = "main") -> str:
    return hub.repos[("dataset", repo_id)].branches[branch]


MNLI = {
    "task": "nli",
    "source": "hub",
    "hub": {"repo": "nyu-mll/glue", "config": "mnli", "revision": "main"},
    "splits": {"train": "train", "test": "validation_matched"},
    "fields": {"premise": "premise", "hypothesis": "hypothesis", "label": "label"},
    "labels": {0: "entailment", 1: "neutral", 2: "contradiction"},
    "label_threshold": None,
    "n_train": 20,
    "n_test": None,
}


def prepare(hub, tmp_path: Path, name: str, spec: dict, seed: int = 42, offline: bool = False,
            home: Path | None = None, lock: Path | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    """Run prepare_hub_dataset in a fresh process against the fake hub; return the process and the output folder.
    lock: the revisions lock, given as the rules give it ($PTFT_REVISIONS_LOCK)."""
    out = tmp_path / "data" / name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE", "PTFT_REVISIONS_LOCK"))}
    if lock is not None:
        env["PTFT_REVISIONS_LOCK"] = str(lock)
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home or tmp_path / "hf"), PYTHONPATH=str(ROOT / "src"),
               HF_HUB_OFFLINE="1" if offline else "0", HF_DATASETS_OFFLINE="1" if offline else "0",
               HF_HUB_DISABLE_TELEMETRY="1")
    code = ("import json, sys; from pathlib import Path; from ptft.hubdata import prepare_hub_dataset; "
            "prepare_hub_dataset(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))")
    proc = subprocess.run([sys.executable, "-c", code, name, json.dumps(spec), str(seed), str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    return proc, out


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def _failed(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, "expected a failure"
    return proc.stderr.strip().splitlines()[-1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------------- success paths


def test_mnli_fields_labels_and_card(hub, tmp_path):
    served_before = len(hub.log)
    proc, out = prepare(hub, tmp_path, "mnli", MNLI)
    _ok(proc)
    train, test = _rows(out / "train.jsonl"), _rows(out / "test.jsonl")
    assert len(train) == 20 and len(test) == 9
    source = {r["idx"]: r for r in GLUE["mnli"]["validation_matched"]}
    for record in test:
        index = int(record["id"].rsplit("-", 1)[1])
        assert record["id"] == f"mnli-validation_matched-{index}"
        assert record["premise"] == source[index]["premise"]
        assert record["label"] == ("entailment", "neutral", "contradiction")[source[index]["label"]]
        assert set(record) == {"id", "premise", "hypothesis", "label"}
    card = json.loads((out / "card.json").read_text())
    assert card["hub"] == {"repo": "nyu-mll/glue", "config": "mnli", "data_dir": None, "revision_requested": "main",
                           "commit": commit_of(hub, "nyu-mll/glue"), "url": "https://huggingface.co/datasets/nyu-mll/glue"}
    assert card["sizes"]["train"] == {"source_split": "train", "rows_in_split": N_MNLI, "rows_excluded_as_test": 0,
                                     "rows_sampled": 20, "rows_written": 20}
    assert card["label_distribution"]["test"] == {"entailment": 3, "neutral": 3, "contradiction": 3}
    assert card["seed"] == 42 and card["fields"] == MNLI["fields"] and card["dropped_rows"] == {"train": {}, "test": {}}
    assert json.loads((out / "provenance.json").read_text())["hub_commit"] == commit_of(hub, "nyu-mll/glue")
    # Only the two splits asked for were downloaded, not the whole repo.
    downloads = sorted(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1] for method, path, status in hub.log[served_before:]
                       if method == "GET" and status == 200 and "/resolve/" in path and path.endswith(".parquet"))
    assert downloads == ["mnli/train-00000-of-00001.parquet", "mnli/validation_matched-00000-of-00001.parquet"]


def test_a_data_set_is_pinned_to_a_commit_in_the_lock_and_read_there_after_its_branch_moves(hub, tmp_path):
    """Like checkpoints: the first run pins hub.revision's commit in the study's lock file; a later run reads that
    commit although main has moved, and a lock made for another revision is refused."""
    import yaml

    repo = "someone/moving"
    first = hub.commit(repo, _glue_files({"mnli": GLUE["mnli"]}), repo_type="dataset")
    spec = dict(MNLI, hub={"repo": repo, "config": "mnli", "revision": "main"})
    lock = tmp_path / "configs" / "study.lock.yaml"
    proc, out = prepare(hub, tmp_path / "a", "mnli", spec, lock=lock)
    _ok(proc)
    pinned = yaml.safe_load(lock.read_text())["datasets"]["mnli"]
    assert pinned == {"repo": repo, "config": "mnli", "data_dir": None, "revision": "main", "commit": first}
    moved = {"mnli": {**GLUE["mnli"], "validation_matched": _mnli_rows("moved", 4)}}
    assert hub.commit(repo, _glue_files(moved), repo_type="dataset") != first
    proc, out = prepare(hub, tmp_path / "b", "mnli", spec, lock=lock)
    _ok(proc)
    card = json.loads((out / "card.json").read_text())
    assert card["hub"]["commit"] == first and len(_rows(out / "test.jsonl")) == 9  # not the moved branch's 4 rows
    proc, _ = prepare(hub, tmp_path / "c", "mnli", dict(spec, hub={**spec["hub"], "revision": "v2"}), lock=lock)
    assert "datasets.mnli is pinned for revision='main'" in _failed(proc)


def test_training_sample_is_the_authors_and_deterministic(hub, tmp_path):
    import datasets

    spec = dict(MNLI, splits={"train": "train", "test": "validation_matched"})
    runs = {}
    for label, seed in (("a", 42), ("b", 42), ("c", 7)):
        proc, out = prepare(hub, tmp_path / label, "mnli", spec, seed=seed)
        _ok(proc)
        runs[label] = [r["id"] for r in _rows(out / "train.jsonl")]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    source = datasets.Dataset.from_list(GLUE["mnli"]["train"])
    authors = source.shuffle(seed=42).select(range(20))
    assert runs["a"] == [f"mnli-train-{i}" for i in authors["idx"]]


def test_test_rows_are_left_out_of_a_training_set_from_the_same_split(hub, tmp_path):
    import datasets

    proc, out = prepare(hub, tmp_path, "mnli", {**MNLI, "splits": {"train": "train", "test": "train"}, "n_test": 10})
    _ok(proc)
    train, test = [[r["id"] for r in _rows(out / f"{part}.jsonl")] for part in ("train", "test")]
    assert len(test) == 10 and len(train) == 20 and not set(train) & set(test)
    source = datasets.Dataset.from_list(GLUE["mnli"]["train"])
    assert test == [f"mnli-train-{i}" for i in source.shuffle(seed=42).select(range(10))["idx"]]
    card = json.loads((out / "card.json").read_text())
    assert card["sizes"]["train"]["rows_excluded_as_test"] == 10


@pytest.mark.parametrize(
    ("config", "spec_part", "expected"),
    [
        # The authors wrote rte's not_entailment (1) as "neutral".
        ("rte", {"fields": {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"}, "task": "nli",
                 "labels": {0: "entailment", 1: "neutral"}}, ["entailment", "neutral"] * 3),
        ("stsb", {"fields": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}, "task": "paraphrase",
                  "labels": None, "label_threshold": 3.5}, ["no", "no", "yes", "yes", "no"]),
    ],
)
def test_label_normalisation(hub, tmp_path, config, spec_part, expected):
    spec = {**MNLI, **spec_part, "hub": {"repo": "nyu-mll/glue", "config": config, "revision": "main"},
            "splits": {"train": "train", "test": "validation"}, "n_train": None}
    proc, out = prepare(hub, tmp_path, config, spec)
    _ok(proc)
    assert [r["label"] for r in _rows(out / "test.jsonl")] == expected


def test_qqp_uses_labelled_validation_and_says_why_in_the_card(hub, tmp_path):
    spec = {**MNLI, "task": "paraphrase", "hub": {"repo": "nyu-mll/glue", "config": "qqp"},
            "splits": {"train": "train", "test": "validation"}, "n_train": 4,
            "fields": {"sentence1": "question1", "sentence2": "question2", "label": "label"}, "labels": {1: "yes", 0: "no"}}
    proc, out = prepare(hub, tmp_path, "qqp", spec)
    _ok(proc)
    card = json.loads((out / "card.json").read_text())
    assert "SetFit/qqp test, whose labels are all -1" in card["note"] and "GLUE qqp validation" in card["note"]
    assert card["label_distribution"]["test"] == {"yes": 3, "no": 3}
    # The authors' split: every label is -1, which maps to no label word; the error names the row.
    proc, out = prepare(hub, tmp_path / "authors", "qqp", {**spec, "splits": {"train": "train", "test": "test"}})
    assert "test row 0 has label -1 in column 'label', expected one of ['0', '1']" in _failed(proc)
    assert not out.exists()


def test_format_strings_with_indexing_and_empty_rows_dropped(hub, tmp_path):
    spec = {"task": "question_generation", "source": "hub", "hub": {"repo": "cardiffnlp/tweet_qa"},
            "splits": {"train": "validation", "test": "train"}, "n_train": None, "n_test": None,  # as the authors
            "fields": {"context": "{Tweet}", "answer": "Answer: {Answer[0]} ({qid})", "question": "Question"}}
    proc, out = prepare(hub, tmp_path, "tweet_qa", spec)
    _ok(proc)
    test = _rows(out / "test.jsonl")
    assert test == [
        {"id": "tweet_qa-train-0", "context": "Rain all day in Leeds.", "answer": "Answer: Leeds (a)", "question": "where did it rain?"},
        {"id": "tweet_qa-train-2", "context": "Sun in Rome.", "answer": "Answer: Rome (c)", "question": "where was the sun?"},
        {"id": "tweet_qa-train-3", "context": "", "answer": "Answer: me (d)", "question": "who?"},  # empty input kept
    ]
    card = json.loads((out / "card.json").read_text())
    assert card["dropped_rows"]["test"] == {"answer: format string does not apply": 1, "question: empty": 1}
    assert card["sizes"]["test"]["rows_in_split"] == 5 and card["sizes"]["test"]["rows_written"] == 3


def test_tulu_conversations_become_prompt_and_completion(hub, tmp_path):
    spec = {"task": "instruction", "source": "hub", "hub": {"repo": "allenai/tulu-v2-sft-mixture"},
            "splits": {"train": "train", "test": None}, "n_train": None, "n_test": None,
            "fields": {"prompt": "messages", "completion": "messages"}}
    proc, out = prepare(hub, tmp_path, "tulu", spec)
    _ok(proc)
    train = _rows(out / "train.jsonl")
    assert train[0] == {
        "id": "tulu-train-0",
        "prompt": "<|system|>\nBe brief.\n<|user|>\nName a colour.\n<|assistant|>\nBlue.\n<|user|>\nAnother?\n<|assistant|>\n",
        "completion": "Red.",
        # every turn, contents stripped, for the loss on every assistant turn (finetune assistant_turns: all)
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "content": "Red."},
        ],
    }
    assert (out / "test.jsonl").read_text() == ""
    # What fine-tuning trains on: the prompt (every format is the prompt itself), then the completion with no
    # space after "<|assistant|>\n", as open-instruct renders it.
    family = get_task("instruction")
    assert family.render(train[1], "default") == "<|user|>\nHi\n<|assistant|>\n"
    assert family.completion(train[1]) == "Hello"


def test_train_fraction_draws_the_authors_share_of_the_split(hub, tmp_path):
    # process_tulu_v2(percentage): int(rows x percentage) after shuffle(seed); 2 rows x 0.5 -> 1, 2 x 0.4 -> 0 rows
    spec = {"task": "instruction", "source": "hub", "hub": {"repo": "allenai/tulu-v2-sft-mixture"},
            "splits": {"train": "train", "test": None}, "n_train": None, "n_test": None, "train_fraction": 0.5,
            "fields": {"prompt": "messages", "completion": "messages"}}
    proc, out = prepare(hub, tmp_path, "tulu", spec)
    _ok(proc)
    (row,) = _rows(out / "train.jsonl")
    import datasets

    shuffled = datasets.Dataset.from_list(TULU).shuffle(seed=42, keep_in_memory=True)
    assert row["completion"] == shuffled[0]["messages"][-1]["content"].strip()
    card = json.loads((out / "card.json").read_text())
    assert card["sizes"]["train"]["rows_in_split"] == 2 and card["sizes"]["train"]["rows_sampled"] == 1


def test_script_repo_points_to_the_parquet_conversion_which_loads(hub, tmp_path):
    spec = {"task": "summarisation", "source": "hub", "hub": {"repo": "EdinburghNLP/xsum", "config": None},
            "splits": {"train": "train", "test": "test"}, "n_train": 3, "n_test": None,
            "fields": {"document": "document", "summary": "summary"}}
    proc, out = prepare(hub, tmp_path / "main", "xsum", spec)
    assert "set hub.revision: refs/convert/parquet and hub.data_dir" in _failed(proc)
    converted = {**spec, "hub": {"repo": "EdinburghNLP/xsum", "revision": "refs/convert/parquet", "data_dir": "default"}}
    proc, out = prepare(hub, tmp_path / "converted", "xsum", converted)
    _ok(proc)
    assert _rows(out / "test.jsonl")[1] == {"id": "xsum-test-1", "document": "Article 1 text.", "summary": "Summary 1."}
    card = json.loads((out / "card.json").read_text())
    assert card["hub"]["commit"] == commit_of(hub, "EdinburghNLP/xsum", "refs/convert/parquet")
    assert card["target_length"]["train"]["mean_words"] == 2.0
    # Offline, a branch without a README.md is found by the commit hash the card recorded.
    pinned = {**converted, "hub": {**converted["hub"], "revision": card["hub"]["commit"]}}
    proc, again = prepare(hub, tmp_path / "offline", "xsum", pinned, offline=True, home=tmp_path / "converted" / "hf")
    _ok(proc)
    assert (again / "train.jsonl").read_text() == (out / "train.jsonl").read_text()


def test_offline_reads_the_hub_cache_and_otherwise_says_the_study_is_offline(hub, tmp_path):
    home = tmp_path / "hf"
    proc, online = prepare(hub, tmp_path / "online", "mnli", MNLI, home=home)
    _ok(proc)
    proc, offline = prepare(hub, tmp_path / "offline", "mnli", MNLI, home=home, offline=True)
    _ok(proc)
    for part in ("train.jsonl", "test.jsonl"):
        assert (online / part).read_text() == (offline / part).read_text()
    assert json.loads((offline / "card.json").read_text())["hub"]["commit"] == commit_of(hub, "nyu-mll/glue")
    rte = {**MNLI, "hub": {"repo": "nyu-mll/glue", "config": "rte"}, "splits": {"train": "train", "test": "validation"},
           "fields": {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"}, "n_train": None}
    proc, out = prepare(hub, tmp_path / "offline-rte", "rte", rte, home=home, offline=True)
    assert "the study is offline" in _failed(proc) and "split 'validation'" in proc.stderr
    proc, out = prepare(hub, tmp_path / "offline-new", "mnli", MNLI, offline=True)
    assert "the study is offline" in _failed(proc) and "revision 'main'" in proc.stderr


# --------------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hub": {"repo": "nyu-mll/glu", "config": "mnli"}}, "nyu-mll/glu does not exist on the hub"),
        ({"hub": {"repo": "nyu-mll/glue", "config": "mnli", "revision": "v9"}}, "nyu-mll/glue has no revision 'v9'"),
        ({"hub": {"repo": "nyu-mll/glue", "config": "mnlii"}},
         "nyu-mll/glue has no config 'mnlii'; available configs: ['mnli', 'qqp', 'rte', 'stsb']"),
        ({"splits": {"train": "train", "test": "validation"}},
         "has no split 'validation'; available splits: ['train', 'validation_matched']"),
        ({"fields": {"premise": "premise", "hypothesis": "hypo", "label": "label"}},
         "fields.hypothesis = 'hypo' reads column(s) ['hypo'], which split 'validation_matched' lacks; its columns are "
         "['premise', 'hypothesis', 'label', 'idx']"),
        ({"n_train": 61}, "n_train: split 'train' of nyu-mll/glue has 60 rows: n = 61 but only 60 rows are left"),
        ({"hub": {"repo": "someone/gated-set", "config": "mnli"}}, "someone/gated-set is gated on the hub; accept its "
         "terms on https://huggingface.co/datasets/someone/gated-set and set HF_TOKEN"),
    ],
    ids=["repo", "revision", "config", "split", "column", "n_train", "gated"],
)
def test_clear_failures_leave_no_output(hub, tmp_path, change, message):
    proc, out = prepare(hub, tmp_path, "mnli", {**MNLI, **change})
    assert message in _failed(proc)
    assert not out.exists() and not list(out.parent.glob(".*"))


def test_broken_download_is_retried_a_bounded_number_of_times(hub, tmp_path):
    flaky = {**MNLI, "hub": {"repo": "someone/flaky", "config": "flaky"}}
    # A transfer cut once midway is resumed and the set is written.
    hub.add_fault("flaky/train-*", times=1, kind="cut")
    proc, out = prepare(hub, tmp_path / "cut-once", "mnli", flaky)
    _ok(proc)
    assert len(_rows(out / "train.jsonl")) == 20
    # A server that stays down: a bounded number of tries, then a clear failure.
    out = tmp_path / "down" / "data" / "mnli"
    out.mkdir(parents=True)
    (out / "train.jsonl").write_text("earlier output\n")
    served_before = len(hub.log)
    outage = hub.add_fault("flaky/validation_matched-*", times=float("inf"), kind="outage")
    try:
        proc, out = prepare(hub, tmp_path / "down", "mnli", flaky)
    finally:
        hub.faults.remove(outage)
    assert f"download failed after {hubdata.DOWNLOAD_ATTEMPTS} attempt(s)" in _failed(proc)
    tries = [p for m, p, _ in hub.log[served_before:] if m == "GET" and "flaky/validation_matched-" in p]
    assert hubdata.DOWNLOAD_ATTEMPTS <= len(tries) <= 2 * hubdata.DOWNLOAD_ATTEMPTS
    # The earlier output is untouched and no half-written folder is left beside it.
    assert (out / "train.jsonl").read_text() == "earlier output\n" and sorted(p.name for p in out.parent.iterdir()) == ["mnli"]


def test_the_hub_clients_transport_errors_are_retried_and_a_missing_split_is_not():
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    # huggingface_hub 2.x talks through httpx2: a connection that fails or breaks midway is worth another try
    assert hubclient.transient(httpx2.ConnectError("connection refused"))
    assert hubclient.transient(httpx2.ReadError("connection reset while reading"))
    assert not hubclient.transient(OfflineModeIsEnabled("offline"))
    assert not hubclient.transient(ValueError("Unknown split 'tset'"))


# ------------------------------------------------------------------------------------------ spec and config


def _config_with(**datasets):
    import yaml

    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    config["data"]["datasets"].update(datasets)
    return config


def test_config_accepts_hub_sets_and_keeps_generated_specs_as_they_were():
    config = validate(_config_with(mnli=dict(MNLI)))
    assert config["data"]["datasets"]["news_sum"] == {
        "task": "summarisation", "domain": "news", "n_train": 400, "n_test": 40, "rouge_tokenizer": "default"
    }  # fmt: skip
    hub_set = validate(_config_with(mnli={k: v for k, v in MNLI.items() if k not in ("n_train", "n_test")}))
    assert hub_set["data"]["datasets"]["mnli"]["n_train"] is None  # hub sets default to the whole split


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"premise": "premise", "label": "label"}}, r"missing \['hypothesis'\]"),
        ({"labels": {0: "entailment", 1: "maybe"}}, r"maps to \['maybe'\], which are not label words"),
        ({"label_threshold": 3.5}, "exactly one of labels .* got both"),
        ({"task": "summarisation", "fields": {"document": "premise", "summary": "hypothesis"}},
         "only for classification tasks"),
        ({"domain": "news"}, r"should not be valid under \{'required': \['domain'\]\}"),
        ({"train_fraction": 0.05}, "set n_train .* or train_fraction .*, not both"),
    ],
)
def test_config_checks_hub_specs(change, message):
    with pytest.raises(ConfigError, match=message):
        validate(_config_with(mnli={**MNLI, **change}))


def test_label_words_and_templates_unit():
    paraphrase = get_task("paraphrase")
    assert [records.label_word(s, {"label_threshold": 3.5}, paraphrase) for s in (3.5, 3.51, "4", None)] == [
        "no", "yes", "yes", None]
    assert records.label_word(1, {"labels": {"1": "yes", "0": "no"}}, paraphrase) == "yes"
    assert records.template_columns("Answer A: {answerA} Answer B: {answerB} {Answer[0]}") == ["answerA", "answerB", "Answer"]
    assert records.render_conversation_prompt([{"role": "user", "content": "only a question"}]) == ""
