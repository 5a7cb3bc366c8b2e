"""Smoke test of bench/eval_throughput.py in its --quick setting (timings are printed, never asserted)."""

from __future__ import annotations

from conftest import load_bench


def test_eval_throughput_quick_runs_both_ways(capsys):
    report = load_bench("eval_throughput").main(["--quick", "--threads", "1"])
    assert report["items"] == 8
    assert report["ours_examples_per_s"] > 0 and report["authors_examples_per_s"] > 0
    assert "ratio:" in capsys.readouterr().out
