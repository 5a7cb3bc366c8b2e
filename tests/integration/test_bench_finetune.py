"""Smoke test of bench/finetune_throughput.py in its --quick CPU setting (timings are printed, never asserted)."""

from __future__ import annotations

import pytest

from conftest import load_bench


def test_finetune_throughput_quick_measures_both_engines(capsys):
    report = load_bench("finetune_throughput").main(["--quick", "--threads", "1"])
    assert report["ours_tokens_per_s"] > 0 and report["authors_tokens_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["ours_tokens_per_s"] / report["authors_tokens_per_s"], abs=0.01)
    assert report["timed_steps"] == 3 and report["examples_per_step"] == 8
    assert "ratio:" in capsys.readouterr().out
