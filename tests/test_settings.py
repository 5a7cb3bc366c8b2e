"""ptft.settings: the dataclasses hold the defaults; the schema agrees with them key by key and role by role."""

import dataclasses

import pytest

from ptft.config import ConfigError, load_schema, role_of
from ptft.settings import (
    EvaluateScheduling,
    EvaluateSettings,
    FinetuneScheduling,
    FinetuneSettings,
    LoraSettings,
)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _defaults(cls) -> dict:
    return {f.name: _plain(getattr(cls(), f.name)) for f in dataclasses.fields(cls) if f.name != "scheduling"}


def _schema_property(schema, path):
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node


SCHEMA = load_schema()
FT = SCHEMA["properties"]["finetune"]["properties"]
FT_DEFAULTS = FT["defaults"]["default"]  # the block every training set inherits


def test_finetune_defaults_match_the_schema_field_by_field():
    ours = {**_defaults(FinetuneSettings), **_defaults(FinetuneScheduling)}
    # finetune.method and finetune.lora are study-wide keys that travel in each set's slice
    assert ours.pop("method") == FT["method"]["default"]
    assert ours.pop("lora") is None  # only a LoRA run holds lora settings
    assert ours == FT_DEFAULTS
    assert _defaults(LoraSettings) == {key: spec["default"] for key, spec in FT["lora"]["properties"].items()}


def test_evaluate_defaults_match_the_schema_field_by_field():
    section = SCHEMA["properties"]["evaluate"]["properties"]
    ours = {**_defaults(EvaluateSettings), **_defaults(EvaluateScheduling)}
    assert set(ours) == set(section)  # every field is a schema key and every key a field
    without_default = {key for key, spec in section.items() if "default" not in spec}
    # eval_sets: a study must name them (the dataclass's () is for direct calls); lm_eval_data: absent unless given,
    # so adding the key reran no finished study's evaluations (Snakemake params compare the section as given)
    assert without_default == {"eval_sets", "lm_eval_data"}
    assert {key: ours[key] for key in section if key in section and key not in without_default} == {
        key: spec["default"] for key, spec in section.items() if "default" in spec
    }


@pytest.mark.parametrize(
    "cls, path",
    [
        (FinetuneSettings, "finetune.defaults"),
        (FinetuneScheduling, "finetune.defaults"),
        (LoraSettings, "finetune.lora"),
        (EvaluateSettings, "evaluate"),
        (EvaluateScheduling, "evaluate"),
    ],
)
def test_each_field_sits_with_its_schema_role(cls, path):
    wanted = "scheduling" if cls.__name__.endswith("Scheduling") else "science"
    for f in dataclasses.fields(cls):
        if f.name == "scheduling":
            continue
        where = f"finetune.{f.name}" if f.name in ("method", "lora") and path == "finetune.defaults" else f"{path}.{f.name}"
        assert role_of(where) in (wanted, None), f"{cls.__name__}.{f.name} ({where}) has role {role_of(where)}"


def test_from_config_splits_scheduling_and_rejects_unknown_keys():
    settings = FinetuneSettings.from_config({"lr": 1e-3, "micro_batch_size": 2, "threads": 4}, "xsum")
    assert (settings.lr, settings.scheduling.micro_batch_size, settings.scheduling.threads) == (1e-3, 2, 4)
    assert settings.epochs == 3 and settings.lora is None  # defaults for what the slice leaves out
    assert FinetuneSettings.from_config(settings.record(), "xsum") == settings  # provenance round-trips
    assert "scheduling.micro_batch_size: 2" in settings.describe().splitlines()
    with pytest.raises(ConfigError, match=r"finetune.ft_sets.xsum: unknown setting\(s\) \['learning_rate'\]"):
        FinetuneSettings.from_config({"learning_rate": 1e-3}, "xsum")
    with pytest.raises(ConfigError, match=r"evaluate: unknown setting\(s\) \['shot'\]"):
        EvaluateSettings.from_config({"shot": [4]})
    lora = FinetuneSettings.from_config({"method": "lora", "lora": {"r": 4, "target_modules": ["q_proj"]}})
    assert lora.lora == LoraSettings(r=4, target_modules=("q_proj",))
