"""A tiny real model and the words its tokenizer knows, shared by the evaluation tests (test_evaluate, test_prefix)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ptft.tasks import get_task

WORDS = "the a cat dog city river north south person lives in is big small red blue old new".split()


def sentence(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_eval_sets(root: Path, sets: dict[str, tuple[str, list[dict], list[dict]]]) -> dict[str, dict]:
    """Each eval set's (task, test rows, train rows) written as root/<name>/test.jsonl and train.jsonl; returns
    name -> {"task", "test", "train"}, the eval set spec ptft.evaluate takes."""
    specs = {}
    for name, (task, test, train) in sets.items():
        folder = root / name
        folder.mkdir()
        write_jsonl(folder / "test.jsonl", test)
        write_jsonl(folder / "train.jsonl", train)
        specs[name] = {"task": task, "test": folder / "test.jsonl", "train": folder / "train.jsonl"}
    return specs


def tiny_olmo(folder: Path, context: int = 1024) -> Path:
    """A random 2-layer Olmo2 (fp32, seeded) with a small BPE tokenizer trained on WORDS, the NLI and summarisation
    templates and the NLI label words, saved with a provenance.json in `folder`; `context` is its max positions."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

    rnd = random.Random(0)
    templates = [t for name in ("nli", "summarisation") for t in get_task(name).formats.values()]
    corpus = [sentence(rnd, 12) for _ in range(200)] + templates + list(get_task("nli").label_words)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = Olmo2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         vocab_size=len(tokenizer), max_position_embeddings=context, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)  # fmt: skip
    Olmo2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "provenance.json").write_text(json.dumps({"model": "tiny-olmo", "step": 150, "tokens": 307200}))
    return folder
