"""Checkpoints shipped as one GGUF file, on disk or inside an installed Python package (source: gguf): the file is
read by transformers' own GGUF loader (dequantized to torch) and written as an ordinary checkpoint folder
(safetensors, config.json, the tokenizer with its chat template), so everything downstream reads it as any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptft.config import ConfigError
from ptft.packaged import packaged_path
from ptft.provenance import sha256_file


def gguf_file(model: str, label: str | int, spec: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """(the .gguf file, its identity for provenance) of models.<model>, a source: gguf model.

    spec["gguf"]: {file} a path, or {package, version, file} with file inside the installed distribution `package`
    (importlib.metadata, nothing imported), whose installed version must equal `version`. The only checkpoint label
    is "main" (a GGUF file is one released model); its step and tokens come from spec["main"]. identity: package,
    version, file, gguf_sha256, step, tokens. Raises ConfigError naming the key for another label, a missing package
    or file, or another installed version.
    """
    where = f"models.{model}"
    if str(label) != "main":
        raise ConfigError(f"{where}.checkpoints: a GGUF model has one checkpoint, main; got {label!r}")
    source, main = spec["gguf"], spec["main"]
    package = source.get("package")
    if package is None:
        path = Path(source["file"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"{where}.gguf.file: {path} is not a file")
    else:
        path = packaged_path(package, source["version"], source["file"], f"{where}.gguf")
    identity = {"package": package, "version": source.get("version") if package else None, "file": source["file"],
                "gguf_sha256": sha256_file(path), "step": int(main["step"]), "tokens": int(main["tokens"])}  # fmt: skip
    return path, identity


def convert_gguf(path: Path, out_dir: Path, where: str) -> dict[str, str]:
    """Write the model and tokenizer of GGUF file `path` to out_dir as a checkpoint folder (float32 safetensors,
    config.json without the GGUF quantization entry, tokenizer files with the chat template the file carries);
    return the weights' sha256 by file name. transformers' loader (from_pretrained(folder, gguf_file=name), with the
    gguf package) does the reading and dequantizing. Raises ConfigError naming `where` when it cannot read the file.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    except (ValueError, OSError, KeyError, ImportError) as err:
        raise ConfigError(f"{where}: transformers cannot read {path} as GGUF ({type(err).__name__}: {err})") from None
    # The loader dequantizes every tensor but leaves a GGUF quantizer on the model, which refuses to save: the same
    # weights go into a plain model of the same config, without the quantization entry.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(loaded).__name__]
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {p.name: sha256_file(p) for p in sorted(Path(out_dir).glob("*.safetensors"))}
