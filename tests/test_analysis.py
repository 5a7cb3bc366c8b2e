"""Tests for ptft.analysis on a hand-built study: 2 checkpoints, base + 2 ft_sets of two task families,
2 eval sets per family, 2 prompt formats, 4-shot. Every expected number is written out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ptft.analysis import (
    CLASSIFICATION_TO_GENERATION,
    COLUMNS,
    GENERATION_TO_CLASSIFICATION,
    aggregate,
    base_curves,
    finetune_gain,
    findings_summary,
    gain_table,
    gain_table_wide,
    learned_in_pretraining,
    out_of_domain_ratio,
    prompt_sensitivity,
    provenance_path,
    ratio_of_change,
    read_results,
    read_train_logs,
    sensitivity_by_checkpoint,
    sign_flip_test,
    summary,
    task_transfer,
    task_transfer_test,
    write_markdown,
    write_table_provenance,
)

FT_SETS = {"places_nli": "nli", "news_sum": "summarisation"}
TASK = {"places_nli": "nli", "animals_nli": "nli", "news_sum": "summarisation", "story_sum": "summarisation"}
METRIC = {"nli": "accuracy", "summarisation": "rougeL"}
TOKENS = {0: 0, 400: 819200}

# (step, ft_set) -> eval_set -> (default value, instruct value)
# fmt: off
VALUES = {
    (0, "base"):          {"places_nli": (0.25, 0.30), "animals_nli": (0.50, 0.40), "news_sum": (0.10, 0.05), "story_sum": (0.20, 0.15)},
    (400, "base"):        {"places_nli": (0.50, 0.45), "animals_nli": (0.50, 0.55), "news_sum": (0.30, 0.20), "story_sum": (0.25, 0.30)},
    (0, "places_nli"):    {"places_nli": (0.50, 0.40), "animals_nli": (0.45, 0.40), "news_sum": (0.00, 0.00), "story_sum": (0.00, 0.00)},
    (400, "places_nli"):  {"places_nli": (0.75, 0.70), "animals_nli": (0.625, 0.50), "news_sum": (0.10, 0.10), "story_sum": (0.10, 0.10)},
    (0, "news_sum"):      {"places_nli": (0.30, 0.30), "animals_nli": (0.30, 0.30), "news_sum": (0.20, 0.10), "story_sum": (0.10, 0.20)},
    (400, "news_sum"):    {"places_nli": (0.30, 0.30), "animals_nli": (0.30, 0.30), "news_sum": (0.50, 0.25), "story_sum": (0.375, 0.30)},
}
# fmt: on


def eval_record(step: int, ft_set: str) -> dict:
    results = []
    # deliberately not in sorted order: aggregate must sort
    for eval_set in ("story_sum", "places_nli", "news_sum", "animals_nli"):
        for fmt, value in zip(("instruct", "default"), reversed(VALUES[(step, ft_set)][eval_set])):
            task = TASK[eval_set]
            results.append(
                {"eval_set": eval_set, "task": task, "prompt_format": fmt, "shots": 4, "metric": METRIC[task],
                 "value": value, "ci_low": max(value - 0.1, 0.0), "ci_high": min(value + 0.1, 1.0), "n": 60}
            )  # fmt: skip
    return {
        "model": "tiny-olmo", "step": step, "tokens": TOKENS[step], "ft_set": ft_set, "results": results,
        "example_prompts": {}, "lm_eval_version": "0.4.13", "provenance": {"kind": "evaluate"},
    }  # fmt: skip


def write_study(root: Path) -> list[Path]:
    paths = []
    # deliberately not in sorted order either
    for step, ft_set in [
        (400, "places_nli"),
        (0, "news_sum"),
        (400, "base"),
        (0, "places_nli"),
        (400, "news_sum"),
        (0, "base"),
    ]:
        path = root / "eval" / "tiny-olmo" / str(step) / f"{ft_set}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(eval_record(step, ft_set)))
        paths.append(path)
    return paths


@pytest.fixture
def study(tmp_path):
    paths = write_study(tmp_path)
    out = tmp_path / "tables" / "results.csv"
    return paths, out, aggregate(paths, out)


# ---------------------------------------------------------------------------------------------- aggregate


def test_aggregate_columns_rows_and_types(study):
    _, out, df = study
    assert list(df.columns) == COLUMNS
    assert len(df) == 6 * 4 * 2  # 6 models x 4 eval sets x 2 formats
    for col in ("step", "tokens", "shots", "n"):
        assert df[col].dtype == "int64", col
    for col in ("value", "ci_low", "ci_high"):
        assert df[col].dtype == "float64", col
    for col in ("model", "ft_set", "eval_set", "task", "prompt_format", "metric"):
        assert pd.api.types.is_string_dtype(df[col]), col
    assert set(df["tokens"]) == {0, 819200}


def test_aggregate_order_base_first(study):
    _, _, df = study
    # step first, then base before the fine-tuned sets, then eval_set, prompt_format
    assert df["step"].tolist() == [0] * 24 + [400] * 24
    assert df["ft_set"].tolist()[:24] == ["base"] * 8 + ["news_sum"] * 8 + ["places_nli"] * 8
    assert (
        df["eval_set"].tolist()[:8] == ["animals_nli"] * 2 + ["news_sum"] * 2 + ["places_nli"] * 2 + ["story_sum"] * 2
    )
    assert df["prompt_format"].tolist()[:4] == ["default", "instruct", "default", "instruct"]
    first = df.iloc[0]
    assert (first["ft_set"], first["eval_set"], first["prompt_format"], first["value"]) == (
        "base",
        "animals_nli",
        "default",
        0.5,
    )


def test_aggregate_is_independent_of_input_order(study):
    paths, out, df = study
    again = aggregate(list(reversed(paths)), out.with_name("again.csv"))
    pd.testing.assert_frame_equal(df, again)
    assert out.read_bytes() == out.with_name("again.csv").read_bytes()


def test_aggregate_writes_csv_atomically_and_it_reads_back(study):
    _, out, df = study
    assert out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["results.csv"]  # no temporary left behind
    assert out.read_text().splitlines()[0] == ",".join(COLUMNS)
    pd.testing.assert_frame_equal(read_results(out), df)


def test_table_provenance_records_inputs(study):
    paths, out, _ = study
    target = write_table_provenance(out, paths, config={"evaluate": {"shots": [4]}})
    assert target == provenance_path(out) == out.with_name("results.csv.provenance.json")
    record = json.loads(target.read_text())
    assert record["config"] == {"evaluate": {"shots": [4]}}
    assert [i["path"] for i in record["inputs"]] == [str(p) for p in paths]
    assert all(len(i["sha256"]) == 64 for i in record["inputs"])
    assert len(record["output_sha256"]) == 64


def _edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_missing_top_level_key_names_file_and_key(tmp_path):
    paths = write_study(tmp_path)
    _edit(paths[2], lambda r: r.pop("tokens"))
    with pytest.raises(KeyError, match=rf"{paths[2].name}.*'tokens'"):
        aggregate(paths, tmp_path / "out.csv")
    assert str(paths[2]) in str(pytest.raises(KeyError, aggregate, paths, tmp_path / "out.csv").value)
    assert not (tmp_path / "out.csv").exists()


def test_missing_result_key_names_file_and_key(tmp_path):
    paths = write_study(tmp_path)
    _edit(paths[4], lambda r: r["results"][3].pop("ci_high"))
    with pytest.raises(KeyError) as err:
        aggregate(paths, tmp_path / "out.csv")
    assert str(paths[4]) in str(err.value) and "results[3]" in str(err.value) and "'ci_high'" in str(err.value)


def test_bad_value_names_file_and_key(tmp_path):
    paths = write_study(tmp_path)
    _edit(paths[0], lambda r: r.update(step="four hundred"))
    with pytest.raises(ValueError) as err:
        aggregate(paths, tmp_path / "out.csv")
    assert str(paths[0]) in str(err.value) and "'step'" in str(err.value)


def test_null_ci_is_allowed_but_null_value_is_not(tmp_path):
    paths = write_study(tmp_path)
    _edit(paths[0], lambda r: r["results"][0].update(ci_low=None, ci_high=None))
    df = aggregate(paths, tmp_path / "out.csv")
    assert df["ci_low"].isna().sum() == 1
    _edit(paths[0], lambda r: r["results"][0].update(value=None))
    with pytest.raises(ValueError, match="'value'"):
        aggregate(paths, tmp_path / "out.csv")


def test_unreadable_and_missing_files_are_named(tmp_path):
    paths = write_study(tmp_path)
    paths[1].write_text("{not json")
    with pytest.raises(ValueError, match=paths[1].name):
        aggregate(paths, tmp_path / "out.csv")
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        aggregate([tmp_path / "nowhere.json"], tmp_path / "out.csv")


def test_tokens_disagreement_and_duplicates_raise(tmp_path):
    paths = write_study(tmp_path)
    _edit(paths[0], lambda r: r.update(tokens=1))  # step 400 fine-tuned file disagrees with step 400 base
    with pytest.raises(ValueError, match="'tokens'"):
        aggregate(paths, tmp_path / "out.csv")
    paths = write_study(tmp_path)
    with pytest.raises(ValueError, match="more than once"):
        aggregate(paths + [paths[0]], tmp_path / "out.csv")


def _run_settings(dtype: str, backend: str = "hf", classification: str = "token_prob") -> dict:
    return {"evaluation_dtype": dtype, "evaluation_backend": backend, "classification": classification}


def test_a_base_fine_tuned_pair_in_two_precisions_is_refused_naming_both(tmp_path):
    """evaluate.dtype auto is fp32 on a CPU and bf16 on a GPU: a base scored on one and its fine-tune on the other must
    not make a gain (issue 24). The refusal names both models, their files and their settings."""
    paths = write_study(tmp_path)
    for path in paths:
        _edit(path, lambda r: r["provenance"].update(_run_settings("float32")))
    aggregate(paths, tmp_path / "out.csv")  # one precision: fine
    fine_tuned = tmp_path / "eval" / "tiny-olmo" / "0" / "news_sum.json"
    _edit(fine_tuned, lambda r: r["provenance"].update(evaluation_dtype="bfloat16"))
    with pytest.raises(ValueError) as raised:
        aggregate(paths, tmp_path / "out.csv")
    message = str(raised.value)
    assert "a base/fine-tuned pair mixes evaluation settings" in message
    base = tmp_path / "eval" / "tiny-olmo" / "0" / "base.json"
    assert (
        f"model 'tiny-olmo' step 0 ft_set 'base' ({base}: dtype float32, backend hf, classification token_prob) vs "
        f"model 'tiny-olmo' step 0 ft_set 'news_sum' ({fine_tuned}: dtype bfloat16, backend hf, "
        "classification token_prob)"
    ) in message
    assert "set evaluate.dtype to float32 or bfloat16" in message


@pytest.mark.parametrize("setting", ["evaluation_backend", "classification"])
def test_a_table_mixing_backend_or_classification_is_refused(tmp_path, setting):
    paths = write_study(tmp_path)
    for path in paths:
        _edit(path, lambda r: r["provenance"].update(_run_settings("float32")))
    # every model of step 400 in another setting: each base/fine-tuned pair agrees, the table across steps does not
    for path in (tmp_path / "eval" / "tiny-olmo" / "400").glob("*.json"):
        _edit(path, lambda r: r["provenance"].update({setting: "x"}))
    with pytest.raises(ValueError, match="one table mixes evaluation settings: model 'tiny-olmo' step 400 ft_set"):
        aggregate(paths, tmp_path / "out.csv")


# ---------------------------------------------------------------------------------------------- finetune_gain


def _one(frame: pd.DataFrame, **keys):
    rows = frame
    for k, v in keys.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, keys
    return rows.iloc[0]


def test_finetune_gain_values(study):
    _, _, df = study
    gain = finetune_gain(df, FT_SETS)
    assert list(gain.columns) == [
        "model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "shots", "metric",
        "base", "finetuned", "gain", "in_domain",
    ]  # fmt: skip
    # 2 ft_sets x 2 eval sets of their own family x 2 formats x 2 steps; no cross-family rows
    assert len(gain) == 16
    assert set(gain.loc[gain["ft_set"] == "places_nli", "eval_set"]) == {"places_nli", "animals_nli"}
    assert set(gain.loc[gain["ft_set"] == "news_sum", "eval_set"]) == {"news_sum", "story_sum"}

    row = _one(gain, step=0, ft_set="places_nli", eval_set="places_nli", prompt_format="default")
    assert (row["base"], row["finetuned"]) == (0.25, 0.5)
    assert row["gain"] == pytest.approx(0.25)
    assert bool(row["in_domain"]) is True
    assert row["tokens"] == 0 and row["metric"] == "accuracy"
    assert _one(gain, step=400, ft_set="places_nli", eval_set="places_nli", prompt_format="default")[
        "gain"
    ] == pytest.approx(0.25)
    assert _one(gain, step=400, ft_set="places_nli", eval_set="animals_nli", prompt_format="default")[
        "gain"
    ] == pytest.approx(0.125)
    assert _one(gain, step=0, ft_set="places_nli", eval_set="places_nli", prompt_format="instruct")[
        "gain"
    ] == pytest.approx(0.10)
    assert _one(gain, step=0, ft_set="news_sum", eval_set="news_sum", prompt_format="default")["gain"] == pytest.approx(
        0.10
    )
    out = _one(gain, step=0, ft_set="news_sum", eval_set="story_sum", prompt_format="default")
    assert out["gain"] == pytest.approx(-0.10) and bool(out["in_domain"]) is False and out["metric"] == "rougeL"
    assert _one(gain, step=400, ft_set="news_sum", eval_set="news_sum", prompt_format="default")[
        "gain"
    ] == pytest.approx(0.20)
    assert _one(gain, step=400, ft_set="news_sum", eval_set="story_sum", prompt_format="default")[
        "gain"
    ] == pytest.approx(0.125)
    assert _one(gain, step=400, ft_set="news_sum", eval_set="news_sum", prompt_format="instruct")[
        "gain"
    ] == pytest.approx(0.05)
    assert gain["in_domain"].sum() == 8
    assert gain["in_domain"].dtype == bool


def test_finetune_gain_rejects_unknown_ft_set_and_names_a_missing_base(study):
    _, _, df = study
    with pytest.raises(KeyError, match="news_sum"):
        finetune_gain(df, {"places_nli": "nli"})
    with pytest.raises(ValueError, match="summarization"):
        finetune_gain(df, {"places_nli": "nli", "news_sum": "summarization"})
    no_base = df[~((df["ft_set"] == "base") & (df["step"] == 400) & (df["eval_set"] == "story_sum"))]
    # a fine-tuned score with no base beside it is left out, counted and named (the authors' tables have one)
    with pytest.warns(UserWarning, match=r"eval_set='story_sum'.*such rows\): left out"):
        gain = finetune_gain(no_base, FT_SETS)
    missing = gain.attrs["missing_base"]
    assert missing and {(m["step"], m["eval_set"]) for m in missing} == {(400, "story_sum")}
    assert len(gain) == len(finetune_gain(df, FT_SETS)) - len(missing)


def test_base_curves_keeps_base_rows_along_steps(study):
    _, _, df = study
    base = base_curves(df)
    assert list(base.columns) == COLUMNS
    assert len(base) == 2 * 4 * 2
    assert set(base["ft_set"]) == {"base"}
    places = base[(base["eval_set"] == "places_nli") & (base["prompt_format"] == "default")]
    assert places["step"].tolist() == [0, 400]
    assert places["value"].tolist() == [0.25, 0.5]


# ---------------------------------------------------------------------------------------------- summary


def test_summary_numbers(study):
    _, _, df = study
    s = summary(df, FT_SETS)
    assert json.loads(json.dumps(s)) == s  # plain JSON types only
    assert (s["prompt_format"], s["shots"]) == ("default", 4)
    model = s["models"]["tiny-olmo"]
    assert model["steps"] == [0, 400]
    assert model["base"]["places_nli"] == {
        "task": "nli", "metric": "accuracy", "first_step": 0, "last_step": 400, "first": 0.25, "last": 0.5, "change": 0.25,
    }  # fmt: skip
    assert model["base"]["news_sum"]["first"] == 0.1 and model["base"]["news_sum"]["last"] == 0.3
    assert model["base"]["news_sum"]["change"] == 0.2
    assert model["base"]["animals_nli"]["change"] == 0.0
    assert set(model["base"]) == {"places_nli", "animals_nli", "news_sum", "story_sum"}
    # mean over ft_sets of the in-domain gain: step 0 (0.25 + 0.10) / 2, step 400 (0.25 + 0.20) / 2
    assert model["in_domain_gain"] == {"0": 0.175, "400": 0.225}
    assert model["in_domain_gain_by_ft_set"] == {
        "news_sum": {"0": 0.1, "400": 0.2},
        "places_nli": {"0": 0.25, "400": 0.25},
    }


def test_summary_other_format_and_errors(study):
    _, _, df = study
    s = summary(df, FT_SETS, prompt_format="instruct")
    assert s["models"]["tiny-olmo"]["base"]["places_nli"]["first"] == 0.3
    # instruct in-domain gains: step 0 (0.10 + 0.05) / 2, step 400 (0.25 + 0.05) / 2
    assert s["models"]["tiny-olmo"]["in_domain_gain"] == {"0": 0.075, "400": 0.15}
    with pytest.raises(ValueError, match="'io'"):
        summary(df, FT_SETS, prompt_format="io")
    with pytest.raises(ValueError, match="shots=0"):
        summary(df, FT_SETS, shots=0)


# ---------------------------------------------------------------------------------------------- findings
# Expected numbers below are worked out by hand from VALUES (default format unless said; 4-shot).


def test_prompt_sensitivity_per_eval_set_and_checkpoint(study):
    _, _, df = study
    sens = prompt_sensitivity(df, FT_SETS)
    # base: 2 steps x 4 eval sets; fine-tuned: 2 steps x 2 ft_sets, in-domain only
    assert len(sens) == 8 + 4
    row = _one(sens, step=0, stage="base", eval_set="animals_nli")
    assert (row["default"], row["instruct"], row["n_formats"]) == (0.50, 0.40, 2)
    assert (
        row["spread"] == pytest.approx(0.10)
        and row["std"] == pytest.approx(0.05)
        and row["mean"] == pytest.approx(0.45)
    )
    row = _one(sens, step=400, stage="fine-tuned", ft_set="news_sum")
    assert row["eval_set"] == "news_sum" and row["spread"] == pytest.approx(0.25)
    by = sensitivity_by_checkpoint(sens)
    assert by["stage"].tolist() == ["base", "base", "fine-tuned", "fine-tuned"]
    # base step 0: (0.05 + 0.10 + 0.05 + 0.05) / 4; step 400: (0.05 + 0.05 + 0.10 + 0.05) / 4
    assert by["spread"].tolist() == pytest.approx([0.0625, 0.0625, 0.10, 0.15])
    assert by["std"].tolist() == pytest.approx([0.03125, 0.03125, 0.05, 0.075])
    assert by["n_eval_sets"].tolist() == [4, 4, 2, 2]


def test_ratio_of_change_guards_zero_base():
    r = ratio_of_change([0.3, 0.0, 0.5], [0.2, 0.4, 0.0])
    assert r.iloc[0] == pytest.approx(0.5) and r.iloc[1] == pytest.approx(-1.0) and math.isnan(r.iloc[2])


def test_out_of_domain_change(study):
    _, _, df = study
    ood = out_of_domain_ratio(df, FT_SETS)
    # places_nli -> animals_nli: (0.45 - 0.50) / 0.50 at step 0, (0.625 - 0.50) / 0.50 at 400;
    # news_sum -> story_sum: (0.10 - 0.20) / 0.20, (0.375 - 0.25) / 0.25
    assert list(zip(ood["step"], ood["task"])) == [
        (0, "nli"),
        (0, "summarisation"),
        (400, "nli"),
        (400, "summarisation"),
    ]
    assert ood["mean_ratio"].tolist() == pytest.approx([-0.1, -0.5, 0.25, 0.5])
    assert ood["n_pairs"].tolist() == [1, 1, 1, 1] and ood["n_zero_base"].tolist() == [0, 0, 0, 0]


def test_task_transfer_mean_ratio_and_test(study):
    _, _, df = study
    tr = task_transfer(df, FT_SETS)
    c2g = tr[tr["direction"] == CLASSIFICATION_TO_GENERATION]
    g2c = tr[tr["direction"] == GENERATION_TO_CLASSIFICATION]
    # places_nli model on news_sum / story_sum: step 0 (0-0.1)/0.1, (0-0.2)/0.2; step 400 (0.1-0.3)/0.3, (0.1-0.25)/0.25
    assert c2g["mean_ratio"].tolist() == pytest.approx([-1.0, (-2 / 3 - 0.6) / 2])
    # news_sum model on places_nli / animals_nli: step 0 (0.3-0.25)/0.25, (0.3-0.5)/0.5; step 400 -0.4, -0.4
    assert g2c["mean_ratio"].tolist() == pytest.approx([-0.1, -0.4])
    assert g2c["n_pairs"].tolist() == [2, 2]
    test = task_transfer_test(df, FT_SETS).set_index("direction")
    # all four ratios negative: only the all-same-sign assignments are as extreme, 2 of 16
    assert test.loc[CLASSIFICATION_TO_GENERATION, "p_value"] == pytest.approx(2 / 16)
    assert test.loc[CLASSIFICATION_TO_GENERATION, "n_negative"] == 4
    # 0.2, -0.4, -0.4, -0.4: |sum| >= 1.0 needs the three 0.4s alike (either 0.2 sign): 4 of 16
    assert test.loc[GENERATION_TO_CLASSIFICATION, "p_value"] == pytest.approx(4 / 16)
    assert test.loc[GENERATION_TO_CLASSIFICATION, "mean_ratio"] == pytest.approx(-0.25)


def test_instruction_tuned_models_are_no_direction_of_task_transfer(study):
    _, _, df = study
    df = df.assign(ft_set=df["ft_set"].replace({"news_sum": "tulu"}))
    tr = task_transfer(df, {"places_nli": "nli", "tulu": "instruction"})
    assert set(tr["direction"]) == {CLASSIFICATION_TO_GENERATION}
    assert tr["mean_ratio"].tolist() == pytest.approx([-1.0, (-2 / 3 - 0.6) / 2])


def test_sign_flip_test_exact_and_sampled():
    # sums of +-0.5 +-1.0 +-0.25 with |sum| >= 1.25: 1.25, 1.75 and their negatives, 4 of 8
    assert sign_flip_test([0.5, 1.0, -0.25]) == pytest.approx(0.5)
    assert math.isnan(sign_flip_test([]))
    assert sign_flip_test([1.0] * 20, resamples=999, seed=1) == pytest.approx(0.001)
    assert sign_flip_test([1.0, -1.0] * 10, resamples=999, seed=1) == pytest.approx(1.0)


def test_learned_in_pretraining_rule(study):
    _, _, df = study
    groups = learned_in_pretraining(df, min_gain=0.05).set_index("eval_set")
    # places 0.25 -> 0.50 (> 1/3 chance), animals 0.50 -> 0.50, news 0.10 -> 0.30, story 0.20 -> 0.25 (exactly 0.05)
    assert groups["group"].to_dict() == {
        "animals_nli": "not learned", "news_sum": "learned", "places_nli": "learned", "story_sum": "learned",
    }  # fmt: skip
    assert groups.loc["places_nli", "chance"] == pytest.approx(1 / 3) and groups.loc["news_sum", "chance"] == 0.0
    assert groups.loc["story_sum", "change"] == pytest.approx(0.05)
    assert learned_in_pretraining(df, min_gain=0.06).set_index("eval_set").loc["story_sum", "group"] == "not learned"
    # 0.50 is not above 1/3 + 0.2
    strict = learned_in_pretraining(df, min_gain=0.05, min_above_chance=0.2).set_index("eval_set")
    assert strict.loc["places_nli", "group"] == "not learned" and strict.loc["news_sum", "group"] == "learned"


def test_gain_table_with_conservative_ci_and_groups(study):
    _, _, df = study
    groups = learned_in_pretraining(df)
    gain = gain_table(df, FT_SETS, groups)
    assert gain["ft_set"].tolist() == ["mean (learned)", "news_sum", "places_nli"] * 2
    row = _one(gain, step=0, ft_set="places_nli")
    # FT 0.50 [0.40, 0.60], base 0.25 [0.15, 0.35]
    assert (row["gain"], row["ci_low"], row["ci_high"]) == pytest.approx((0.25, 0.05, 0.45))
    row = _one(gain, step=0, ft_set="news_sum")  # FT 0.20 [0.10, 0.30], base 0.10 [0.00, 0.20]
    assert (row["gain"], row["ci_low"], row["ci_high"]) == pytest.approx((0.10, -0.10, 0.30))
    row = _one(gain, step=400, ft_set="news_sum")  # FT 0.50 [0.40, 0.60], base 0.30 [0.20, 0.40]
    assert (row["gain"], row["ci_low"], row["ci_high"]) == pytest.approx((0.20, 0.0, 0.40))
    mean = _one(gain, step=400, ft_set="mean (learned)")
    assert (mean["gain"], mean["ci_low"], mean["ci_high"]) == pytest.approx((0.225, 0.025, 0.425))
    wide = gain_table_wide(gain)
    assert list(wide.columns) == ["model", "step", "tokens", "news_sum", "places_nli", "mean (learned)"]
    assert wide.loc[0, "news_sum"] == "+0.100 [-0.100, +0.300]"
    assert wide.loc[1, "mean (learned)"] == "+0.225 [+0.025, +0.425]"


def test_read_train_logs_and_markdown(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(
        '{"epoch": 1, "loss": 6.5, "lr": 0.001, "step": 1, "tokens_per_s": 10.0}\n'
        '{"epoch": 2, "loss": 4.25, "lr": 0.0005, "step": 2, "tokens_per_s": 11.0}\n'
    )
    curves = read_train_logs({("tiny", 400, "news_sum"): log})
    assert curves.to_dict("records") == [
        {"model": "tiny", "step": 400, "ft_set": "news_sum", "train_step": 1, "epoch": 1, "loss": 6.5, "lr": 0.001},
        {"model": "tiny", "step": 400, "ft_set": "news_sum", "train_step": 2, "epoch": 2, "loss": 4.25, "lr": 0.0005},
    ]
    # the keys of today's logs (optimizer_step, step_tokens) give the same table as those of logs written before
    current = tmp_path / "current" / "train_log.jsonl"
    current.parent.mkdir()
    current.write_text(
        '{"epoch": 1, "loss": 6.5, "lr": 0.001, "optimizer_step": 1, "step_tokens": 90, "tokens_per_s": 10.0}\n'
        '{"epoch": 2, "loss": 4.25, "lr": 0.0005, "optimizer_step": 2, "step_tokens": 80, "tokens_per_s": 11.0}\n'
    )
    assert read_train_logs({("tiny", 400, "news_sum"): current}).equals(curves)
    log.write_text('{"epoch": 1, "step": 1}\n')
    with pytest.raises(ValueError, match=r"train_log.jsonl: line 1"):
        read_train_logs({("tiny", 400, "news_sum"): log})
    write_markdown(curves.head(0).assign(x=[]), tmp_path / "t.md", title="T")
    write_markdown(pd.DataFrame({"a": [1.5], "b": ["x"]}), tmp_path / "t.md", title="T")
    assert (tmp_path / "t.md").read_text().splitlines()[:4] == ["# T", "", "|   a | b   |", "|----:|:----|"]


def test_findings_summary_is_plain_json_with_headline_numbers(study):
    _, _, df = study
    groups = learned_in_pretraining(df)
    s = findings_summary(
        sensitivity_by_checkpoint(prompt_sensitivity(df, FT_SETS)),
        out_of_domain_ratio(df, FT_SETS),
        task_transfer(df, FT_SETS),
        task_transfer_test(df, FT_SETS),
        groups,
        gain_table(df, FT_SETS, groups),
    )
    assert json.loads(json.dumps(s)) == s
    m = s["models"]["tiny-olmo"]
    assert m["prompt_sensitivity_spread"] == {
        "base": {"0": 0.0625, "400": 0.0625},
        "fine-tuned": {"0": 0.1, "400": 0.15},
    }
    assert m["out_of_domain_mean_ratio"]["summarisation"] == {"0": -0.5, "400": 0.5}
    assert m["task_transfer"][GENERATION_TO_CLASSIFICATION] == {
        "mean_ratio": -0.25, "p_value": 0.25, "n_pairs": 4, "by_step": {"0": -0.1, "400": -0.4},
    }  # fmt: skip
    assert m["learned_in_pretraining"]["animals_nli"] == "not learned"
    assert m["in_domain_gain_by_group"] == {"learned": {"0": 0.175, "400": 0.225}}


# ---------------------------------------------------------------------------------------------- the study design


def test_study_design_defaults_to_own_test_set_in_domain_and_the_rest_of_the_family_out_of_domain():
    from ptft.analysis import study_design

    ft_sets = {"places_nli": "nli", "news_sum": "summarisation", "tulu": "instruction"}
    eval_sets = {"places_nli": "nli", "animals_nli": "nli", "news_sum": "summarisation", "story_sum": "summarisation"}
    design = study_design(ft_sets, eval_sets)
    assert design["places_nli"] == {"task": "nli", "in_domain": ["places_nli"], "out_of_domain": ["animals_nli"]}
    assert design["news_sum"]["out_of_domain"] == ["story_sum"]
    assert design["tulu"] == {"task": "instruction", "in_domain": [], "out_of_domain": []}
    # the paper's Table 1: a second in-domain set leaves the out-of-domain list
    given = study_design(ft_sets, eval_sets, {"places_nli": {"in_domain": ["places_nli", "animals_nli"]}})
    assert (
        given["places_nli"]["in_domain"] == ["places_nli", "animals_nli"] and given["places_nli"]["out_of_domain"] == []
    )


@pytest.mark.parametrize(
    "given, error",
    [
        ({"rte": {}}, "analysis.design: \\['rte'\\] are not training sets"),
        (
            {"places_nli": {"out_of_domain": ["qqp"]}},
            "analysis.design.places_nli.out_of_domain: 'qqp' is not an eval set",
        ),
        ({"places_nli": {"out_of_domain": ["news_sum"]}}, "'news_sum' is a summarisation set"),
        ({"places_nli": {"in_domain": ["places_nli"], "out_of_domain": ["places_nli"]}}, "both in-domain and out-of"),
    ],
)
def test_study_design_names_the_bad_key(given, error):
    from ptft.analysis import study_design

    with pytest.raises((KeyError, ValueError), match=error):
        study_design({"places_nli": "nli"}, {"places_nli": "nli", "news_sum": "summarisation"}, given)


def test_a_sign_flip_test_on_too_few_values_says_what_it_needs():
    """One pair used to print p = 1; fewer than 6 values can never give p < 0.05, and the table says so."""
    from ptft.analysis import transfer_cluster_test

    def pairs(steps):
        return pd.DataFrame({"model": "m", "step": steps, "direction": CLASSIFICATION_TO_GENERATION,
                             "ratio": [-0.5 - 0.01 * i for i in range(len(steps))]})  # fmt: skip

    one = transfer_cluster_test(pairs([1])).iloc[0]
    assert math.isnan(one["p_value"]) and "needs at least 6 values" in one["needs"] and "(has 1)" in one["needs"]
    four = transfer_cluster_test(pairs([1, 2, 3, 4])).iloc[0]
    assert four["p_value"] == pytest.approx(2 / 16) and "(has 4)" in four["needs"]
    six = transfer_cluster_test(pairs([1, 2, 3, 4, 5, 6])).iloc[0]
    assert six["p_value"] == pytest.approx(2 / 64) and six["needs"] == ""
