"""Fine-tuning of one checkpoint on one training set (full or LoRA), with the loss on the completion only.

The prompt is the task's Default format and the completion is the delimiter, the target and EOS: exactly the
context/continuation split that evaluation scores. The engine is the transformers Trainer, the library the paper
used, with accelerate underneath: several processes (ptft.launch) run DDP, or FSDP with finetune.sharding: fsdp
(parameters, gradients and optimizer state sharded over the processes); bf16, fused AdamW, and checkpoints that
restore optimizer, scheduler, RNG and data position, none of which we then maintain ourselves. Each micro-batch is packed
padding-free into one row whose position ids restart per example, and ptft.varlen attends per example, so no FLOPs
go to padding or across examples. Resumable state lives in a hidden sibling of the output folder, which appears
(atomically) only when training has finished.

The package's modules: examples (encoding, batching, the per-example loss), resume (resumable state), trainer (the
configured Trainer, FSDP, the per-step log, FLOPs and MFU) and job (the job itself and its command line,
`python -m ptft.finetune`). The names below are the public API the other modules, tests and bench/ import.
"""

from ptft.finetune.examples import (
    IGNORE_INDEX,
    PROMPT_SHARE_OF_LONG_EXAMPLES,
    Example,
    collate,
    encode_conversation,
    encode_example,
    example_index,
    example_weighted_loss,
    load_examples,
    pack,
)
from ptft.finetune.job import (
    LORA_TARGET_MODULES,
    TrainingData,
    check_memory,
    finetune,
    finetune_record,
    load_model,
    load_training_data,
    lora_target_modules,
    main,
    run_training,
    write_model,
)
from ptft.finetune.resume import (
    FINGERPRINT_FILE,
    LaunchChangedError,
    fingerprint,
    last_complete_checkpoint,
    prepare_resume,
    resume_dir_for,
    resume_state,
    saved_step,
)
from ptft.finetune.trainer import (
    LOSS_WEIGHTINGS,
    PEAK_FLOPS,
    build_trainer,
    flops_per_token,
    fsdp_arguments,
    gathered_state_dict,
    gradient_accumulation,
    peak_flops,
    settle_fsdp,
    training_arguments,
)
from ptft.train_log import TRAIN_LOG_FILE

__all__ = [
    "FINGERPRINT_FILE", "IGNORE_INDEX", "LORA_TARGET_MODULES", "LOSS_WEIGHTINGS", "PEAK_FLOPS",
    "PROMPT_SHARE_OF_LONG_EXAMPLES", "TRAIN_LOG_FILE", "Example", "LaunchChangedError", "TrainingData",
    "build_trainer", "check_memory", "collate", "encode_conversation", "encode_example", "example_index",
    "example_weighted_loss", "fingerprint", "finetune", "finetune_record", "flops_per_token", "fsdp_arguments",
    "gathered_state_dict", "gradient_accumulation", "last_complete_checkpoint", "load_examples", "load_model",
    "load_training_data", "lora_target_modules", "main", "pack", "peak_flops", "prepare_resume", "resume_dir_for",
    "resume_state", "run_training", "saved_step", "settle_fsdp", "training_arguments", "write_model",
]  # fmt: skip
