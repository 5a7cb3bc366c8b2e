"""One settings object per job kind: the home of every fine-tuning and evaluation default.

Each job builds its object once from its merged config slice (ptft.config.finetune_settings, the evaluate section),
prints it at the top of its log and saves it in its output's provenance. Science settings are the fields of
FinetuneSettings / EvaluateSettings; scheduling settings (threads, micro-batch and inference batch sizes, save
interval) live in the nested `scheduling` object, so they never mix with what reruns jobs. The schema
(schemas/config.schema.yaml) repeats these defaults for Snakemake's validate(); tests/test_settings.py checks that it
agrees with the dataclasses field by field, and that every field's schema role matches the object it sits in.
This module imports nothing of ptft's: ptft.config builds its fine-tuning slices on these defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping



class ConfigError(ValueError):
    """A config value is missing, misspelt, ill-typed or refers to something that does not exist.

    Defined here, the lowest layer (ptft.config re-exports it), so that ptft.config can take its defaults from the
    settings objects without an import circle."""


def _build(cls, values: Mapping[str, Any], where: str, nested: dict[str, type] | None = None):
    """cls(**values) with the scheduling keys moved into the nested object; ConfigError names any unknown key."""
    nested = nested or {}
    own = {f.name for f in dataclasses.fields(cls)} - set(nested)
    inner = {name: {f.name for f in dataclasses.fields(kind)} for name, kind in nested.items()}
    unknown = sorted(set(values) - own - set().union(*inner.values()) - set(nested))
    if unknown:
        known = sorted(own | set().union(*inner.values()))
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {known}")
    kwargs = {key: value for key, value in values.items() if key in own}
    for name, kind in nested.items():
        given = dict(values.get(name) or {})
        given.update({key: value for key, value in values.items() if key in inner[name]})
        kwargs[name] = kind(**given)
    return cls(**kwargs)


def _lines(obj: Any, prefix: str = "") -> list[str]:
    """One `name: value` line per setting, nested objects dotted (litgpt prints its config this way)."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(_lines(value, f"{prefix}{f.name}."))
        else:
            out.append(f"{prefix}{f.name}: {value!r}")
    return out


class _Settings:
    """What every settings object offers: its log lines, its provenance record and a flat dict."""

    def describe(self) -> str:
        """The settings, one `name: value` line each (scheduling ones as `scheduling.<name>`), for the job's log."""
        return "\n".join(_lines(self))

    def record(self) -> dict[str, Any]:
        """dataclasses.asdict: what provenance stores (JSON-able)."""
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Science and scheduling settings in one dict, as the config slice names them (ptft.memory reads this)."""
        out = self.record()
        return {**{k: v for k, v in out.items() if k != "scheduling"}, **out.get("scheduling", {})}


@dataclass(frozen=True)
class LoraSettings:
    """finetune.lora: rank r, scale numerator alpha (updates scale by alpha / r), adapter input dropout, and the
    linear layers that get adapters (None: ptft.finetune.LORA_TARGET_MODULES for the model type)."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FinetuneScheduling:
    """Fine-tuning settings that change speed or memory, not results (finetune.defaults, role scheduling)."""

    micro_batch_size: int = 8
    threads: int = 1
    packing: bool = True
    save_steps: int | None = 200
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class FinetuneSettings(_Settings):
    """One training set's fine-tuning settings (schemas/config.schema.yaml documents each key).

    The paper's recipe (Sun & Dredze 2024, section 3 and App. B): AdamW at peak lr with linear decay after
    warmup_ratio of the optimizer steps, effective batch batch_size (examples per optimizer step), epochs passes,
    sequences of at most max_length tokens. method is the study-wide finetune.method; lora holds finetune.lora when
    it is "lora" (None otherwise). Build with from_config; ConfigError names an unknown key.
    """

    epochs: int = 3
    lr: float = 2.0e-5
    batch_size: int = 8
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_length: int = 2048
    seed: int = 42
    n_train: int | None = None
    bf16: bool | str = "auto"
    max_grad_norm: float | None = 1.0
    loss_weighting: str = "token"
    assistant_turns: str = "all"
    method: str = "full"
    lora: LoraSettings | None = None
    scheduling: FinetuneScheduling = field(default_factory=FinetuneScheduling)

    def __post_init__(self):
        if self.method not in ("full", "lora"):
            raise ConfigError(f"finetune.method must be 'full' or 'lora', got {self.method!r}")
        if self.method == "lora" and not isinstance(self.lora, LoraSettings):
            object.__setattr__(self, "lora", LoraSettings(**(self.lora or {})))
        if isinstance(self.lora, LoraSettings) and isinstance(self.lora.target_modules, list):
            object.__setattr__(self, "lora", dataclasses.replace(self.lora, target_modules=tuple(self.lora.target_modules)))

    @classmethod
    def from_config(cls, values: "Mapping[str, Any] | FinetuneSettings", ft_set: str = "?") -> "FinetuneSettings":
        """From a merged slice (ptft.config.finetune_settings, science and scheduling keys side by side, or a
        `scheduling` mapping); keys not given take the defaults above. An object passes through unchanged."""
        if isinstance(values, cls):
            return values
        values = dict(values)
        if values.get("method", "full") != "lora":
            values.pop("lora", None)  # the study's lora block only applies to LoRA runs
        return _build(cls, values, f"finetune.ft_sets.{ft_set}", {"scheduling": FinetuneScheduling})


@dataclass(frozen=True)
class EvaluateScheduling:
    """Evaluation settings that change speed, not scores (evaluate section, role scheduling)."""

    batch_size: int | str = 32
    threads: int = 1
    min_test_items: int = 30  # read when the study is planned (ptft.checks.small_test_warnings); a job ignores it
    share_prefix: bool = True  # run a prefix shared by an eval set x format's prompts once (ptft.evaluate.prefix)
    decode_cache: str = "dynamic"  # greedy decoding's KV cache with share_prefix: "dynamic" or "static"


@dataclass(frozen=True)
class EvaluateSettings(_Settings):
    """Every evaluation job's settings: the evaluate section (schemas/config.schema.yaml documents each key).

    eval_sets has no default in the schema (a study must name them); it is empty when evaluate() is called with a
    dict that leaves it out, as the tests and bench/eval_throughput.py do (evaluate() takes the sets' specs as its
    own argument). Build with from_config; ConfigError names an unknown key.
    """

    eval_sets: tuple[str, ...] = ()
    prompt_formats: tuple[str, ...] = ("default", "instruct", "io")
    shots: tuple[int, ...] = (4,)
    limit: int | None = None
    dtype: str = "auto"
    backend: str = "hf"
    fewshot_seed: int = 1234
    fewshot_source: str = "train"
    shots_overflow: str | Mapping[str, str] = "drop_shots"
    classification: str = "loglikelihood"
    rouge_stemmer: bool = False
    stop_sequences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lm_eval_shots: int | None = None
    lm_eval_split: str = "default"
    bootstrap_resamples: int = 1000
    lm_eval_tasks: tuple[str | Mapping[str, str], ...] = ()
    lm_eval_data: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    scheduling: EvaluateScheduling = field(default_factory=EvaluateScheduling)

    def __post_init__(self):
        for name in ("eval_sets", "prompt_formats", "shots", "lm_eval_tasks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "stop_sequences", {k: tuple(v) for k, v in (self.stop_sequences or {}).items()})

    @classmethod
    def from_config(cls, values: "Mapping[str, Any] | EvaluateSettings") -> "EvaluateSettings":
        """From the evaluate section (science and scheduling keys side by side, or a `scheduling` mapping); keys not
        given take the defaults above. An object passes through unchanged."""
        if isinstance(values, cls):
            return values
        return _build(cls, values, "evaluate", {"scheduling": EvaluateScheduling})

    def config(self) -> dict[str, Any]:
        """The settings as the evaluate section spells them (lists, scheduling keys beside the science ones)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.flat().items()}
