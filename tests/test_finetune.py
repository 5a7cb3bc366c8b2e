"""Full fine-tuning on CPU: completion-only labels, determinism, learning, and failures that leave no output."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from ptft.checkpoints import pretrain, train_tokenizer
from ptft.finetune import IGNORE_INDEX, collate, encode_example, epoch_batches, finetune, lr_at
from ptft.tasks import get_task

WORDS = "the a cat dog bird sat ran flew on under over mat tree house red big small city river near far".split()

TINY_MODEL = {
    "architecture": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "tokenizer": {"vocab_size": 300},
    "pretrain": {"batch_size": 4, "seq_len": 32, "lr": 1.0e-2, "warmup_steps": 2, "weight_decay": 0.0},
}

FT_CFG = {
    "epochs": 2,
    "lr": 3.0e-3,
    "batch_size": 4,
    "micro_batch_size": 2,
    "warmup_ratio": 0.1,
    "weight_decay": 0.0,
    "max_length": 96,
    "seed": 42,
    "threads": 1,
}


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def paraphrase_rows(n: int, seed: int = 0, label: str | None = None) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": f"p{i}",
            "sentence1": sentence(rng, 3, 12),
            "sentence2": sentence(rng, 3, 12),
            "label": label or rng.choice(["yes", "no"]),
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A step-0 (seeded random) tiny checkpoint with its own tokenizer."""
    root = tmp_path_factory.mktemp("ck")
    rng = random.Random(0)
    corpus = write_jsonl(
        root / "corpus.jsonl", [{"id": f"d{i}", "text": sentence(rng, 8, 30) + "."} for i in range(200)]
    )
    # The prompt scaffolding is in the corpus so the tiny vocabulary has tokens for it.
    with open(corpus, "a") as fh:
        for i in range(50):
            fh.write(
                json.dumps({"id": f"s{i}", "text": "### Sentence 1: x\n ### Sentence 2: y\n ### Paraphrase: yes no"})
                + "\n"
            )
    train_tokenizer(corpus, TINY_MODEL["tokenizer"], 42, root / "tokenizer")
    pretrain("tiny", TINY_MODEL, 0, root / "tokenizer", corpus, None, root / "tiny" / "0", threads=1)
    return root / "tiny" / "0"


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint)


def log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_labels_cover_the_completion_and_eos_only(tokenizer):
    prompt, completion = "### Sentence 1: the cat\n ### Sentence 2: a dog\n ### Paraphrase:", " yes"
    example = encode_example(tokenizer, prompt, completion, max_length=96)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    assert example.input_ids == prompt_ids + completion_ids + [tokenizer.eos_token_id]
    assert example.labels == [IGNORE_INDEX] * len(prompt_ids) + completion_ids + [tokenizer.eos_token_id]
    assert tokenizer.decode(completion_ids) == " yes" and not example.truncated


def test_long_prompts_lose_their_left_end_never_the_completion(tokenizer):
    prompt = " ".join(["far"] * 60) + " ### Paraphrase:"
    example = encode_example(tokenizer, prompt, " yes yes", max_length=20)
    completion_ids = tokenizer(" yes yes", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(example.input_ids) == 20 and example.truncated
    assert example.input_ids[-len(completion_ids) :] == completion_ids
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert example.input_ids[: 20 - len(completion_ids)] == prompt_ids[-(20 - len(completion_ids)) :]
    assert example.labels == [IGNORE_INDEX] * (20 - len(completion_ids)) + completion_ids
    with pytest.raises(ValueError, match="completion"):
        encode_example(tokenizer, prompt, " yes" * 30, max_length=20)


def test_collate_pads_right_and_ignores_padding(tokenizer):
    short = encode_example(tokenizer, "### Paraphrase:", " no", 96)
    long = encode_example(tokenizer, "### Sentence 1: the big red house near the river\n ### Paraphrase:", " yes", 96)
    batch = collate([short, long], tokenizer.pad_token_id)
    n = len(short.input_ids)
    assert batch["input_ids"].shape == (2, len(long.input_ids))
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(long.input_ids) - n)
    assert batch["input_ids"][0, n:].eq(tokenizer.pad_token_id).all()
    assert batch["labels"][0].tolist() == short.labels + [IGNORE_INDEX] * (len(long.input_ids) - n)
    for row in batch["labels"]:
        targets = row[row != IGNORE_INDEX].tolist()
        assert targets[-1] == tokenizer.eos_token_id  # EOS is the last label of every example


def test_epochs_cover_every_example_once_in_length_grouped_batches():
    lengths = [random.Random(i).randint(10, 200) for i in range(100)]
    batches = epoch_batches(lengths, 8, seed=42, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert batches == epoch_batches(lengths, 8, seed=42, epoch=1)
    assert batches != epoch_batches(lengths, 8, seed=42, epoch=2)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 60  # random batches of 8 from 10..200 spread ~150


def test_schedule_warms_up_then_decays_linearly():
    lrs = [lr_at(s, 10, 2, 1.0) for s in range(1, 11)]
    assert lrs[:2] == [0.5, 1.0] and lrs[-1] > 0
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:]))


def test_finetune_is_deterministic_and_records_provenance(checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(24))
    finetune(checkpoint, train, "paraphrase", "para", FT_CFG, tmp_path / "a", threads=1)
    finetune(checkpoint, train, "paraphrase", "para", FT_CFG, tmp_path / "b", threads=1)
    assert [r["loss"] for r in log(tmp_path / "a")] == [r["loss"] for r in log(tmp_path / "b")]
    assert [(r["step"], r["epoch"]) for r in log(tmp_path / "a")] == [(s, 1 + (s - 1) // 6) for s in range(1, 13)]

    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert (record["model"], record["step"], record["tokens"]) == ("tiny", 0, 0)
    assert (record["ft_set"], record["task"], record["seed"], record["config"]) == ("para", "paraphrase", 42, FT_CFG)
    assert record["base_checkpoint"] == str(checkpoint) and "torch" in record["versions"]
    assert {"model.safetensors", "tokenizer.json", "config.json", "train_log.jsonl"} <= {
        p.name for p in (tmp_path / "a").iterdir()
    }

    other = dict(FT_CFG, seed=7)
    finetune(checkpoint, train, "paraphrase", "para", other, tmp_path / "c", threads=1)
    assert [r["loss"] for r in log(tmp_path / "c")] != [r["loss"] for r in log(tmp_path / "a")]


def test_gradient_accumulation_matches_one_full_batch(checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(16))
    finetune(
        checkpoint, train, "paraphrase", "para", dict(FT_CFG, micro_batch_size=1), tmp_path / "accumulated", threads=1
    )
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, micro_batch_size=4), tmp_path / "whole", threads=1)
    accumulated = [r["loss"] for r in log(tmp_path / "accumulated")]
    whole = [r["loss"] for r in log(tmp_path / "whole")]
    assert accumulated == pytest.approx(whole, rel=1e-4)


def test_loss_falls_on_a_learnable_set(checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(32, label="yes"))
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, epochs=3, lr=1.0e-2), tmp_path / "out", threads=1)
    losses = [r["loss"] for r in log(tmp_path / "out")]
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4, losses


def test_n_train_subsamples_with_the_seed(checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(30))
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, n_train=10, epochs=1), tmp_path / "out", threads=1)
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["n_examples"] == 10
    with pytest.raises(ValueError, match="n_train=40"):
        finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, n_train=40), tmp_path / "too-many", threads=1)


def test_a_diverging_loss_names_the_step_and_leaves_no_folder(checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(16))
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        finetune(
            checkpoint,
            train,
            "paraphrase",
            "para",
            dict(FT_CFG, lr=1.0e30, warmup_ratio=0.0),
            tmp_path / "out",
            threads=1,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_a_bad_record_names_its_row_and_leaves_no_folder(checkpoint, tmp_path):
    rows = paraphrase_rows(5)
    rows[2]["label"] = "maybe"
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(ValueError, match=r"train\.jsonl, row 3 \(id 'p2'\).*maybe"):
        finetune(checkpoint, train, "paraphrase", "para", FT_CFG, tmp_path / "out", threads=1)
    del rows[2]["label"], rows[2]["sentence2"]
    write_jsonl(train, rows)
    with pytest.raises(ValueError, match=r"row 3 .*sentence2"):
        finetune(checkpoint, train, "paraphrase", "para", FT_CFG, tmp_path / "out", threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_training_text_is_the_default_format(tokenizer):
    record = paraphrase_rows(1, label="no")[0]
    task = get_task("paraphrase")
    example = encode_example(tokenizer, task.render(record, "default"), task.completion(record), 96)
    targets = [t for t in example.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(targets[:-1]) == " no"
    assert tokenizer.decode(example.input_ids).startswith("### Input_1: " + record["sentence1"])
