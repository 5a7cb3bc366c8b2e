"""Training examples: prompt + completion (or a whole conversation) as token ids with the loss on the completion only,
micro-batches padded or packed, and the per-example loss weighting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ptft.provenance import read_jsonl
from ptft.tasks import CHAT_ROLE_PREFIX, TRAINING_PROMPT_FORMAT, get_task
from ptft.tokens import encode_pair

IGNORE_INDEX = -100  # label of a token that carries no loss (prompt, padding, example boundaries)


@dataclass(frozen=True)
class Example:
    """One encoded training example: token ids and labels (IGNORE_INDEX where no loss is taken), same length."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool  # the prompt lost tokens on its left (or an over-long completion its right end) to fit max_length


PROMPT_SHARE_OF_LONG_EXAMPLES = 4  # an over-long completion leaves max_length // 4 tokens for the end of the prompt


def encode_example(tokenizer: Any, prompt: str, completion: str, max_length: int) -> Example:
    """Token ids of prompt + completion + EOS with labels only on the completion and EOS.

    Prompt and completion are split into ids by ptft.tokens.encode_pair, lm-eval's rule, so the completion ids are the
    continuation ids lm-eval scores for the same text (and the prompt starts with BOS where the tokenizer adds one, as
    lm-eval's context does); if the pair is longer
    than max_length the prompt loses tokens on its left, the completion never does -- unless the completion alone
    fills the window (instruction-tuning answers can: Tulu v2 has some longer than 2048 tokens). Then the prompt keeps
    its last max_length // 4 tokens and the completion its start, without EOS, as open-instruct cuts such sequences
    at max_seq_length; the task families of the paper's four tasks never get there.
    """
    prompt_ids, completion_ids = encode_pair(tokenizer, prompt, completion)
    completion_ids = completion_ids + [tokenizer.eos_token_id]
    if len(completion_ids) >= max_length:
        prompt_ids = prompt_ids[len(prompt_ids) - min(len(prompt_ids), max_length // PROMPT_SHARE_OF_LONG_EXAMPLES) :]
        completion_ids = completion_ids[: max_length - len(prompt_ids)]
        return Example(prompt_ids + completion_ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids, True)
    keep = max_length - len(completion_ids)
    truncated = len(prompt_ids) > keep
    prompt_ids = prompt_ids[-keep:]
    return Example(prompt_ids + completion_ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids, truncated)


def encode_conversation(tokenizer: Any, messages: Sequence[dict], max_length: int) -> Example:
    """Token ids and labels of a whole conversation in open-instruct's Tulu format, with the loss on every assistant turn.

    The text is the authors' open_instruct/finetune.py encode_with_messages_format (lines 313-360): each turn is
    "<|role|>\\n" + content + "\\n", an assistant turn "<|assistant|>\\n" + content + EOS + "\\n", and the last
    newline is stripped. As there, the whole text is encoded once (the tokenizer's own special tokens, BOS where it
    adds one): a SentencePiece tokenizer then gives no answer or role cue a "▁" of its own, as encoding turns apart
    would. Labels come from character offsets (the fast tokenizer's offset mapping): a token carries loss when it
    starts inside an assistant turn's content, its EOS or the newline after it (open-instruct masks from each
    user/system turn's start to the end of the next "<|assistant|>\\n"); role cues, the other turns and added
    special tokens (no characters) carry IGNORE_INDEX. A conversation longer than max_length keeps its start
    (open-instruct's truncation=True), marked truncated. Raises ValueError for an unknown role, a conversation
    without an answer, or a tokenizer without offsets (a slow, non-Rust tokenizer).
    """
    text, spans = _conversation_text(messages, tokenizer.eos_token)
    if not spans:
        raise ValueError("conversation has no assistant turn to train on")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{type(tokenizer).__name__} gives no character offsets: conversations need a fast tokenizer")
    encoded = tokenizer(text, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    labels = [
        token if end > start and any(lo <= start < hi for lo, hi in spans) else IGNORE_INDEX
        for token, (start, end) in zip(input_ids, encoded["offset_mapping"])
    ]
    truncated = len(input_ids) > max_length
    return Example(input_ids[:max_length], labels[:max_length], truncated)


def _conversation_text(messages: Sequence[dict], eos_token: str) -> tuple[str, list[tuple[int, int]]]:
    """open-instruct's text of a conversation and the [start, end) character spans that carry loss."""
    text, spans = "", []
    for i, message in enumerate(messages):
        role, content = message["role"], (message["content"] or "").strip()
        if role not in CHAT_ROLE_PREFIX:
            raise ValueError(f"message {i}: role {role!r} is not one of {sorted(CHAT_ROLE_PREFIX)}")
        newline = "" if i == len(messages) - 1 else "\n"
        text += CHAT_ROLE_PREFIX[role]
        if role == "assistant":
            spans.append((len(text), len(text) + len(content + eos_token + newline)))
            text += content + eos_token + newline
        else:
            text += content + newline
    return text, spans


def collate(examples: Sequence[Example | dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch to its longest example; padding gets attention 0 and label IGNORE_INDEX."""
    rows = [(e["input_ids"], e["labels"]) if isinstance(e, dict) else (e.input_ids, e.labels) for e in examples]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack(examples: Sequence[Example | dict]) -> dict[str, torch.Tensor]:
    """Concatenate a micro-batch into one row with position ids restarting at 0 per example (padding-free).

    The attention ptft.varlen registers runs each example (seq_lens) as its own causal block; other attention
    implementations read the restarting position ids as a block-diagonal mask. Either way no token attends across an
    example boundary, and the first label of each example is IGNORE_INDEX, so no loss crosses one either.
    """
    from transformers import DataCollatorWithFlattening

    features = [e if isinstance(e, dict) else {"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    batch = DataCollatorWithFlattening(return_tensors="pt", separator_id=IGNORE_INDEX)(features)
    batch["seq_lens"] = [len(f["input_ids"]) for f in features]  # for ptft.varlen: one causal block per example
    return batch


def example_index(labels: torch.Tensor, seq_lens: Sequence[int] | None = None) -> torch.Tensor:
    """Which example each position of a micro-batch belongs to, shaped like labels (batch, length).

    Padded micro-batches hold one example per row; a packed one (seq_lens, one row) holds its examples back to back.
    """
    if seq_lens is None:
        return torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)
    if labels.shape[0] != 1 or sum(seq_lens) != labels.shape[1]:
        raise ValueError(f"seq_lens {list(seq_lens)} do not tile a packed row of shape {tuple(labels.shape)}")
    lengths = torch.tensor(list(seq_lens), device=labels.device)
    return torch.repeat_interleave(torch.arange(len(seq_lens), device=labels.device), lengths).unsqueeze(0)


def example_weighted_loss(logits: torch.Tensor, labels: torch.Tensor, example_ids: torch.Tensor) -> torch.Tensor:
    """Mean over examples of each example's mean next-token cross-entropy (nats) on its labelled tokens.

    logits (batch, length, vocab); labels and example_ids (batch, length), labels IGNORE_INDEX where no loss is
    taken. Token t's logits predict label t + 1, as in transformers' causal LM loss. Every example with at least
    one labelled token weighs the same, whatever its length: the loss of the authors' batch 1 x gradient
    accumulation 8 (open-instruct finetune.py lines 784-785 take each example's mean loss, and accelerate divides
    each by the 8 accumulation steps; scripts/exp_scripts/fine_tune_olmo.sh sets BATCH_SIZE_PER_GPU=1,
    TOTAL_BATCH_SIZE=8). Raises ValueError if no token carries a label.
    """
    targets = labels[:, 1:]
    owners = example_ids[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    mask = (targets.reshape(-1) != IGNORE_INDEX).float()
    owners = owners.reshape(-1)
    n_examples = int(example_ids.max()) + 1
    sums = torch.zeros(n_examples, device=logits.device).index_add(0, owners, token_loss * mask)
    counts = torch.zeros(n_examples, device=logits.device).index_add(0, owners, mask)
    present = counts > 0
    if not bool(present.any()):
        raise ValueError("example_weighted_loss: no token of the micro-batch carries a label")
    return (sums[present] / counts[present]).mean()


def load_examples(
    train_path: Path,
    task: str,
    tokenizer: Any,
    max_length: int,
    n_train: int | None,
    seed: int,
    assistant_turns: str = "all",
) -> list[Example]:
    """Encode the training records (a seeded subsample of n_train if given); errors name the file and row.

    A record with `messages` (an instruction set) is encoded whole with the loss on every assistant turn when
    assistant_turns is "all" (encode_conversation); otherwise, and for every other record, prompt + completion.
    """
    if assistant_turns not in ("all", "last"):
        raise ValueError(f"assistant_turns must be 'all' or 'last', got {assistant_turns!r}")
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
            if assistant_turns == "all" and record.get("messages"):
                examples.append(encode_conversation(tokenizer, record["messages"], max_length))
                continue
            examples.append(
                encode_example(
                    tokenizer, family.render(record, TRAINING_PROMPT_FORMAT), family.completion(record), max_length
                )
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{train_path}, row {i + 1} (id {record.get('id', '?')!r}): {err}") from None
    return examples
