"""Fine-tuning variants: run labels, the lr-search dev slice and choice, seeds combined (ptft.variants, ptft.config)."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ptft.analysis import COLUMNS, aggregate, read_results
from ptft.checks import validate
from ptft.config import finetune_science, finetune_variants, ft_set_of, variant_science
from ptft.paired import ITEM_COLUMNS, ItemBootstrap, percentile_interval
from ptft.variants import Z95, combine_seeds, findings_items, select_lr, split_dev

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def mini():
    return validate(yaml.safe_load((ROOT / "tests/integration/config.yaml").read_text()))


def test_a_set_with_one_run_keeps_its_name_and_settings(mini):
    (run,) = finetune_variants(mini, "places_nli")
    assert run == {"label": "places_nli", "ft_set": "places_nli", "lr": 2.0e-3, "seed": 7, "lr_search": False}
    assert variant_science(mini, run) == finetune_science(mini, "places_nli")


def test_lr_values_and_seeds_make_labelled_runs_whose_settings_ignore_the_others(mini):
    config = copy.deepcopy(mini)
    config["finetune"]["ft_sets"]["news_sum"] = {"lr": [1.0e-3, 2.0e-6]}
    config["finetune"]["seeds"] = [1, 2]
    config = validate(config)
    runs = finetune_variants(config, "news_sum")
    assert [r["label"] for r in runs] == [
        "news_sum@lr0.001@seed1", "news_sum@lr0.001@seed2", "news_sum@lr2e-06@seed1", "news_sum@lr2e-06@seed2",
    ]  # fmt: skip
    # the set's own seed (7) keeps the plain name: seeds [7, 8] add a run beside the existing one
    config["finetune"]["seeds"] = [7, 8]
    assert [r["label"] for r in finetune_variants(config, "places_nli")] == ["places_nli", "places_nli@seed8"]
    config["finetune"]["seeds"] = [1, 2]
    assert all(r["lr_search"] and ft_set_of(r["label"]) == "news_sum" for r in runs)
    assert variant_science(config, runs[2])["lr"] == 2.0e-6 and variant_science(config, runs[2])["seed"] == 1
    # a third lr value leaves every existing run's settings (Snakemake's params trigger) as they were
    more = copy.deepcopy(config)
    more["finetune"]["ft_sets"]["news_sum"]["lr"].append(3.0e-4)
    after = {r["label"]: variant_science(more, r) for r in finetune_variants(more, "news_sum")}
    assert len(after) == 6
    assert all(after[r["label"]] == variant_science(config, r) for r in runs)


def test_dev_slice_is_seeded_disjoint_and_checked(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(20)))
    split_dev(train, tmp_path / "a.jsonl", tmp_path / "dev.jsonl", n_dev=5, seed=3)
    rest = (tmp_path / "a.jsonl").read_text().splitlines()
    dev = (tmp_path / "dev.jsonl").read_text().splitlines()
    assert len(dev) == 5 and len(rest) == 15 and sorted(rest + dev) == sorted(train.read_text().splitlines())
    split_dev(train, tmp_path / "b.jsonl", tmp_path / "dev2.jsonl", n_dev=5, seed=3)
    assert (tmp_path / "dev2.jsonl").read_text().splitlines() == dev
    split_dev(train, tmp_path / "c.jsonl", tmp_path / "dev3.jsonl", n_dev=5, seed=4)
    assert (tmp_path / "dev3.jsonl").read_text().splitlines() != dev
    with pytest.raises(ValueError, match="n_dev is 20"):
        split_dev(train, tmp_path / "d.jsonl", tmp_path / "dev4.jsonl", n_dev=20, seed=3)


def test_select_lr_per_set_and_per_checkpoint():
    scores = {("0", 1e-3): 0.2, ("0", 1e-4): 0.5, ("30", 1e-3): 0.9, ("30", 1e-4): 0.4}
    runs = [{"step": s, "lr": lr, "seed": 1, "score": v} for (s, lr), v in scores.items()]
    assert select_lr(runs, "per_set")["chosen"] == {"0": 1e-3, "30": 1e-3}  # means 0.55 vs 0.45
    assert select_lr(runs, "per_checkpoint")["chosen"] == {"0": 1e-4, "30": 1e-3}
    assert len(select_lr(runs, "per_set")["candidates"]) == 4
    with pytest.raises(ValueError, match="per_set or per_checkpoint"):
        select_lr(runs, "best")


def test_combined_interval_is_at_least_as_wide_as_each_seeds():
    rng = np.random.default_rng(0)
    cells, seeds = 200, 3  # random per-seed values and (asymmetric) intervals
    lows = rng.uniform(0, 0.5, cells * seeds)
    per_seed = pd.DataFrame({
        "cell": np.repeat(np.arange(cells), seeds), "value": lows + rng.uniform(0, 0.2, cells * seeds),
        "ci_low": lows, "ci_high": lows + rng.uniform(0, 0.4, cells * seeds), "n": 9,
    })  # fmt: skip
    combined = combine_seeds(per_seed, ["cell"]).set_index("cell")
    widest = (per_seed["ci_high"] - per_seed["ci_low"]).groupby(per_seed["cell"]).max()
    assert ((combined["ci_high"] - combined["ci_low"]) >= widest - 1e-12).all()
    assert np.allclose(combined["value"], per_seed.groupby("cell")["value"].mean())
    one = pd.DataFrame({"cell": ["a"], "value": [0.3], "ci_low": [0.1], "ci_high": [0.35], "n": [9]})
    assert combine_seeds(one, ["cell"])[["ci_low", "ci_high"]].values.tolist() == [[0.1, 0.35]]
    # two seeds with equal intervals: the between-seed variance widens the interval
    two = pd.DataFrame({"cell": ["a", "a"], "value": [0.2, 0.6], "ci_low": [0.1, 0.5], "ci_high": [0.3, 0.7], "n": [9, 9]})
    (row,) = combine_seeds(two, ["cell"]).to_dict("records")
    assert row["ci_high"] - row["ci_low"] == pytest.approx(2 * Z95 * np.sqrt((0.2 / (2 * Z95)) ** 2 + 0.08))
    # a seed without an interval (too few items) leaves the combined interval undefined, never narrower
    (row,) = combine_seeds(two.assign(ci_low=[0.1, np.nan]), ["cell"]).to_dict("records")
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])


def _eval_json(tmp_path: Path, ft: str, value: float, lo: float, hi: float) -> Path:
    record = {"model": "tiny", "step": 0, "tokens": 0, "ft_set": ft, "results": [
        {"eval_set": "places_nli", "task": "nli", "prompt_format": "default", "shots": 1, "metric": "accuracy",
         "value": value, "ci_low": lo, "ci_high": hi, "n": 9}]}  # fmt: skip
    path = tmp_path / f"{ft}.json"
    path.write_text(json.dumps(record))
    return path


def test_aggregate_marks_runs_and_findings_read_selected_seeds_combined(tmp_path):
    runs = {
        f"places_nli@lr{lr:g}@seed{seed}": {"label": f"places_nli@lr{lr:g}@seed{seed}", "ft_set": "places_nli",
                                            "lr": lr, "seed": seed, "lr_search": True}
        for lr in (1e-3, 2e-3) for seed in (1, 2)
    }  # fmt: skip
    values = {"places_nli@lr0.001@seed1": 0.5, "places_nli@lr0.001@seed2": 0.7,
              "places_nli@lr0.002@seed1": 0.1, "places_nli@lr0.002@seed2": 0.2}  # fmt: skip
    paths = [_eval_json(tmp_path, "base", 0.3, 0.1, 0.5)]
    paths += [_eval_json(tmp_path, label, v, v - 0.1, v + 0.1) for label, v in values.items()]
    out = tmp_path / "results.csv"
    table = aggregate(paths, out, runs=runs, lr_choices={"tiny": {"places_nli": {"0": 1e-3}}})
    assert list(table.columns) == COLUMNS + ["lr", "seed", "selected"]
    tuned = table[table["ft_set"] == "places_nli"]
    assert len(tuned) == 4 and set(tuned["seed"]) == {1, 2}
    assert tuned.groupby("lr")["selected"].all().to_dict() == {1e-3: True, 2e-3: False}
    findings = read_results(out)
    assert list(findings.columns) == COLUMNS and len(findings) == 2
    row = findings[findings["ft_set"] == "places_nli"].iloc[0]
    assert row["value"] == pytest.approx(0.6) and row["ci_high"] - row["ci_low"] > 0.2
    assert len(read_results(out, every_run=True)) == 5

    items = pd.DataFrame(
        [("tiny", 0, label, "places_nli", "default", 1, "accuracy", f"d{i}", float(i % 2))
         for label in ["base", *values] for i in range(4)], columns=ITEM_COLUMNS,
    )  # fmt: skip
    kept = findings_items(items, runs, read_results(out, every_run=True))
    assert set(kept["ft_set"]) == {"base", "places_nli"} and len(kept) == 12
    assert sorted(kept["seed"].dropna().unique()) == [1, 2]


def test_item_bootstrap_resamples_seeds_before_items():
    # two seeds of one fine-tuned cell that disagree: resampling seeds widens the cell's interval beyond either seed's
    scores = {1: [1, 1, 1, 0, 1, 1, 0, 1], 2: [0, 0, 1, 0, 0, 0, 1, 0]}
    rows = [("tiny", 0, "nli", "places_nli", "default", 1, "accuracy", f"d{i}", float(s), seed)
            for seed, col in scores.items() for i, s in enumerate(col)]  # fmt: skip
    items = pd.DataFrame(rows, columns=[*ITEM_COLUMNS, "seed"])
    cell = pd.DataFrame([("tiny", 0, "nli", "places_nli", "default", 1, "accuracy")],
                        columns=["model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric"])  # fmt: skip
    both = percentile_interval(ItemBootstrap(items, 2000, 0).draws(cell)[0])
    for seed in scores:
        alone = percentile_interval(ItemBootstrap(items[items["seed"] == seed], 2000, 0).draws(cell)[0])
        assert both[1] - both[0] > alone[1] - alone[0]


def test_estimate_counts_every_run_of_the_grid(mini):
    from ptft import estimate

    config = copy.deepcopy(mini)
    config["finetune"]["ft_sets"]["news_sum"] = {"lr": [1.0e-3, 2.0e-3, 3.0e-3]}
    config["finetune"]["seeds"] = [1, 2]
    counts = estimate.job_counts(validate(config), estimate.PROJECT)
    # 2 checkpoints x (news_sum: 3 lr x 2 seeds + places_nli: 2 seeds); dev evaluations for news_sum's 6 runs only
    assert {k: counts[k] for k in ("finetune", "evaluate", "evaluate_dev", "select_lr", "lr_search_split")} == {
        "finetune": 16, "evaluate": 18, "evaluate_dev": 12, "select_lr": 1, "lr_search_split": 1,
    }  # fmt: skip
