"""A replica of the real Hugging Face hub, built from the recorded facts in tests/hub_facts.yaml and served by
tests/hubserver.py: every data set the configs name with its real configs, split names, columns and column types
(ClassLabel names included), a few generated rows per split; loading-script repos that fail in `datasets` exactly as on
the hub (with the hub's parquet conversion on refs/convert/parquet where one exists); and tiny random-weight models of
each family's architecture on the family's branches, with the family's tokenizer conventions (BOS added or not, pad
token or not, EOS) in a byte-level BPE tokenizer trained here with `tokenizers` (nothing is downloaded).

    with replica_hub(tmp_path) as hub:      # HF_ENDPOINT=hub.url points every client at it
        ...
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from hubserver import FakeHub

FACTS = Path(__file__).with_name("hub_facts.yaml")
ROWS = 24  # rows per split: enough for 4-shot prompts, a handful of scored items and a training sample
# A token every gated repo of the replica accepts (the test sets HF_TOKEN to it, as a user who accepted the terms).
REPLICA_TOKEN = "hf_replica_token"
WORDS = ("river", "stone", "city", "north", "market", "garden", "winter", "bridge", "lamp", "harbour", "field", "song")


def load_facts(path: Path = FACTS) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# ----------------------------------------------------------------------------------------------------- data sets


def _text(column: str, split: str, i: int, n_words: int = 8) -> str:
    words = [WORDS[(i * 7 + k * 3 + len(column)) % len(WORDS)] for k in range(n_words)]
    return f"{column} {split} {i}: " + " ".join(words) + "."


def _value(column: str, kind: Any, split: str, i: int) -> Any:
    """One generated value of a column of the given feature type (see the header of hub_facts.yaml)."""
    if kind == "string":
        return _text(column, split, i)
    if kind in ("int32", "int64"):
        return i
    if kind == "float32":
        return round((i * 0.73) % 5.0, 2)
    if kind == "bool":
        return bool(i % 2)
    if kind == "choices":
        return {"text": [_text(f"{column}{k}", split, i, 3) for k in range(4)], "label": ["A", "B", "C", "D"]}
    if kind == "endings":
        return [_text(f"ending{k}", split, i, 4) for k in range(4)]
    if kind == "messages":
        return [{"role": "user", "content": _text("user", split, i, 6)},
                {"role": "assistant", "content": _text("assistant", split, i, 5)}]  # fmt: skip
    if isinstance(kind, dict) and "class_label" in kind:
        return i % len(kind["class_label"])
    if isinstance(kind, dict) and "values" in kind:
        return kind["values"][i % len(kind["values"])]
    if isinstance(kind, dict) and "list" in kind:
        return [_text(column, split, i, 2)] if i % 5 else [_text(column, split, i, 2), _text(column, split, i + 1, 2)]
    raise ValueError(f"hub_facts.yaml: column {column!r} has unknown feature type {kind!r}")


def _feature(kind: Any):
    from datasets import ClassLabel, List, Value

    if kind in ("string", "int32", "int64", "float32", "bool"):
        return Value(kind)
    if kind == "choices":
        return {"text": List(Value("string")), "label": List(Value("string"))}
    if kind == "endings":
        return List(Value("string"))
    if kind == "messages":
        return List({"role": Value("string"), "content": Value("string")})
    if isinstance(kind, dict) and "class_label" in kind:
        return ClassLabel(names=[str(n) for n in kind["class_label"]])
    if isinstance(kind, dict) and "values" in kind:
        return Value("string")
    if isinstance(kind, dict) and "list" in kind:
        return List(Value(kind["list"]))
    raise ValueError(f"hub_facts.yaml: unknown feature type {kind!r}")


def split_parquet(features: dict[str, Any], split: str, n_rows: int) -> bytes:
    """A parquet file of n_rows generated rows with exactly these columns and types (the datasets feature metadata
    travels in the file, as in the hub's own parquet files, so a ClassLabel loads as a ClassLabel)."""
    import io

    import datasets

    rows = {col: [_value(col, kind, split, i) for i in range(n_rows)] for col, kind in features.items()}
    table = datasets.Dataset.from_dict(rows, features=datasets.Features({c: _feature(k) for c, k in features.items()}))
    buf = io.BytesIO()
    table.to_parquet(buf)
    return buf.getvalue()


def _card(configs: dict[str, dict], folder_of: dict[str, str]) -> bytes:
    """A dataset card whose YAML `configs:` maps each config's splits to its parquet files, as on the hub."""
    header: dict[str, Any] = {"configs": [
        {"config_name": name, "data_files": [{"split": s, "path": f"{folder_of[name]}/{s}-*"} for s in cfg["splits"]]}
        for name, cfg in configs.items()
    ]}  # fmt: skip
    return ("---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n# replica of a hub data set (tests/replica.py)\n").encode()


def dataset_commits(repo: str, facts: dict[str, Any], rows: int = ROWS) -> dict[str, dict[str, bytes]]:
    """{branch: files} of one data set repo: main (parquet, or a loading script) and refs/convert/parquet if any."""
    configs = facts["configs"]
    sizes = {name: {s: min(n, rows) for s, n in cfg["splits"].items()} for name, cfg in configs.items()}
    if facts["layout"] == "parquet":
        folder_of = {name: ("data" if name == "default" else name) for name in configs}
        files = {"README.md": _card(configs, folder_of)}
        for name, cfg in configs.items():
            for split, n in sizes[name].items():
                files[f"{folder_of[name]}/{split}-00000-of-00001.parquet"] = split_parquet(cfg["features"], split, n)
        return {"main": files}
    if facts["layout"] != "script":
        raise ValueError(f"hub_facts.yaml: {repo}: layout must be parquet or script, got {facts['layout']!r}")
    script = repo.rsplit("/", 1)[-1] + ".py"
    commits = {"main": {"README.md": b"---\npretty_name: replica\n---\n# defined by a loading script\n",
                        script: b"import datasets\n\nclass Builder(datasets.GeneratorBasedBuilder):\n    pass\n"}}  # fmt: skip
    if facts.get("parquet_conversion"):
        # The hub's conversion: {config}/{split}/0000.parquet on refs/convert/parquet, no card.
        commits["refs/convert/parquet"] = {
            f"{name}/{split}/0000.parquet": split_parquet(cfg["features"], split, sizes[name][split])
            for name, cfg in configs.items()
            for split in cfg["splits"]
        }
    return commits


# -------------------------------------------------------------------------------------------------------- models


def family_tokenizer(tok_facts: dict[str, Any], folder: Path, vocab_size: int = 320) -> Path:
    """A byte-level BPE tokenizer with the family's special tokens and conventions, trained on generated text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if tok_facts["kind"] != "byte_level_bpe":
        raise ValueError(f"hub_facts.yaml: tokenizer kind {tok_facts['kind']!r} is not built by the replica")
    specials = list(dict.fromkeys(t for t in (tok_facts.get("eos_token"), tok_facts.get("bos_token"),
                                              tok_facts.get("pad_token")) if t))  # fmt: skip
    if tok_facts["eos_token"] == "<|endoftext|>" and "<|padding|>" not in specials:
        specials.append("<|padding|>")  # GPT-NeoX's vocabulary has it even where no pad token is configured (Pythia)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    corpus = [_text(w, "corpus", i, 12) for i in range(300) for w in WORDS[:3]]
    tokenizer.train_from_iterator(corpus, trainer)
    if tok_facts.get("add_bos"):
        bos = tok_facts["bos_token"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=tok_facts.get("bos_token"),
                                   eos_token=tok_facts["eos_token"], pad_token=tok_facts.get("pad_token"),
                                   model_max_length=2048)  # fmt: skip
    fast.save_pretrained(folder)
    return folder


def tiny_family_model(model_facts: dict[str, Any], tokenizer_dir: Path, out: Path, seed: int) -> dict[str, bytes]:
    """Repository files of a tiny random model of the family's architecture and the tokenizer (safetensors)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    real = model_facts["config"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = {f"{k}_token_id": (tokenizer.convert_tokens_to_ids(getattr(tokenizer, f"{k}_token"))
                             if getattr(tokenizer, f"{k}_token") else None) for k in ("bos", "eos", "pad")}  # fmt: skip
    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=real["max_position_embeddings"], vocab_size=len(tokenizer))  # fmt: skip
    if "num_key_value_heads" in real:
        size["num_key_value_heads"] = 1
    config = AutoConfig.for_model(real["model_type"], **size, **ids)
    torch.manual_seed(seed)
    folder = out / f"{real['model_type']}-{seed}"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files.update({p.name: p.read_bytes() for p in tokenizer_dir.iterdir() if p.is_file()})
    return files


def model_branches(model_facts: dict[str, Any]) -> list[str]:
    """The family's branch names (main excluded), from the recorded rule and list."""
    family = model_facts["family"]
    if family == "olmo":
        overrides = {int(k): int(v) for k, v in (model_facts.get("tokens_overrides") or {}).items()}
        per_step = int(model_facts["tokens_per_step"])
        return [f"step{s}-tokens{overrides.get(s, s * per_step // 10**9)}B" for s in model_facts["steps"]]
    if family == "pythia":
        b = model_facts["branches"]
        steps = [*b["log_spaced"], *range(b["every"], b["last"] + 1, b["every"])]
        return [f"step{s}" for s in steps]
    if family == "final":
        return []
    raise ValueError(f"hub_facts.yaml: unknown model family {family!r}")


# ---------------------------------------------------------------------------------------------------- the hub


def build_replica(hub: FakeHub, work: Path, facts: dict[str, Any] | None = None, rows: int = ROWS,
                  only: set[str] | None = None) -> FakeHub:  # fmt: skip
    """Commit every recorded data set and model (or those named in `only`) to `hub`. Step branches of a model share
    one tiny model (a commit each); main is its own commit, except where the family's main is a step branch (then
    the same commit)."""
    facts = facts or load_facts()
    if only is not None:
        facts = {kind: {k: v for k, v in facts[kind].items() if k in only} for kind in ("datasets", "models")}
    for repo, ds in facts["datasets"].items():
        for branch, files in dataset_commits(repo, ds, rows).items():
            hub.commit(repo, files, branch=branch, repo_type="dataset")
    for seed, (repo, mf) in enumerate(facts["models"].items()):
        tokenizer_dir = family_tokenizer(mf["tokenizer"], work / f"tokenizer-{seed}")
        files = tiny_family_model(mf, tokenizer_dir, work, seed)
        if mf.get("gated"):
            hub.create_repo(repo, "model", gated=True, tokens=(REPLICA_TOKEN,))
        main = None
        for branch in model_branches(mf):
            sha = hub.commit(repo, files, branch=branch)
            if mf.get("main_step") is not None and re.match(rf"^step{mf['main_step']}(-|$)", branch):
                main = sha
        if main is not None:
            hub.set_branch(repo, "main", main)
        else:
            hub.commit(repo, files, branch="main")
    return hub


@contextlib.contextmanager
def replica_hub(work: Path, rows: int = ROWS) -> Iterator[FakeHub]:
    """The replica, started: point HF_ENDPOINT at hub.url (and HF_TOKEN at REPLICA_TOKEN for gated repos)."""
    work.mkdir(parents=True, exist_ok=True)
    hub = build_replica(FakeHub(), work, rows=rows)
    with hub:
        yield hub


if __name__ == "__main__":  # print the replica's shapes (a quick look while editing hub_facts.yaml)
    facts = load_facts()
    print(json.dumps({repo: {c: sorted(cfg["splits"]) for c, cfg in ds["configs"].items()}
                      for repo, ds in facts["datasets"].items()}, indent=1))  # fmt: skip
