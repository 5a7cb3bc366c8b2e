"""Tests for ptft.estimate: the paper config's bill, how it scales, and where its figures come from."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ptft import estimate as est
from ptft.checks import validate
from ptft.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper-olmo1b.yaml"


@pytest.fixture(scope="module")
def paper_config():
    return validate(yaml.safe_load(PAPER.read_text()), source=str(PAPER))


def _bill(config, gpu="h200", **kwargs):
    bill = est.estimate(config, gpu, **kwargs)
    return {row.family: row for row in bill.families}, bill


def test_the_paper_config_bill_has_the_grids_jobs(paper_config, tmp_path):
    families, bill = _bill(paper_config, project_dir=tmp_path)  # nothing on disk: every length is assumed
    n_ckpt, n_ft = 8, 5  # configs/paper-olmo1b.yaml: 8 checkpoints; xsum, social_i_qa, mnli, paws, tulu
    assert families["materialize"].jobs == n_ckpt
    assert families["finetune"].jobs == n_ckpt * n_ft
    assert families["evaluate"].jobs == n_ckpt * (1 + n_ft)
    assert families["data"].jobs == len(paper_config["data"]["datasets"])
    assert bill.total().jobs == sum(est.job_counts(paper_config, tmp_path).values())
    # materialize: 8 fp32 copies of OLMo-1B; finetune: 40 fp32 models plus their small folders
    n_params = est.load_figures()["models"]["allenai/OLMo-1B-hf"]["n_params"]
    assert families["materialize"].disk_gb == pytest.approx(8 * n_params * 4 / 1e9)
    assert families["finetune"].disk_gb == pytest.approx(40 * (n_params * 4 + 5e6) / 1e9)
    assert families["finetune"].train_tokens > 0 and families["evaluate"].score_tokens > 0
    assert families["evaluate"].gpu_hours > families["finetune"].gpu_hours > 0
    assert all(v["source"].startswith("assumed") for v in bill.lengths.values())
    text = est.format_bill(bill)
    assert "total" in text and "h200" in text and "assumed: See et al. 2017" in text


def _ptft_only(config, **evaluate):
    """ptft's own eval sets, every prompt computed whole (per-item shots) unless evaluate says otherwise."""
    config = copy.deepcopy(config)
    config["evaluate"].update(lm_eval_tasks=[], **{"fewshot_source": "train", **evaluate})
    return config


def test_evaluate_tokens_scale_with_formats_and_limit_and_training_does_not(paper_config, tmp_path):
    two, _ = _bill(_ptft_only(paper_config, prompt_formats=["default", "instruct"], limit=200), project_dir=tmp_path)
    one, _ = _bill(_ptft_only(paper_config, prompt_formats=["default"], limit=200), project_dir=tmp_path)
    half_limit, _ = _bill(_ptft_only(paper_config, prompt_formats=["default"], limit=100), project_dir=tmp_path)
    for key in ("score_tokens", "generated_tokens", "gpu_hours"):
        assert getattr(one["evaluate"], key) == pytest.approx(getattr(two["evaluate"], key) / 2)
        assert getattr(half_limit["evaluate"], key) == pytest.approx(getattr(one["evaluate"], key) / 2)
    assert one["finetune"].train_tokens == two["finetune"].train_tokens
    # a slower GPU: the same tokens, more hours, in the ratio of the two figures
    a100, _ = _bill(_ptft_only(paper_config, prompt_formats=["default"], limit=200), "a100", project_dir=tmp_path)
    figures = est.load_figures()["gpus"]
    assert a100["finetune"].train_tokens == one["finetune"].train_tokens
    ratio = figures["h200"]["finetune_tokens_per_s"]["value"] / figures["a100"]["finetune_tokens_per_s"]["value"]
    assert a100["finetune"].gpu_hours == pytest.approx(one["finetune"].gpu_hours * ratio)


def test_a_prompt_longer_than_the_context_is_counted_at_the_budget(paper_config, tmp_path):
    config = _ptft_only(paper_config, eval_sets=["cnn_dailymail"], prompt_formats=["default"], shots=[4], limit=10)
    families, bill = _bill(config, project_dir=tmp_path)
    # 4-shot CNN/DM (5 x 1,015 + 4 x 74 tokens) exceeds OLMo-1B's 2,048: shots_overflow keeps it at 2,048 - 60
    assert families["evaluate"].score_tokens == pytest.approx(48 * 10 * (2048 - 60))
    assert families["evaluate"].generated_tokens == pytest.approx(48 * 10 * 60)


def test_the_model_table_holds_the_hand_counted_parameters():
    # Linear weights of the decoder layers plus embeddings (no biases; norm weights are few): OLMo-1B's non-parametric
    # layer norm and tied head (bench/finetune_throughput.py OLMO_1B); Llama-3-8B's grouped k/v (8 x 128 wide), RMSNorm
    # weights (2 per layer + final) and untied head (tests/test_memory.py LLAMA_3_8B).
    models = est.load_figures()["models"]
    h, i, v, layers = 2048, 8192, 50304, 16
    assert models["allenai/OLMo-1B-hf"]["n_params"] == layers * (4 * h * h + 3 * h * i) + v * h
    h, i, v, layers, kv = 4096, 14336, 128256, 32, 1024
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    assert models["meta-llama/Meta-Llama-3-8B"]["n_params"] == layers * per_layer + 2 * v * h + h


def test_lengths_are_measured_when_data_and_tokenizer_are_on_disk(paper_config, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the cat sat on a mat ### Input: Summary".split()
    bpe = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]")
    folder = tmp_path / "studies" / paper_config["study"] / "data" / "xsum"  # the study's prepared data (ptft.studies)
    folder.mkdir(parents=True)
    records = [{"id": str(i), "document": "the cat sat " * (i + 1), "summary": "a mat"} for i in range(4)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lengths = est.example_lengths(paper_config, "xsum", tokenizer, est.load_figures(), tmp_path)
    assert lengths["source"].startswith("measured: 4 records")
    family = get_task("summarisation")
    rendered = [len(tokenizer(family.render(r, "default"), add_special_tokens=False)["input_ids"]) for r in records]
    assert lengths["input"] == pytest.approx(sum(rendered) / 4)
    # without a tokenizer the same set takes the assumed figure
    assert est.example_lengths(paper_config, "xsum", None, est.load_figures(), tmp_path)["source"].startswith("assumed")


def test_a_model_with_no_size_anywhere_fails_naming_it(paper_config, tmp_path):
    config = copy.deepcopy(paper_config)
    config["models"]["olmo-1b"]["repo"] = "someone/unknown-7b"
    with pytest.raises(est.EstimateError, match="someone/unknown-7b.*bench/figures.yaml"):
        est.estimate(config, "h200", project_dir=tmp_path)
    with pytest.raises(KeyError, match="tpu"):
        est.estimate(paper_config, "tpu", project_dir=tmp_path)


def test_the_command_line_prints_the_bill_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert est.main(["--configfile", str(PAPER), "--gpu", "h100", "--json", str(tmp_path / "bill.json")]) == 0
    out = capsys.readouterr().out
    assert "on h100" in out and "evaluate" in out
    bill = json.loads((tmp_path / "bill.json").read_text())
    assert bill["total"]["jobs"] == sum(f["jobs"] for f in bill["families"])


CUSTOM = ROOT / "configs" / "examples" / "custom-tasks.yaml"  # its own task families, local CSV and JSONL data


def test_local_sets_are_counted_from_their_files_before_preparation(tmp_path, monkeypatch):
    # a project with the example's data files (paths relative to the project root) and nothing prepared
    shutil.copytree(ROOT / "configs/examples/data", tmp_path / "configs/examples/data")
    monkeypatch.chdir(tmp_path)
    config = validate(yaml.safe_load(CUSTOM.read_text()), source=str(CUSTOM))
    config["evaluate"]["limit"] = None
    bill = est.estimate(config, "h100", project_dir=tmp_path)
    # sentiment_test.csv has 40 rows; headlines.jsonl 50 rows, of which ceil(0.2 x 50) = 10 are the test split
    assert bill.items["reviews"]["n"] == 40 and "sentiment_test.csv" in bill.items["reviews"]["source"]
    assert bill.items["headlines"]["n"] == 10
    # the study's own task families have no lengths in bench/figures.yaml: measured on the files' records
    assert bill.lengths["headlines"]["source"].startswith("measured: 50 records of configs/examples/data/headlines.jsonl")
    assert bill.lengths["headlines"]["input"] > 10


def test_on_cpu_the_hours_are_wall_clock_on_the_machines_cores(paper_config, tmp_path):
    params = validate(yaml.safe_load((ROOT / "params.yaml").read_text()))
    on_two, bill = _bill(params, "cpu", project_dir=tmp_path, cores=2)
    on_eight, _ = _bill(params, "cpu", project_dir=tmp_path, cores=8)
    assert bill.hours == "wall-clock hours on 2 cores"
    assert on_two["evaluate"].gpu_hours > 0.01 and on_two["finetune"].gpu_hours > 0.001  # the embedded study: minutes
    assert on_eight["evaluate"].gpu_hours == pytest.approx(on_two["evaluate"].gpu_hours / 4)
    text = est.format_bill(bill)
    assert "wall-clock hours on 2 cores" in text and "0.0  " not in text.split("Throughput")[0].replace("0.0\n", "")
    _, on_gpu = _bill(params, "h100", project_dir=tmp_path)
    assert on_gpu.hours == "GPU-hours"


def test_the_command_line_names_what_is_missing_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(CUSTOM.read_text())
    config["data"]["datasets"]["reviews"]["files"]["test"] = "nowhere.csv"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    assert est.main(["--configfile", "study.yaml", "--gpu", "cpu"]) == 2
    assert "data.datasets.reviews.files.test: nowhere.csv: no such data file" in capsys.readouterr().err
    assert est.main(["--configfile", str(PAPER), "--gpu", "tpu"]) == 2
    assert capsys.readouterr().err.startswith("error: --gpu 'tpu': bench/figures.yaml has figures for")


def test_a_local_models_size_is_read_from_its_source_folder_before_it_is_copied(tmp_path):
    config = validate(yaml.safe_load((ROOT / "params.yaml").read_text()))
    architecture = {"model_type": "olmo2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "intermediate_size": 128, "max_position_embeddings": 512, "vocab_size": 500}
    (tmp_path / "run/step100").mkdir(parents=True)
    (tmp_path / "run/step100/config.json").write_text(json.dumps(architecture))
    config["models"] = {"mine": {"source": "local", "path": str(tmp_path / "run/step{checkpoint}"),
                                 "tokens_per_step": 1000, "checkpoints": [100]}}
    size = est.model_size(config, "mine", est.load_figures(), tmp_path / "project")
    assert (size["hidden_size"], size["num_hidden_layers"], size["context"]) == (64, 2, 512)


def test_shared_shot_blocks_are_counted_once_per_model_set_and_format(paper_config, tmp_path):
    # 4-shot SocialIQa question generation (assumed 45-token inputs, 12-token targets) at 10 items, 3 formats, 48
    # evaluate jobs: whole prompts cost 10 x (5 x 45 + 4 x 13) each; shared, the 4 shots (4 x 58) are computed
    # once per format and job
    cfg = {"eval_sets": ["social_i_qa"], "shots": [4], "limit": 10}
    whole, _ = _bill(_ptft_only(paper_config, **cfg), project_dir=tmp_path)
    shared, bill = _bill(_ptft_only(paper_config, fewshot_source="train_fixed", **cfg), project_dir=tmp_path)
    prompt, shots_block = 5 * 45 + 4 * 13, 4 * 58
    assert whole["evaluate"].score_tokens == pytest.approx(48 * 3 * 10 * prompt)
    assert shared["evaluate"].score_tokens == pytest.approx(48 * 3 * (shots_block + 10 * (prompt - shots_block)))
    assert shared["evaluate"].generated_tokens == whole["evaluate"].generated_tokens
    assert bill.evaluate_hours_unshared == pytest.approx(whole["evaluate"].gpu_hours)
    assert bill.set_hours["social_i_qa"] == pytest.approx(shared["evaluate"].gpu_hours)
    # the per-set precision line: ROUGE-L's assumed per-item sd, 10 items
    (row,) = bill.precision
    assert row["n"] == 10 and row["half_width"] == pytest.approx(1.959964 * 0.15 / 10**0.5)
    text = est.format_bill(bill)
    assert "every prompt whole" in text and "assumed: per-item sd 0.15" in text
    # sharing needs the hf backend and share_prefix
    off, _ = _bill(_ptft_only(paper_config, fewshot_source="train_fixed", share_prefix=False, **cfg), project_dir=tmp_path)
    assert off["evaluate"].score_tokens == whole["evaluate"].score_tokens


def test_interval_half_width_is_binomial_for_accuracy():
    from ptft.estimate_eval import interval_half_width

    half, basis = interval_half_width("accuracy", 400)
    assert half == pytest.approx(1.959964 * 0.5 / 20) and basis.startswith("assumed")
    assert interval_half_width("rougeL", 100, pilot_sd=0.2)[0] == pytest.approx(1.959964 * 0.02)
    with pytest.raises(ValueError, match="n=0"):
        interval_half_width("accuracy", 0)
