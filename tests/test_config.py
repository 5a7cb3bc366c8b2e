import copy
import os
from pathlib import Path

import pytest
import yaml

from ptft.config import ConfigError, finetune_settings, previous_step, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("path", [ROOT / "params.yaml", ROOT / "tests/integration/config.yaml"])
def test_shipped_configs_validate(path):
    config = validate(yaml.safe_load(path.read_text()), source=str(path))
    assert config["offline"] is True


def test_defaults_are_filled(params):
    del params["evaluate"]["prompt_formats"]
    config = validate(params)
    assert config["evaluate"]["prompt_formats"] == ["default", "instruct", "io"]


def test_misspelt_key_is_named(params):
    params["finetune"]["defaults"]["lrr"] = params["finetune"]["defaults"].pop("lr")
    with pytest.raises(ConfigError, match=r"finetune\.defaults: Additional properties .*'lrr'"):
        validate(params)


def test_ill_typed_key_is_named(params):
    params["finetune"]["defaults"]["epochs"] = "two"
    with pytest.raises(ConfigError, match=r"finetune\.defaults\.epochs: 'two' is not of type 'integer'"):
        validate(params)


def test_unknown_ft_set_is_named(params):
    params["finetune"]["ft_sets"]["nope"] = {}
    with pytest.raises(ConfigError, match=r"finetune\.ft_sets\.nope is not a data set"):
        validate(params)


def test_unknown_eval_set_is_named(params):
    params["evaluate"]["eval_sets"].append("ghost")
    with pytest.raises(ConfigError, match="'ghost'"):
        validate(params)


def test_batch_must_divide(params):
    params["finetune"]["ft_sets"]["news_sum"] = {"batch_size": 8, "micro_batch_size": 3}
    with pytest.raises(ConfigError, match="news_sum: batch_size 8 is not a multiple of micro_batch_size 3"):
        validate(params)


def test_finetune_settings_layering(params):
    params["finetune"]["ft_sets"]["news_sum"] = {"lr": 5e-4}
    config = validate(copy.deepcopy(params))
    news = finetune_settings(config, "news_sum")
    other = finetune_settings(config, "places_nli")
    assert news["lr"] == 5e-4 and other["lr"] == params["finetune"]["defaults"]["lr"]
    assert news["warmup_ratio"] == 0.03  # from params.yaml's defaults
    assert news["n_train"] is None  # from the schema's defaults


def test_previous_step(params):
    config = validate(params)
    steps = sorted(config["models"]["tiny-olmo"]["checkpoints"])
    assert previous_step(config, "tiny-olmo", steps[0]) is None
    assert previous_step(config, "tiny-olmo", steps[2]) == steps[1]


def test_lm_eval_tasks_default_empty_and_standins_are_checked(params):
    assert validate(copy.deepcopy(params))["evaluate"]["lm_eval_tasks"] == []
    params["evaluate"]["lm_eval_tasks"] = ["arc_easy", {"name": "sciq_mini", "task": "sciq", "from": "science_qg"}]
    assert validate(copy.deepcopy(params))["evaluate"]["lm_eval_tasks"][0] == "arc_easy"
    params["evaluate"]["lm_eval_tasks"][1]["from"] = "places_nli"
    with pytest.raises(ConfigError, match=r"stand-in 'sciq_mini': 'from' must name a question_generation set"):
        validate(params)
    params["evaluate"]["lm_eval_tasks"][1].update({"from": "science_qg", "task": "boolq"})
    with pytest.raises(ConfigError, match=r"lm_eval_tasks"):
        validate(params)


def test_cluster_resources_default_to_cpu_jobs(params):
    config = validate(params)
    assert set(config["resources"]) == {"pretrain", "materialize", "finetune", "evaluate"}
    assert {phase: r["gpu"] for phase, r in config["resources"].items()} == {
        "pretrain": 0, "materialize": 0, "finetune": 0, "evaluate": 0
    }
    assert config["resources"]["finetune"]["runtime"] == 240


def test_gpu_request_is_validated(params):
    params["resources"] = {"finetune": {"gpu": 1, "cpus_per_gpu": 8, "mem_mb": 64000, "runtime": 720}}
    config = validate(params)
    assert config["resources"]["finetune"]["gpu"] == 1
    assert config["resources"]["evaluate"]["gpu"] == 0
    params["resources"]["finetune"]["gpus"] = 1
    with pytest.raises(ConfigError, match=r"resources\.finetune: Additional properties .*'gpus'"):
        validate(params)


def test_put_first_on_path_moves_the_folder_to_the_front_once(monkeypatch, tmp_path):
    from ptft.config import put_first_on_path

    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", str(tmp_path), "/bin"]))
    put_first_on_path(tmp_path)
    assert os.environ["PATH"].split(os.pathsep) == [str(tmp_path), "/usr/bin", "/bin"]


def _rename_set(params, old, new):
    params["data"]["datasets"][new] = params["data"]["datasets"].pop(old)
    params["evaluate"]["eval_sets"] = [new if s == old else s for s in params["evaluate"]["eval_sets"]]
    if old in params["finetune"]["ft_sets"]:
        params["finetune"]["ft_sets"][new] = params["finetune"]["ft_sets"].pop(old)


def test_an_lm_eval_task_named_like_an_eval_set_is_rejected_at_planning(params):
    # configs/paper-olmo1b.yaml once had eval set `sciq` and lm-eval task `sciq`: every evaluate job failed after planning.
    _rename_set(params, "science_qg", "sciq")
    params["evaluate"]["lm_eval_tasks"] = ["sciq"]
    with pytest.raises(ConfigError, match=r"lm_eval_tasks entry 'sciq' is also the name of an eval set"):
        validate(copy.deepcopy(params))
    params["evaluate"]["lm_eval_tasks"] = [{"name": "sciq", "task": "sciq", "from": "sciq"}]
    with pytest.raises(ConfigError, match=r"lm_eval_tasks entry 'sciq' is also the name of an eval set"):
        validate(params)


def test_a_native_task_must_exist_in_the_installed_lm_eval(params):
    params["evaluate"]["lm_eval_tasks"] = ["arc_easy", "arc_easiest"]
    with pytest.raises(ConfigError, match=r"'arc_easiest' is not an lm-eval task"):
        validate(params)


def test_native_task_metrics_are_read_from_the_tasks_own_yaml():
    from ptft.lmeval_tasks import task_metrics, task_yaml

    assert task_metrics("boolq") == ["acc"]  # lm_eval/tasks/super_glue/boolq/default.yaml: acc only
    assert task_metrics("arc_challenge") == ["acc", "acc_norm"]  # through `include: arc_easy.yaml`
    assert task_yaml("arc_challenge").name == "arc_challenge.yaml"


@pytest.mark.parametrize("name", ["paper-olmo1b", "pythia-160m", "paper-llama3-8b"])
def test_a_rehearsal_keeps_every_name_and_shrinks_every_cost(name):
    from ptft.rehearsal import N_TEST, N_TRAIN, rehearsal_config

    real = validate(yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text()), source=name)
    config = validate(yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text()), source=name)
    rehearsal_config(config)
    validate(copy.deepcopy(config), source=f"{name} (rehearsal)")  # still a valid config
    assert config["models"] == real["models"] and config["evaluate"]["eval_sets"] == real["evaluate"]["eval_sets"]
    assert config["evaluate"]["prompt_formats"] == real["evaluate"]["prompt_formats"]
    assert config["evaluate"]["lm_eval_tasks"] == real["evaluate"]["lm_eval_tasks"]
    for set_name, spec in config["data"]["datasets"].items():
        assert spec["hub"] == real["data"]["datasets"][set_name]["hub"]
        assert spec["splits"] == real["data"]["datasets"][set_name]["splits"]
        assert spec["n_train"] <= N_TRAIN and spec["n_test"] <= N_TEST
    for ft_set in config["finetune"]["ft_sets"]:
        settings = finetune_settings(config, ft_set)
        assert (settings["epochs"], settings["batch_size"]) == (1, N_TRAIN)  # one optimizer step
        assert settings["lr"] == finetune_settings(real, ft_set)["lr"]
    assert {r["gpu"] for r in config["resources"].values()} == {0}
    assert max(r["mem_mb"] for r in config["resources"].values()) <= 4000
    assert config["revisions_lock"] != real["revisions_lock"]
