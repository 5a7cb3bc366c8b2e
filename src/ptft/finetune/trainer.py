"""The configured transformers Trainer of one run: arguments (the paper's recipe with our speed settings), gradient
accumulation, FSDP, and a per-step log with tokens, tokens/s and MFU."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ptft import varlen
from ptft.finetune.examples import collate, example_index, example_weighted_loss, pack
from ptft.settings import FinetuneSettings
from ptft.train_log import OPTIMIZER_STEP, STEP_TOKENS

LOSS_WEIGHTINGS = ("token", "example")


# Dense bf16 peak FLOP/s by GPU name, for the MFU estimate; PTFT_PEAK_FLOPS overrides (and enables it on CPU).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


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
    """PtftTrainer, made on first use: transformers (its base class) is imported only then."""
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
            _count_step_tokens(self, inputs)
            if self.loss_weighting == "token":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return _example_weighted_compute_loss(model, inputs, return_outputs)

        def log(self, logs, start_time=None):
            if "loss" in logs:
                _log_step(self, logs)
            super().log(logs, start_time)

    return PtftTrainer


def _count_step_tokens(trainer, inputs: dict) -> None:
    """Add a micro-batch's tokens to the optimizer step's count; the first micro-batch of the run starts the clock."""
    # packed rows hold no padding; padded ones count their attention mask
    mask = inputs.get("attention_mask")
    trainer.step_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
    if trainer.step_started is None:  # the first step; later ones start where the previous one was logged
        trainer.step_started = time.perf_counter()


def _example_weighted_compute_loss(model: torch.nn.Module, inputs: dict, return_outputs: bool):
    """Loss weighting "example": the mean of the examples' mean losses (example_weighted_loss); the Trainer divides
    it by the accumulation steps (model_accepts_loss_kwargs is off, see build_trainer), so each example of the batch
    weighs the same."""
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**model_inputs)
    loss = example_weighted_loss(
        outputs.logits, inputs["labels"], example_index(inputs["labels"], inputs.get("seq_lens"))
    )
    return (loss, outputs) if return_outputs else loss


def _tokens_of_all_processes(trainer, tokens: int) -> int:
    """The optimizer step's tokens summed over the processes (each trained its own share of the batch)."""
    if trainer.args.world_size > 1:
        count = torch.tensor(tokens, device=trainer.args.device)
        torch.distributed.all_reduce(count)
        tokens = int(count)
    return tokens


def _log_step(trainer, logs: dict) -> None:
    """Append the optimizer step's row to the train log (first process only; keys: ptft.train_log) and restart the step's token count and
    clock. Raises FloatingPointError on a non-finite loss, naming the step, epoch and lr."""
    step = trainer.state.global_step
    epoch = 1 + (step - 1) // trainer.steps_per_epoch
    loss, lr = float(logs["loss"]), float(logs.get("learning_rate", float("nan")))
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"fine-tuning {trainer.ft_set!r}: loss is {loss} at optimizer step {step} (epoch {epoch}, lr {lr:g})"
        )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    now = time.perf_counter()
    seconds = now - (trainer.step_started or now)  # the whole step: data, forward, backward, optimizer
    tokens = _tokens_of_all_processes(trainer, trainer.step_tokens)
    tokens_per_s = tokens / seconds if seconds > 0 else None
    mfu = (
        trainer.flops_token * tokens_per_s / (trainer.peak * trainer.args.world_size)
        if trainer.peak and tokens_per_s
        else None
    )
    row = {
        OPTIMIZER_STEP: step,
        "epoch": epoch,
        "loss": loss,
        "lr": lr,
        "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
        STEP_TOKENS: tokens,
        "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None,
        "mfu": round(mfu, 4) if mfu is not None else None,
    }
    if trainer.is_world_process_zero():
        with open(trainer.log_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    trainer.step_tokens, trainer.step_started = 0, now


def gradient_accumulation(settings: FinetuneSettings, world_size: int, ft_set: str) -> int:
    """Micro-batches per optimizer step on each process: batch_size / (micro_batch_size x processes)."""
    batch_size, micro_batch_size = settings.batch_size, settings.scheduling.micro_batch_size
    if batch_size % (micro_batch_size * world_size):
        raise ValueError(
            f"fine-tuning {ft_set!r}: batch_size {batch_size} is not a multiple of micro_batch_size {micro_batch_size} "
            f"x {world_size} processes"
        )
    return batch_size // (micro_batch_size * world_size)


def check_effective_batch(args, settings: FinetuneSettings, ft_set: str) -> int:
    """The effective batch of args (TrainingArguments): examples per optimizer step over every device and process,
    train_batch_size (the per-device micro-batch x the GPUs one process drives: DataParallel when it sees several)
    x gradient accumulation x processes. Raises RuntimeError unless it is the config's batch_size: a one-process job
    that sees 4 GPUs would otherwise train with 4x the batch and a schedule of a quarter of the steps (issue 24)."""
    effective = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
    if effective != settings.batch_size:
        raise RuntimeError(
            f"fine-tuning {ft_set!r}: the effective batch would be {effective} (micro-batch "
            f"{args.per_device_train_batch_size} x {max(1, args.n_gpu)} GPUs in this process x accumulation "
            f"{args.gradient_accumulation_steps} x {args.world_size} processes), not "
            f"finetune.ft_sets.{ft_set}.batch_size {settings.batch_size}: a process must see one "
            "GPU (CUDA_VISIBLE_DEVICES); several GPUs run as several processes under ptft.launch"
        )
    return effective


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


def training_arguments(
    model: torch.nn.Module,
    n_examples: int,
    settings: FinetuneSettings,
    *,
    ft_set: str,
    state_dir: Path,
    world_size: int = 1,
    max_steps: int | None = None,
    sharding: str = "none",
) -> tuple[Any, dict]:
    """The TrainingArguments of one run over n_examples, and its schedule: {"bf16", "gradient_accumulation",
    "warmup_steps", "steps_per_epoch"} (optimizer steps). Raises ValueError on a batch_size that the micro-batches of
    the world_size processes do not divide, or on a sharding other than none or fsdp."""
    from transformers import TrainingArguments

    run = settings.scheduling
    micro_batch_size = run.micro_batch_size
    grad_accum = gradient_accumulation(settings, world_size, ft_set)
    cuda = torch.cuda.is_available()
    bf16 = cuda if settings.bf16 == "auto" else bool(settings.bf16)
    steps_per_epoch = math.ceil(math.ceil(n_examples / (micro_batch_size * world_size)) / grad_accum)
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
    schedule = {"bf16": bf16, "gradient_accumulation": grad_accum, "warmup_steps": warmup_steps,
                "steps_per_epoch": steps_per_epoch}  # fmt: skip
    return args, schedule


def build_trainer(
    model: torch.nn.Module,
    dataset: Sequence[dict],
    settings: FinetuneSettings | dict,
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

    settings is the set's FinetuneSettings (a dict is read by FinetuneSettings.from_config, missing keys taking its
    defaults). dataset holds {"input_ids", "labels"} dicts; state_dir receives the periodic saves; log_file the per-step rows.
    sharding "fsdp" wraps the model in FSDP over the world_size processes (fsdp_arguments); "none" is DDP when
    world_size > 1. Raises ValueError on another sharding or an unknown loss_weighting, RuntimeError when the effective
    batch is not settings.batch_size (check_effective_batch). trainer.plan records the
    run's plan (loss weighting, clipping, packing, bf16, schedule, sharding) for the provenance.
    """
    settings = FinetuneSettings.from_config(settings, ft_set)
    args, schedule = training_arguments(
        model, len(dataset), settings, ft_set=ft_set, state_dir=state_dir, world_size=world_size, max_steps=max_steps,
        sharding=sharding,
    )  # fmt: skip
    check_effective_batch(args, settings, ft_set)
    packing = settings.scheduling.packing
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
    steps_per_epoch = schedule["steps_per_epoch"]
    trainer.setup_log(ft_set, log_file, steps_per_epoch, flops_per_token(model, settings.method), peak_flops())
    trainer.plan = {
        "loss_weighting": loss_weighting,
        "max_grad_norm": args.max_grad_norm or None,
        "packing": packing,
        "bf16": schedule["bf16"],
        "gradient_accumulation": schedule["gradient_accumulation"],
        "warmup_steps": schedule["warmup_steps"],
        "steps_per_epoch": steps_per_epoch,
        "sharding": sharding,
    }
    return trainer
