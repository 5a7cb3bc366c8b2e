"""ptft.dvc_stages: every study's DVC pipeline from its config. Every top-level science key of a config is a params
dependency of a stage and every local file a deps; the committed dvc.yaml is params.yaml's, generated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ptft.config import setting_roles
from ptft.dvc_stages import NOT_PARAMS, local_files, pipeline_path, render, stages

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in [ROOT / "params.yaml", *ROOT.glob("configs/**/*.yaml"),
                                                    ROOT / "tests/integration/config.yaml"]
                 if not p.name.endswith(".lock.yaml"))  # fmt: skip


def load(configfile: str) -> dict:
    return yaml.safe_load((ROOT / configfile).read_text())


def science_keys(config: dict) -> set[str]:
    """The config's top-level keys with at least one science setting (the schema's x-ptft-role)."""
    roles = setting_roles()
    return {key for key in config if any(r == "science" for k, r in roles.items() if k.split(".")[0] == key)}


def test_the_committed_dvc_yaml_is_params_yaml_s_pipeline():
    assert (ROOT / "dvc.yaml").read_text() == render("params.yaml", load("params.yaml")), \
        "dvc.yaml is out of date: python -m ptft.dvc_stages --configfile params.yaml"


@pytest.mark.parametrize("configfile", CONFIGS)
def test_every_science_key_and_local_file_reaches_a_stage(configfile):
    config = load(configfile)
    pipeline = stages(configfile, config)["stages"]
    reached = {key.split(".")[0] for stage in pipeline.values() for entry in stage["params"] for key in entry[configfile]}
    missing = science_keys(config) - reached
    assert not missing, f"{configfile}: {sorted(missing)} reach no stage's params (ptft.dvc_stages.STAGE_PARAMS)"
    assert not reached & set(NOT_PARAMS)
    deps = {dep for stage in pipeline.values() for dep in stage["deps"]}
    files = [f for group in local_files(config).values() for f in group]
    assert not set(files) - deps, f"{configfile}: local files that are no stage's deps"
    # each stage's outs lie in the study's folder
    folder = "rehearsal/" if config.get("rehearsal") else f"studies/{config.get('study', 'study')}/"
    assert all(next(iter(o)).startswith(folder) for stage in pipeline.values() for o in stage["outs"])


def test_every_key_of_the_schema_is_read_by_a_stage_or_said_not_to_be():
    from ptft.dvc_stages import STAGE_PARAMS

    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    staged = {key.split(".")[0] for keys in STAGE_PARAMS.values() for key in keys}
    assert set(schema["properties"]) - staged - set(NOT_PARAMS) == set()


def test_a_missing_section_is_no_dependency_and_local_files_are_deps():
    """configs/examples/custom-tasks.yaml has no analysis: section (it was a `dvc repro` error) and local data."""
    configfile = "configs/examples/custom-tasks.yaml"
    config = load(configfile)
    assert "analysis" not in config
    pipeline = stages(configfile, config)["stages"]
    assert pipeline["analysis"]["params"] == [{configfile: ["finetune.ft_sets", "data.datasets", "evaluate.eval_sets",
                                                            "tasks"]}]  # fmt: skip
    assert "tasks" in pipeline["data"]["params"][0][configfile]  # a set's fields and labels
    assert "configs/examples/data/headlines.jsonl" in pipeline["data"]["deps"]
    assert pipeline["data"]["wdir"] == "../.." and pipeline_path(configfile, config) == "studies/custom-tasks/dvc.yaml"
    assert "--configfile configs/examples/custom-tasks.yaml" in pipeline["data"]["cmd"]
    assert pipeline["data"]["outs"] == [{"studies/custom-tasks/data": {"persist": True}}]


def test_a_local_model_s_checkpoint_folders_are_deps_and_hub_weights_are_not_cached_twice():
    config = {"study": "x", "models": {"mine": {"source": "local", "path": "ckpts/step{checkpoint}", "checkpoints": [0, 10]},
                                       "hubbed": {"source": "hub", "repo": "a/b", "checkpoints": ["main"]}},
              "data": {"datasets": {}}, "finetune": {"ft_sets": {}}, "evaluate": {"eval_sets": []}}  # fmt: skip
    pipeline = stages("configs/x.yaml", config)["stages"]
    assert {"ckpts/step0", "ckpts/step10"} <= set(pipeline["checkpoints"]["deps"])
    assert pipeline["checkpoints"]["outs"] == [{"studies/x/checkpoints": {"persist": True, "cache": False}}]
