"""Full-parameter fine-tuning of one checkpoint on one training set, with the loss on the completion only.

The prompt is the task's Default format and the completion is the delimiter, the target and EOS: exactly the
context/continuation split that evaluation scores. A plain PyTorch loop, sized for CPU; the GPU engine lives elsewhere.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from ptft.provenance import (
    PROVENANCE_FILE,
    atomic_dir,
    provenance,
    read_jsonl,
    read_provenance,
    write_json,
    write_jsonl,
)
from ptft.tasks import get_task

IGNORE_INDEX = -100  # label of a token that carries no loss (prompt and padding)
TRAIN_LOG_FILE = "train_log.jsonl"
TRAINING_PROMPT_FORMAT = "default"
GROUP_BATCHES = 8  # batches per length-sorted group: the shuffle stays random at the scale of the epoch
ADAM_BETAS = (0.9, 0.999)  # the HF Trainer defaults the paper used
GRAD_CLIP = 1.0
REQUIRED_KEYS = ("epochs", "lr", "batch_size", "micro_batch_size", "warmup_ratio", "weight_decay", "max_length", "seed")


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    truncated: bool  # the prompt lost tokens on its left to fit max_length


def encode_example(tokenizer: Any, prompt: str, completion: str, max_length: int) -> Example:
    """Token ids of prompt + completion + EOS with labels only on the completion and EOS.

    Prompt and completion are tokenised separately (as lm-eval splits context and continuation); if the pair is longer
    than max_length the prompt loses tokens on its left, the completion never does.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(completion_ids) >= max_length:
        raise ValueError(
            f"the completion is {len(completion_ids)} tokens with EOS, leaving no room for a prompt in max_length={max_length}"
        )
    keep = max_length - len(completion_ids)
    truncated = len(prompt_ids) > keep
    prompt_ids = prompt_ids[-keep:]
    return Example(prompt_ids + completion_ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids, truncated)


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch to its longest example; padding gets attention 0 and label IGNORE_INDEX."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def load_examples(
    train_path: Path, task: str, tokenizer: Any, max_length: int, n_train: int | None, seed: int
) -> list[Example]:
    """Encode the training records (a seeded subsample of n_train if given); errors name the file and row."""
    family = get_task(task)
    records = read_jsonl(train_path)
    if not records:
        raise ValueError(f"{train_path}: no training records")
    indices = list(range(len(records)))
    if n_train is not None:
        if n_train > len(records):
            raise ValueError(f"{train_path}: n_train={n_train} but the file has only {len(records)} records")
        gen = torch.Generator().manual_seed(seed)
        indices = sorted(torch.randperm(len(records), generator=gen)[:n_train].tolist())
    examples = []
    for i in indices:
        record = records[i]
        try:
            examples.append(
                encode_example(
                    tokenizer, family.render(record, TRAINING_PROMPT_FORMAT), family.completion(record), max_length
                )
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{train_path}, row {i + 1} (id {record.get('id', '?')!r}): {err}") from None
    return examples


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches (lists of example indices) of one epoch: a seeded shuffle, then length grouping to cut padding.

    The shuffled order is cut into groups of GROUP_BATCHES batches, each group is sorted by length and cut into
    batches, and the batches are shuffled again, so each batch holds examples of similar length.
    """
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    group = GROUP_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), group):
        members = sorted(order[start : start + group], key=lambda i: lengths[i])
        batches += [members[b : b + batch_size] for b in range(0, len(members), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float) -> float:
    """Linear warm-up over warmup_steps, then linear decay; step is 1-based and no step runs at lr 0."""
    if step <= warmup_steps:
        return lr * step / warmup_steps
    return lr * (total_steps - step + 1) / (total_steps - warmup_steps + 1)


def finetune(
    checkpoint_dir: Path, train_path: Path, task: str, ft_set: str, ft_cfg: dict, out_dir: Path, threads: int
) -> None:
    """Fine-tune the checkpoint in checkpoint_dir on train_path and write the model to out_dir (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    checkpoint_dir, train_path, out_dir = Path(checkpoint_dir), Path(train_path), Path(out_dir)
    missing = [k for k in REQUIRED_KEYS if k not in ft_cfg]
    if missing:
        raise KeyError(f"fine-tuning config for {ft_set!r} lacks {missing}")
    if ft_cfg.get("method", "full") != "full":
        raise NotImplementedError(
            f"fine-tuning method {ft_cfg['method']!r}: the CPU trainer does full fine-tuning only"
        )
    batch_size, micro_batch_size = int(ft_cfg["batch_size"]), int(ft_cfg["micro_batch_size"])
    if batch_size % micro_batch_size:
        raise ValueError(
            f"fine-tuning {ft_set!r}: batch_size {batch_size} is not a multiple of micro_batch_size {micro_batch_size}"
        )
    seed, epochs = int(ft_cfg["seed"]), int(ft_cfg["epochs"])
    base = read_provenance(checkpoint_dir)

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir, local_files_only=True, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint_dir,
        dtype=torch.float32,
        attn_implementation="sdpa",
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=False,
    )
    max_length = min(int(ft_cfg["max_length"]), model.config.max_position_embeddings)
    examples = load_examples(train_path, task, tokenizer, max_length, ft_cfg.get("n_train"), seed)
    lengths = [len(e.input_ids) for e in examples]

    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = math.ceil(float(ft_cfg["warmup_ratio"]) * total_steps)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(ft_cfg["weight_decay"])}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(ft_cfg["lr"]),
        betas=ADAM_BETAS,
        eps=1e-8,
    )

    log_rows, step, tokens_seen = [], 0, 0
    started = time.perf_counter()
    model.train()
    progress = tqdm(total=total_steps, desc=f"finetune {ft_set}", unit="step", file=sys.stderr, mininterval=1.0)
    for epoch in range(1, epochs + 1):
        for batch in epoch_batches(lengths, batch_size, seed, epoch):
            step += 1
            t0 = time.perf_counter()
            lr = lr_at(step, total_steps, warmup_steps, float(ft_cfg["lr"]))
            for group in optimizer.param_groups:
                group["lr"] = lr
            # The loss is the mean over the batch's completion tokens, however the batch is split into micro-batches.
            n_targets = sum(sum(label != IGNORE_INDEX for label in examples[i].labels[1:]) for i in batch)
            optimizer.zero_grad(set_to_none=True)
            batch_loss, batch_tokens = 0.0, 0
            for m in range(0, len(batch), micro_batch_size):
                micro = collate([examples[i] for i in batch[m : m + micro_batch_size]], tokenizer.pad_token_id)
                logits = model(input_ids=micro["input_ids"], attention_mask=micro["attention_mask"]).logits
                loss = (
                    torch.nn.functional.cross_entropy(
                        logits[:, :-1].reshape(-1, logits.size(-1)),
                        micro["labels"][:, 1:].reshape(-1),
                        ignore_index=IGNORE_INDEX,
                        reduction="sum",
                    )
                    / n_targets
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"fine-tuning {ft_set!r}: loss is {loss.item()} at step {step} (epoch {epoch}, lr {lr:g})"
                    )
                loss.backward()
                batch_loss += loss.item()
                batch_tokens += int(micro["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            tokens_seen += batch_tokens
            tokens_per_s = batch_tokens / (time.perf_counter() - t0)
            log_rows.append(
                {"step": step, "epoch": epoch, "loss": batch_loss, "lr": lr, "tokens_per_s": round(tokens_per_s, 1)}
            )
            progress.update()
            progress.set_postfix(loss=f"{batch_loss:.3f}", tok_s=f"{tokens_per_s:.0f}", refresh=False)
    progress.close()
    seconds = time.perf_counter() - started

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_jsonl(tmp / TRAIN_LOG_FILE, log_rows)
        write_json(
            tmp / PROVENANCE_FILE,
            provenance(
                "finetune",
                ft_cfg,
                seed,
                model=base["model"],
                step=base["step"],
                tokens=base["tokens"],
                ft_set=ft_set,
                task=task,
                method="full",
                base_checkpoint=str(checkpoint_dir),
                train_path=str(train_path),
                n_examples=len(examples),
                n_truncated=sum(e.truncated for e in examples),
                max_length=max_length,
                optimizer_steps=total_steps,
                warmup_steps=warmup_steps,
                trained_tokens=tokens_seen,
                seconds=round(seconds, 1),
                threads=threads,
                loss=log_rows[-1]["loss"] if log_rows else None,
            ),
        )
