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


def test_finetune_throughput_profile_writes_the_operator_table(tmp_path, monkeypatch):
    # PTFT_PEAK_FLOPS: a peak for this CPU, so the MFU path runs too (the figure itself means nothing here)
    monkeypatch.setenv("PTFT_PEAK_FLOPS", "1e11")
    table = tmp_path / "profile.txt"
    report = load_bench("finetune_throughput").main(["--quick", "--threads", "1", "--profile", str(table)])
    assert report["profile"] == {"profiled_steps": 3, "table": str(table)}
    text = table.read_text()
    assert "Self CPU" in text and "aten::mm" in text  # the operators of 3 recorded steps, matmuls among them
    assert 0 < report["ours_mfu"] < 1
