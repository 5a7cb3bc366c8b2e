"""Peak memory per device of a fine-tuning or evaluation job, planned from the model's config before anything runs.

The plan counts the model's parameters exactly (the model built on torch's meta device from its config: no weights,
no download), then adds the training state, the activations of one micro-batch and the logits. A plan that does not
fit the configured GPU memory (resources.<phase>.gpu_mem_gb) fails naming the settings that would make it fit.

Training state, bytes per parameter (ZeRO, Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models", Sec. 3.1: mixed-precision Adam holds 2 + 2 + 12 = 16 bytes per parameter). ptft keeps
fp32 weights and runs bf16 under autocast, which holds the same 16 bytes in another split:
    weights 4 (fp32), gradients 4 (fp32), AdamW exp_avg 4 + exp_avg_sq 4 = optimizer 8;
a frozen parameter (LoRA's base) holds its 4 weight bytes only. FSDP full sharding (ZeRO stage 3) divides all three
terms by the number of processes, and adds the gathered working copy of the wrapped units in flight (the one being
computed and the one prefetched: 2 x one decoder layer, fp32 weights and gradients).

Activations per decoder layer, in bytes for t tokens of one micro-batch (t = micro_batch_size x max_length: a packed
row holds up to that many), after Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", Sec. 4.1 (34 s b h + 5 a s^2 b per layer for GPT with 16-bit activations), adapted to these decoders:
no dropout (its masks drop out), flash/varlen attention (stores q, k, v and the output, never the a s^2 scores),
grouped-query attention (k and v are kv_dim = num_key_value_heads x head_dim wide) and a gated (SwiGLU) MLP of width
I whose gate, activation, up and product tensors are all kept:
    attention 2t(h + h + 2 kv_dim + h)  [input, q, k and v, output]
    MLP       2t(h + 4 I)                [input, gate, act(gate), up, act(gate) x up]
    norms     2t(2 h)                    [the two norms' inputs]
    = t (12 h + 4 kv_dim + 8 I) bytes at 2 bytes per value (bf16); x2 in fp32.
With activation checkpointing each layer keeps only its input (2 t h bytes at bf16) and one layer's activations are
recomputed at a time. The loss adds the logits, 10 t V bytes (bf16 logits 2, their fp32 copy for cross-entropy 4 and
its gradient 4; 12 in fp32).

Evaluation (forward only, fp32 weights as ptft.evaluate loads them): weights 4 bytes per parameter, the KV cache of
the batch (2 x layers x kv_dim x 4 bytes per token) and the logits of the batch (8 t V: fp32 logits and their
log-softmax), t = batch_size x the model's context length.

These are estimates of what the tensors need; the CUDA context, the caching allocator's fragmentation and the
library's own buffers come on top, so a plan must fit within USABLE_FRACTION of the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ptft.tokens import context_length

GIB = 1024**3
USABLE_FRACTION = 0.9  # an assumption: ~10% of a device goes to the CUDA context, NCCL buffers and fragmentation
BYTES_WEIGHT, BYTES_GRAD, BYTES_OPTIMIZER = 4, 4, 8  # fp32 master weights, fp32 gradients, AdamW's two fp32 moments


class MemoryPlanError(ValueError):
    """A job's planned peak memory per device exceeds the configured GPU memory."""


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on, from a model config: counts of parameters and the widths of one decoder layer."""

    model_type: str
    n_params: int  # every parameter, counted once (a tied embedding and head are one matrix)
    n_layers: int
    hidden_size: int
    kv_dim: int  # num_key_value_heads x head_dim
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    layer_params: int  # parameters of one decoder layer (the FSDP wrapping unit)
    linear_shapes: tuple[tuple[str, int, int], ...] = field(repr=False, default=())  # (name, in, out) of each Linear


def model_shape(architecture: Any) -> ModelShape:
    """The ModelShape of a causal LM from its config alone: a transformers PretrainedConfig, a dict with model_type
    (config.json's content), or a checkpoint folder / config.json path. The model is built on the meta device (no
    memory, no weights), so the count is exact for any architecture transformers knows.

    Raises ValueError naming the config if it has no model_type or transformers cannot build it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

    if isinstance(architecture, (str, Path)):
        path = Path(architecture)
        path = path / "config.json" if path.is_dir() else path
        architecture = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(architecture, Mapping):
        spec = dict(architecture)
        if "model_type" not in spec:
            raise ValueError(f"model config {sorted(spec)} has no model_type: cannot tell the architecture")
        config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    elif isinstance(architecture, PretrainedConfig):
        config = architecture
    else:
        raise TypeError(f"model_shape takes a config, a dict or a path, got {type(architecture).__name__}")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n_params = sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once
    layers = model.get_decoder().layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    linears = tuple(
        (name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    )
    return ModelShape(
        model_type=config.model_type,
        n_params=n_params,
        n_layers=len(layers),
        hidden_size=config.hidden_size,
        kv_dim=kv_heads * head_dim,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        max_position_embeddings=context_length(config, f"the {config.model_type} config")[0],
        layer_params=sum(p.numel() for p in layers[0].parameters()),
        linear_shapes=linears,
    )


def lora_params(shape: ModelShape, r: int, target_modules: list[str]) -> int:
    """Adapter parameters: r x (in + out) for every Linear whose last name part is a target (peft's matching)."""
    return sum(r * (n_in + n_out) for name, n_in, n_out in shape.linear_shapes if name.split(".")[-1] in target_modules)


@dataclass(frozen=True)
class MemoryPlan:
    """Planned peak bytes per device of one job, by term, and the settings it was planned for."""

    job: str  # e.g. "finetune tiny-olmo/0/news_sum"
    weights: float
    gradients: float
    optimizer: float
    sharding_buffers: float
    activations: float
    logits: float
    settings: dict

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.sharding_buffers + self.activations + self.logits

    def describe(self) -> str:
        """One line: the total and each term in GiB, and the settings."""
        terms = ("weights", "gradients", "optimizer", "sharding_buffers", "activations", "logits")
        parts = ", ".join(f"{t} {getattr(self, t) / GIB:.2f}" for t in terms if getattr(self, t))
        knobs = " ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.job}: {self.total / GIB:.2f} GiB per device ({parts}) at {knobs}"


def activation_bytes(shape: ModelShape, tokens: int, checkpointing: bool, bf16: bool) -> float:
    """Activations kept for the backward pass of one micro-batch of `tokens` tokens (the module docstring's formula,
    after Korthikanti et al. 2022 Sec. 4.1); with checkpointing, each layer's input plus one layer recomputed."""
    scale = 1 if bf16 else 2
    per_layer = tokens * (12 * shape.hidden_size + 4 * shape.kv_dim + 8 * shape.intermediate_size) * scale
    if checkpointing:
        return shape.n_layers * 2 * tokens * shape.hidden_size * scale + per_layer
    return shape.n_layers * per_layer


def plan_memory(
    shape: ModelShape,
    *,
    method: str = "full",
    micro_batch_size: int,
    max_length: int,
    gradient_checkpointing: bool = False,
    sharding: str = "none",
    processes: int = 1,
    bf16: bool = True,
    lora_r: int | None = None,
    lora_targets: list[str] | None = None,
    job: str = "finetune",
) -> MemoryPlan:
    """Peak memory per device of fine-tuning (bytes, by term; see the module docstring for each formula).

    method full trains every parameter; lora trains r x (in + out) per targeted Linear over frozen fp32 weights.
    sharding fsdp divides weights, gradients and optimizer state over `processes` (ZeRO-3); none (DDP) keeps a whole
    replica on each. max_length is capped at the model's context length, as ptft.finetune caps it.
    """
    if sharding not in ("none", "fsdp"):
        raise ValueError(f"finetune.sharding must be 'none' or 'fsdp', got {sharding!r}")
    if method == "lora":
        if not lora_r or not lora_targets:
            raise ValueError("a LoRA plan needs lora_r and lora_targets")
        trainable = lora_params(shape, lora_r, lora_targets)
        frozen = shape.n_params
    elif method == "full":
        trainable, frozen = shape.n_params, 0
    else:
        raise ValueError(f"finetune.method must be 'full' or 'lora', got {method!r}")
    shards = processes if sharding == "fsdp" else 1
    tokens = micro_batch_size * min(max_length, shape.max_position_embeddings)
    logit_bytes = 10 if bf16 else 12
    return MemoryPlan(
        job=job,
        weights=(trainable + frozen) * BYTES_WEIGHT / shards,
        gradients=trainable * BYTES_GRAD / shards,
        optimizer=trainable * BYTES_OPTIMIZER / shards,
        sharding_buffers=2 * shape.layer_params * (BYTES_WEIGHT + BYTES_GRAD) if shards > 1 else 0.0,
        activations=activation_bytes(shape, tokens, gradient_checkpointing, bf16),
        logits=logit_bytes * tokens * shape.vocab_size,
        settings={
            "method": method,
            "sharding": sharding,
            "processes": processes,
            "micro_batch_size": micro_batch_size,
            "max_length": min(max_length, shape.max_position_embeddings),
            "gradient_checkpointing": gradient_checkpointing,
            "bf16": bf16,
            **({"lora_r": lora_r, "lora_targets": list(lora_targets)} if method == "lora" else {}),
        },
    )


def plan_evaluation(shape: ModelShape, *, batch_size: int, job: str = "evaluate") -> MemoryPlan:
    """Peak memory per device of evaluation: fp32 weights, the KV cache and the logits of one batch of full-context
    rows (ptft.evaluate runs lm-eval's HFLM, which pads a batch to its longest row, at most the context length)."""
    tokens = batch_size * shape.max_position_embeddings
    return MemoryPlan(
        job=job,
        weights=shape.n_params * BYTES_WEIGHT,
        gradients=0.0,
        optimizer=0.0,
        sharding_buffers=0.0,
        activations=2 * shape.n_layers * shape.kv_dim * tokens * 4,
        logits=8 * tokens * shape.vocab_size,
        settings={"batch_size": batch_size, "context": shape.max_position_embeddings},
    )


def fits(plan: MemoryPlan, gpu_mem_gb: float) -> bool:
    """Whether the plan fits USABLE_FRACTION of a device of gpu_mem_gb GB (10^9 bytes, as GPUs are sold)."""
    return plan.total <= USABLE_FRACTION * gpu_mem_gb * 1e9


def knobs_that_fit(shape: ModelShape, plan: MemoryPlan, gpu_mem_gb: float, ft_set: str, lora: dict | None) -> list[str]:
    """Each single change of the fine-tuning settings that would make the plan fit, phrased as the config key to set.

    Tried one at a time: FSDP over the configured processes, then over more GPUs (up to 64); activation
    checkpointing; a smaller micro-batch (halving, down to 1); LoRA with the configured (or default) adapters.
    """
    s = dict(plan.settings)
    keys = ("method", "sharding", "processes", "micro_batch_size", "max_length", "gradient_checkpointing", "bf16")
    base = {k: s[k] for k in keys} | {"lora_r": s.get("lora_r"), "lora_targets": s.get("lora_targets")}

    def ok(**change) -> bool:
        return fits(plan_memory(shape, **{**base, **change}), gpu_mem_gb)

    found = []
    if s["sharding"] == "none" or s["method"] == "full":
        if s["sharding"] == "none" and s["processes"] > 1 and ok(sharding="fsdp"):
            found.append(f"finetune.sharding: fsdp (shards the state over the {s['processes']} processes)")
        else:
            more = next((n for n in range(max(2, s["processes"] + 1), 65) if ok(sharding="fsdp", processes=n)), None)
            if more:
                found.append(f"finetune.sharding: fsdp with resources.finetune.gpu x nodes >= {more} GPUs")
    if not s["gradient_checkpointing"] and ok(gradient_checkpointing=True):
        found.append(f"finetune.ft_sets.{ft_set}.gradient_checkpointing: true")
    mbs = s["micro_batch_size"] // 2
    while mbs >= 1 and not ok(micro_batch_size=mbs):
        mbs //= 2
    if mbs >= 1:
        found.append(f"finetune.ft_sets.{ft_set}.micro_batch_size: {mbs} (gradient accumulation keeps the batch)")
    if s["method"] == "full" and lora and ok(method="lora", lora_r=lora["r"], lora_targets=lora["target_modules"]):
        found.append(f"finetune.method: lora (r {lora['r']}, on {', '.join(lora['target_modules'])})")
    return found


def check_plan(
    plan: MemoryPlan, gpu_mem_gb: float | None, *, shape: ModelShape | None = None, ft_set: str | None = None,
    lora: dict | None = None,
) -> None:  # fmt: skip
    """Raise MemoryPlanError if the plan does not fit gpu_mem_gb (None: no GPU budget configured, nothing to check).

    For a fine-tuning plan (shape and ft_set given) the error names the settings that would make it fit.
    """
    if gpu_mem_gb is None or fits(plan, gpu_mem_gb):
        return
    message = (
        f"{plan.describe()} does not fit {USABLE_FRACTION:.0%} of a {gpu_mem_gb:g} GB device "
        f"({USABLE_FRACTION * gpu_mem_gb * 1e9 / GIB:.1f} GiB usable)"
    )
    if shape is not None and ft_set is not None:
        found = knobs_that_fit(shape, plan, gpu_mem_gb, ft_set, lora)
        message += (
            "; any one of these fits: " + "; ".join(found)
            if found
            else "; no single change fits: combine finetune.sharding: fsdp with more GPUs, gradient_checkpointing, "
            "a smaller micro_batch_size or max_length, or finetune.method: lora"
        )
    raise MemoryPlanError(message)


def lora_alternative(shape: ModelShape, settings: dict) -> dict | None:
    """The adapters a full fine-tune could switch to (the study's finetune.lora, else the schema's r 16 on
    ptft.finetune.LORA_TARGET_MODULES), as {"r", "target_modules"}; None when the architecture has no known targets."""
    from ptft.finetune import LORA_TARGET_MODULES, lora_target_modules

    from ptft.settings import LoraSettings

    lora = settings.get("lora") or vars(LoraSettings())
    if not lora.get("target_modules") and shape.model_type not in LORA_TARGET_MODULES:
        return None
    return {"r": int(lora["r"]), "target_modules": lora_target_modules(shape.model_type, lora)}


def finetune_plan(shape: ModelShape, settings: Any, *, sharding: str, processes: int, job: str) -> MemoryPlan:
    """plan_memory from one training set's settings (a FinetuneSettings, or its slice ptft.config.finetune_settings,
    keys left out taking FinetuneSettings' defaults) and the job's launch.

    bf16 auto counts as on: a plan is for a GPU, where auto turns it on.
    """
    from ptft.settings import FinetuneSettings

    ft = FinetuneSettings.from_config(settings, job)
    lora = lora_alternative(shape, ft.flat()) if ft.method == "lora" else None
    if ft.method == "lora" and lora is None:
        raise ValueError(f"{job}: LoRA has no target modules for model_type {shape.model_type!r}")
    bf16 = ft.bf16
    return plan_memory(
        shape,
        method=ft.method,
        micro_batch_size=ft.scheduling.micro_batch_size,
        max_length=ft.max_length,
        gradient_checkpointing=ft.scheduling.gradient_checkpointing,
        sharding=sharding,
        processes=processes,
        bf16=True if bf16 == "auto" else bool(bf16),
        lora_r=lora["r"] if lora else None,
        lora_targets=lora["target_modules"] if lora else None,
        job=job,
    )


def study_architecture(config: dict, model: str, project_dir: Path) -> Any | None:
    """A model's config for planning: an embedded model's from the study config (Olmo2Config keywords, vocab_size
    from its tokenizer settings), a hub or local model's from any checkpoint of it already in checkpoints/ (they
    share one architecture); None when none is there yet (its jobs then plan at their start)."""
    spec = config["models"][model]
    if spec["source"] == "embedded":
        # special token ids come from the tokenizer at pre-training; their values change no memory
        return {"model_type": "olmo2", **spec["architecture"], "vocab_size": spec["tokenizer"]["vocab_size"],
                "pad_token_id": None, "bos_token_id": None, "eos_token_id": None}  # fmt: skip
    found = sorted(Path(project_dir, "checkpoints", model).glob("*/config.json"))
    return found[0] if found else None


def plan_study(config: dict, source: str = "config", project_dir: Path = Path(".")) -> list[MemoryPlan]:
    """Every fine-tuning and evaluation plan of a study whose resources give gpu_mem_gb, each printed to stderr;
    raises MemoryPlanError (prefixed with source) at the first that does not fit. Returns [] when no phase sets
    gpu_mem_gb, without importing transformers (the embedded CPU study pays nothing)."""
    import sys

    from ptft.config import finetune_settings

    resources = config.get("resources", {})
    ft_res, eval_res = resources.get("finetune", {}), resources.get("evaluate", {})
    if not ft_res.get("gpu_mem_gb") and not eval_res.get("gpu_mem_gb"):
        return []
    processes = (ft_res.get("processes_per_node") or max(1, ft_res.get("gpu", 0))) * ft_res.get("nodes", 1)
    sharding = config["finetune"].get("sharding", "none")
    plans = []
    for model in config["models"]:
        architecture = study_architecture(config, model, project_dir)
        if architecture is None:
            print(f"memory plan of models.{model}: no checkpoint of it is here yet; its jobs plan at their start",
                  file=sys.stderr)  # fmt: skip
            continue
        shape = model_shape(architecture)
        try:
            for ft_set in config["finetune"]["ft_sets"] if ft_res.get("gpu_mem_gb") else []:
                settings = finetune_settings(config, ft_set)
                plan = finetune_plan(shape, settings, sharding=sharding, processes=processes,
                                     job=f"finetune {model}/{ft_set}")  # fmt: skip
                print(f"memory plan: {plan.describe()}", file=sys.stderr)
                plans.append(plan)
                check_plan(plan, ft_res["gpu_mem_gb"], shape=shape, ft_set=ft_set, lora=lora_alternative(shape, settings))
            if eval_res.get("gpu_mem_gb"):
                batch = config["evaluate"].get("batch_size", 1)
                plan = plan_evaluation(shape, batch_size=batch if isinstance(batch, int) else 1,
                                       job=f"evaluate {model}")  # fmt: skip
                print(f"memory plan: {plan.describe()}", file=sys.stderr)
                plans.append(plan)
                check_plan(plan, eval_res["gpu_mem_gb"])
        except MemoryPlanError as err:
            raise MemoryPlanError(f"{source}: {err}") from None
    return plans
