"""Fine-tuning of one checkpoint on one training set (full or LoRA), with the loss on the completion only.

The job, in order: settings -> data -> memory plan -> resume state -> model -> trainer -> train -> write, and the
command line of the finetune rule (`python -m ptft.finetune`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, MutableMapping, Sequence

import torch

from ptft.config import ft_set_of
from ptft.finetune.examples import Example, load_examples
from ptft.finetune.resume import resume_dir_for, resume_state, saved_step
from ptft.finetune.trainer import build_trainer, gathered_state_dict, gradient_accumulation
from ptft.provenance import (
    PROVENANCE_FILE,
    atomic_dir,
    package_version,
    provenance,
    read_provenance,
    write_json,
    write_jsonl,
)
from ptft.settings import FinetuneSettings
from ptft.tokens import context_length
from ptft.train_log import STEP_TOKENS, TRAIN_LOG_FILE, read_train_log

# LoRA targets per architecture (config.model_type), named explicitly: peft's default table does not know OLMo, and a
# pattern that matches nothing would train nothing. Every linear map of attention and MLP, as in QLoRA.
LORA_TARGET_MODULES = {
    "olmo": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "olmo2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


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


def one_device_per_process(env: MutableMapping[str, str] = os.environ) -> str | None:
    """Make a fine-tune that no launcher started (no WORLD_SIZE) see exactly one GPU: CUDA_VISIBLE_DEVICES narrowed
    to its first id (0 when unset and the machine has an NVIDIA driver), so the Trainer never wraps the model in
    DataParallel (which multiplies the batch by the GPU count). Must run before torch initialises CUDA. Returns the
    id kept, or None when nothing changed (a launcher's process, one or no visible GPU, a machine without GPUs).
    Raises RuntimeError when CUDA is already initialised on several GPUs (too late to narrow)."""
    if "WORLD_SIZE" in env:
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible is not None else None
    if ids is None and not Path("/proc/driver/nvidia/gpus").is_dir():
        return None
    if ids is not None and len(ids) <= 1:
        return None
    if torch.cuda.is_initialized() and torch.cuda.device_count() > 1:
        raise RuntimeError("fine-tuning in one process: CUDA already sees several GPUs; set CUDA_VISIBLE_DEVICES first")
    kept = ids[0] if ids else "0"
    env["CUDA_VISIBLE_DEVICES"] = kept
    print(f"one process, one GPU: CUDA_VISIBLE_DEVICES={kept} (was {visible or 'unset'})", file=sys.stderr, flush=True)
    return kept


def set_up_process(threads: int) -> None:
    """Before the job's work: one GPU for a process no launcher started (first: before anything starts CUDA),
    torch's CPU threads, and no tokenizer threads beyond them."""
    one_device_per_process()
    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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


@dataclass(frozen=True)
class TrainingData:
    """What a fine-tune reads before it writes any state: the checkpoint's tokenizer and architecture (its
    transformers config), the context length used (settings.max_length capped at the model's), the LoRA target
    modules (None for full fine-tuning) and the encoded training examples."""

    tokenizer: Any
    architecture: Any
    max_length: int
    targets: list[str] | None
    examples: list[Example]


def load_training_data(checkpoint_dir: Path, train_path: Path, task: str, settings: FinetuneSettings) -> TrainingData:
    """The tokenizer and architecture of checkpoint_dir and train_path's examples encoded for `task`; a bad record
    raises ValueError naming the file and row, an architecture without known LoRA targets names the setting to add."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir, local_files_only=True, trust_remote_code=False)
    architecture = AutoConfig.from_pretrained(checkpoint_dir, local_files_only=True)
    max_length = min(settings.max_length, context_length(architecture, f"{checkpoint_dir}/config.json", tokenizer)[0])
    targets = lora_target_modules(architecture.model_type, vars(settings.lora)) if settings.method == "lora" else None
    examples = load_examples(
        train_path, task, tokenizer, max_length, settings.n_train, settings.seed, settings.assistant_turns
    )
    return TrainingData(tokenizer, architecture, max_length, targets, examples)


def finetune(
    checkpoint_dir: Path,
    train_path: Path,
    task: str,
    ft_set: str,
    settings: FinetuneSettings | dict,
    out_dir: Path,
    threads: int,
    *,
    max_steps: int | None = None,
    sharding: str = "none",
    gpu_mem_gb: float | None = None,
) -> None:
    """Fine-tune the checkpoint in checkpoint_dir on train_path and write the model to out_dir (atomically).

    settings is the set's FinetuneSettings, or its slice (ptft.config.finetune_settings: the per-set settings plus the
    study's method and lora) read by FinetuneSettings.from_config, missing keys taking its defaults; ConfigError names
    an unknown key. The settings are printed at the top of the log and saved in the model's provenance. A rerun after
    a kill resumes from the last save in resume_dir_for(out_dir). max_steps stops early (benchmarks). One process
    uses one GPU (one_device_per_process): the effective batch is batch_size on any machine. sharding
    (finetune.sharding: none | fsdp) shards the training state over the processes of the launch (WORLD_SIZE); the
    finished model is gathered and written whole either way. gpu_mem_gb (resources.finetune) makes the memory plan
    (ptft.memory) fail before the model loads when it does not fit, naming the settings that would.
    """
    set_up_process(threads)
    checkpoint_dir, train_path, out_dir = Path(checkpoint_dir), Path(train_path), Path(out_dir)
    settings = FinetuneSettings.from_config(settings, ft_set)
    print(f"fine-tuning settings ({ft_set}):\n{settings.describe()}", file=sys.stderr, flush=True)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    gradient_accumulation(settings, world_size, ft_set)  # fail before any work
    checkpoint_record = read_provenance(checkpoint_dir)

    # the data first: a bad record fails before any state is written
    data = load_training_data(checkpoint_dir, train_path, task, settings)
    if gpu_mem_gb is not None:
        check_memory(data.architecture, settings, ft_set, sharding, world_size, gpu_mem_gb)

    resume_dir, resume_from = resume_state(out_dir, settings, checkpoint_dir, train_path, world_size, sharding, ft_set)
    log_file = resume_dir / TRAIN_LOG_FILE
    model = load_model(checkpoint_dir, settings, data.targets)
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in data.examples]
    pad_id = data.tokenizer.pad_token_id if data.tokenizer.pad_token_id is not None else data.tokenizer.eos_token_id
    trainer = build_trainer(
        model, dataset, settings, ft_set=ft_set, state_dir=resume_dir, log_file=log_file, pad_token_id=pad_id,
        world_size=world_size, max_steps=max_steps, sharding=sharding,
    )  # fmt: skip
    seconds = run_training(trainer, resume_from, ft_set, settings, data.max_length, sharding)
    # every process takes part in gathering the shards; only the first then writes
    state_dict = gathered_state_dict(trainer.model) if sharding == "fsdp" else None
    if not trainer.is_world_process_zero():
        return

    log_rows = read_train_log(log_file)
    record = finetune_record(
        settings, checkpoint_record, data, trainer, log_rows, task=task, ft_set=ft_set, checkpoint_dir=checkpoint_dir,
        train_path=train_path, world_size=world_size, sharding=sharding, seconds=seconds,
        resumed_step=saved_step(resume_from), threads=threads,
    )  # fmt: skip
    write_model(out_dir, trainer, data.tokenizer, state_dict, log_rows, record)
    shutil.rmtree(resume_dir, ignore_errors=True)


def finetune_record(
    settings: FinetuneSettings,
    checkpoint_record: dict,
    data: TrainingData,
    trainer,
    log_rows: list[dict],
    *,
    task: str,
    ft_set: str,
    checkpoint_dir: Path,
    train_path: Path,
    world_size: int,
    sharding: str,
    seconds: float,
    resumed_step: int | None,
    threads: int,
) -> dict:
    """The provenance record of a fine-tuned model (provenance.json): the settings, the checkpoint's model, step and
    tokens (checkpoint_record, its own provenance), the data, the trainer's plan and what the run did. Its length
    beyond ~60 lines is the record, one field a line."""
    plan = trainer.plan
    method = settings.method
    return provenance(
        "finetune",
        settings.record(),
        settings.seed,
        model=checkpoint_record["model"],
        step=checkpoint_record["step"],
        tokens=checkpoint_record["tokens"],
        ft_set=ft_set,
        task=task,
        method=method,
        engine="transformers.Trainer",
        packing=plan["packing"],
        bf16=plan["bf16"],
        lora_target_modules=data.targets,
        base_checkpoint=str(checkpoint_dir),
        train_path=str(train_path),
        n_examples=len(data.examples),
        n_truncated=sum(e.truncated for e in data.examples),
        max_length=data.max_length,
        optimizer_steps=trainer.state.global_step,
        warmup_steps=plan["warmup_steps"],
        gradient_accumulation=plan["gradient_accumulation"],
        world_size=world_size,
        sharding=sharding,
        wrapped_by=type(trainer.model_wrapped).__name__,  # what accelerate wrapped: FSDP, DDP or the model
        trained_tokens=sum(r[STEP_TOKENS] for r in log_rows),
        seconds=round(seconds, 1),
        resumed_from_step=resumed_step,
        threads=threads,
        loss=log_rows[-1]["loss"] if log_rows else None,
        peft=package_version("peft") if method == "lora" else None,
        accelerate=package_version("accelerate"),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the finetune rule (plain `python`, or under ptft.launch for several processes)."""
    parser = argparse.ArgumentParser(prog="python -m ptft.finetune", description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (the rule's threads)")
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
