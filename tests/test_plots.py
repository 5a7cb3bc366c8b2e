"""Tests for ptft.plots: files are written (valid PNG, deterministic SVG); figures have the panels and series asked for."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from PIL import Image

from ptft.analysis import (
    COLUMNS,
    finetune_gain,
    gain_table,
    learned_in_pretraining,
    out_of_domain_ratio,
    prompt_sensitivity,
    task_transfer,
)
from ptft.plots import (
    base_curves_by_group_figure,
    base_curves_figure,
    finetune_curves_figure,
    finetune_gain_figure,
    gain_groups_figure,
    plot_base_curves,
    plot_finetune_gain,
    prompt_sensitivity_figure,
    ratio_of_change_figure,
    save_figure,
)

FT_SETS = {"places_nli": "nli", "news_sum": "summarisation"}
TASK = {"places_nli": "nli", "animals_nli": "nli", "news_sum": "summarisation", "story_sum": "summarisation"}
METRIC = {"nli": "accuracy", "summarisation": "rougeL"}


def results_table(steps_tokens=((0, 0), (400, 819200)), models=("tiny-olmo",)) -> pd.DataFrame:
    """A tidy table like aggregate's: base + 2 ft_sets x 4 eval sets x 2 formats, 4-shot; values vary by cell."""
    rows = []
    cells = itertools.product(models, steps_tokens, ("base", "news_sum", "places_nli"), TASK, ("default", "instruct"))
    for i, (model, (step, tokens), ft_set, eval_set, fmt) in enumerate(cells):
        value = 0.1 + (i % 7) / 10
        rows.append(
            {"model": model, "step": step, "tokens": tokens, "ft_set": ft_set, "eval_set": eval_set,
             "task": TASK[eval_set], "prompt_format": fmt, "shots": 4, "metric": METRIC[TASK[eval_set]],
             "value": value, "ci_low": value - 0.05, "ci_high": value + 0.05, "n": 60}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def labelled_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_base_curves_panels_and_series():
    fig = base_curves_figure(results_table())
    assert len(fig.axes) == 2  # one panel per task family
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["summarisation", "nli"]  # tasks.py's order
    for ax in fig.axes:
        assert len(errorbars(ax)) == 2  # one series per eval set, default format only
        assert ax.get_xlabel().startswith("Pre-training tokens")
    assert fig.axes[0].get_ylabel() == "ROUGE-L"
    assert fig.axes[1].get_ylabel() == "Accuracy"
    assert {t.get_text() for t in fig.axes[1].get_legend().get_texts()} == {"places_nli", "animals_nli"}


def test_base_curves_all_formats_and_models():
    both = pd.concat([results_table(), results_table(models=("other",))])
    fig = base_curves_figure(both, prompt_formats=None)
    assert len(fig.axes) == 4  # 2 models (rows) x 2 task families
    for ax in fig.axes:
        assert len(errorbars(ax)) == 4  # 2 eval sets x 2 formats
    assert {ax.get_title() for ax in fig.axes} == {
        "tiny-olmo: nli",
        "tiny-olmo: summarisation",
        "other: nli",
        "other: summarisation",
    }


def test_base_curves_log_axis_keeps_step_zero():
    wide = results_table(steps_tokens=((0, 0), (10, 20_480), (400, 819_200), (1000, 2_048_000)))
    ax = base_curves_figure(wide).axes[0]
    assert ax.get_xscale() == "symlog"
    assert "log" in ax.get_xlabel()
    x = errorbars(ax)[0].lines[0].get_xdata()
    assert list(x) == [0, 20_480, 819_200, 2_048_000]
    narrow = results_table(steps_tokens=((100, 204_800), (400, 819_200)))
    assert base_curves_figure(narrow).axes[0].get_xscale() == "linear"


def test_base_curves_name_the_steps_on_a_secondary_axis():
    ax = base_curves_figure(results_table(steps_tokens=((0, 0), (150, 307200), (400, 819200)))).axes[0]
    (top,) = ax.child_axes
    assert [t.get_text() for t in top.get_xticklabels()] == ["0", "150", "400"]
    assert list(top.get_xticks()) == [0.0, 307200.0, 819200.0]
    assert top.get_xlabel() == "Checkpoint (step)"


def test_finetune_gain_panels_series_and_zero_line():
    gain = finetune_gain(results_table(), FT_SETS)
    fig = finetune_gain_figure(gain)
    assert len(fig.axes) == 2  # one panel per ft_set
    assert [ax.get_title() for ax in fig.axes] == ["FT on news_sum (summarisation)", "FT on places_nli (nli)"]
    for ax, ft_set in zip(fig.axes, ("news_sum", "places_nli")):
        lines = labelled_lines(ax)
        assert len(lines) == 2  # one per eval set of the ft_set's family
        assert lines[0].get_label() == f"{ft_set} (in-domain)"
        assert lines[0].get_linestyle() == "-" and lines[1].get_linestyle() == "--"
        assert any(list(line.get_ydata()) == [0, 0] for line in ax.get_lines() if line.get_label() == "_zero")
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "400"]
        assert list(lines[0].get_xdata()) == [0, 1]  # categorical positions in step order
    assert "ROUGE-L" in fig.axes[0].get_ylabel() and "Accuracy" in fig.axes[1].get_ylabel()


def test_plot_files_are_valid_and_svg_is_deterministic(tmp_path: Path):
    df = results_table()
    gain = finetune_gain(df, FT_SETS)
    out = tmp_path / "figures"
    plot_base_curves(df, out / "base.png", out / "base.svg")
    plot_finetune_gain(gain, out / "gain.png", out / "gain.svg")
    plot_base_curves(df, out / "base2.png", out / "base2.svg")
    assert sorted(p.name for p in out.iterdir()) == [
        "base.png",
        "base.svg",
        "base2.png",
        "base2.svg",
        "gain.png",
        "gain.svg",
    ]
    for name in ("base.png", "gain.png"):
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG"
            assert img.size[0] > 600 and img.size[1] > 300
    svg = (out / "base.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg
    assert (out / "base.svg").read_bytes() == (out / "base2.svg").read_bytes()
    assert (out / "base.png").read_bytes() == (out / "base2.png").read_bytes()


def test_empty_selection_raises():
    df = results_table()
    with pytest.raises(ValueError, match="shots=8"):
        base_curves_figure(df, shots=8)
    with pytest.raises(ValueError, match="'io'"):
        finetune_gain_figure(finetune_gain(df, FT_SETS), prompt_format="io")


# ---------------------------------------------------------------------------------------------- findings figures


def test_prompt_sensitivity_figure_panels_and_series():
    sens = prompt_sensitivity(results_table(), FT_SETS)
    fig = prompt_sensitivity_figure(sens)
    assert [ax.get_title() for ax in fig.axes] == ["base (every eval set)", "fine-tuned (in-domain eval set)"]
    base, tuned = (labelled_lines(ax) for ax in fig.axes)
    assert len(base) == 4 + 1 and len(tuned) == 2 + 1  # one per eval set, plus the mean
    assert base[-1].get_label() == "mean" and list(base[-1].get_xdata()) == [0, 1]
    assert all("Spread" in ax.get_ylabel() for ax in fig.axes)


def test_ratio_of_change_figure_panels_and_series():
    df = results_table()
    fig = ratio_of_change_figure(out_of_domain_ratio(df, FT_SETS), task_transfer(df, FT_SETS))
    assert [ax.get_title() for ax in fig.axes] == ["out-of-domain, same task", "across task kinds"]
    assert [line.get_label() for line in labelled_lines(fig.axes[0])] == ["summarisation", "nli"]
    assert len(labelled_lines(fig.axes[1])) == 2  # the two directions
    assert all(any(line.get_label() == "_zero" for line in ax.get_lines()) for ax in fig.axes)
    assert all("ratio of change" in ax.get_ylabel() for ax in fig.axes)


def test_gain_groups_figure_has_ci_bars_per_ft_set_and_mean():
    df = results_table()
    groups = learned_in_pretraining(df, min_gain=-1.0)  # every set "learned" unless at or below chance
    gain = gain_table(df, FT_SETS, groups)
    fig = gain_groups_figure(gain)
    n_groups = groups["group"].nunique()
    assert len(fig.axes) == n_groups
    assert sum(len(errorbars(ax)) for ax in fig.axes) == 2 + n_groups  # one per ft_set, one mean per group
    for ax in fig.axes:
        assert errorbars(ax)[-1].get_label() == "mean"
        assert ax.get_xlabel() == "Checkpoint (pre-training step)"
    with pytest.raises(ValueError, match="group"):
        gain_groups_figure(gain_table(df, FT_SETS))


def test_finetune_curves_figure_one_line_per_checkpoint():
    curves = pd.DataFrame(
        [{"model": "m", "step": step, "ft_set": ft, "train_step": t, "epoch": 1, "loss": 5.0 - t, "lr": 1e-3}
         for ft in ("news_sum", "places_nli") for step in (0, 400, 1000) for t in (1, 2, 3)]
    )  # fmt: skip
    fig = finetune_curves_figure(curves)
    assert [ax.get_title() for ax in fig.axes] == ["FT on news_sum", "FT on places_nli"]
    for ax in fig.axes:
        assert [line.get_label() for line in labelled_lines(ax)] == ["0", "400", "1000"]
        assert ax.get_ylabel() == "Training loss"


def test_base_curves_by_group_and_save(tmp_path: Path):
    df = results_table()
    groups = pd.DataFrame(
        {"model": "tiny-olmo", "eval_set": list(TASK), "group": ["learned", "not learned", "learned", "not learned"]}
    )
    fig = base_curves_by_group_figure(df, groups)
    assert [ax.get_title() for ax in fig.axes] == ["learned", "not learned"]
    assert [len(errorbars(ax)) for ax in fig.axes] == [2, 2]
    assert "pre-training group" in fig.get_suptitle()
    save_figure(fig, tmp_path / "g.png", tmp_path / "g.svg")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG" and b"<svg" in (tmp_path / "g.svg").read_bytes()[:2000]


# ---------------------------------------------------------------- analysis.prompt_format reaches every figure


def test_the_prompt_format_chooses_what_base_curves_and_finetune_gain_plot():
    df = results_table()
    base = df[(df["ft_set"] == "base") & (df["eval_set"] == "news_sum")].sort_values("step")
    gain = finetune_gain(df, FT_SETS)
    own = gain[(gain["ft_set"] == "news_sum") & (gain["eval_set"] == "news_sum")].sort_values("step")
    plotted = {}
    for fmt in ("default", "instruct"):
        curves = [c for ax in base_curves_figure(df, prompt_formats=(fmt,)).axes for c in errorbars(ax)]
        assert {c[0].get_gid().split("|")[1] for c in curves} == {fmt}  # no other format's series
        curve = next(c for c in curves if c[0].get_gid() == f"news_sum|{fmt}")
        assert list(curve[0].get_ydata()) == list(base.loc[base["prompt_format"] == fmt, "value"])
        line = labelled_lines(finetune_gain_figure(gain, prompt_format=fmt).axes[0])[0]
        assert list(line.get_ydata()) == list(own.loc[own["prompt_format"] == fmt, "gain"])
        plotted[fmt] = (list(curve[0].get_ydata()), list(line.get_ydata()))
    assert plotted["default"][0] != plotted["instruct"][0] and plotted["default"][1] != plotted["instruct"][1]


@pytest.mark.parametrize("script", ["plot_base_curves", "plot_finetune_gain"])
def test_the_rules_scripts_pass_analysis_prompt_format(script, tmp_path: Path):
    """The scripts as the rules run them (a stand-in for Snakemake's `snakemake` object): the figure draws the
    configured format (its SVG names the series, and its title the format) and its provenance records it."""
    import json
    import runpy
    from types import SimpleNamespace

    table = tmp_path / "results.csv"
    results_table().to_csv(table, index=False)
    drawn = {}
    for fmt in ("default", "instruct"):
        out = SimpleNamespace(png=str(tmp_path / f"{fmt}.png"), svg=str(tmp_path / f"{fmt}.svg"))
        snakemake = SimpleNamespace(
            input=SimpleNamespace(table=str(table)), output=out, log=[None],
            params=SimpleNamespace(prompt_format=fmt, ft_sets=FT_SETS),
        )  # fmt: skip
        runpy.run_path(str(Path(__file__).parents[1] / "scripts" / f"{script}.py"), init_globals={"snakemake": snakemake})
        assert json.loads(Path(f"{out.png}.provenance.json").read_text())["config"]["prompt_format"] == fmt
        drawn[fmt] = Path(out.svg).read_text()
        assert f"({fmt} format" in drawn[fmt]  # the title says which format the data are
    if script == "plot_base_curves":
        assert 'id="news_sum|instruct"' in drawn["instruct"] and 'id="news_sum|instruct"' not in drawn["default"]
