"""Tests for fixed shots (evaluate.fewshot_source train_fixed) and ptft.evaluate.prefix: a task's shared prompt prefix
run once scores every item as the whole prompt does (fp32, CPU), for log-likelihood, TokenProb and greedy generation."""

from __future__ import annotations

import json
import random

import pytest

from ptft import evaluate as ev
from ptft.evaluate.prefix import prefix_groups, shared_prefix
from ptft.provenance import read_jsonl
from ptft.tasks import FEWSHOT_DELIMITER, get_task
from tiny_olmo import sentence as _sentence
from tiny_olmo import tiny_olmo as _model
from tiny_olmo import write_eval_sets

SEED = 1234


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random 2-layer Olmo2 (fp32) with a small BPE tokenizer trained on the fixture's words and the templates."""
    return _model(tmp_path_factory.mktemp("model"), context=1024)


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory):
    """One NLI and one summarisation eval set of 7 test items, test item lengths varied (batches need padding)."""
    rnd = random.Random(1)
    root = tmp_path_factory.mktemp("data")
    makers = {
        "places_nli": ("nli", lambda: {"premise": _sentence(rnd, rnd.randint(3, 9)), "hypothesis": _sentence(rnd, 5),
                                       "label": rnd.choice(get_task("nli").label_words)}),  # fmt: skip
        "news_sum": ("summarisation", lambda: {"document": _sentence(rnd, rnd.randint(6, 20)),
                                               "summary": _sentence(rnd, 5)}),  # fmt: skip
    }
    rows = {name: (task, [{"id": f"{name}-test-{i}", **make()} for i in range(7)],
                   [{"id": f"{name}-train-{i}", **make()} for i in range(12)])
            for name, (task, make) in makers.items()}  # fmt: skip
    return write_eval_sets(root, rows)


def _contexts(dataset, family, prompt_format, shots, seed, source="train_fixed"):
    from lm_eval.api.task import ConfigurableTask

    config = ev.task_config("s", family, prompt_format, shots, dataset, fewshot_source=source, fewshot_seed=seed)
    lm_task = ConfigurableTask(config=config)
    lm_task.set_fewshot_seed(seed)
    return [lm_task.fewshot_context(doc, shots) for doc in dataset["test"]]


def test_fixed_shots_are_one_seeded_train_draw_shown_to_every_item_and_format(eval_sets):
    nli = get_task("nli")
    dataset = ev.load_eval_set("places_nli", eval_sets["places_nli"])
    train = {nli.render(r, "io") + " " + r["label"]: r["id"] for r in dataset["train"]}
    test_ids = set(dataset["test"]["id"])
    draws = {}
    for prompt_format in ("default", "io"):
        contexts = _contexts(dataset, nli, prompt_format, 4, SEED)
        blocks = {c.split(FEWSHOT_DELIMITER)[:4].__repr__() for c in contexts}
        assert len(blocks) == 1, "every item is shown the same shots"
        for doc, context in zip(dataset["test"], contexts, strict=True):
            assert context.endswith(nli.render(doc, prompt_format))
        draws[prompt_format] = contexts[0].split(FEWSHOT_DELIMITER)[:4]
    shot_ids = [train[s] for s in draws["io"]]  # io shots are exactly train records (rendered as io)
    assert not test_ids & set(shot_ids) and len(set(shot_ids)) == 4
    expected = [dataset["train"][i]["id"] for i in ev.task_configs.fixed_shots(len(dataset["train"]), 4, SEED)]
    assert shot_ids == expected
    assert [s.split(" ")[-1] for s in draws["default"]] == [s.split(" ")[-1] for s in draws["io"]]  # same labels
    # per-item draws (train) differ between items; another seed draws other shots; 3 shots are the first 3 of 4
    assert len({c.split(FEWSHOT_DELIMITER)[0] for c in _contexts(dataset, nli, "io", 4, SEED, "train")}) > 1
    assert _contexts(dataset, nli, "io", 4, SEED + 1)[0] != _contexts(dataset, nli, "io", 4, SEED)[0]
    assert _contexts(dataset, nli, "io", 3, SEED)[0].split(FEWSHOT_DELIMITER)[:3] == draws["io"][:3]


def test_fixed_shots_need_enough_train_records():
    with pytest.raises(ValueError, match="5 fixed shots requested from a train pool of 4"):
        ev.task_configs.fixed_shots(4, 5, SEED)


def test_shared_prefix_is_the_common_start_leaving_one_token_per_prompt():
    a, b = list(range(40)), list(range(40)) + [7, 8]
    assert shared_prefix([a, b, a], min_tokens=4) == tuple(range(39))  # a keeps its last token after the prefix
    assert shared_prefix([a + [1], a + [2], a[:30] + [5]], min_tokens=4) == tuple(range(30))
    assert shared_prefix([a, a], min_tokens=4) == ()  # one distinct prompt: nothing to share
    assert shared_prefix([[1, 2, 3, 9], [1, 2, 3, 8]], min_tokens=4) == ()  # shorter than min_tokens


def test_prompts_that_kept_other_shots_form_their_own_groups():
    # drop_shots cuts a long prompt's first shots: its ids start with a later shot
    shots = [list(range(100 * k, 100 * k + 30)) for k in range(3)]
    whole = [shots[0] + shots[1] + shots[2] + [900 + i] for i in range(3)]
    cut = [shots[1] + shots[2] + [950 + i] for i in range(2)]
    groups = prefix_groups([whole[0], cut[0], whole[1], cut[1], whole[2], [7]], min_tokens=4)
    assert sorted(sorted(g) for g in groups) == [[0, 2, 4], [1, 3], [5]]
    assert shared_prefix([cut[0], cut[1]], min_tokens=4) == tuple(shots[1] + shots[2])


def _run(model_dir, eval_sets, out_dir, **settings):
    cfg = {"prompt_formats": ["default", "io"], "shots": [0, 3], "batch_size": 3, "fewshot_seed": SEED,
           "fewshot_source": "train_fixed", "bootstrap_resamples": 50, **settings}  # fmt: skip
    ev.evaluate(model_dir, eval_sets, cfg, out_dir / "eval.json", out_dir / "predictions.jsonl", threads=1)
    return json.loads((out_dir / "eval.json").read_text()), read_jsonl(out_dir / "predictions.jsonl")


@pytest.mark.parametrize("classification", ["loglikelihood", "token_prob"])
def test_shared_prefix_scores_equal_whole_prompts(model_dir, eval_sets, tmp_path, classification, capfd):
    # fp32 on CPU: the same predictions, generations and scores with the prefix run once; log-probabilities to rounding
    shared = _run(model_dir, eval_sets, tmp_path / "a", classification=classification, share_prefix=True)
    log = capfd.readouterr().err
    whole = _run(model_dir, eval_sets, tmp_path / "b", classification=classification, share_prefix=False)
    assert "shared prefixes:" in log
    stats = json.loads(log.split("shared prefixes: ")[1].splitlines()[0].replace("'", '"'))
    # 2 sets x 2 formats at 3 shots share a prefix (0-shot prompts share too little); every 3-shot item used it
    assert stats["prefix_runs"] == 4 and stats["shared_inputs"] > 0
    assert stats["prompt_tokens_shared"] < stats["prompt_tokens_whole"]
    keys = ("eval_set", "prompt_format", "shots", "doc_id", "prediction", "score")
    rows = [[{k: r.get(k) for k in keys} for r in run[1]] for run in (shared, whole)]
    generated = [r for r in rows[0] if r["eval_set"] == "news_sum" and r["shots"] == 3]
    assert generated and all(r["prediction"] for r in generated)
    assert rows[0] == rows[1]  # the same predictions (greedy generations, labels) and scores
    assert [r["value"] for r in shared[0]["results"]] == [r["value"] for r in whole[0]["results"]]
    # log-probabilities: equal up to float32 rounding (the suffix's matrix products have other shapes; measured
    # differences ~2e-6 on values ~30, a relative 1e-7)
    for a, b in zip(shared[1], whole[1], strict=True):
        if "loglikelihoods" in a:
            assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], rel=1e-6, abs=1e-6)


def test_shared_prefix_in_bfloat16_chooses_the_same_labels(model_dir, eval_sets, tmp_path):
    # bf16 rounds the suffix's products differently from the whole prompt's, as batch size does for the whole path
    # (measured on this model: TokenProb log-probabilities within 0.53% relative both ways; 23 of 28 greedy
    # generations equal shared vs whole, 25 of 28 whole at batch 1 vs 3, the random model's near-tied logits)
    cfg = {"classification": "token_prob", "dtype": "bfloat16"}
    sets = {"places_nli": eval_sets["places_nli"]}
    shared = _run(model_dir, sets, tmp_path / "a", share_prefix=True, **cfg)[1]
    whole = _run(model_dir, sets, tmp_path / "b", share_prefix=False, **cfg)[1]
    assert [r["prediction"] for r in shared] == [r["prediction"] for r in whole]
    for a, b in zip(shared, whole, strict=True):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], rel=0.01)


def test_prompts_cut_to_fit_share_the_shots_they_kept(eval_sets, tmp_path, capfd):
    # a 145-token context: 3-shot summaries (90-99 tokens here) keep 85 prompt tokens (60 are generated), so drop_shots cuts most
    # prompts' first shots; prompts that kept the same shots share them, and score as whole prompts do
    model = _model(tmp_path / "model", context=145)
    sets = {"news_sum": eval_sets["news_sum"]}
    shared = _run(model, sets, tmp_path / "a", share_prefix=True, prompt_formats=["default"], shots=[3])
    stats = json.loads(capfd.readouterr().err.split("shared prefixes: ")[1].splitlines()[0].replace("'", '"'))
    whole = _run(model, sets, tmp_path / "b", share_prefix=False, prompt_formats=["default"], shots=[3])
    assert shared[0]["results"][0]["n_overflow"] > 0 and stats["shared_inputs"] > 0
    assert [r["prediction"] for r in shared[1]] == [r["prediction"] for r in whole[1]]


def test_static_decode_cache_generates_what_the_dynamic_one_does(model_dir, eval_sets, tmp_path):
    # fp32 on CPU: the prefix copied into a StaticCache (and whole prompts with transformers' static cache) decode
    # the same greedy tokens as the DynamicCache path
    sets = {"news_sum": eval_sets["news_sum"]}
    static = _run(model_dir, sets, tmp_path / "a", decode_cache="static", stop_sequences={"summarisation": []})[1]
    dynamic = _run(model_dir, sets, tmp_path / "b", decode_cache="dynamic", stop_sequences={"summarisation": []})[1]
    assert [r["prediction"] for r in static] == [r["prediction"] for r in dynamic]
    assert sum(len(r["prediction"]) for r in static) > 0
