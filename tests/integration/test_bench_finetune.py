"""Smoke test of bench/finetune_throughput.py in its --quick CPU setting (timings are printed, never asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "finetune_throughput.py"


def test_finetune_throughput_quick_measures_both_engines(capsys):
    spec = importlib.util.spec_from_file_location("finetune_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--threads", "1"])
    assert report["ours_tokens_per_s"] > 0 and report["authors_tokens_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["ours_tokens_per_s"] / report["authors_tokens_per_s"], abs=0.01)
    assert report["timed_steps"] == 3 and report["examples_per_step"] == 8
    assert "ratio:" in capsys.readouterr().out
