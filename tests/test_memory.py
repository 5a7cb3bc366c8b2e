"""Memory planned before a run: exact parameter counts from configs, the 16-bytes-per-parameter state, sharding, and
a plan over budget that fails naming the settings that fit."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from ptft.memory import (
    GIB,
    MemoryPlanError,
    check_plan,
    finetune_plan,
    model_shape,
    plan_evaluation,
    plan_memory,
)

# allenai/OLMo-1B-hf config.json: the benchmark's copy (bench/finetune_throughput.py, one definition), with the
# model_type a config.json names. OLMo's non-parametric layer norm has no weights; the embedding is tied to the head.
_spec = importlib.util.spec_from_file_location("finetune_throughput", Path(__file__).parents[1] / "bench/finetune_throughput.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
OLMO_1B = {"model_type": "olmo", **_bench.OLMO_1B}
# meta-llama/Meta-Llama-3-8B config.json (from memory of the public file, not fetched here: a guess in its details;
# the hand count below reproduces the 8,030,261,248 parameters the model card's "8B" rounds).
LLAMA_3_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
}


def hand_count_olmo_1b() -> int:
    h, i, v, layers = 2048, 8192, 50304, 16
    per_layer = 4 * h * h + 3 * h * i  # q, k, v, o; gate, up, down; no norm weights
    return layers * per_layer + v * h  # one tied embedding/head matrix


def hand_count_llama_3_8b() -> int:
    h, i, v, layers, kv = 4096, 14336, 128256, 32, 8 * 128
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o; k, v (GQA); MLP; two RMSNorm weights
    return layers * per_layer + 2 * v * h + h  # embedding, untied head, final norm


@pytest.fixture(scope="module")
def olmo_1b():
    return model_shape(OLMO_1B)


@pytest.fixture(scope="module")
def llama_3_8b():
    return model_shape(LLAMA_3_8B)


def test_parameter_counts_match_the_hand_count(olmo_1b, llama_3_8b):
    assert olmo_1b.n_params == hand_count_olmo_1b() == 1_176_764_416
    assert llama_3_8b.n_params == hand_count_llama_3_8b() == 8_030_261_248
    assert llama_3_8b.kv_dim == 1024 and llama_3_8b.layer_params == 218_112_000


@pytest.mark.parametrize("which", ["olmo_1b", "llama_3_8b"])
def test_full_finetuning_holds_16_bytes_per_parameter(which, request):
    """ZeRO Sec. 3.1's 16 bytes per parameter for mixed-precision Adam: here fp32 weights 4, gradients 4, AdamW 8."""
    shape = request.getfixturevalue(which)
    n = hand_count_olmo_1b() if which == "olmo_1b" else hand_count_llama_3_8b()
    plan = plan_memory(shape, micro_batch_size=1, max_length=2048)
    assert (plan.weights, plan.gradients, plan.optimizer) == (4 * n, 4 * n, 8 * n)
    assert plan.sharding_buffers == 0
    sharded = plan_memory(shape, micro_batch_size=1, max_length=2048, sharding="fsdp", processes=2)
    assert (sharded.weights, sharded.gradients, sharded.optimizer) == (2 * n, 2 * n, 4 * n)
    assert sharded.sharding_buffers == 2 * shape.layer_params * 8  # the computed and the prefetched layer
    # the same activations and logits either way: sharding divides state, not the micro-batch's work
    assert (sharded.activations, sharded.logits) == (plan.activations, plan.logits)


def test_activations_follow_the_stated_formula_and_checkpointing_cuts_them(llama_3_8b):
    t, h, kv, i, layers = 2048, 4096, 1024, 14336, 32
    plan = plan_memory(llama_3_8b, micro_batch_size=1, max_length=2048)
    assert plan.activations == layers * t * (12 * h + 4 * kv + 8 * i)
    assert plan.logits == 10 * t * 128256
    checkpointed = plan_memory(llama_3_8b, micro_batch_size=1, max_length=2048, gradient_checkpointing=True)
    assert checkpointed.activations == layers * 2 * t * h + t * (12 * h + 4 * kv + 8 * i)
    assert checkpointed.activations < plan.activations / 10
    assert plan_memory(llama_3_8b, micro_batch_size=2, max_length=2048).activations == 2 * plan.activations


def test_lora_trains_only_the_adapters(olmo_1b):
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    plan = plan_memory(olmo_1b, method="lora", lora_r=16, lora_targets=targets, micro_batch_size=1, max_length=2048)
    h, i = 2048, 8192
    adapters = 16 * 16 * (4 * (h + h) + 2 * (h + i) + (i + h))  # r x (in + out) per targeted Linear, 16 layers
    assert plan.weights == 4 * (hand_count_olmo_1b() + adapters)
    assert (plan.gradients, plan.optimizer) == (4 * adapters, 8 * adapters)


def test_the_paper_llama_setting_fits_two_80gb_gpus_only_sharded(llama_3_8b):
    """The authors' Llama-3-8B run: full fine-tuning on two A100 80 GB, batch 1 x accumulation, max length 2048."""
    settings = {"method": "full", "micro_batch_size": 1, "max_length": 2048, "gradient_checkpointing": True}
    sharded = finetune_plan(llama_3_8b, settings, sharding="fsdp", processes=2, job="finetune llama")
    check_plan(sharded, 80)  # fits: ~60 GiB of state per GPU plus activations
    assert 60 < sharded.total / GIB < 0.9 * 80e9 / GIB
    replicated = finetune_plan(llama_3_8b, settings, sharding="none", processes=2, job="finetune llama")
    with pytest.raises(MemoryPlanError, match=r"does not fit 90% of a 80 GB device.*finetune\.sharding: fsdp"):
        check_plan(replicated, 80, shape=llama_3_8b, ft_set="xsum", lora={"r": 16, "target_modules": ["q_proj"]})


def test_a_plan_over_budget_names_each_setting_that_would_fit(olmo_1b):
    import re

    settings = {"method": "full", "micro_batch_size": 4, "max_length": 2048, "gradient_checkpointing": False}
    plan = finetune_plan(olmo_1b, settings, sharding="none", processes=1, job="finetune tiny/xsum")
    assert 30 < plan.total / GIB < 40  # 16 x 1.18B = 17.5 GiB of state plus 4 x 2048 tokens of activations, logits
    lora = {"r": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    with pytest.raises(MemoryPlanError) as err:
        check_plan(plan, 30, shape=olmo_1b, ft_set="xsum", lora=lora)
    message = str(err.value)
    assert message.startswith("finetune tiny/xsum: ") and "micro_batch_size=4" in message
    assert "does not fit 90% of a 30 GB device" in message
    budget = 0.9 * 30e9
    gpus = int(re.search(r"finetune\.sharding: fsdp with resources\.finetune\.gpu x nodes >= (\d+) GPUs", message).group(1))
    assert plan_memory(olmo_1b, micro_batch_size=4, max_length=2048, sharding="fsdp", processes=gpus).total <= budget
    assert plan_memory(olmo_1b, micro_batch_size=4, max_length=2048, sharding="fsdp", processes=gpus - 1).total > budget
    assert "finetune.ft_sets.xsum.gradient_checkpointing: true" in message
    assert plan_memory(olmo_1b, micro_batch_size=4, max_length=2048, gradient_checkpointing=True).total <= budget
    mbs = int(re.search(r"finetune\.ft_sets\.xsum\.micro_batch_size: (\d+) \(gradient accumulation", message).group(1))
    assert plan_memory(olmo_1b, micro_batch_size=mbs, max_length=2048).total <= budget
    assert plan_memory(olmo_1b, micro_batch_size=2 * mbs, max_length=2048).total > budget  # the largest that fits
    assert "finetune.method: lora (r 16, on q_proj, k_proj" in message
    check_plan(plan, 80)  # and on an 80 GB device it fits as configured
    # nothing single fits a device smaller than the weights' activations alone: the error says to combine
    with pytest.raises(MemoryPlanError, match="no single change fits: combine finetune.sharding: fsdp"):
        check_plan(plan, 1, shape=olmo_1b, ft_set="xsum", lora=lora)


def test_evaluation_plans_weights_cache_and_logits(olmo_1b):
    plan = plan_evaluation(olmo_1b, batch_size=4)
    t = 4 * 2048
    assert plan.weights == 4 * hand_count_olmo_1b()
    assert plan.activations == 2 * 16 * 2048 * t * 4 and plan.logits == 8 * t * 50304


def test_model_shape_reads_a_checkpoint_folder_and_refuses_a_config_without_model_type(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps(OLMO_1B))
    assert model_shape(tmp_path).n_params == hand_count_olmo_1b()
    with pytest.raises(ValueError, match="has no model_type"):
        model_shape({k: v for k, v in OLMO_1B.items() if k != "model_type"})


# ---------------------------------------------------------------- the config check


def _params() -> dict:
    return yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def test_the_config_check_plans_only_when_gpu_memory_is_given_and_fails_naming_the_knobs(capsys):
    from ptft.checks import validate
    from ptft.config import ConfigError

    params = _params()
    validate(copy.deepcopy(params))
    assert "memory plan" not in capsys.readouterr().err  # the CPU study plans nothing
    params["resources"] = {"finetune": {"gpu": 1, "gpu_mem_gb": 80}, "evaluate": {"gpu": 1, "gpu_mem_gb": 80}}
    validate(copy.deepcopy(params))
    err = capsys.readouterr().err
    assert "memory plan: finetune tiny-olmo/news_sum: " in err and "memory plan: evaluate tiny-olmo: " in err
    # the tiny model (0.13 GiB planned) on a 0.12 GB device: over budget, and the error says what to change
    params["resources"]["finetune"]["gpu_mem_gb"] = 0.12
    with pytest.raises(ConfigError, match=r"params: finetune tiny-olmo/\w+: .* does not fit .*any one of these fits: .*gradient_checkpointing: true"):
        validate(copy.deepcopy(params), source="params")


def test_the_llama_config_plans_its_fine_tunes_within_two_80gb_gpus(tmp_path, capsys):
    """configs/paper-llama3-8b.yaml as shipped (FSDP over its 2 GPUs, checkpointing, micro-batch 1) fits; the same
    config without sharding fails at the config check, before any job, naming the setting that fits."""
    from ptft.checks import validate
    from ptft.config import finetune_settings
    from ptft.memory import plan_study

    config = validate(yaml.safe_load((Path(__file__).parents[1] / "configs/paper-llama3-8b.yaml").read_text()))
    (tmp_path / "checkpoints/llama3-8b/main").mkdir(parents=True)
    (tmp_path / "checkpoints/llama3-8b/main/config.json").write_text(json.dumps(LLAMA_3_8B))
    capsys.readouterr()
    plans = plan_study(config, project_dir=tmp_path)
    assert len(plans) == len(config["finetune"]["ft_sets"])  # evaluation has no gpu_mem_gb: not planned
    assert all(plan.total / GIB < 0.9 * 80e9 / GIB for plan in plans)
    assert finetune_settings(config, "xsum")["batch_size"] == 16  # the paper's Llama recipe
    config["finetune"]["sharding"] = "none"
    with pytest.raises(MemoryPlanError, match=r"finetune llama3-8b/\w+: .* does not fit .*finetune\.sharding: fsdp"):
        plan_study(config, project_dir=tmp_path)
