"""Rehearsal: a study config's whole grid (every checkpoint x training set x eval set x prompt format) run with tiny
stand-ins before a GPU-hour is spent, in a folder of its own (rehearsal/<study>/, see the Snakefile).

    make rehearse CONFIG=configs/paper-olmo1b.yaml
    # = snakemake --configfile configs/paper-olmo1b.yaml --config rehearsal=True ...

`rehearsal_config` shrinks the settings that cost time and keeps everything that names something real: each
checkpoint still resolves to its hub branch and commit, each data set still loads its real repo, config, split and
columns, lm-eval still loads its own tasks. The materialize jobs replace each checkpoint's weights with a random model
of the same architecture and tokenizer (`standin_checkpoint`: the real config.json with its layers shrunk, the real
tokenizer files; no weights are downloaded).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

REHEARSAL_DIR = "rehearsal"
N_TRAIN = 8  # training rows per data set: one optimizer step of batch N_TRAIN per fine-tune
N_TEST = 4  # scored rows per data set
EVAL_LIMIT = 3  # items scored per eval set x format (and per lm-eval task)
BOOTSTRAP_RESAMPLES = 50
TRANSFER_RESAMPLES = 200
# Every job's request in a rehearsal (a few tiny models fit in this on any machine).
REHEARSAL_RESOURCES = {"gpu": 0, "mem_mb": 4000, "runtime": 30}
# The stand-in model: the real architecture (model_type, vocabulary, context, special tokens) with these sizes.
STANDIN_SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
STANDIN_KV_HEADS = 1
# Files of a hub checkpoint a rehearsal downloads: its configs and tokenizer, never weights.
STANDIN_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken"]


def rehearsal_dir(config: dict[str, Any]) -> str:
    """The folder (relative to the project) a rehearsal of this study writes everything to."""
    return f"{REHEARSAL_DIR}/{config['study']}"


def _cap(value: int | None, cap: int) -> int:
    return cap if value is None else min(int(value), cap)


def rehearsal_config(config: dict[str, Any]) -> dict[str, Any]:
    """Turn a validated study config (defaults filled) into its rehearsal, in place; return it.

    Data sets: n_train <= N_TRAIN, n_test <= N_TEST (the same seeded draws, fewer rows). Fine-tuning: one epoch of one
    batch of N_TRAIN (one optimizer step), one thread. Evaluation: EVAL_LIMIT items per condition, every format and
    shot count kept. Resources: no GPU, REHEARSAL_RESOURCES. The revisions lock is the rehearsal folder's own.
    """
    config["rehearsal"] = True
    config["revisions_lock"] = f"{rehearsal_dir(config)}/rehearsal.lock.yaml"  # relative to the project, like any path
    for spec in config["data"]["datasets"].values():
        if spec.pop("train_fraction", None) is not None:  # a share of a large split (Tulu's 5%): a few rows instead
            spec["n_train"] = N_TRAIN
        if "n_train" in spec or spec.get("source") == "hub":
            spec["n_train"] = _cap(spec.get("n_train"), N_TRAIN)
        if "n_test" in spec or spec.get("source") == "hub":
            spec["n_test"] = _cap(spec.get("n_test"), N_TEST)
    ft = config["finetune"]
    one_step = {"epochs": 1, "batch_size": N_TRAIN, "micro_batch_size": N_TRAIN, "n_train": None, "threads": 1}
    ft["defaults"] = {**ft.get("defaults", {}), **one_step}
    for name, overrides in ft["ft_sets"].items():
        ft["ft_sets"][name] = {k: v for k, v in (overrides or {}).items() if k not in one_step}
    ev = config["evaluate"]
    ev.update(limit=EVAL_LIMIT, batch_size=8, bootstrap_resamples=BOOTSTRAP_RESAMPLES, threads=1)
    if "transfer_test" in config.get("analysis", {}):
        config["analysis"]["transfer_test"]["resamples"] = TRANSFER_RESAMPLES
    if "bootstrap" in config.get("analysis", {}):  # the findings' paired item bootstrap
        config["analysis"]["bootstrap"]["resamples"] = BOOTSTRAP_RESAMPLES
    for phase in config.get("resources", {}).values():  # a workstation's or a CI runner's CPU job
        if isinstance(phase, dict):
            phase.update({k: v for k, v in REHEARSAL_RESOURCES.items() if k in phase})
    for model in config["models"].values():
        if model.get("source") == "embedded":
            # The embedded study is already tiny; its pre-training shrinks to a few steps of the same architecture.
            model.get("pretrain", {}).update({"threads": 1})
    return config


def _shrink(cfg: Any) -> dict[str, Any]:
    """Set the stand-in sizes on a transformers config; return what was changed (old values)."""
    changed: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        changed[key] = getattr(cfg, key, None)
        setattr(cfg, key, value)

    for key, value in STANDIN_SIZE.items():
        put(key, value)
    if getattr(cfg, "num_key_value_heads", None) is not None:
        put("num_key_value_heads", STANDIN_KV_HEADS)
    if getattr(cfg, "head_dim", None) is not None:
        put("head_dim", STANDIN_SIZE["hidden_size"] // STANDIN_SIZE["num_attention_heads"])
    if isinstance(getattr(cfg, "layer_types", None), list):
        put("layer_types", cfg.layer_types[: STANDIN_SIZE["num_hidden_layers"]])
    return changed


def standin_checkpoint(snapshot: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """Write a random model of the architecture in snapshot/config.json (layers shrunk to STANDIN_SIZE) with every
    tokenizer and config file of the snapshot into out_dir (safetensors); return what was shrunk.

    Raises ValueError naming the folder when its config does not load without remote code.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(snapshot, trust_remote_code=False, local_files_only=True)
    except (ValueError, OSError, KeyError) as err:
        raise ValueError(f"{snapshot}: config.json does not load without remote code ({err})") from None
    changed = _shrink(cfg)
    for path in snapshot.iterdir():
        if path.is_file() and path.name != "config.json" and not path.name.endswith(".safetensors.index.json"):
            shutil.copy2(path, out_dir / path.name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out_dir, safe_serialization=True)
    return {"standin_of": {k: v for k, v in changed.items()}, **{k: getattr(cfg, k) for k in STANDIN_SIZE}}
