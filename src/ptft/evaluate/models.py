"""The model an evaluation scores: the dtype and device it runs in, the transformers model (full weights, or a LoRA
adapter on its pre-training checkpoint), lm-eval's HFLM or VLLM model type on it, and TokenProb's one addition to
both: a marked continuation that is scored as exactly one given token after the context.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ptft.evaluate.prefix import with_shared_prefix
from ptft.provenance import read_provenance
from ptft.tokens import context_length, encode_pair, encode_text

EVAL_DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("hf", "vllm")
VLLM_ENV = "envs/eval-vllm.yaml"
# A loglikelihood request whose continuation carries this mark is one candidate token of TokenProb: the number after
# it is the token id, scored as the single next token after the context (TokenProbLM._encode_pair).
TOKEN_MARK = "<ptft-token:"


def resolve_dtype(name: str, device: str) -> str:
    """evaluate.dtype -> the dtype that runs: "auto" is bfloat16 on a GPU ("cuda") and float32 elsewhere.

    Raises ValueError for a name outside EVAL_DTYPES.
    """
    if name not in EVAL_DTYPES:
        raise ValueError(f"evaluate.dtype must be one of {EVAL_DTYPES}, got {name!r}")
    if name != "auto":
        return name
    return "bfloat16" if device == "cuda" else "float32"


def compute_device() -> str:
    """The device this process evaluates on: "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_description() -> str:
    """The device this process evaluates on, for its log: "cpu", or the CUDA device with the GPU it is on the machine
    (CUDA_VISIBLE_DEVICES, set by the job's GPU slot, ptft.gpu_slots), its name and UUID, which nvidia-smi also shows.
    """
    import torch

    if compute_device() != "cuda":
        return "cpu"
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    return f"cuda:{index} (CUDA_VISIBLE_DEVICES={visible}, {props.name}, GPU-{getattr(props, 'uuid', '?')})"


def adapter_checkpoint_dir(model_dir: Path, checkpoint_dir: Path | None = None) -> Path:
    """The pre-training checkpoint a LoRA adapter in model_dir runs on: checkpoint_dir, or the base_checkpoint its
    provenance records. Raises FileNotFoundError when that folder is missing."""
    checkpoint = Path(checkpoint_dir or read_provenance(model_dir)["base_checkpoint"])
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{model_dir} is a LoRA adapter whose base checkpoint {checkpoint} is missing")
    return checkpoint


def _load_model(
    model_dir: Path, lora_eval: str = "adapter", checkpoint_dir: Path | None = None, dtype: str = "float32"
):
    """The model and tokenizer in model_dir; a LoRA folder (adapter_config.json) is loaded on its base checkpoint.

    lora_eval (config finetune.lora_eval) says whether a LoRA model runs through its adapter or merged into the base
    weights; both give the same scores. The base is checkpoint_dir, or the base_checkpoint its provenance records
    (adapter_checkpoint_dir). dtype is a resolved evaluate.dtype (resolve_dtype): the weights are loaded in it.
    Attention is transformers' default for the architecture: torch's scaled_dot_product_attention ("sdpa": flash or
    memory-efficient kernels on a GPU) wherever the architecture supports it, else its eager code (MPT, for one);
    the job's log and results name the one that ran (attention_implementation).
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    tokenizer = _tokenizer(model_dir)
    is_lora = (model_dir / "adapter_config.json").is_file()
    if lora_eval not in ("adapter", "merged"):
        raise ValueError(f"finetune.lora_eval must be 'adapter' or 'merged', got {lora_eval!r}")
    if is_lora:
        checkpoint_dir = adapter_checkpoint_dir(model_dir, checkpoint_dir)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint_dir if is_lora else model_dir,
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=getattr(torch, resolve_dtype(dtype, compute_device())),
    )
    if is_lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir, is_trainable=False)
        if lora_eval == "merged":
            model = model.merge_and_unload()
    model.to(compute_device())  # HFLM runs on the device the model is on
    model.eval()
    return model, tokenizer


def attention_implementation(lm) -> str:
    """The attention implementation lm's transformers model runs ("sdpa", "eager", ...), or "vllm" for a model with
    no transformers config (lm-eval's VLLM)."""
    model = getattr(lm, "model", None)
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) or "vllm"


def vllm_model_args(
    model_dir: Path, dtype: str, batch_size: int | str, seed: int, checkpoint_dir: Path | None = None
) -> dict[str, Any]:
    """Keyword arguments of lm-eval's VLLM model type (lm_eval/models/vllm_causallms.py, VLLM.__init__) for one model.

    Full weights load from model_dir; a LoRA adapter (adapter_config.json) runs on its base checkpoint (checkpoint_dir
    or the provenance's base_checkpoint) through vLLM's LoRA support, with max_lora_rank the adapter's rank.
    Never trust_remote_code. Raises FileNotFoundError for a LoRA adapter whose base is missing.
    """
    model_dir = Path(model_dir)
    args: dict[str, Any] = {
        "pretrained": str(model_dir),
        "dtype": dtype,
        "batch_size": batch_size,
        "seed": seed,
        "trust_remote_code": False,
    }
    adapter = model_dir / "adapter_config.json"
    if adapter.is_file():
        checkpoint = adapter_checkpoint_dir(model_dir, checkpoint_dir)
        rank = int(json.loads(adapter.read_text()).get("r", 16))
        args.update(
            pretrained=str(checkpoint), tokenizer=str(model_dir), lora_local_path=str(model_dir), max_lora_rank=rank
        )
    return args


def build_lm(backend: str, *, model_dir: Path, dtype: str, batch_size: int | str, seed: int, lora_eval: str = "adapter",
             checkpoint_dir: Path | None = None, share_prefix: bool = True, decode_cache: str = "dynamic"):
    """The lm-eval model that scores every request: (lm, tokenizer).

    backend "hf": lm-eval's HFLM on the transformers model (_load_model), running each task's shared prompt prefix
    once when share_prefix (evaluate.share_prefix; ptft.evaluate.prefix), decoding with decode_cache
    (evaluate.decode_cache). backend "vllm": lm-eval's VLLM model type (GPU only; its own environment, VLLM_ENV).
    HFLM's context is the model config's (ptft.tokens.context_length); vLLM reads it from the config itself.
    Both encode TokenProb's marked one-token continuations as exactly that
    token (_with_token_prob). A LoRA adapter runs on checkpoint_dir or its recorded base checkpoint. Raises ValueError
    for an unknown backend and ImportError, naming the environment to use, when vllm is asked for but not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"evaluate.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "hf":
        model, tokenizer = _load_model(model_dir, lora_eval, checkpoint_dir, dtype)
        # lm-eval would assume 2048 tokens for a config that names its context otherwise (max_seq_len, seq_length)
        context, _ = context_length(model.config, f"{model_dir}/config.json", tokenizer)
        lm = token_prob_lm(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=context,
                           share_prefix=share_prefix)  # fmt: skip
        lm.decode_cache = decode_cache  # read by ptft.evaluate.prefix.generate_with_prefix
        return lm, tokenizer
    try:
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as err:
        raise ImportError(
            f"evaluate.backend: vllm needs the vllm package ({err}); it is not in the CPU lock. Run the evaluate rule "
            f"with --sdm conda (it uses {VLLM_ENV}), or build that environment by hand"
        ) from None
    lm = _with_token_prob(VLLM)(**vllm_model_args(model_dir, dtype, batch_size, seed, checkpoint_dir))
    return lm, _tokenizer(model_dir)


def _tokenizer(model_dir: Path):
    """The tokenizer saved in model_dir (local files only, never remote code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)


# ---------------------------------------------------------------- TokenProb's marked one-token continuations


def token_continuation(token_id: int) -> str:
    """The marked continuation string of a one-token TokenProb request (read back by TokenProbLM)."""
    return f"{TOKEN_MARK}{int(token_id)}>"


def _marked_token(continuation: str) -> int | None:
    text = continuation.lstrip()
    if not text.startswith(TOKEN_MARK):
        return None
    return int(text[len(TOKEN_MARK) : -1])


def _with_token_prob(base: type) -> type:
    """`base` (an lm-eval TemplateLM: HFLM or VLLM), with one addition: a continuation marked by
    token_continuation(id) is encoded as exactly that one token after the context (lm-eval would re-tokenise
    context + text, which can merge across the boundary). Other pairs are split by ptft.tokens.encode_pair, the
    function fine-tuning uses, which follows lm-eval's own rule (tests/test_tokens.py checks it against HFLM's
    _encode_pair for three kinds of tokenizer). Everything else is lm-eval's own code."""

    class TokenProbLM(base):
        def loglikelihood(self, requests, disable_tqdm=False):
            # lm-eval encodes an empty context without _encode_pair, which would tokenise the mark itself
            empty = [r for r in requests if r.args[0] == "" and _marked_token(r.args[1]) is not None]
            if empty:
                raise ValueError(f"TokenProb needs a prompt to predict after; {len(empty)} requests have an empty one")
            # Every candidate of an item shares its context: encode each context once, not once per candidate
            # (14 candidates for the paper's label words; profiled: a quarter of a CPU classification run). The
            # memo lives for this call only; lm-eval holds every request's ids meanwhile anyway.
            self._encoded_contexts: dict[str, list[int]] = {}
            try:
                return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
            finally:
                del self._encoded_contexts

        def _encode_pair(self, context, continuation):
            memo = getattr(self, "_encoded_contexts", None)
            token_id = _marked_token(continuation)
            if token_id is None:
                # the rule fine-tuning uses too (ptft.tokens), which is lm-eval's own causal-model rule
                return encode_pair(self.tokenizer, context, continuation, self.add_bos_token, encoded=memo)
            return encode_text(self.tokenizer, context, self.add_bos_token, encoded=memo), [token_id]

    TokenProbLM.__name__ = f"TokenProb{base.__name__}"
    return TokenProbLM


def token_prob_lm(share_prefix: bool = False, **kwargs):
    """lm-eval's HFLM with TokenProb's marked continuations (_with_token_prob), and with each task's shared prompt
    prefix run once when share_prefix (ptft.evaluate.prefix.with_shared_prefix). kwargs: HFLM's.

    Batching, truncation, the forward pass and the logits cache that answers every one-token continuation of a
    context from a single pass (HFLM._loglikelihood_tokens, Collator(group_by="contexts")) are lm-eval's own code;
    requests are sorted longest first there, and generation requests likewise (by context length).
    """
    from lm_eval.models.huggingface import HFLM

    cls = _with_token_prob(HFLM)
    return (with_shared_prefix(cls) if share_prefix else cls)(**kwargs)
