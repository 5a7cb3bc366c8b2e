"""Fine-tuning on CPU: completion-only labels, packing, LoRA, kill-and-resume, determinism, failures, config checks."""

from __future__ import annotations

import json
import os
import random
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ptft.checkpoints import pretrain, train_tokenizer
from ptft.finetune import (
    IGNORE_INDEX,
    build_trainer,
    collate,
    encode_conversation,
    encode_example,
    example_index,
    example_weighted_loss,
    finetune,
    gradient_accumulation,
    load_examples,
    pack,
    training_arguments,
)
from ptft.settings import FinetuneSettings
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


def test_a_completion_longer_than_the_window_keeps_the_prompts_end_and_its_own_start(tokenizer):
    prompt = " ".join(["far"] * 60) + " ### Paraphrase:"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(" yes" * 30, add_special_tokens=False)["input_ids"]
    example = encode_example(tokenizer, prompt, " yes" * 30, max_length=20)
    assert example.truncated and len(example.input_ids) == 20
    assert example.input_ids == prompt_ids[-5:] + completion_ids[:15]  # a quarter of the window for the prompt
    assert example.labels == [IGNORE_INDEX] * 5 + completion_ids[:15]
    assert tokenizer.eos_token_id not in example.input_ids


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


def test_finetune_is_deterministic_and_records_provenance(checkpoint, tmp_path, capfd):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(24))
    finetune(checkpoint, train, "paraphrase", "para", FT_CFG, tmp_path / "a", threads=1)
    head = capfd.readouterr().err.splitlines()  # the settings open the job's log, one line each
    assert head[head.index("fine-tuning settings (para):") + 2] == f"lr: {FT_CFG['lr']!r}"
    assert "scheduling.save_steps: 200" in head  # a default FT_CFG leaves out, printed too
    finetune(checkpoint, train, "paraphrase", "para", FT_CFG, tmp_path / "b", threads=1)
    assert [r["loss"] for r in log(tmp_path / "a")] == [r["loss"] for r in log(tmp_path / "b")]
    assert [(r["optimizer_step"], r["epoch"]) for r in log(tmp_path / "a")] == [(s, 1 + (s - 1) // 6) for s in range(1, 13)]

    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert (record["model"], record["step"], record["tokens"]) == ("tiny", 0, 0)
    assert (record["ft_set"], record["task"], record["seed"]) == ("para", "paraphrase", 42)
    # the whole settings object (FT_CFG plus the defaults it leaves out), as the job printed it at the top of its log
    assert FinetuneSettings.from_config(record["config"]) == FinetuneSettings.from_config(FT_CFG)
    assert record["config"]["lr"] == FT_CFG["lr"] and record["config"]["scheduling"]["save_steps"] == 200
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
    with pytest.raises(FloatingPointError, match=r"loss is nan at optimizer step 2 \(epoch 1, lr "):
        finetune(
            checkpoint,
            train,
            "paraphrase",
            "para",
            dict(FT_CFG, lr=1.0e30, warmup_ratio=0.0),
            tmp_path / "out",
            threads=1,
        )
    assert not (tmp_path / "out").exists()


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


# ---------------------------------------------------------------- padding-free packing


@pytest.mark.parametrize("attention", ["ptft_varlen", "sdpa"])
def test_packed_and_padded_batches_give_the_same_loss_and_logits(checkpoint, tokenizer, attention):
    """Attention never crosses an example boundary in a packed row: each example's logits equal its padded ones.

    ptft_varlen (what the engine trains with) runs one causal block per example; sdpa reads the restarting position
    ids as a block-diagonal mask, but only without a KV cache (transformers 5.23 ignores them with one).
    """
    from transformers import AutoModelForCausalLM

    from ptft import varlen

    varlen.register()
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation=attention).eval()
    task = get_task("paraphrase")
    examples = [
        encode_example(tokenizer, task.render(r, "default"), task.completion(r), 96) for r in paraphrase_rows(4, seed=3)
    ]
    assert len({len(e.input_ids) for e in examples}) > 1  # padding happens in the padded batch
    padded, packed = collate(examples, tokenizer.pad_token_id), pack(examples)
    assert packed["input_ids"].shape == (1, sum(len(e.input_ids) for e in examples))
    assert "attention_mask" not in packed
    with torch.no_grad():
        padded_out, packed_out = model(**padded), model(**packed, use_cache=False)
        if attention == "sdpa":  # the cache pitfall the engine avoids: packed examples then attend to each other
            leaky = model(**packed).logits
            assert not torch.allclose(leaky, packed_out.logits, atol=1e-3)
    assert packed_out.loss.item() == pytest.approx(padded_out.loss.item(), abs=1e-5)
    start = 0
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        torch.testing.assert_close(packed_out.logits[0, start : start + n], padded_out.logits[row, :n], atol=1e-5, rtol=0)
        start += n


def test_packed_and_padded_training_follow_the_same_loss_curve(checkpoint, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(16))
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, packing=True), tmp_path / "packed", threads=1)
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, packing=False), tmp_path / "padded", threads=1)
    packed, padded = log(tmp_path / "packed"), log(tmp_path / "padded")
    assert [r["loss"] for r in packed] == pytest.approx([r["loss"] for r in padded], abs=1e-4)
    # the padded run counts only real tokens too, so both trained the same number
    assert [r["step_tokens"] for r in packed] == [r["step_tokens"] for r in padded]


def test_the_loss_is_the_mean_over_the_batchs_completion_tokens(checkpoint, tokenizer, tmp_path):
    """Step 1's logged loss (before any update) is one mean over all completion tokens of the effective batch,
    not a mean of per-micro-batch means, however the batch is split."""
    from transformers import AutoModelForCausalLM

    rows = paraphrase_rows(4, seed=11)
    rows[0]["sentence2"] += " and a big red house near the river"  # lengths differ, so means of means would differ
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = dict(FT_CFG, epochs=1, micro_batch_size=1)
    finetune(checkpoint, train, "paraphrase", "para", cfg, tmp_path / "out", threads=1)
    task = get_task("paraphrase")
    examples = [encode_example(tokenizer, task.render(r, "default"), task.completion(r), 96) for r in rows]
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = model(**pack(examples), use_cache=False).loss.item()
    assert log(tmp_path / "out")[0]["loss"] == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- the paper's recipe: loss weighting, clipping, Tulu turns


def test_example_weighted_loss_on_two_examples_of_different_lengths_hand_computed():
    # Vocabulary of 2. Example A has 1 labelled token, predicted from logits (0, 0): loss ln 2. Example B has 3,
    # label 1 predicted from logits (ln 3, 0): p = 1/4, loss ln 4 = 2 ln 2 each.
    # example weighting: (ln 2 + 2 ln 2) / 2 = 1.5 ln 2; token weighting: (ln 2 + 3 x 2 ln 2) / 4 = 1.75 ln 2.
    ln2, b = torch.log(torch.tensor(2.0)), [torch.log(torch.tensor(3.0)), 0.0]
    padded_logits = torch.zeros(2, 4, 2)
    padded_logits[1, :3] = torch.tensor(b)
    padded_labels = torch.tensor([[IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, 1, 1, 1]])
    loss = example_weighted_loss(padded_logits, padded_labels, example_index(padded_labels))
    assert loss.item() == pytest.approx(1.5 * ln2.item(), rel=1e-6)
    token_mean = torch.nn.functional.cross_entropy(
        padded_logits[:, :-1].reshape(-1, 2), padded_labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert token_mean.item() == pytest.approx(1.75 * ln2.item(), rel=1e-6)
    # the same two examples packed into one row (A: 2 positions, B: 4), as ptft.finetune.pack lays them out
    packed_logits = torch.zeros(1, 6, 2)
    packed_logits[0, 2:5] = torch.tensor(b)
    packed_labels = torch.tensor([[IGNORE_INDEX, 0, IGNORE_INDEX, 1, 1, 1]])
    owners = example_index(packed_labels, [2, 4])
    assert owners.tolist() == [[0, 0, 1, 1, 1, 1]]
    assert example_weighted_loss(packed_logits, packed_labels, owners).item() == pytest.approx(1.5 * ln2.item(), rel=1e-6)
    with pytest.raises(ValueError, match="do not tile"):
        example_index(packed_labels, [2, 3])


@pytest.mark.parametrize("micro_batch_size", [1, 2])
def test_example_weighting_makes_step_one_the_mean_of_the_examples_mean_losses(
    checkpoint, tokenizer, tmp_path, micro_batch_size
):
    """Step 1's logged loss (before any update) is the mean over the 4 examples of each one's mean token loss,
    whether the batch is 4 x 1 accumulated (the authors' 8 x 1 in miniature) or 2 packed x 2."""
    from transformers import AutoModelForCausalLM

    rng = random.Random(11)
    # summaries of 1, 3, 6 and 10 words: token weighting lets the long ones dominate, example weighting does not
    rows = [{"id": f"s{i}", "document": sentence(rng, 8, 12), "summary": sentence(rng, n, n)} for i, n in enumerate((1, 3, 6, 10))]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    task = get_task("summarisation")
    examples = [encode_example(tokenizer, task.render(r, "default"), task.completion(r), 96) for r in rows]
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    per_example = []
    with torch.no_grad():
        for e in examples:
            per_example.append(model(**collate([e], tokenizer.eos_token_id), use_cache=False).loss.item())
        token_mean = model(**pack(examples), use_cache=False).loss.item()
    expected = sum(per_example) / len(per_example)
    assert abs(expected - token_mean) > 1e-3  # the two weightings really differ on this batch
    cfg = dict(FT_CFG, epochs=1, micro_batch_size=micro_batch_size, loss_weighting="example")
    finetune(checkpoint, train, "summarisation", "sum", cfg, tmp_path / "out", threads=1)
    assert log(tmp_path / "out")[0]["loss"] == pytest.approx(expected, abs=1e-5)
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["config"]["loss_weighting"] == "example"


def test_max_grad_norm_null_turns_clipping_off_and_an_unknown_weighting_fails(checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    data = [{"input_ids": [1, 2, 3], "labels": [IGNORE_INDEX, 2, 3]}]
    common = dict(ft_set="para", state_dir=tmp_path / "s", log_file=tmp_path / "log.jsonl", pad_token_id=0)
    assert build_trainer(model, data, dict(FT_CFG, max_grad_norm=None), **common).args.max_grad_norm == 0.0
    assert build_trainer(model, data, dict(FT_CFG, max_grad_norm=0.5), **common).args.max_grad_norm == 0.5
    assert build_trainer(model, data, FT_CFG, **common).args.max_grad_norm == 1.0  # the schema's default
    trainer = build_trainer(model, data, dict(FT_CFG, loss_weighting="example"), **common)
    assert trainer.plan["loss_weighting"] == "example" and trainer.model_accepts_loss_kwargs is False
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        build_trainer(model, data, dict(FT_CFG, loss_weighting="sequence"), **common)


TWO_TURNS = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue. "},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "Red."},
]


def test_tulu_two_turn_conversation_token_by_token_with_its_loss_mask(tokenizer):
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    example = encode_conversation(tokenizer, TWO_TURNS, max_length=512)
    # open-instruct's text: <|user|>\n + content + \n, <|assistant|>\n + content + EOS + \n, last newline stripped;
    # no space after <|assistant|>\n; contents stripped ("Blue. " -> "Blue.")
    segments = [
        (ids("<|user|>\nName a colour.\n"), False),
        (ids("<|assistant|>\n"), False),
        (ids("Blue.") + [eos] + ids("\n"), True),
        (ids("<|user|>\nAnother?\n"), False),
        (ids("<|assistant|>\n"), False),
        (ids("Red.") + [eos], True),
    ]
    assert example.input_ids == [t for seg, _ in segments for t in seg]
    assert example.labels == [t if loss else IGNORE_INDEX for seg, loss in segments for t in seg]
    text = tokenizer.decode(example.input_ids)
    assert text == (
        f"<|user|>\nName a colour.\n<|assistant|>\nBlue.{tokenizer.eos_token}\n"
        f"<|user|>\nAnother?\n<|assistant|>\nRed.{tokenizer.eos_token}"
    )
    trained = tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])
    assert trained == f"Blue.{tokenizer.eos_token}\nRed.{tokenizer.eos_token}"  # both answers, each with EOS
    assert not example.truncated
    cut = encode_conversation(tokenizer, TWO_TURNS, max_length=5)
    assert cut.input_ids == example.input_ids[:5] and cut.truncated
    with pytest.raises(ValueError, match="role 'tool'"):
        encode_conversation(tokenizer, [{"role": "tool", "content": "x"}], 64)


def test_instruction_records_train_every_assistant_turn_or_only_the_last(tokenizer, tmp_path):
    from ptft.records import render_conversation_completion, render_conversation_prompt

    record = {
        "id": "t0",
        "prompt": render_conversation_prompt(TWO_TURNS),
        "completion": render_conversation_completion(TWO_TURNS),
        "messages": TWO_TURNS,
    }
    train = write_jsonl(tmp_path / "train.jsonl", [record])
    (every,) = load_examples(train, "instruction", tokenizer, 512, None, 0, assistant_turns="all")
    assert every == encode_conversation(tokenizer, TWO_TURNS, 512)
    (last,) = load_examples(train, "instruction", tokenizer, 512, None, 0, assistant_turns="last")
    # the last turn only, right after "<|assistant|>" with no space, then EOS; the prompt's trailing newline is
    # supervised with it, as lm-eval moves a context's trailing whitespace into the continuation (ptft.tokens)
    assert last == encode_example(tokenizer, record["prompt"], "Red.", 512)
    assert tokenizer.decode([t for t in last.labels if t != IGNORE_INDEX]) == f"\nRed.{tokenizer.eos_token}"


# ---------------------------------------------------------------- LoRA

LORA_CFG = dict(FT_CFG, method="lora", lr=1.0e-2, lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None})


@pytest.fixture(scope="module")
def lora_model(checkpoint, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lora")
    train = write_jsonl(root / "train.jsonl", paraphrase_rows(24, seed=1))
    finetune(checkpoint, train, "paraphrase", "para", LORA_CFG, root / "model", threads=1)
    return root / "model"


def test_lora_writes_an_adapter_on_every_olmo2_linear_layer(lora_model, checkpoint):
    files = {p.name for p in lora_model.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "provenance.json"} <= files
    assert "model.safetensors" not in files
    record = json.loads((lora_model / "provenance.json").read_text())
    assert record["method"] == "lora" and record["base_checkpoint"] == str(checkpoint)
    assert record["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    from safetensors.torch import load_file

    weights = load_file(lora_model / "adapter_model.safetensors")
    layers = {k.split(".layers.")[1].split(".lora_")[0] for k in weights}
    assert len(layers) == 2 * 7  # 2 layers x 7 linear maps
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # B starts at zero: it trained


def test_lora_adapter_and_merged_evaluation_score_the_same(lora_model, checkpoint, tmp_path):
    from ptft.evaluate import evaluate
    from ptft.evaluate.models import _load_model

    rows = paraphrase_rows(12, seed=9)
    spec = {"task": "paraphrase", "train": tmp_path / "train.jsonl", "test": tmp_path / "test.jsonl"}
    write_jsonl(spec["train"], rows[:8])
    write_jsonl(spec["test"], rows[8:])
    cfg = {
        "prompt_formats": ["default"],
        "shots": [0],
        "limit": None,
        "batch_size": 4,
        "fewshot_seed": 1,
        "bootstrap_resamples": 50,
    }
    outputs = {}
    for how in ("adapter", "merged"):
        evaluate(lora_model, {"p": spec}, cfg, tmp_path / f"{how}.json", tmp_path / f"{how}.jsonl", 1, lora_eval=how)
        predictions = [json.loads(line) for line in (tmp_path / f"{how}.jsonl").read_text().splitlines()]
        scores = json.loads((tmp_path / f"{how}.json").read_text())
        assert scores["provenance"]["lora_eval"] == how
        outputs[how] = (scores["results"], predictions)
    (adapter, adapter_pred), (merged, merged_pred) = outputs["adapter"], outputs["merged"]
    assert [r["value"] for r in adapter] == [r["value"] for r in merged]
    assert [p["prediction"] for p in adapter_pred] == [p["prediction"] for p in merged_pred]
    for a, m in zip(adapter_pred, merged_pred, strict=True):
        assert a["loglikelihoods"] == pytest.approx(m["loglikelihoods"], abs=1e-4)
    # and the adapter does change the model: the base scores other log-likelihoods
    base, _ = _load_model(checkpoint)
    tuned, _ = _load_model(lora_model, "merged")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits)


def test_lora_needs_target_modules_for_an_unknown_architecture():
    from ptft.finetune import lora_target_modules

    assert lora_target_modules("gpt_neox", {"target_modules": None})[0] == "query_key_value"
    assert lora_target_modules("gpt2", {"target_modules": ["c_attn"]}) == ["c_attn"]
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*finetune\.lora\.target_modules"):
        lora_target_modules("gpt2", {"target_modules": None})


# ---------------------------------------------------------------- surviving a kill

RESUME_CFG = dict(FT_CFG, epochs=3, micro_batch_size=1, save_steps=3)


def _finetune_command(checkpoint: Path, train: Path, out: Path, cfg: dict) -> list[str]:
    return [
        sys.executable, "-m", "ptft.finetune", "--checkpoint", str(checkpoint), "--train", str(train),
        "--task", "paraphrase", "--ft-set", "para", "--settings", json.dumps(cfg), "--out", str(out), "--threads", "1",
    ]  # fmt: skip


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_killed_run_resumes_from_its_last_save(checkpoint, tmp_path, method):
    from ptft.finetune import last_complete_checkpoint, resume_dir_for

    cfg = RESUME_CFG if method == "full" else dict(LORA_CFG, epochs=3, micro_batch_size=1, save_steps=3)
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(48, seed=2))
    out = tmp_path / "models" / "para"
    resume = resume_dir_for(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed_log = tmp_path / "killed.log"  # a file, not a pipe: a full pipe would stall the run before its save
    with open(killed_log, "w") as stderr:
        proc = subprocess.Popen(_finetune_command(checkpoint, train, out, cfg), env=env, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while (not resume.exists() or last_complete_checkpoint(resume) is None) and proc.poll() is None:
            assert time.monotonic() < deadline, "no save appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, killed_log.read_text()[-2000:]
    assert not out.exists()  # a killed run leaves no folder that looks finished
    saved = int(last_complete_checkpoint(resume).name.split("-")[1])
    assert 3 <= saved < 36 and saved % 3 == 0

    rerun = subprocess.run(_finetune_command(checkpoint, train, out, cfg), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    record = json.loads((out / "provenance.json").read_text())
    # it resumed from the last save (so ran fewer steps than the 36 of a whole run)
    assert record["resumed_from_step"] == saved and "resuming para from" in rerun.stderr
    assert not resume.exists()  # published, so the state is gone
    resumed_log = log(out)
    assert [r["optimizer_step"] for r in resumed_log] == list(range(1, 37))

    finetune(checkpoint, train, "paraphrase", "para", cfg, tmp_path / "uninterrupted", threads=1)
    whole = log(tmp_path / "uninterrupted")
    assert resumed_log[-1]["loss"] == pytest.approx(whole[-1]["loss"], abs=1e-4)
    assert [r["loss"] for r in resumed_log] == pytest.approx([r["loss"] for r in whole], abs=1e-4)


def test_state_of_another_config_is_not_resumed(checkpoint, tmp_path, capfd):
    from ptft.finetune import resume_dir_for

    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(16, seed=4))
    out = tmp_path / "para"
    stale = resume_dir_for(out) / "checkpoint-2"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")
    (resume_dir_for(out) / "fingerprint.json").write_text(json.dumps({"fingerprint": "another config"}))
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, save_steps=100), out, threads=1)
    assert "holds state of another config or data: starting from zero" in capfd.readouterr().err
    assert json.loads((out / "provenance.json").read_text())["resumed_from_step"] is None


# ---------------------------------------------------------------- config


def test_config_knows_lora_and_checks_the_effective_batch():
    import yaml

    from ptft.checks import validate
    from ptft.config import ConfigError, finetune_settings

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    assert finetune_settings(validate(params), "news_sum")["method"] == "full"
    params["finetune"]["method"] = "lora"
    params["finetune"]["lora"] = {"r": 8}
    settings = finetune_settings(validate(params), "news_sum")
    assert settings["lora"] == {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": None}
    assert (settings["packing"], settings["bf16"]) == (True, "auto")
    params["finetune"]["lora"] = {"rank": 8}
    with pytest.raises(ConfigError, match=r"finetune\.lora\.rank: unknown key; valid keys here: alpha, dropout, r,"):
        validate(params)
    params["finetune"]["lora"] = {}
    params["finetune"]["lora_eval"] = "fused"
    with pytest.raises(ConfigError, match=r"finetune\.lora_eval: 'fused' is not one of"):
        validate(params)
    params["finetune"]["lora_eval"] = "merged"
    params["resources"] = {"finetune": {"gpu": 3}}
    with pytest.raises(ConfigError, match=r"news_sum: batch_size 8 .* micro_batch_size 8 x 3 processes"):
        validate(params)
    params["resources"] = {"finetune": {"gpu": 2, "nodes": 2}}
    params["finetune"]["defaults"]["micro_batch_size"] = 4
    with pytest.raises(ConfigError, match=r"micro_batch_size 4 x 4 processes \(resources\.finetune: 2 per node x nodes 2"):
        validate(params)


# ---------------------------------------------------------------- the rule


def _dry_run(
    workdir: Path, gpus: int, micro_batch_size: int, sharding: str = "none", **resources
) -> subprocess.CompletedProcess:
    import yaml

    root = Path(__file__).parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["resources"] = {"finetune": {"gpu": gpus, **resources}}
    params["finetune"]["defaults"]["micro_batch_size"] = micro_batch_size
    params["finetune"]["sharding"] = sharding
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    # the workflow's own copy: the Snakefile's folder is the project root (params.yaml, studies/<study>/)
    for name in ("Snakefile", "rules", "scripts", "schemas", "envs", "profiles", "report"):
        if not (workdir / name).exists():
            (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, workdir / name)
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"), "-n", "-p", "--cores", "1", "-s", str(workdir / "Snakefile"),
            "--directory", str(workdir), "models/tiny-olmo/0/news_sum",
        ],  # fmt: skip
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
    )


def _launcher(workdir: Path) -> str:
    """The launcher words the workflow puts in $PTFT_FINETUNE_COMMAND for the study in workdir/params.yaml."""
    import yaml

    from ptft.checks import validate
    from ptft.launch import finetune_command

    return finetune_command(validate(yaml.safe_load((workdir / "params.yaml").read_text())))


def _shell(dry: subprocess.CompletedProcess) -> str:
    """The finetune job's printed shell command."""
    line = next(line for line in dry.stdout.splitlines() if "--checkpoint" in line and "--train" in line)
    return line.split("Shell command: ", 1)[-1]


def test_the_rule_runs_under_the_launcher_with_several_processes_or_fsdp(tmp_path):
    """Dry runs of the real workflow: plain python, ptft.launch (torchrun) for several processes or FSDP, under srun
    with one launcher per node for several nodes. The launcher travels in $PTFT_FINETUNE_COMMAND, so the shell text
    (Snakemake's code trigger) is the same for every launch."""
    one = _dry_run(tmp_path, gpus=1, micro_batch_size=8)
    assert one.returncode == 0, one.stderr[-3000:]
    assert _launcher(tmp_path) == "python -m ptft.finetune"
    assert " --checkpoint checkpoints/tiny-olmo/0 " in one.stdout
    two = _dry_run(tmp_path, gpus=2, micro_batch_size=4)
    assert two.returncode == 0, two.stderr[-3000:]
    assert _launcher(tmp_path) == "python -m ptft.launch --nproc-per-node 2 --"
    fsdp = _dry_run(tmp_path, gpus=2, micro_batch_size=2, sharding="fsdp", nodes=2, gpu_mem_gb=80)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    assert _launcher(tmp_path) == (
        "srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --kill-on-bad-exit 1 python -m ptft.launch --nproc-per-node 2 "
        "-- --sharding fsdp --gpu-mem-gb 80"
    )
    assert "memory plan: finetune tiny-olmo/news_sum: " in fsdp.stderr  # planned at the config check
    assert _shell(one).startswith("$PTFT_FINETUNE_COMMAND --checkpoint checkpoints/tiny-olmo/0 ")
    assert _shell(one) == _shell(two) == _shell(fsdp)
    indivisible = _dry_run(tmp_path, gpus=2, micro_batch_size=8)
    assert indivisible.returncode != 0
    assert "batch_size 8 is not a multiple of micro_batch_size 8 x 2 processes" in indivisible.stdout


def test_two_processes_under_ddp_train_like_one(checkpoint, tmp_path):
    """torchrun (what `accelerate launch --multi_gpu` runs underneath) with 2 CPU processes: half the gradient
    accumulation each, the same loss curve and token count as one process, and one published folder."""
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(32, seed=5))
    cfg = dict(FT_CFG, epochs=1, micro_batch_size=1)
    finetune(checkpoint, train, "paraphrase", "para", cfg, tmp_path / "one", threads=1)
    command = _finetune_command(checkpoint, train, tmp_path / "two", cfg)
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", *command[1:]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert (record["world_size"], record["gradient_accumulation"]) == (2, 2)
    one, two = log(tmp_path / "one"), log(tmp_path / "two")
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    assert [r["step_tokens"] for r in two] == [r["step_tokens"] for r in one]


def test_the_log_reports_throughput_and_mfu_against_the_given_peak(checkpoint, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from ptft.finetune import flops_per_token

    monkeypatch.setenv("PTFT_PEAK_FLOPS", "1e12")
    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(8))
    finetune(checkpoint, train, "paraphrase", "para", dict(FT_CFG, epochs=1), tmp_path / "out", threads=1)
    flops = flops_per_token(AutoModelForCausalLM.from_pretrained(checkpoint), "full")
    rows = log(tmp_path / "out")
    assert {"optimizer_step", "epoch", "loss", "lr", "step_tokens", "tokens_per_s", "mfu", "grad_norm"} <= set(rows[0])
    for row in rows:
        assert row["tokens_per_s"] > 0
        assert row["mfu"] == pytest.approx(flops * row["tokens_per_s"] / 1e12, rel=1e-2, abs=1e-4)
    record = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert record["trained_tokens"] == sum(r["step_tokens"] for r in rows) > 0


# ---------------------------------------------------------------- sharded (FSDP) runs

FSDP_TOLERANCE = 1e-4  # fp32 on CPU: reduce-scatter and all-reduce sum the same numbers in another order


def _torchrun(command: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "ptft.launch", "--nproc-per-node", str(nproc), "--", *command[3:]]


def _run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_fsdp_over_two_processes_trains_like_one_and_saves_a_whole_model(checkpoint, tmp_path, method):
    """ptft.launch (torchrun) with 2 CPU processes (gloo) and finetune.sharding fsdp: the same loss curve as one
    process, and the gathered model saved as ordinary safetensors equal to the one process's weights."""
    from safetensors.torch import load_file

    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(16, seed=5))
    cfg = dict(FT_CFG if method == "full" else LORA_CFG, epochs=1, micro_batch_size=1)
    finetune(checkpoint, train, "paraphrase", "para", cfg, tmp_path / "one", threads=1)
    command = _finetune_command(checkpoint, train, tmp_path / "two", cfg) + ["--sharding", "fsdp"]
    proc = subprocess.run(_torchrun(command), env=_run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert (record["world_size"], record["sharding"], record["gradient_accumulation"]) == (2, "fsdp", 2)
    assert record["wrapped_by"].startswith("FSDP")  # FSDP2 (fully_shard) makes FSDPOlmo2ForCausalLM and its kin
    one, two = log(tmp_path / "one"), log(tmp_path / "two")
    assert len(two) == len(one) == 4
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=FSDP_TOLERANCE)
    assert [r["step_tokens"] for r in two] == [r["step_tokens"] for r in one]
    weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    ours, theirs = load_file(tmp_path / "two" / weights), load_file(tmp_path / "one" / weights)
    assert sorted(ours) == sorted(theirs)  # every tensor, whole, under the names one process writes
    for name, tensor in theirs.items():
        assert ours[name].shape == tensor.shape
        assert torch.allclose(ours[name], tensor, atol=1e-4), name


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers at once, as SLURM ends a job (torchrun starts each worker in its own session,
    so killing its process group would miss them)."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for process in tree:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(tree[1:], timeout=30)


def test_a_killed_sharded_run_resumes_and_its_model_scores_like_an_uninterrupted_one(checkpoint, tmp_path):
    from ptft.evaluate import evaluate
    from ptft.finetune import last_complete_checkpoint, resume_dir_for

    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(24, seed=2))
    cfg = dict(FT_CFG, epochs=2, micro_batch_size=1, save_steps=2)  # 2 processes: 6 steps per epoch, 12 in all
    out = tmp_path / "models" / "para"
    resume = resume_dir_for(out)
    command = _torchrun(_finetune_command(checkpoint, train, out, cfg) + ["--sharding", "fsdp"])
    killed_log = tmp_path / "killed.log"
    with open(killed_log, "w") as stderr:
        proc = subprocess.Popen(command, env=_run_env(), stderr=stderr)
    try:
        deadline = time.monotonic() + 240
        while (not resume.exists() or last_complete_checkpoint(resume) is None) and proc.poll() is None:
            assert time.monotonic() < deadline, "no save appeared"
            time.sleep(0.02)
    finally:
        _kill_tree(proc)
    assert proc.returncode == -signal.SIGKILL, killed_log.read_text()[-3000:]
    assert not out.exists()
    saved_at = last_complete_checkpoint(resume)
    saved = int(saved_at.name.split("-")[1])
    assert 2 <= saved < 12 and saved % 2 == 0
    # the periodic state is sharded: one file of model and optimizer state per process, no whole copy
    files = {p.name for p in saved_at.rglob("*") if p.is_file()}
    assert {"__0_0.distcp", "__1_0.distcp"} <= files, sorted(files)
    assert "model.safetensors" not in files

    # the same state cannot resume on another number of processes: the run says so and keeps the state
    one_process = subprocess.run(
        _finetune_command(checkpoint, train, out, cfg) + ["--sharding", "fsdp"],
        env=_run_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one_process.returncode != 0
    assert f"was saved by 2 processes with sharding fsdp, this run has 1 with sharding fsdp" in one_process.stderr
    assert last_complete_checkpoint(resume) == saved_at

    rerun = subprocess.run(command, env=_run_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    record = json.loads((out / "provenance.json").read_text())
    assert record["resumed_from_step"] == saved and "resuming para from" in rerun.stderr
    assert not resume.exists()
    resumed_log = log(out)
    assert [r["optimizer_step"] for r in resumed_log] == list(range(1, 13))

    # uninterrupted, on one process without sharding: the same losses, and the same scores from the saved models
    finetune(checkpoint, train, "paraphrase", "para", cfg, tmp_path / "uninterrupted", threads=1)
    whole = log(tmp_path / "uninterrupted")
    assert [r["loss"] for r in resumed_log] == pytest.approx([r["loss"] for r in whole], abs=FSDP_TOLERANCE)
    rows = paraphrase_rows(12, seed=9)
    spec = {"task": "paraphrase", "train": tmp_path / "etrain.jsonl", "test": tmp_path / "etest.jsonl"}
    write_jsonl(spec["train"], rows[:6])
    write_jsonl(spec["test"], rows[6:])
    eval_cfg = {"prompt_formats": ["default"], "shots": [0], "limit": None, "batch_size": 4, "fewshot_seed": 1,
                "bootstrap_resamples": 50}  # fmt: skip
    scores = {}
    for name, model in (("sharded", out), ("whole", tmp_path / "uninterrupted")):
        evaluate(model, {"p": spec}, eval_cfg, tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl", 1)
        predictions = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        scores[name] = ([r["value"] for r in json.loads((tmp_path / f"{name}.json").read_text())["results"]],
                        predictions)  # fmt: skip
    assert scores["sharded"][0] == scores["whole"][0]
    for a, b in zip(scores["sharded"][1], scores["whole"][1], strict=True):
        assert a["prediction"] == b["prediction"]
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-3)


def test_state_of_another_launch_is_refused_naming_both(tmp_path):
    from ptft.finetune import LaunchChangedError, prepare_resume

    resume = tmp_path / ".para.resume"
    (resume / "checkpoint-4").mkdir(parents=True)
    (resume / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (resume / "fingerprint.json").write_text(json.dumps({"fingerprint": "k", "world_size": 4, "sharding": "fsdp"}))
    assert prepare_resume(resume, "k", True, world_size=4, sharding="fsdp") == resume / "checkpoint-4"
    with pytest.raises(LaunchChangedError, match=r"saved by 4 processes with sharding fsdp, this run has 2 .*"
                       r"Rerun with 4 processes .* or delete .*\.para\.resume to start from zero"):
        prepare_resume(resume, "k", True, world_size=2, sharding="fsdp")
    with pytest.raises(LaunchChangedError, match="this run has 4 with sharding none"):
        prepare_resume(resume, "k", True, world_size=4, sharding="none")
    assert (resume / "checkpoint-4").is_dir()  # refused, not deleted
    # another config is still discarded, whatever the launch
    assert prepare_resume(resume, "other", True, world_size=2, sharding="none") is None


def test_a_resumed_log_written_before_the_key_rename_is_kept_under_todays_keys(checkpoint, tmp_path):
    """train_log.jsonl's step and tokens became optimizer_step and step_tokens: a run saved before resumes into one log
    under today's keys, its rows past the save dropped, and every reader takes both."""
    from ptft.finetune import fingerprint, resume_dir_for, resume_state
    from ptft.train_log import log_row, read_train_log

    train = write_jsonl(tmp_path / "train.jsonl", paraphrase_rows(8))
    settings = FinetuneSettings.from_config(FT_CFG, "para")
    out = tmp_path / "para"
    resume = resume_dir_for(out)
    (resume / "checkpoint-2").mkdir(parents=True)
    (resume / "checkpoint-2" / "trainer_state.json").write_text("{}")
    key = fingerprint(settings, checkpoint, train)
    (resume / "fingerprint.json").write_text(json.dumps({"fingerprint": key, "world_size": 1, "sharding": "none"}))
    old = [{"step": s, "epoch": 1, "loss": 5.0 - s, "lr": 1e-3, "tokens": 10 * s} for s in (1, 2, 3)]
    write_jsonl(resume / "train_log.jsonl", old)
    assert resume_state(out, settings, checkpoint, train, 1, "none", "para") == (resume, resume / "checkpoint-2")
    assert log(resume) == [
        {"optimizer_step": s, "epoch": 1, "loss": 5.0 - s, "lr": 1e-3, "step_tokens": 10 * s} for s in (1, 2)
    ]
    assert read_train_log(resume / "train_log.jsonl") == log(resume)
    assert log_row({"optimizer_step": 4, "step_tokens": 7}) == {"optimizer_step": 4, "step_tokens": 7}


def test_the_launcher_reads_the_rendezvous_from_slurm():
    from ptft.launch import first_host, rendezvous

    assert rendezvous({}, 2) == ["--standalone", "--nproc_per_node", "2"]
    assert rendezvous({"SLURM_NNODES": "1", "SLURM_JOB_ID": "7"}, 4) == ["--standalone", "--nproc_per_node", "4"]
    env = {"SLURM_NNODES": "3", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu07", "SLURM_JOB_ID": "1234"}
    assert rendezvous(env, 8) == [
        "--nnodes", "3", "--node_rank", "2", "--master_addr", "gpu07", "--master_port", str(29500 + 234),
        "--nproc_per_node", "8",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="needs SLURM_NODEID from SLURM: start the launcher under srun"):
        rendezvous({"SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "a"}, 1)
    assert first_host("gpu07") == "gpu07"
    assert first_host("gpu[03-05,07],cpu1") == "gpu03"  # scontrol's expansion or ours: the zero padding stays
    with pytest.raises(ValueError, match="SLURM_JOB_NODELIST is empty"):
        first_host(" ")


def _four_visible_gpus(monkeypatch) -> None:
    """A CPU machine made to look like a 4-GPU workstation to torch: CUDA is "available" and its device count follows
    CUDA_VISIBLE_DEVICES, as the driver's does; nothing here is ptft code."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "device_count", lambda: len([g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g])
    )
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)


def test_one_process_fine_tune_keeps_the_configured_batch_on_four_visible_gpus(monkeypatch, tmp_path):
    """Issue 24: a one-process job that sees 4 GPUs got DataParallel from the Trainer and 4x the configured batch.
    The job narrows itself to one GPU, and the effective batch is batch_size; seeing 4 GPUs is refused, not trained."""
    from ptft.finetune.job import one_device_per_process
    from ptft.finetune.trainer import check_effective_batch

    _four_visible_gpus(monkeypatch)
    settings = FinetuneSettings.from_config({"batch_size": 8, "micro_batch_size": 2, "bf16": False, "epochs": 1}, "x")
    model = torch.nn.Linear(2, 2)

    seen_four, _ = training_arguments(model, 32, settings, ft_set="x", state_dir=tmp_path / "four")
    assert seen_four.n_gpu == 4 and seen_four.train_batch_size == 8  # what the Trainer would do: DataParallel x4
    with pytest.raises(RuntimeError, match=r"effective batch would be 32 \(micro-batch 2 x 4 GPUs in this process"):
        check_effective_batch(seen_four, settings, "x")

    assert one_device_per_process() == "0"  # the job's first step (finetune())
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    args, schedule = training_arguments(model, 32, settings, ft_set="x", state_dir=tmp_path / "one")
    assert args.n_gpu == 1 and args.device.type == "cuda"
    assert check_effective_batch(args, settings, "x") == 8
    assert args.train_batch_size * schedule["gradient_accumulation"] == settings.batch_size


def test_launched_processes_keep_their_gpus_and_the_batch_is_split_over_them(monkeypatch):
    """Under ptft.launch every process sees the job's GPUs (it picks its own by LOCAL_RANK): nothing is narrowed, and
    the accumulation divides batch_size over the processes, so the effective batch is unchanged."""
    from ptft.finetune.job import one_device_per_process

    _four_visible_gpus(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert one_device_per_process() is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    settings = FinetuneSettings.from_config({"batch_size": 8, "micro_batch_size": 2}, "x")
    assert gradient_accumulation(settings, 4, "x") * 2 * 4 == 8
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # a job holding one GPU slot: already one device
    monkeypatch.delenv("WORLD_SIZE")
    assert one_device_per_process() is None
