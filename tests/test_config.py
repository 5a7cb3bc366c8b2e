import copy
import os
from pathlib import Path

import pytest
import yaml

from ptft.checks import validate
from ptft.config import ConfigError, finetune_settings, load_yaml, previous_step, read_configfiles

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


def test_a_misspelt_key_is_one_line_with_the_nearest_valid_name_and_a_short_schema_excerpt(params):
    params["finetune"]["defaults"]["lrr"] = params["finetune"]["defaults"].pop("lr")
    params["evaluate"]["shotz"] = params["evaluate"].pop("shots")
    with pytest.raises(ConfigError) as err:
        validate(params, source="study.yaml")
    lines = str(err.value).splitlines()
    assert lines[0] == "study.yaml does not match schemas/config.schema.yaml:"
    assert "  - evaluate.shotz: unknown key; did you mean `shots`?" in lines
    assert "  - finetune.defaults.lrr: unknown key; did you mean `lr`?" in lines
    assert len(lines) <= 8 and all(len(line) <= 160 for line in lines)  # not the schema: a few lines of it
    assert any(line.startswith("  finetune.defaults.lr: Peak learning rate") for line in lines)


def test_an_unknown_key_with_no_near_name_lists_the_valid_ones(params):
    params["evaluate"]["zzzzzz"] = 1
    with pytest.raises(ConfigError, match=r"evaluate\.zzzzzz: unknown key; valid keys here: .*eval_sets"):
        validate(params)


def test_a_key_written_twice_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("study: a\ndata:\n  datasets:\n    x: {task: nli}\n    x: {task: paraphrase}\n")
    with pytest.raises(ConfigError, match=r"study\.yaml, line 5: key 'x' appears twice in one mapping \(first at line 4\)"):
        read_configfiles([path])
    # a merge key may be overridden on purpose; the same key in two mappings is no clash
    path.write_text("base: &b {lr: 1, seed: 2}\nrun:\n  <<: *b\n  lr: 3\nother: {lr: 1}\n")
    assert load_yaml(path)["run"] == {"lr": 3, "seed": 2}


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


def test_shots_overflow_is_one_policy_or_one_per_eval_set(params):
    assert validate(copy.deepcopy(params))["evaluate"]["shots_overflow"] == "drop_shots"
    sets = params["evaluate"]["eval_sets"]
    params["evaluate"]["shots_overflow"] = {name: "error" for name in sets}
    assert validate(copy.deepcopy(params))["evaluate"]["shots_overflow"][sets[0]] == "error"
    params["evaluate"]["shots_overflow"] = {sets[0]: "truncate_documents"}
    with pytest.raises(ConfigError, match=rf"shots_overflow.*not named: \[{sorted(sets[1:])[0]!r}"):
        validate(copy.deepcopy(params))
    params["evaluate"]["shots_overflow"] = "cut_left"
    with pytest.raises(ConfigError, match=r"evaluate.shots_overflow"):
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
    with pytest.raises(ConfigError, match=r"resources\.finetune\.gpus: unknown key; did you mean `gpu`\?"):
        validate(params)


def test_put_first_on_path_moves_the_folder_to_the_front_once(monkeypatch, tmp_path):
    from ptft.config import put_first_on_path

    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", str(tmp_path), "/bin"]))
    put_first_on_path(tmp_path)
    assert os.environ["PATH"].split(os.pathsep) == [str(tmp_path), "/usr/bin", "/bin"]


# ---------------------------------------------------------------- science vs scheduling (x-ptft-role)
# What may change without rerunning science: where, how fast and how often a job runs. micro_batch_size, packing and
# gradient_checkpointing leave the loss curve alone (tests/test_finetune.py: test_gradient_accumulation_matches_one_
# full_batch, test_packed_and_padded_training_follow_the_same_loss_curve; recomputation is the same maths).
SCHEDULING = {
    "offline",
    "evaluate.batch_size",
    "evaluate.threads",
    "evaluate.min_test_items",  # a planning check only: changing it reruns nothing
    "evaluate.share_prefix",  # the same predictions with the prefix run once (tests/test_prefix.py)
    "evaluate.decode_cache",  # the same greedy generations with a static cache (tests/test_prefix.py)
    "models.*.pretrain.threads",
    *(f"resources.{phase}.{key}" for phase in ("pretrain", "materialize", "finetune", "evaluate")
      for key in ("gpu", "cpus_per_gpu", "mem_mb", "runtime", "gpu_mem_gb", "nodes", "processes_per_node")),
    "finetune.sharding",
    *(f"finetune.{where}.{key}" for where in ("defaults", "ft_sets.*")
      for key in ("threads", "save_steps", "micro_batch_size", "packing", "gradient_checkpointing")),
}


def test_every_setting_has_a_role_and_the_scheduling_ones_are_these():
    from ptft.config import setting_roles

    roles = setting_roles()
    assert {path for path, role in roles.items() if role == "scheduling"} == SCHEDULING
    assert {path for path, role in roles.items() if role == "naming"} == {"study"}
    # a sample of science settings, one per section, and the walk reached every section
    for path in ("seed", "models.*.pretrain.lr", "data.datasets.*.n_train", "finetune.ft_sets.*.lr",
                 "finetune.lora.r", "evaluate.shots", "analysis.transfer_test.seed", "models.*.main.step"):
        assert roles[path] == "science", path
    assert len(roles) > 100


def test_a_setting_without_a_role_fails_naming_it():
    from ptft.config import load_schema, setting_roles

    schema = load_schema()
    schema["properties"]["evaluate"]["properties"]["max_new_tokens"] = {"type": "integer"}
    schema["$defs"]["finetune_settings"]["properties"]["lr"]["x-ptft-role"] = "fast"
    with pytest.raises(ConfigError) as err:
        setting_roles(schema)
    assert "evaluate.max_new_tokens: x-ptft-role is None" in str(err.value)
    assert "finetune.defaults.lr: x-ptft-role is 'fast'" in str(err.value)


def test_science_slices_leave_scheduling_settings_out(params):
    from ptft.config import evaluate_science, finetune_science, pretrain_science, scheduling_settings

    params["finetune"]["ft_sets"]["news_sum"] = {"lr": 5.0e-4, "save_steps": 7, "micro_batch_size": 4}
    config = validate(params)
    science = finetune_science(config, "news_sum")
    assert science["lr"] == 5.0e-4 and science["method"] == "full"
    assert not {"threads", "save_steps", "micro_batch_size", "packing", "gradient_checkpointing"} & set(science)
    scheduling = scheduling_settings(config)
    assert scheduling["finetune"]["news_sum"] == {
        "threads": 1, "save_steps": 7, "micro_batch_size": 4, "packing": True, "gradient_checkpointing": False
    }
    # together they are the whole slice: nothing is lost on the way to the job
    assert {**science, **scheduling["finetune"]["news_sum"]} == finetune_settings(config, "news_sum")
    assert set(evaluate_science(config)) | set(scheduling["evaluate"]) == set(config["evaluate"])
    assert scheduling["evaluate"] == {
        "batch_size": 32, "threads": 1, "min_test_items": 30, "share_prefix": True, "decode_cache": "dynamic",
    }  # fmt: skip
    assert "threads" not in pretrain_science(config, "tiny-olmo")["pretrain"]
    assert pretrain_science(config, "tiny-olmo")["pretrain"]["lr"] == 3.0e-3
    assert "checkpoints" not in pretrain_science(config, "tiny-olmo")
    assert scheduling["pretrain"] == {"tiny-olmo": {"threads": 2}}


def test_explain_names_each_settings_role_and_source(params):
    from ptft.explain import explain

    params["finetune"]["ft_sets"]["news_sum"] = {"lr": 5.0e-4}
    params["resources"] = {"finetune": {"mem_mb": 9000}}
    rows = {row["setting"]: row for row in explain(params, "finetune:tiny-olmo/150/news_sum")}
    assert rows["lr"] == {"setting": "lr", "value": 5.0e-4, "role": "science", "source": "finetune.ft_sets.news_sum"}
    assert (rows["epochs"]["value"], rows["epochs"]["source"]) == (2, "finetune.defaults")
    assert (rows["save_steps"]["role"], rows["save_steps"]["source"]) == ("scheduling", "default (ptft.settings.FinetuneSettings)")
    assert (rows["method"]["value"], rows["method"]["source"]) == ("full", "finetune")
    assert (rows["resources.finetune.mem_mb"]["value"], rows["resources.finetune.mem_mb"]["source"]) == (9000, "resources.finetune")
    assert rows["resources.finetune.gpu"]["source"] == "schema default"
    roles = [row["role"] for row in rows.values()]
    assert roles == sorted(roles, key=["science", "scheduling", "naming"].index)  # science first

    evaluation = {row["setting"]: row for row in explain(params, "evaluate:tiny-olmo/150/base")}
    assert (evaluation["batch_size"]["role"], evaluation["shots"]["role"]) == ("scheduling", "science")
    assert evaluation["classification"]["source"] == "default (ptft.settings.EvaluateSettings)"
    assert "lora_eval" not in evaluation  # a base model has no adapter
    pretraining = {row["setting"]: row for row in explain(params, "pretrain:tiny-olmo/150")}
    assert (pretraining["pretrain.threads"]["role"], pretraining["pretrain.threads"]["source"]) == ("scheduling", "models.tiny-olmo")


@pytest.mark.parametrize(
    "job, message",
    [
        ("finetune:tiny-olmo/150", "expected pretrain:<model>/<step>"),
        ("train:tiny-olmo/150/news_sum", "expected pretrain:<model>/<step>"),
        ("finetune:olmo/150/news_sum", "models has no 'olmo'"),
        ("finetune:tiny-olmo/151/news_sum", "models.tiny-olmo.checkpoints has no '151'"),
        ("evaluate:tiny-olmo/150/xsum", "finetune.ft_sets has no 'xsum'"),
        ("finetune:tiny-olmo/150/base", "names a training set, not base"),
        ("materialize:tiny-olmo/150", "models.tiny-olmo is embedded; its checkpoints come from pretrain:tiny-olmo/150"),
    ],
)
def test_explain_names_a_job_the_study_does_not_plan(params, job, message):
    from ptft.explain import explain

    with pytest.raises(ConfigError, match=message):
        explain(params, job)


def test_explain_a_hub_checkpoint():
    from ptft.explain import explain

    paper = yaml.safe_load((ROOT / "configs/paper-olmo1b.yaml").read_text())
    rows = {row["setting"]: row for row in explain(paper, "materialize:olmo-1b/738000")}
    assert (rows["repo"]["value"], rows["repo"]["role"]) == ("allenai/OLMo-1B-hf", "science")
    assert rows["resources.materialize.mem_mb"]["role"] == "scheduling"
    with pytest.raises(ConfigError, match="models.olmo-1b is hub; its checkpoints come from materialize:olmo-1b/738000"):
        explain(paper, "pretrain:olmo-1b/738000")


def test_explain_command_prints_the_table(capsys):
    from ptft.explain import main

    assert main(["explain", "--configfile", str(ROOT / "params.yaml"), "--job", "finetune:tiny-olmo/0/places_nli"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["setting", "value", "role", "source"]
    lines = {line.split()[0]: line.split() for line in out[2:]}
    assert lines["threads"] == ["threads", "1", "scheduling", "finetune.defaults"]
    assert lines["lr"] == ["lr", "0.001", "science", "finetune.defaults"]
    assert main(["explain", "--configfile", str(ROOT / "params.yaml"), "--job", "finetune:tiny-olmo/0/nope"]) == 2
    assert "finetune.ft_sets has no 'nope'" in capsys.readouterr().err


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


def test_the_custom_tasks_example_validates_and_its_formats_are_checked(restore_tasks):
    path = ROOT / "configs/examples/custom-tasks.yaml"
    example = yaml.safe_load(path.read_text())
    config = validate(copy.deepcopy(example), source=str(path))
    assert config["data"]["datasets"]["reviews"]["n_train"] is None  # local sets keep every row by default
    example["evaluate"]["prompt_formats"] = ["default", "instruct"]
    with pytest.raises(ConfigError, match=r"lists \['instruct'\], which task 'headline' of eval set 'headlines' has no"):
        validate(copy.deepcopy(example))
    example["evaluate"]["prompt_formats"] = ["default"]
    example["data"]["datasets"]["reviews"]["task"] = "sentimnet"
    with pytest.raises(ConfigError, match=r"data.datasets.reviews.task: 'sentimnet' is not a task family"):
        validate(copy.deepcopy(example))
    example["data"]["datasets"]["reviews"]["task"] = "sentiment"
    example["tasks"]["headline"]["formats"]["default"] = "{{ text }} {{ body }}"
    with pytest.raises(ConfigError, match=r"task 'headline', format 'default': template uses \['body'\]"):
        validate(copy.deepcopy(example))
    example["tasks"]["headline"]["formats"]["default"] = "{{ text }}"
    del example["data"]["datasets"]["headlines"]["split"]
    with pytest.raises(ConfigError, match=r"data.datasets.headlines: one file \(files.all\) needs split"):
        validate(copy.deepcopy(example))


def test_analysis_prompt_format_must_be_an_evaluated_format(params):
    params["analysis"] = {"prompt_format": "io"}
    params["evaluate"]["prompt_formats"] = ["default", "instruct"]
    with pytest.raises(ConfigError, match=r"analysis\.prompt_format 'io' is not among evaluate\.prompt_formats"):
        validate(params)
