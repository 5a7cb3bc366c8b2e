"""Smoke test of bench/eval_throughput.py in its --quick setting (timings are printed, never asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "eval_throughput.py"


def test_eval_throughput_quick_runs_both_ways(capsys):
    spec = importlib.util.spec_from_file_location("eval_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--threads", "1"])
    assert report["items"] == 8
    assert report["ours_examples_per_s"] > 0 and report["authors_examples_per_s"] > 0
    assert "ratio:" in capsys.readouterr().out
