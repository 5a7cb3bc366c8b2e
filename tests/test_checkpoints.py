"""Tokenizer training and the embedded pre-training checkpoints (tiny sizes: hidden 32, 2 layers, vocab 300)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ptft.checkpoints import EOS_TOKEN, PAD_TOKEN, _batch_at, _lr_at, load_tokenized_corpus, pretrain, train_tokenizer

WORDS = "the a cat dog bird sat ran flew on under over mat tree house red big small city river near far".split()

TINY_MODEL = {
    "source": "embedded",
    "checkpoints": [0, 2, 4],
    "architecture": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "tokenizer": {"vocab_size": 300},
    "pretrain": {"batch_size": 4, "seq_len": 32, "lr": 1.0e-2, "warmup_steps": 2, "weight_decay": 0.1, "threads": 1},
}


def write_corpus(path: Path, n_documents: int = 200, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n_documents):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "."
            fh.write(json.dumps({"id": f"doc{i}", "text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl")


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(corpus, TINY_MODEL["tokenizer"], 42, out)
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=atol, rtol=1e-5), f"{name} differs between {a} and {b}"


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_tokenizer_round_trips_and_has_eos_and_pad(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert len(tok) == 300
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == (EOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
    assert (tok.eos_token_id, tok.pad_token_id) == (0, 1)
    for text in ["the cat sat on the mat.", " ### Label: yes", "Ünïcödé words, never seen — 東京\n\ttabs", ""]:
        ids = tok(text)["input_ids"]
        assert tok.eos_token_id not in ids and tok.pad_token_id not in ids  # nothing is added automatically
        assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(tok("a" + EOS_TOKEN)["input_ids"])[-1] == EOS_TOKEN
    assert json.loads((tokenizer_dir / "provenance.json").read_text())["vocab_size"] == 300


def test_tokenizer_names_a_bad_corpus_row_and_writes_nothing(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", n_documents=5)
    with open(corpus, "a") as fh:
        fh.write(json.dumps({"id": "broken", "body": "no text field"}) + "\n")
    with pytest.raises(ValueError, match="row 6"):
        train_tokenizer(corpus, {"vocab_size": 300}, 42, tmp_path / "tokenizer")
    assert not (tmp_path / "tokenizer").exists()


def test_corpus_documents_end_with_eos(corpus, tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokens = load_tokenized_corpus(corpus, tok)
    assert tokens.dtype == torch.long and tokens.dim() == 1
    assert int((tokens == tok.eos_token_id).sum()) == 200 and int(tokens[-1]) == tok.eos_token_id


def test_batches_and_lr_depend_on_seed_and_step_only():
    tokens = torch.arange(1000)
    x, y = _batch_at(7, 42, tokens, 4, 16)
    assert torch.equal(x, _batch_at(7, 42, tokens, 4, 16)[0])
    assert torch.equal(y, x + 1)  # targets are the inputs shifted by one
    assert not torch.equal(x, _batch_at(8, 42, tokens, 4, 16)[0])
    assert not torch.equal(x, _batch_at(7, 43, tokens, 4, 16)[0])
    cfg = {"lr": 1.0, "warmup_steps": 4}
    assert [_lr_at(s, cfg) for s in (1, 2, 4, 5, 1000)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_step0_is_the_seeded_initial_weights(tokenizer_dir, corpus, tmp_path):
    pretrain("tiny", TINY_MODEL, 0, tokenizer_dir, corpus, None, tmp_path / "a", threads=1)
    pretrain("tiny", TINY_MODEL, 0, tokenizer_dir, corpus, None, tmp_path / "b", threads=1)
    for name, tensor in weights(tmp_path / "a").items():
        assert torch.equal(tensor, weights(tmp_path / "b")[name]), name
    other_seed = copy.deepcopy(TINY_MODEL)
    other_seed["pretrain"]["seed"] = 7
    pretrain("tiny", other_seed, 0, tokenizer_dir, corpus, None, tmp_path / "c", threads=1)
    assert not torch.equal(weights(tmp_path / "a")["lm_head.weight"], weights(tmp_path / "c")["lm_head.weight"])
    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert (record["step"], record["tokens"], record["source"]) == (0, 0, "embedded")


def test_continuing_through_checkpoints_equals_training_straight_through(tokenizer_dir, corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ck = tmp_path / "tiny"
    pretrain("tiny", TINY_MODEL, 0, tokenizer_dir, corpus, None, ck / "0", threads=1)
    pretrain("tiny", TINY_MODEL, 2, tokenizer_dir, corpus, ck / "0", ck / "2", threads=1)
    pretrain("tiny", TINY_MODEL, 4, tokenizer_dir, corpus, ck / "2", ck / "4-via-2", threads=1)
    pretrain("tiny", TINY_MODEL, 4, tokenizer_dir, corpus, ck / "0", ck / "4", threads=1)
    pretrain("tiny", TINY_MODEL, 4, tokenizer_dir, corpus, None, ck / "4-scratch", threads=2)

    assert not torch.equal(weights(ck / "2")["lm_head.weight"], weights(ck / "4")["lm_head.weight"])  # it trained
    assert_same_weights(ck / "4", ck / "4-via-2")
    assert_same_weights(ck / "4", ck / "4-scratch")
    assert losses(ck / "4-via-2") == pytest.approx(losses(ck / "4"), rel=1e-5)
    assert [json.loads(line)["step"] for line in (ck / "4-via-2" / "train_log.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
        4,
    ]

    record = json.loads((ck / "4-via-2" / "provenance.json").read_text())
    batch, seq = TINY_MODEL["pretrain"]["batch_size"], TINY_MODEL["pretrain"]["seq_len"]
    assert (record["model"], record["step"], record["tokens"]) == ("tiny", 4, 4 * batch * seq)
    assert record["source"] == "embedded" and record["config"] == TINY_MODEL and record["seed"] == 42
    assert "torch" in record["versions"] and "transformers" in record["versions"]
    # The folder loads on its own, tokenizer included.
    model = AutoModelForCausalLM.from_pretrained(ck / "4-via-2")
    tok = AutoTokenizer.from_pretrained(ck / "4-via-2")
    assert model.config.vocab_size == len(tok) and model.config.eos_token_id == tok.eos_token_id
    assert (ck / "4-via-2" / "training_state.pt").exists()


def test_continuing_with_another_config_is_refused(tokenizer_dir, corpus, tmp_path):
    pretrain("tiny", TINY_MODEL, 0, tokenizer_dir, corpus, None, tmp_path / "0", threads=1)
    changed = copy.deepcopy(TINY_MODEL)
    changed["pretrain"]["lr"] = 5.0e-3
    with pytest.raises(ValueError, match="config"):
        pretrain("tiny", changed, 2, tokenizer_dir, corpus, tmp_path / "0", tmp_path / "2", threads=1)
    assert not (tmp_path / "2").exists()


def test_diverging_loss_names_the_step_and_leaves_no_folder(tokenizer_dir, corpus, tmp_path):
    exploding = copy.deepcopy(TINY_MODEL)
    exploding["pretrain"].update(lr=1.0e30, warmup_steps=0)
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        pretrain("tiny", exploding, 6, tokenizer_dir, corpus, None, tmp_path / "6", threads=1)
    assert list(tmp_path.iterdir()) == []
