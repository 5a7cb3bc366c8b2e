"""Embedded pre-training checkpoints: a byte-level BPE tokenizer and a tiny OLMo-2 model trained here on a local corpus.

Each checkpoint folder continues from the previous one and is identical to training straight to its step: the batch at
each step and the learning rate are functions of (seed, step) only, and the optimizer state travels with the weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ptft.provenance import PROVENANCE_FILE, atomic_dir, provenance, read_jsonl, write_json, write_jsonl, sha256_file
from ptft.train_log import TRAIN_LOG_FILE  # the same file name; here `step` is the pre-training step

# torch and transformers' model classes are imported inside the functions that need them: the tokenizer job
# (and anything that only imports this module) does not pay their ~3 s import.

EOS_TOKEN = "<|endoftext|>"  # end of document; also the bos token (never added automatically, as in OLMo)
PAD_TOKEN = "<|padding|>"  # a token of its own, so padding can never be confused with a trained EOS
TRAINING_STATE_FILE = "training_state.pt"
DEFAULT_SEED = 42  # params.yaml's study seed; models.<model>.pretrain.seed overrides it
ADAM_BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0


def _corpus_texts(corpus_path: Path) -> list[str]:
    rows = read_jsonl(corpus_path)
    if not rows:
        raise ValueError(f"{corpus_path}: the corpus is empty")
    texts = []
    for lineno, row in enumerate(rows, 1):
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise ValueError(f"{corpus_path}, row {lineno}: expected a string field 'text', got {row!r:.200}")
        texts.append(text)
    return texts


# ---------------------------------------------------------------------------------------------------------- tokenizer


def train_tokenizer(corpus_path: Path, tokenizer_cfg: dict, seed: int, out_dir: Path) -> None:
    """Train a byte-level BPE tokenizer on the corpus and save it as a transformers fast tokenizer.

    EOS and BOS are `<|endoftext|>` (id 0), PAD is `<|padding|>` (id 1); encoding adds no special tokens. The BPE trainer
    is deterministic, so `seed` is only recorded.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus_path, out_dir = Path(corpus_path), Path(out_dir)
    vocab_size = int(tokenizer_cfg["vocab_size"])
    min_vocab = 256 + 2  # every byte plus the two special tokens
    if vocab_size < min_vocab:
        raise ValueError(
            f"tokenizer.vocab_size must be at least {min_vocab} (256 bytes + 2 special tokens), got {vocab_size}"
        )
    texts = _corpus_texts(corpus_path)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )

    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / PROVENANCE_FILE,
            provenance(
                "tokenizer",
                tokenizer_cfg,
                seed,
                corpus=str(corpus_path),
                corpus_sha256=sha256_file(corpus_path),
                n_documents=len(texts),
                vocab_size=len(tokenizer),
                eos_token=EOS_TOKEN,
                bos_token=EOS_TOKEN,
                pad_token=PAD_TOKEN,
            ),
        )


def load_tokenized_corpus(corpus_path: Path, tokenizer: Any) -> "torch.Tensor":
    """The whole corpus as one 1-D LongTensor of token ids, each document followed by EOS (re-tokenised per job: ~1 s)."""
    import torch

    texts = _corpus_texts(Path(corpus_path))
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for doc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(doc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


# -------------------------------------------------------------------------------------------------------- pre-training


def _seed(model_spec: dict) -> int:
    return int(model_spec.get("pretrain", {}).get("seed", DEFAULT_SEED))


def _lr_at(step: int, pretrain_cfg: dict) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then constant: a function of the step alone, so runs can be split."""
    warmup = int(pretrain_cfg.get("warmup_steps", 0))
    lr = float(pretrain_cfg["lr"])
    return lr * min(1.0, step / warmup) if warmup > 0 else lr


def _batch_at(
    step: int, seed: int, tokens: "torch.Tensor", batch_size: int, seq_len: int
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The batch of `step`: random windows of the tokenised corpus drawn from a generator seeded by (seed, step) alone."""
    import numpy as np
    import torch

    offsets = np.random.default_rng([seed, step]).integers(0, len(tokens) - seq_len, size=batch_size)
    batch = torch.stack([tokens[o : o + seq_len + 1] for o in offsets.tolist()])
    return batch[:, :-1], batch[:, 1:]


def _new_model(model_spec: dict, tokenizer: Any, seed: int):
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM

    architecture = dict(model_spec["architecture"])
    if architecture.get("vocab_size", len(tokenizer)) != len(tokenizer):
        raise ValueError(
            f"architecture.vocab_size is {architecture['vocab_size']}, but the tokenizer has {len(tokenizer)} tokens"
        )
    architecture.update(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = Olmo2Config(**architecture, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return Olmo2ForCausalLM(config).float()


def _optimizer(model, pretrain_cfg: dict):
    import torch

    # nanoGPT's split: weight decay on matrices (and embeddings), never on norms.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": float(pretrain_cfg.get("weight_decay", 0.0))},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=_lr_at(1, pretrain_cfg), betas=ADAM_BETAS, eps=1e-8)


def _training_cfg(model_spec: dict) -> dict:
    """The part of the config that must agree between a checkpoint and the one continuing it."""
    pretrain_cfg = {k: v for k, v in model_spec.get("pretrain", {}).items() if k != "threads"}
    return {
        "architecture": model_spec["architecture"],
        "tokenizer": model_spec.get("tokenizer"),
        "pretrain": pretrain_cfg,
    }


def pretrain(
    model: str,
    model_cfg: dict,
    step: int,
    tokenizer_dir: Path,
    corpus_path: Path,
    previous_dir: Path | None,
    out_dir: Path,
    threads: int,
) -> None:
    """Write the checkpoint of `model` at `step` to `out_dir`, continuing from `previous_dir` (or from scratch if None).

    model_cfg is the model's section of the config, its model_spec (architecture, tokenizer, pretrain); the keyword
    keeps its old name because scripts/pretrain.py passes it by name and editing a rule script reruns all its jobs
    (docs/naming.md). Step 0 is the seeded initial
    weights. The result is the same however the run to `step` was split into calls. Raises ValueError for a negative
    step, or a previous checkpoint made with another seed, config, corpus or tokenizer, or past `step`.
    """
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    model_spec, tokenizer_dir, corpus_path, out_dir = model_cfg, Path(tokenizer_dir), Path(corpus_path), Path(out_dir)
    cfg = model_spec["pretrain"]
    seed, batch_size, seq_len = _seed(model_spec), int(cfg["batch_size"]), int(cfg["seq_len"])
    if step < 0:
        raise ValueError(f"{model}: step must be >= 0, got {step}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    # what a checkpoint and the one continuing it must agree on; saved in the training state
    identity = {
        "seed": seed,
        "config": _training_cfg(model_spec),
        "corpus_sha256": sha256_file(corpus_path),
        "tokenizer_sha256": sha256_file(tokenizer_dir / "tokenizer.json"),
    }
    if previous_dir is None:
        start, net, log_rows = 0, _new_model(model_spec, tokenizer, seed), []
        optimizer = _optimizer(net, cfg)
    else:
        previous_dir = Path(previous_dir)
        start, net, optimizer, log_rows = _continue_from(previous_dir, step, identity, cfg)
    n_params = sum(p.numel() for p in net.parameters())
    if step > start:
        _train_steps(model, net, optimizer, range(start + 1, step + 1), seed, cfg, corpus_path, tokenizer, log_rows)
    training_state = {
        "step": step,
        "optimizer": optimizer.state_dict() if step > 0 else None,
        "rng": torch.get_rng_state(),
        **identity,
    }
    recent = [r["tokens_per_s"] for r in log_rows[-(step - start) :]] if step > start else []
    record = provenance(
        "checkpoint", model_spec, seed, model=model, step=step, tokens=step * batch_size * seq_len, source="embedded",
        n_params=n_params, continued_from=str(previous_dir) if previous_dir is not None else None,
        corpus=str(corpus_path), corpus_sha256=identity["corpus_sha256"], tokenizer=str(tokenizer_dir),
        tokenizer_sha256=identity["tokenizer_sha256"], threads=threads,
        loss=log_rows[-1]["loss"] if log_rows else None,
        tokens_per_s=round(sum(recent) / len(recent), 1) if recent else None,
    )  # fmt: skip
    _write_checkpoint(out_dir, net, tokenizer, training_state, log_rows, record)


def _continue_from(
    previous_dir: Path, step: int, identity: dict, pretrain_cfg: dict
) -> tuple[int, Any, Any, list[dict]]:
    """(its step, model, optimizer, train log rows) of the checkpoint in previous_dir, with torch's RNG state restored;
    raises ValueError when its seed, config, corpus or tokenizer differ from identity or it is past `step`."""
    import torch
    from transformers import Olmo2ForCausalLM

    state = torch.load(previous_dir / TRAINING_STATE_FILE, weights_only=True)
    start = int(state["step"])
    for key, value in identity.items():
        if state[key] != value:
            raise ValueError(
                f"{previous_dir}: cannot continue to step {step}: its {key} is {state[key]!r}, this run's is {value!r}"
            )
    if start > step:
        raise ValueError(f"{previous_dir} is at step {start}, past the requested step {step}")
    net = Olmo2ForCausalLM.from_pretrained(
        previous_dir, dtype=torch.float32, attn_implementation="sdpa", use_safetensors=True, local_files_only=True
    )
    optimizer = _optimizer(net, pretrain_cfg)
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    log_rows = read_jsonl(previous_dir / TRAIN_LOG_FILE) if (previous_dir / TRAIN_LOG_FILE).exists() else []
    return start, net, optimizer, log_rows


def _train_steps(
    model: str, net, optimizer, steps: range, seed: int, pretrain_cfg: dict, corpus_path: Path, tokenizer: Any,
    log_rows: list[dict],
) -> None:
    """Train net over `steps` (each step's batch and lr are functions of (seed, step) alone), appending one row per
    step to log_rows (step, loss, lr, tokens_per_s). Raises ValueError for a corpus shorter than one window and
    FloatingPointError on a non-finite loss."""
    import torch
    from tqdm import tqdm

    batch_size, seq_len = int(pretrain_cfg["batch_size"]), int(pretrain_cfg["seq_len"])
    tokens = load_tokenized_corpus(corpus_path, tokenizer)
    if len(tokens) <= seq_len:
        raise ValueError(f"{corpus_path}: {len(tokens)} tokens, fewer than one window of seq_len={seq_len} + 1")
    net.train()
    progress = tqdm(steps, desc=f"pretrain {model} {steps.start - 1}->{steps.stop - 1}", unit="step", mininterval=1.0)
    for s in progress:
        t0 = time.perf_counter()
        lr = _lr_at(s, pretrain_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = _batch_at(s, seed, tokens, batch_size, seq_len)
        logits = net(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain {model}: loss is {loss.item()} at step {s} (lr {lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
        optimizer.step()
        tokens_per_s = batch_size * seq_len / (time.perf_counter() - t0)
        log_rows.append({"step": s, "loss": loss.item(), "lr": lr, "tokens_per_s": round(tokens_per_s, 1)})
        progress.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens_per_s:.0f}", refresh=False)
    progress.close()


def _write_checkpoint(
    out_dir: Path, net, tokenizer: Any, training_state: dict, log_rows: list[dict], record: dict
) -> None:
    """The checkpoint folder, atomically: weights, tokenizer, training state, train log and provenance."""
    import torch

    with atomic_dir(out_dir) as tmp:
        net.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(training_state, tmp / TRAINING_STATE_FILE)
        write_jsonl(tmp / TRAIN_LOG_FILE, log_rows)
        write_json(tmp / PROVENANCE_FILE, record)
