import json

import numpy as np
import pandas as pd
import pytest

from ptft.analysis import gain_table
from ptft.paired import ITEM_COLUMNS, ItemBootstrap, bootstrap_statistic, percentile_interval, read_items
from ptft.evaluate import bootstrap_ci


def _items(cells: dict[tuple, list[float]], eval_set: str = "places_nli", metric: str = "accuracy") -> pd.DataFrame:
    rows = []
    for (step, ft_set, fmt), scores in cells.items():
        for i, s in enumerate(scores):
            rows.append(("tiny", step, ft_set, eval_set, fmt, 1, metric, f"d{i}", float(s)))
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def _results(items: pd.DataFrame, task: str = "nli") -> pd.DataFrame:
    keys = ["model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric"]
    df = items.groupby(keys, sort=True)["score"].agg(["mean", "size"]).reset_index()
    df = df.rename(columns={"mean": "value", "size": "n"})
    df["tokens"] = df["step"] * 10
    df["task"] = task
    df["ci_low"], df["ci_high"] = np.nan, np.nan
    return df[["model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "shots", "metric",
               "value", "ci_low", "ci_high", "n"]]  # fmt: skip


def _gain(t: pd.DataFrame) -> pd.DataFrame:
    ft = t[t["ft_set"] != "base"].set_index(["model", "step"])["value"]
    base = t[t["ft_set"] == "base"].set_index(["model", "step"])["value"]
    return (ft - base.reindex(ft.index)).rename("gain").reset_index()


def test_paired_interval_matches_a_hand_computation():
    # FT - base per item is [1, 0, 0, 0]: a resample's mean difference is (copies of item 0) / 4, with copies
    # ~ Binomial(4, 1/4): P(0)=.316, P(<=1)=.738, P(<=2)=.949, P(<=3)=.996. So the 2.5% quantile is 0 and the
    # 97.5% quantile 3/4; and no resample can give a negative difference.
    items = _items({(0, "base", "default"): [0, 1, 0, 0], (0, "places_nli", "default"): [1, 1, 0, 0]})
    boot = ItemBootstrap(items, resamples=20_000, seed=1)
    out = bootstrap_statistic(_gain, _results(items), ["model", "step"], "gain", boot)
    assert out.loc[0, "gain"] == pytest.approx(0.25)
    assert (out.loc[0, "ci_low"], out.loc[0, "ci_high"]) == (pytest.approx(0.0), pytest.approx(0.75))
    draws = boot.draws(_results(items))
    diff = draws[1] - draws[0]
    assert diff.min() >= 0 and set(np.round(diff * 4).astype(int)) <= {0, 1, 2, 3, 4}
    # the share of resamples with no copy of item 0 is (3/4)^4 = 0.316
    assert np.mean(diff == 0) == pytest.approx(0.75**4, abs=0.01)


def test_the_same_draw_rescores_every_model_and_is_seeded_per_eval_set():
    items = _items({(0, "base", "default"): [0, 1, 0, 1, 1], (0, "base", "io"): [1, 1, 0, 0, 1]})
    a = ItemBootstrap(items, 50, seed=3).draws(_results(items))
    b = ItemBootstrap(items, 50, seed=3).draws(_results(items))
    c = ItemBootstrap(items, 50, seed=4).draws(_results(items))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # hand: resample 0 of eval set places_nli draws these item indices
    import zlib

    idx = np.random.default_rng([3, zlib.crc32(b"places_nli")]).integers(0, 5, size=(50, 5))[0]
    assert a[0, 0] == pytest.approx(np.array([0, 1, 0, 1, 1])[idx].mean())
    assert a[1, 0] == pytest.approx(np.array([1, 1, 0, 0, 1])[idx].mean())


def test_paired_interval_is_narrower_than_the_conservative_one_on_correlated_scores():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.5).astype(float)
    tuned = base.copy()
    flip = rng.choice(200, size=20, replace=False)
    tuned[flip] = 1.0  # fine-tuning fixes a few items and keeps the rest: strongly correlated scores
    items = _items({(0, "base", "default"): base, (0, "places_nli", "default"): tuned})
    df = _results(items)
    for ft_set, scores in (("base", base), ("places_nli", tuned)):
        low, high = bootstrap_ci(scores, 2000, 0)
        df.loc[df["ft_set"] == ft_set, ["ci_low", "ci_high"]] = [low, high]
    ft_sets = {"places_nli": "nli"}
    conservative = gain_table(df, ft_sets)
    paired = gain_table(df, ft_sets, boot=ItemBootstrap(items, 2000, seed=0))
    width_c = float(conservative["ci_high"].iloc[0] - conservative["ci_low"].iloc[0])
    width_p = float(paired["ci_high"].iloc[0] - paired["ci_low"].iloc[0])
    assert paired["gain"].iloc[0] == pytest.approx(conservative["gain"].iloc[0])
    assert width_p < width_c / 2
    assert paired["ci_low"].iloc[0] > 0 > conservative["ci_low"].iloc[0]


def test_cells_with_different_items_are_refused():
    items = _items({(0, "base", "default"): [0, 1, 1], (0, "places_nli", "default"): [1, 1]})
    with pytest.raises(ValueError, match="places_nli.*a paired bootstrap needs the same items"):
        ItemBootstrap(items, 10)


def test_an_interval_needing_a_cell_without_items_is_nan():
    assert np.isnan(percentile_interval(np.array([0.1, np.nan]))).all()
    items = _items({(0, "base", "default"): [0, 1, 0, 0]})
    df = _results(_items({(0, "base", "default"): [0, 1, 0, 0], (0, "places_nli", "default"): [1, 1, 0, 0]}))
    out = bootstrap_statistic(_gain, df, ["model", "step"], "gain", ItemBootstrap(items, 20))
    assert np.isnan(out.loc[0, "ci_low"]) and out.loc[0, "gain"] == pytest.approx(0.25)


def test_read_items_joins_predictions_to_their_result_file(tmp_path):
    result = {
        "model": "tiny", "step": 30, "tokens": 300, "ft_set": "base",
        "results": [
            {"eval_set": "places_nli", "prompt_format": "default", "shots": 1, "metric": "accuracy"},
            {"eval_set": "arc_easy", "prompt_format": "native", "shots": 0, "metric": "acc"},
            {"eval_set": "arc_easy", "prompt_format": "native", "shots": 0, "metric": "acc_norm"},
        ],
    }  # fmt: skip
    (tmp_path / "base.json").write_text(json.dumps(result))
    preds = [
        {"doc_id": "a", "eval_set": "places_nli", "prompt_format": "default", "shots": 1, "score": 1.0},
        {"doc_id": 7, "eval_set": "arc_easy", "prompt_format": "native", "shots": 0, "score": 0.0, "acc_norm": 1.0},
    ]
    (tmp_path / "base.predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    items = read_items([tmp_path / "base.json"])
    got = {(r.eval_set, r.metric, r.doc_id): r.score for r in items.itertuples()}
    assert got == {
        ("places_nli", "accuracy", "a"): 1.0,
        ("arc_easy", "acc", "7"): 0.0,
        ("arc_easy", "acc_norm", "7"): 1.0,
    }
    assert set(items["step"]) == {30} and set(items["ft_set"]) == {"base"}
    (tmp_path / "base.predictions.jsonl").write_text('{"doc_id": 1}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_items([tmp_path / "base.json"])
