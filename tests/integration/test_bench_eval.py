"""Smoke test of bench/eval_throughput.py in its --quick setting (timings are printed, never asserted)."""

from __future__ import annotations

import pytest

from conftest import load_bench


def test_eval_throughput_quick_runs_both_ways_per_task_kind(capsys, monkeypatch):
    monkeypatch.setenv("PTFT_PEAK_FLOPS", "1e11")  # a peak for this CPU: the MFU path runs (its value means nothing)
    report = load_bench("eval_throughput").main(["--quick", "--threads", "1"])
    assert report["items"] == 8
    assert set(report["kinds"]) == {"classification", "generation"}
    for kind in report["kinds"].values():
        assert kind["items"] == 4 and kind["ours_examples_per_s"] > 0 and kind["authors_examples_per_s"] > 0
    assert report["classification"] == "token_prob" and report["dtype"] == "float32"
    out = capsys.readouterr().out
    assert "classification:" in out and "generation:" in out and "total:" in out
    # fixed shots (the default): each kind's shot block computed once, so fewer prompt tokens than whole prompts
    assert "prompt tokens computed" in out
    for kind in report["kinds"].values():
        assert kind["prefix_runs"] == 1 and 0 < kind["prompt_tokens_computed_shared"] < kind["prompt_tokens_computed_whole"]
    # MFU of the tokens the model computed: 2 x matmul parameters x computed prompt tokens / time / peak
    for kind in report["kinds"].values():
        expected = 2 * report["matmul_parameters"] * kind["prompt_tokens_computed_shared"] / kind["ours_s"] / 1e11
        assert kind["ours_prompt_mfu"] == pytest.approx(expected) and 0 < kind["ours_prompt_mfu"] < 1
    assert "prompt MFU" in out
