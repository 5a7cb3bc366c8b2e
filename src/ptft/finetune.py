"""Fine-tuning of one checkpoint on one training set (full or LoRA), with the loss on the completion only.

The prompt is the task's Default format and the completion is the delimiter, the target and EOS: exactly the
context/continuation split that evaluation scores. The engine is the transformers Trainer, the library the paper
used, with accelerate underneath: several processes (ptft.launch) run DDP, or FSDP with finetune.sharding: fsdp
(parameters, gradients and optimizer state sharded over the processes); bf16, fused AdamW, and checkpoints that
restore optimizer, scheduler, RNG and data position, none of which we then maintain ourselves. Each micro-batch is packed
padding-free into one row whose position ids restart per example, and ptft.varlen attends per example, so no FLOPs
go to padding or across examples. Resumable state lives in a hidden sibling of the output folder, which appears
(atomically) only when training has finished.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ptft.provenance import (
    PROVENANCE_FILE,
    atomic_dir,
    package_version,
    provenance,
    read_jsonl,
    read_provenance,
    sha256_file,
    write_json,
    write_jsonl,
)
from ptft import varlen
from ptft.config import ft_set_of
from ptft.settings import FinetuneSettings
from ptft.tasks import CHAT_ROLE_PREFIX, TRAINING_PROMPT_FORMAT, get_task
from ptft.tokens import encode_pair, leading_special_ids

IGNORE_INDEX = -100  # label of a token that carries no loss (prompt, padding, example boundaries)
TRAIN_LOG_FILE = "train_log.jsonl"
FINGERPRINT_FILE = "fingerprint.json"
LOSS_WEIGHTINGS = ("token", "example")

# LoRA targets per architecture (config.model_type), named explicitly: peft's default table does not know OLMo, and a
# pattern that matches nothing would train nothing. Every linear map of attention and MLP, as in QLoRA.
LORA_TARGET_MODULES = {
    "olmo": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "olmo2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}

# Dense bf16 peak FLOP/s by GPU name, for the MFU estimate; PTFT_PEAK_FLOPS overrides (and enables it on CPU).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class Example:
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
    newline is stripped. Labels cover each assistant turn's content, its EOS and the newline after it (open-instruct
    masks from each user/system turn's start to the end of the next "<|assistant|>\\n"); role cues and the other turns
    carry IGNORE_INDEX. Segments are tokenised one by one (as prompt and completion are elsewhere in ptft), so a
    label boundary never falls inside a token. A conversation longer than max_length keeps its start (open-instruct's
    truncation=True), marked truncated. Raises ValueError for an unknown role or a conversation without an answer.
    """

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    # BOS first where the tokenizer adds one by default (Llama-3): open-instruct encodes the whole text with it
    segments: list[tuple[list[int], bool]] = [(leading_special_ids(tokenizer), False)]  # (token ids, carries loss)
    for i, message in enumerate(messages):
        role, content = message["role"], (message["content"] or "").strip()
        if role not in CHAT_ROLE_PREFIX:
            raise ValueError(f"message {i}: role {role!r} is not one of {sorted(CHAT_ROLE_PREFIX)}")
        last = i == len(messages) - 1
        if role == "assistant":
            segments.append((ids(CHAT_ROLE_PREFIX[role]), False))
            segments.append((ids(content) + [tokenizer.eos_token_id] + ([] if last else ids("\n")), True))
        else:
            segments.append((ids(CHAT_ROLE_PREFIX[role] + content + ("" if last else "\n")), False))
    if not any(loss for _, loss in segments):
        raise ValueError("conversation has no assistant turn to train on")
    input_ids = [t for ids, _ in segments for t in ids]
    labels = [t if loss else IGNORE_INDEX for ids, loss in segments for t in ids]
    truncated = len(input_ids) > max_length
    return Example(input_ids[:max_length], labels[:max_length], truncated)


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


def lora_target_modules(model_type: str, lora_cfg: dict) -> list[str]:
    """The configured LoRA targets, or the explicit table's for this architecture; unknown ones fail by name."""
    if lora_cfg.get("target_modules"):
        return list(lora_cfg["target_modules"])
    if model_type not in LORA_TARGET_MODULES:
        raise ValueError(
            f"LoRA has no target modules for model_type {model_type!r} (known: {sorted(LORA_TARGET_MODULES)}): "
            "set finetune.lora.target_modules to the names of its linear layers"
        )
    return LORA_TARGET_MODULES[model_type]


def resume_dir_for(out_dir: Path) -> Path:
    """Hidden sibling that holds resumable state: Snakemake deletes a failed job's output, never this."""
    return out_dir.parent / f".{out_dir.name}.resume"


def fingerprint(settings: FinetuneSettings, checkpoint_dir: Path, train_path: Path) -> str:
    """What resumable state depends on: the config slice (threads aside), the base checkpoint and the data (the
    launch, processes and sharding, is checked on its own by prepare_resume)."""
    checkpoint_files = sorted(
        (p.name, p.stat().st_size) for p in Path(checkpoint_dir).iterdir() if p.is_file()
    )  # sizes, not hashes: a 16 GB checkpoint would take minutes to hash; provenance.json changes on any rebuild
    record = {
        "config": {k: v for k, v in settings.flat().items() if k not in ("threads", "save_steps")},
        "checkpoint": checkpoint_files,
        "checkpoint_provenance": sha256_file(Path(checkpoint_dir) / PROVENANCE_FILE),
        "train": sha256_file(train_path),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def last_complete_checkpoint(resume_dir: Path) -> Path | None:
    """The newest Trainer checkpoint whose state file was written (a kill mid-save leaves one without it)."""
    complete = []
    for folder in resume_dir.glob("checkpoint-*"):
        if (folder / "trainer_state.json").is_file() and folder.name.split("-")[-1].isdigit():
            complete.append((int(folder.name.split("-")[-1]), folder))
    return max(complete)[1] if complete else None


class LaunchChangedError(RuntimeError):
    """Resumable state was saved by another number of processes or another sharding than this run's."""


def prepare_resume(
    resume_dir: Path, key: str, main_process: bool, world_size: int = 1, sharding: str = "none"
) -> Path | None:
    """The checkpoint to resume from, after discarding state made with another config or data.

    State saved by another launch (number of processes, or sharding) is not discarded but refused with
    LaunchChangedError: its optimizer shards and data position belong to that launch, and a long sharded run's state
    is worth more than a silent restart. The error names both launches and the two ways on.
    """
    stored = resume_dir / FINGERPRINT_FILE
    record = json.loads(stored.read_text()) if stored.is_file() else None
    stale = resume_dir.exists() and (record is None or record["fingerprint"] != key)
    if stale:
        print(f"{resume_dir} holds state of another config or data: starting from zero", file=sys.stderr, flush=True)
        if main_process:
            shutil.rmtree(resume_dir)
    # every process decides alike, whichever of them removes the stale folder first
    checkpoint = None if stale or not resume_dir.exists() else last_complete_checkpoint(resume_dir)
    launch = {"world_size": world_size, "sharding": sharding}
    saved = {k: record.get(k, v) for k, v in launch.items()} if record else launch  # pre-sharding records: as today
    if checkpoint is not None and saved != launch:
        raise LaunchChangedError(
            f"{checkpoint} was saved by {saved['world_size']} processes with sharding {saved['sharding']}, this run "
            f"has {world_size} with sharding {sharding}: its optimizer state and data position cannot be re-split. "
            f"Rerun with {saved['world_size']} processes (resources.finetune: gpu x nodes) and finetune.sharding: "
            f"{saved['sharding']}, or delete {resume_dir} to start from zero"
        )
    if main_process:
        resume_dir.mkdir(parents=True, exist_ok=True)
        write_json(stored, {"fingerprint": key, **launch})
    return checkpoint


def peak_flops() -> float | None:
    """Dense bf16 peak FLOP/s of one device, or None when unknown (CPU without PTFT_PEAK_FLOPS)."""
    if os.environ.get("PTFT_PEAK_FLOPS"):
        return float(os.environ["PTFT_PEAK_FLOPS"])
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)
    return None


def flops_per_token(model: torch.nn.Module, method: str) -> float:
    """Training FLOPs per token, 6N for full fine-tuning (N = matmul parameters; the embedding lookup is none, but a
    matrix tied to the output head counts once, as the head's matmul).

    LoRA computes no gradients of frozen weights: forward 2N plus activation gradients 2N, plus 6x the adapters.
    Attention's own FLOPs are left out, as in the usual MFU estimate.
    """
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    if head is not None and head.weight is embedding:  # tied (OLMo-1B): the shared matrix is the head's matmul
        embedding = None
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad and p is not embedding)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad and p is not embedding)
    if method == "full":
        return 6.0 * trainable + 6.0 * frozen
    return 4.0 * frozen + 6.0 * trainable


def settle_fsdp(trainer) -> None:
    """Make the accelerator FSDP as configured, on CPU as on GPU, with gradients reduced in fp32.

    accelerate 1.15 turns FSDP on only for accelerator devices (accelerate/state.py: the FSDP branch sits under
    MULTI_GPU and its kin) and on CPU drops the plugin without a word, training plain DDP. torch's FSDP2 runs on CPU
    over gloo, and the tests run there, so a CPU launch gets the plugin as a GPU launch would. Under bf16 accelerate
    would also reduce gradients in bf16; DDP reduces them in fp32 and so does this (parameters still gathered in
    bf16), so sharding changes numbers by float noise only.
    """
    import torch.distributed.fsdp as torch_fsdp
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type == DistributedType.MULTI_CPU:
        plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
        if state.mixed_precision != "no":
            plugin.set_mixed_precision(state.mixed_precision)
        state.fsdp_plugin, state.distributed_type = plugin, DistributedType.FSDP
        trainer.is_fsdp_enabled = True
    if state.distributed_type != DistributedType.FSDP:
        raise RuntimeError(f"finetune.sharding fsdp: accelerate runs {state.distributed_type}, not FSDP")
    policy = state.fsdp_plugin.mixed_precision_policy
    if policy is not None and policy.param_dtype == torch.bfloat16:
        state.fsdp_plugin.mixed_precision_policy = torch_fsdp.MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, output_dtype=policy.output_dtype
        )


def gathered_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict of an FSDP2-sharded model, unsharded; every process must call it (it all-gathers).

    On GPU the full tensors go to CPU memory of the first process only (cpu_offload); on CPU every process gets
    them. accelerate's get_state_dict always asks for cpu_offload, which on CPU returns tensors whose storage FSDP
    has freed (safetensors then fails on "an invalid python storage").
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=torch.cuda.is_available())
    return get_model_state_dict(model, options=options)


def _trainer_class():
    from transformers import Trainer

    class PtftTrainer(Trainer):
        """The Trainer plus a per-step record: tokens, tokens/s, MFU, and a stop on a non-finite loss."""

        loss_weighting = "token"

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if self.args.fsdp_plugin_args is not None:
                settle_fsdp(self)

        def setup_log(self, ft_set, log_file, steps_per_epoch, flops_token, peak):
            self.ft_set, self.log_file, self.steps_per_epoch = ft_set, log_file, steps_per_epoch
            self.flops_token, self.peak = flops_token, peak
            self.step_tokens, self.step_started = 0, None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # packed rows hold no padding; padded ones count their attention mask
            mask = inputs.get("attention_mask")
            self.step_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            if self.step_started is None:  # the first step; later ones start where the previous one was logged
                self.step_started = time.perf_counter()
            if self.loss_weighting == "token":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # "example": the mean of the examples' mean losses; the Trainer divides it by the accumulation steps
            # (model_accepts_loss_kwargs is off, see build_trainer), so each example of the batch weighs the same.
            model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**model_inputs)
            loss = example_weighted_loss(
                outputs.logits, inputs["labels"], example_index(inputs["labels"], inputs.get("seq_lens"))
            )
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, start_time=None):
            if "loss" in logs:
                step = self.state.global_step
                epoch = 1 + (step - 1) // self.steps_per_epoch
                loss, lr = float(logs["loss"]), float(logs.get("learning_rate", float("nan")))
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"fine-tuning {self.ft_set!r}: loss is {loss} at optimizer step {step} (epoch {epoch}, lr {lr:g})"
                    )
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                now = time.perf_counter()
                seconds = now - (self.step_started or now)  # the whole step: data, forward, backward, optimizer
                tokens = self.step_tokens
                if self.args.world_size > 1:  # every process trained its own share of the batch
                    count = torch.tensor(tokens, device=self.args.device)
                    torch.distributed.all_reduce(count)
                    tokens = int(count)
                tokens_per_s = tokens / seconds if seconds > 0 else None
                mfu = (
                    self.flops_token * tokens_per_s / (self.peak * self.args.world_size)
                    if self.peak and tokens_per_s
                    else None
                )
                row = {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
                    "tokens": tokens,
                    "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None,
                    "mfu": round(mfu, 4) if mfu is not None else None,
                }
                if self.is_world_process_zero():
                    with open(self.log_file, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row, sort_keys=True) + "\n")
                self.step_tokens, self.step_started = 0, now
            super().log(logs, start_time)

    return PtftTrainer


def gradient_accumulation(settings: FinetuneSettings, world_size: int, ft_set: str) -> int:
    """Micro-batches per optimizer step on each process: batch_size / (micro_batch_size x processes)."""
    batch_size, micro_batch_size = settings.batch_size, settings.scheduling.micro_batch_size
    if batch_size % (micro_batch_size * world_size):
        raise ValueError(
            f"fine-tuning {ft_set!r}: batch_size {batch_size} is not a multiple of micro_batch_size {micro_batch_size} "
            f"x {world_size} processes"
        )
    return batch_size // (micro_batch_size * world_size)


def fsdp_arguments(model: torch.nn.Module, sharding: str, activation_checkpointing: bool) -> dict:
    """TrainingArguments that make the Trainer (through accelerate) wrap the model in FSDP; {} for sharding none.

    FSDP2 (torch's fully_shard, transformers' default), full sharding of parameters, gradients and optimizer state
    (ZeRO-3: reshard_after_forward), each decoder layer its own unit (the model's _no_split_modules, e.g.
    Olmo2DecoderLayer), checkpointing through FSDP's own activation checkpointing (transformers refuses it together
    with gradient_checkpointing). Periodic saves are sharded: each process writes its shard
    (torch.distributed.checkpoint), so no process ever holds the whole state.
    """
    if sharding == "none":
        return {}
    if sharding != "fsdp":
        raise ValueError(f"finetune.sharding must be 'none' or 'fsdp', got {sharding!r}")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = sorted(set(getattr(base, "_no_split_modules", None) or []))
    if not layers:
        raise ValueError(f"{type(base).__name__} names no decoder layer class (_no_split_modules) for FSDP to wrap")
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "reshard_after_forward": True,
            "transformer_layer_cls_to_wrap": layers,
            "activation_checkpointing": activation_checkpointing,
            "state_dict_type": "SHARDED_STATE_DICT",
        },
    }


def build_trainer(
    model: torch.nn.Module,
    dataset: Sequence[dict],
    ft_cfg: FinetuneSettings | dict,
    *,
    ft_set: str,
    state_dir: Path,
    log_file: Path,
    pad_token_id: int,
    world_size: int = 1,
    max_steps: int | None = None,
    sharding: str = "none",
):
    """The configured Trainer for one run: the paper's recipe with our speed settings (the benchmark builds it too).

    ft_cfg is the set's FinetuneSettings (a dict is read by FinetuneSettings.from_config, missing keys taking its
    defaults). dataset holds {"input_ids", "labels"} dicts; state_dir receives the periodic saves; log_file the per-step rows.
    sharding "fsdp" wraps the model in FSDP over the world_size processes (fsdp_arguments); "none" is DDP when
    world_size > 1. Raises ValueError on another sharding.
    """
    from transformers import TrainingArguments

    settings = FinetuneSettings.from_config(ft_cfg, ft_set)
    run = settings.scheduling
    micro_batch_size = run.micro_batch_size
    grad_accum = gradient_accumulation(settings, world_size, ft_set)
    cuda = torch.cuda.is_available()
    bf16 = cuda if settings.bf16 == "auto" else bool(settings.bf16)
    steps_per_epoch = math.ceil(math.ceil(len(dataset) / (micro_batch_size * world_size)) / grad_accum)
    total_steps = settings.epochs * steps_per_epoch
    warmup_steps = math.ceil(settings.warmup_ratio * total_steps)  # transformers 5 refuses warmup_ratio
    save_steps = run.save_steps
    args = TrainingArguments(
        output_dir=str(state_dir),
        per_device_train_batch_size=micro_batch_size,
        gradient_accumulation_steps=grad_accum,
        num_train_epochs=settings.epochs,
        max_steps=max_steps or -1,
        learning_rate=settings.lr,
        weight_decay=settings.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps,
        # null or 0 turns clipping off (the Trainer clips only when max_grad_norm > 0)
        max_grad_norm=float(settings.max_grad_norm or 0.0),
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=bf16,
        # named only when on: the argument's name moves between transformers 5 releases
        **({"gradient_checkpointing": True} if run.gradient_checkpointing and sharding == "none" else {}),
        **fsdp_arguments(model, sharding, run.gradient_checkpointing),
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN must stop the job, not be averaged away
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=1,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not cuda,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
    )
    packing = run.packing
    if packing:
        model.set_attn_implementation(varlen.register())
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=pack if packing else (lambda batch: collate(batch, pad_token_id)),
    )
    loss_weighting = settings.loss_weighting
    if loss_weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"finetune.ft_sets.{ft_set}.loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
    trainer.loss_weighting = loss_weighting
    if loss_weighting == "example":
        # the Trainer then divides each micro-batch's loss by the accumulation steps instead of normalising by the
        # token count of the whole batch (num_items_in_batch)
        trainer.model_accepts_loss_kwargs = False
    trainer.setup_log(ft_set, log_file, steps_per_epoch, flops_per_token(model, settings.method), peak_flops())
    trainer.plan = {
        "loss_weighting": loss_weighting,
        "max_grad_norm": args.max_grad_norm or None,
        "packing": packing,
        "bf16": bf16,
        "gradient_accumulation": grad_accum,
        "warmup_steps": warmup_steps,
        "steps_per_epoch": steps_per_epoch,
        "sharding": sharding,
    }
    return trainer


def check_memory(
    architecture: Any, settings: FinetuneSettings, ft_set: str, sharding: str, processes: int, gpu_mem_gb: float
) -> None:
    """Plan this job's peak memory per device (ptft.memory) and raise MemoryPlanError naming the settings that would
    fit, before the model is loaded; the plan goes to the log either way."""
    from ptft import memory

    shape = memory.model_shape(architecture)
    flat = settings.flat()  # ptft.memory plans from the config slice's keys
    plan = memory.finetune_plan(shape, flat, sharding=sharding, processes=processes, job=f"finetune {ft_set}")
    print(f"memory plan: {plan.describe()}", file=sys.stderr, flush=True)
    memory.check_plan(plan, gpu_mem_gb, shape=shape, ft_set=ft_set, lora=memory.lora_alternative(shape, flat))


def resume_state(
    out_dir: Path, settings: FinetuneSettings, checkpoint_dir: Path, train_path: Path, world_size: int, sharding: str,
    ft_set: str,
) -> tuple[Path, Path | None]:
    """(resume_dir, the save to resume from or None) for out_dir; the train log keeps only rows up to that save."""
    resume_dir = resume_dir_for(out_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    resume_from = prepare_resume(
        resume_dir, fingerprint(settings, checkpoint_dir, train_path), main_process, world_size, sharding
    )
    log_file = resume_dir / TRAIN_LOG_FILE
    resumed_step = int(resume_from.name.split("-")[-1]) if resume_from else None
    if main_process:
        # rows past the save we resume from are recomputed, so they are dropped
        kept = [r for r in read_jsonl(log_file) if r["step"] <= (resumed_step or 0)] if log_file.exists() else []
        write_jsonl(log_file, kept)
    if resume_from:
        print(f"resuming {ft_set} from {resume_from} (optimizer step {resumed_step})", file=sys.stderr, flush=True)
    return resume_dir, resume_from


def load_model(checkpoint_dir: Path, settings: FinetuneSettings, targets: list[str] | None) -> torch.nn.Module:
    """The checkpoint in fp32 (master weights; bf16 runs under autocast), with LoRA adapters on targets when
    settings.method is lora. Seeds first: LoRA's initialisation draws from the seed."""
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(settings.seed)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint_dir,
        dtype=torch.float32,
        attn_implementation="sdpa",
        use_safetensors=True,
        local_files_only=True,
        trust_remote_code=False,
    )
    # Without a KV cache transformers reads restarting position ids as packed examples and masks across them; with
    # one (the config's default, even in training) it silently lets packed examples attend to each other. The
    # Trainer turns it off too (TrainingArguments.use_cache); this line keeps packing correct if that default moves.
    model.config.use_cache = False
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = settings.lora
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
            ),
        )
        if settings.scheduling.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


def run_training(
    trainer, resume_from: Path | None, ft_set: str, settings: FinetuneSettings, max_length: int, sharding: str
) -> float:
    """trainer.train(), resuming from resume_from; seconds it took. A GPU out-of-memory error becomes a RuntimeError
    naming the settings that would fit."""
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.cuda.OutOfMemoryError as err:
        raise RuntimeError(
            f"GPU out of memory fine-tuning {ft_set!r} (micro_batch_size {settings.scheduling.micro_batch_size}, "
            f"max_length {max_length}): "
            f"lower finetune.ft_sets.{ft_set}.micro_batch_size (gradient accumulation keeps the effective batch), "
            f"lower finetune.ft_sets.{ft_set}.max_length, set finetune.ft_sets.{ft_set}.gradient_checkpointing: true, "
            f"or shard the state over more GPUs (finetune.sharding: fsdp; sharding is {sharding}); "
            "resources.finetune.gpu_mem_gb makes the config check plan this before the run"
        ) from err
    return time.perf_counter() - started


def write_model(out_dir: Path, trainer, tokenizer, state_dict, log_rows: list[dict], record: dict) -> None:
    """Write the trained model, tokenizer, train log and provenance record to out_dir atomically, then drop the
    resumable state. A PeftModel writes only its adapter; a gathered FSDP state_dict is the whole model."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.use_cache = True  # generation at evaluation wants it back
    model.set_attn_implementation("sdpa")  # the saved model must not need ptft.varlen to load
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
        tokenizer.save_pretrained(tmp)
        write_jsonl(tmp / TRAIN_LOG_FILE, log_rows)
        write_json(tmp / PROVENANCE_FILE, record)
    shutil.rmtree(resume_dir_for(out_dir), ignore_errors=True)


def finetune(
    checkpoint_dir: Path,
    train_path: Path,
    task: str,
    ft_set: str,
    ft_cfg: FinetuneSettings | dict,
    out_dir: Path,
    threads: int,
    *,
    max_steps: int | None = None,
    sharding: str = "none",
    gpu_mem_gb: float | None = None,
) -> None:
    """Fine-tune the checkpoint in checkpoint_dir on train_path and write the model to out_dir (atomically).

    ft_cfg is the set's FinetuneSettings, or its slice (ptft.config.finetune_settings: the per-set settings plus the
    study's method and lora) read by FinetuneSettings.from_config, missing keys taking its defaults; ConfigError names
    an unknown key. The settings are printed at the top of the log and saved in the model's provenance.
    A rerun after a kill resumes from the last save in resume_dir_for(out_dir). max_steps stops early (benchmarks).
    sharding (finetune.sharding: none | fsdp) shards the training state over the processes of the launch
    (WORLD_SIZE); the finished model is gathered and written whole either way. gpu_mem_gb (resources.finetune) makes
    the memory plan (ptft.memory) fail before the model loads when it does not fit, naming the settings that would.

    It reads as its steps (settings -> data -> resume state -> model -> trainer -> train -> write); its length beyond
    ~60 lines is the provenance record, one field a line.
    """
    from transformers import AutoConfig, AutoTokenizer

    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    checkpoint_dir, train_path, out_dir = Path(checkpoint_dir), Path(train_path), Path(out_dir)
    settings = FinetuneSettings.from_config(ft_cfg, ft_set)
    print(f"fine-tuning settings ({ft_set}):\n{settings.describe()}", file=sys.stderr, flush=True)
    method = settings.method
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    gradient_accumulation(settings, world_size, ft_set)  # fail before any work
    seed = settings.seed
    base = read_provenance(checkpoint_dir)

    # the data first: a bad record fails before any state is written
    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir, local_files_only=True, trust_remote_code=False)
    architecture = AutoConfig.from_pretrained(checkpoint_dir, local_files_only=True)
    max_length = min(settings.max_length, architecture.max_position_embeddings)
    targets = lora_target_modules(architecture.model_type, vars(settings.lora)) if method == "lora" else None
    examples = load_examples(train_path, task, tokenizer, max_length, settings.n_train, seed, settings.assistant_turns)
    if gpu_mem_gb is not None:
        check_memory(architecture, settings, ft_set, sharding, world_size, gpu_mem_gb)

    resume_dir, resume_from = resume_state(out_dir, settings, checkpoint_dir, train_path, world_size, sharding, ft_set)
    log_file = resume_dir / TRAIN_LOG_FILE
    resumed_step = int(resume_from.name.split("-")[-1]) if resume_from else None
    model = load_model(checkpoint_dir, settings, targets)
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = build_trainer(
        model, dataset, settings, ft_set=ft_set, state_dir=resume_dir, log_file=log_file, pad_token_id=pad_id,
        world_size=world_size, max_steps=max_steps, sharding=sharding,
    )  # fmt: skip
    plan = trainer.plan
    seconds = run_training(trainer, resume_from, ft_set, settings, max_length, sharding)
    # every process takes part in gathering the shards; only the first then writes
    state_dict = gathered_state_dict(trainer.model) if sharding == "fsdp" else None
    if not trainer.is_world_process_zero():
        return

    log_rows = read_jsonl(log_file)
    record = provenance(
        "finetune",
        settings.record(),
        seed,
        model=base["model"],
        step=base["step"],
        tokens=base["tokens"],
        ft_set=ft_set,
        task=task,
        method=method,
        engine="transformers.Trainer",
        packing=plan["packing"],
        bf16=plan["bf16"],
        lora_target_modules=targets,
        base_checkpoint=str(checkpoint_dir),
        train_path=str(train_path),
        n_examples=len(examples),
        n_truncated=sum(e.truncated for e in examples),
        max_length=max_length,
        optimizer_steps=trainer.state.global_step,
        warmup_steps=plan["warmup_steps"],
        gradient_accumulation=plan["gradient_accumulation"],
        world_size=world_size,
        sharding=sharding,
        wrapped_by=type(trainer.model_wrapped).__name__,  # what accelerate wrapped: FSDP, DDP or the model
        trained_tokens=sum(r["tokens"] for r in log_rows),
        seconds=round(seconds, 1),
        resumed_from_step=resumed_step,
        threads=threads,
        loss=log_rows[-1]["loss"] if log_rows else None,
        peft=package_version("peft") if method == "lora" else None,
        accelerate=package_version("accelerate"),
    )
    write_model(out_dir, trainer, tokenizer, state_dict, log_rows, record)
    shutil.rmtree(resume_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the finetune rule (plain `python`, or under ptft.launch for several processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="base checkpoint folder")
    parser.add_argument("--train", type=Path, required=True, help="training set (JSONL)")
    parser.add_argument("--task", required=True, help="task family of the training set")
    parser.add_argument("--ft-set", required=True, help="name of the training set")
    parser.add_argument("--settings", required=True, help="the set's science settings as JSON (ptft.config.finetune_science)")
    parser.add_argument(
        "--scheduling",
        default="{}",
        help="the study's scheduling settings as JSON (ptft.config.scheduling_settings; the rule passes $PTFT_SCHEDULING);"
        " this job takes finetune.<ft-set> (micro_batch_size, packing, save_steps, gradient_checkpointing)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output model folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sharding", choices=["none", "fsdp"], default="none", help="finetune.sharding")
    parser.add_argument("--gpu-mem-gb", type=float, default=None, help="resources.finetune.gpu_mem_gb: plan memory")
    args = parser.parse_args(argv)
    # --ft-set may be a variant label (news_sum@lr2e-06, ptft.config.finetune_variants): scheduling is per set
    scheduling = json.loads(args.scheduling).get("finetune", {}).get(ft_set_of(args.ft_set), {})
    # threads come from Snakemake's threads: (--threads); finetune() prints the settings and records them in provenance
    scheduling["threads"] = args.threads
    settings = FinetuneSettings.from_config({**json.loads(args.settings), **scheduling}, args.ft_set)
    finetune(
        args.checkpoint, args.train, args.task, args.ft_set, settings, args.out, args.threads,
        sharding=args.sharding, gpu_mem_gb=args.gpu_mem_gb,
    )  # fmt: skip


if __name__ == "__main__":
    main()
