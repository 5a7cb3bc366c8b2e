"""Tests for ptft.evaluate: a tiny random Olmo2 model through lm-eval, and the scoring functions on fixed inputs."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from ptft import evaluate as ev
from ptft.provenance import read_jsonl
from ptft.tasks import FEWSHOT_DELIMITER, TARGET_DELIMITER, get_task

SEED = 1234
WORDS = "the a cat dog city river north south person lives in is big small red blue old new".split()
EVAL_CFG = {
    "prompt_formats": ["default", "instruct", "io"],
    "shots": [0, 4],
    "limit": 5,
    "batch_size": 4,
    "fewshot_seed": SEED,
    "bootstrap_resamples": 200,
}


def _sentence(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random 2-layer Olmo2 with a BPE tokenizer trained on the fixture's words and every prompt's literal text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

    rnd = random.Random(0)
    templates = [t for name in ("nli", "summarisation") for t in get_task(name).formats.values()]
    corpus = [_sentence(rnd, 12) for _ in range(200)] + templates + list(get_task("nli").label_words)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = Olmo2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,  # room for 4-shot prompts: nothing is truncated in these tests
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    folder = tmp_path_factory.mktemp("model")
    Olmo2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "provenance.json").write_text(json.dumps({"model": "tiny-olmo", "step": 150, "tokens": 307200}))
    return folder


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
    sets = {}
    for name, (task, make) in makers.items():
        folder = root / name
        folder.mkdir()
        test = [{"id": f"{name}-test-{i}", **make()} for i in range(6)]
        train = [{"id": f"{name}-train-{i}", **make()} for i in range(10)]
        if task == "nli":
            train.insert(3, {**test[0], "id": f"{name}-train-dup"})
        _write_jsonl(folder / "test.jsonl", test)
        _write_jsonl(folder / "train.jsonl", train)
        sets[name] = {"task": task, "test": folder / "test.jsonl", "train": folder / "train.jsonl"}
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
    assert out["provenance"]["config"] == EVAL_CFG
    expected = [
        (eval_set, fmt, shots)
        for eval_set in ("news_sum", "places_nli")
        for fmt in ("default", "instruct", "io")
        for shots in (0, 4)
    ]
    assert [(r["eval_set"], r["prompt_format"], r["shots"]) for r in out["results"]] == expected
    for row in out["results"]:
        assert set(row) == {"eval_set", "task", "prompt_format", "shots", "metric", "value", "ci_low", "ci_high", "n"}
        assert row["task"] == {"news_sum": "summarisation", "places_nli": "nli"}[row["eval_set"]]
        assert row["metric"] == {"news_sum": "rougeL", "places_nli": "accuracy"}[row["eval_set"]]
        assert row["n"] == EVAL_CFG["limit"]
        assert 0.0 <= row["ci_low"] <= row["value"] <= row["ci_high"] <= 1.0
    assert set(out["example_prompts"]) == {f"{s}/{f}/{k}" for s, f, k in expected}

    assert len(predictions) == len(expected) * EVAL_CFG["limit"]
    assert all(row["prompt_tokens"] > 0 and row["truncated"] is False for row in predictions)
    nli = get_task("nli")
    for row in predictions:
        assert 0.0 <= row["score"] <= 1.0
        if row["eval_set"] == "places_nli":
            assert row["prediction"] in nli.label_words and set(row["loglikelihoods"]) == set(nli.label_words)
            assert row["prediction"] == max(row["loglikelihoods"], key=row["loglikelihoods"].get)
            assert row["score"] == float(row["prediction"] == row["target"])
        else:
            assert isinstance(row["prediction"], str) and "loglikelihoods" not in row
            assert row["score"] == pytest.approx(ev.rouge_l(row["prediction"], row["target"]))
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


def test_prompts_longer_than_the_model_context_are_flagged(model_dir, eval_sets, tmp_path):
    short = tmp_path / "short-model"
    shutil.copytree(model_dir, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 160}))
    cfg = {**EVAL_CFG, "prompt_formats": ["io"], "shots": [0, 4], "limit": 2}
    ev.evaluate(short, eval_sets, cfg, tmp_path / "eval.json", tmp_path / "predictions.jsonl", threads=1)
    rows = read_jsonl(tmp_path / "predictions.jsonl")
    generation_budget = 160 - get_task("summarisation").max_new_tokens  # lm-eval keeps room for max_gen_toks
    for row in rows:
        if row["eval_set"] == "news_sum":
            assert row["truncated"] == (row["prompt_tokens"] > generation_budget)
    # 4-shot summarisation prompts (5 x ~20 words) cannot fit 100 tokens; 0-shot ones do
    assert all(r["truncated"] for r in rows if r["eval_set"] == "news_sum" and r["shots"] == 4)
    assert not any(r["truncated"] for r in rows if r["shots"] == 0)


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
    assert ev.rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # P = 2/2, R = 2/4 -> F = 2PR/(P+R) = 2/3; case and punctuation are ignored by rouge-score's tokenizer
    assert ev.rouge_l("Red river.", "the red big river") == pytest.approx(2 / 3)
    # Porter stemming: cats/cat, running/runs -> run; LCS "cat run" = 2 of 3 each way
    assert ev.rouge_l("cats are running", "the cat runs") == pytest.approx(2 / 3)
    assert ev.rouge_l("", "the cat") == 0.0
    assert ev.rouge_l("the cat", "the cat") == 1.0


def test_choose_label_and_accuracy():
    words = ("entailment", "neutral", "contradiction")
    assert ev.choose_label([-3.0, -1.0, -2.0], words) == "neutral"
    assert ev.choose_label([-1.0, -2.0, -1.0], words) == "entailment"  # ties go to the first label word
    assert ev.accuracy("neutral", "neutral") == 1.0 and ev.accuracy("neutral", "entailment") == 0.0
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
    monkeypatch.setattr(ev, "BOOTSTRAP_CHUNK_ENTRIES", 500)  # 10 resamples per chunk
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


def test_a_native_row_records_the_metrics_its_task_defines():
    # lm-eval's boolq defines acc only (lm_eval/tasks/super_glue/boolq/default.yaml): its samples carry no acc_norm.
    sample = {"doc": {"question": "q"}, "doc_id": 4, "target": 1, "filtered_resps": [(-2.0, False), (-1.0, False)],
              "acc": 1.0}  # fmt: skip
    row = ev._native_prediction_row(sample, ["acc"])
    assert (row["doc_id"], row["prediction"], row["score"]) == (4, 1, 1.0) and "acc_norm" not in row
    row = ev._native_prediction_row({**sample, "acc_norm": 0.0}, ["acc", "acc_norm"])
    assert row["acc_norm"] == 0.0
    with pytest.raises(KeyError, match="acc_norm"):
        ev._native_prediction_row(sample, ["acc", "acc_norm"])  # a metric the task defines must be in its samples
