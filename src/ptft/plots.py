"""The study's figures, drawn from the tidy results table: one look (set in `style`), PNG and SVG, written atomically.

Each `plot_*` has a `*_figure` twin that returns the matplotlib Figure, so tests can count panels and series.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ptft.analysis import DEFAULT_FORMAT, base_curves, task_order

DPI = 150
PANEL_SIZE = (4.6, 2.8)  # inches per panel, legend included: text stays readable when a figure is set at paper width
MAX_COLUMNS = 2  # wider figures shrink their text below readable when set at paper width
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "rougeL": "ROUGE-L",
    "rouge_l": "ROUGE-L",
    "acc": "Accuracy",
    "acc_norm": "Accuracy (norm.)",
}
FORMAT_STYLES = {"default": "-", "instruct": "--", "io": ":"}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The one look of every figure, applied to drawing and saving, and nothing global left behind.

    SVG output is byte-stable: a fixed hash salt for element ids and text drawn as paths.
    """
    rc = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("paper", font_scale=1.15))
    rc.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
            "savefig.pad_inches": 0.05,
            "svg.hashsalt": "ptft",
            "svg.fonttype": "path",
            # matplotlib's own font, so a figure renders the same wherever Arial & co. happen to be installed
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans"],
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "lines.linewidth": 1.6,
            "lines.markersize": 5,
        }
    )
    with matplotlib.rc_context(rc):
        yield


def _panels_figure(panels: Sequence[tuple[str, str]]) -> tuple[Figure, list]:
    """A figure with one axes per (model, facet), in order: facets wrapped at MAX_COLUMNS, each model starting
    a new row and keeping a facet in the same slot, so panels line up across models."""
    models = list(dict.fromkeys(m for m, _ in panels))
    facets = list(dict.fromkeys(f for _, f in panels))
    cols = min(len(facets), MAX_COLUMNS)
    rows_per_model = -(-len(facets) // cols)
    rows = rows_per_model * len(models)
    fig = Figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)  # draw with Agg without switching pyplot's global backend
    axes = [
        fig.add_subplot(rows, cols, models.index(m) * rows_per_model * cols + facets.index(f) + 1) for m, f in panels
    ]
    return fig, axes


def _legend(ax) -> None:
    # beside the panel, never over the data
    ax.legend(
        title="eval set",
        fontsize="small",
        title_fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
    )


def _metric_label(metrics: Sequence[str]) -> str:
    return " / ".join(METRIC_LABELS.get(m, m) for m in dict.fromkeys(metrics))


def _eval_set_colors(df: pd.DataFrame) -> dict[str, tuple]:
    """One colour per eval_set for the whole figure, grouped by task family so a family's sets sit together."""
    order = df[["task", "eval_set"]].drop_duplicates()
    rank = {t: i for i, t in enumerate(task_order(order["task"]))}
    names = sorted(dict(zip(order["eval_set"], order["task"])).items(), key=lambda et: (rank[et[1]], et[0]))
    palette = (
        sns.color_palette("colorblind", max(len(names), 1))
        if len(names) <= 10
        else sns.color_palette("husl", len(names))
    )
    return {name: palette[i] for i, (name, _) in enumerate(names)}


def _human(x: float, _pos: int | None = None) -> str:
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= unit:
            return f"{x / unit:.3g}{suffix}"
    return f"{x:.3g}"


def _token_axis(ax, tokens: np.ndarray) -> str:
    """Log scale when the checkpoints span more than 10x; symlog keeps step 0 (zero tokens) on the axis."""
    positive = np.unique(tokens[tokens > 0])
    if len(positive) >= 2 and positive.max() / positive.min() > 10:
        if (tokens <= 0).any():
            linthresh = float(positive.min())
            ax.set_xscale("symlog", linthresh=linthresh, linscale=0.6)
            # 0, then whole decades above the linear part: ticks inside it would crowd the 0 label
            decades = 10.0 ** np.arange(np.ceil(np.log10(linthresh * 1.5)), np.floor(np.log10(positive.max())) + 1)
            ax.xaxis.set_major_locator(FixedLocator([0.0, *decades]))
            ax.xaxis.set_minor_locator(NullLocator())
        else:
            ax.set_xscale("log")
        scale = " (log scale)"
    else:
        scale = ""
        if len(np.unique(tokens)) == 1:  # a single checkpoint (a final-only model): label just it
            ax.xaxis.set_major_locator(FixedLocator([float(tokens[0])]))
    ax.xaxis.set_major_formatter(FuncFormatter(_human))
    return f"Pre-training tokens{scale}"


def _pick_shots(df: pd.DataFrame, shots: int | None, what: str) -> pd.DataFrame:
    if df.empty:
        raise ValueError(f"{what}: no rows to plot")
    shots = int(df["shots"].max()) if shots is None else shots
    out = df[df["shots"] == shots]
    if out.empty:
        raise ValueError(f"{what}: no rows with shots={shots} (have {sorted(set(df['shots']))})")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save(fig: Figure, out_png: Path, out_svg: Path) -> None:
    for out, fmt, metadata in ((Path(out_png), "png", {"Software": None}), (Path(out_svg), "svg", {"Date": None})):
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{fmt}", dir=out.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, metadata=metadata)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a figure should read like any other file
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


# ---------------------------------------------------------------------------------------------- figures


def base_curves_figure(
    df: pd.DataFrame, prompt_formats: Sequence[str] | None = (DEFAULT_FORMAT,), shots: int | None = None
) -> Figure:
    """Base performance along pre-training: one panel per task family (each model on its own rows),
    hue = eval_set, line style = prompt_format, error bars = the bootstrap CI.

    `prompt_formats=None` draws every format; `shots` defaults to the largest evaluated.
    """
    with style():
        rows = base_curves(df)
        if prompt_formats is not None:
            rows = rows[rows["prompt_format"].isin(list(prompt_formats))]
        rows = _pick_shots(rows, shots, f"base curves (prompt formats {prompt_formats})")
        present = set(rows["prompt_format"])
        formats = [f for f in FORMAT_STYLES if f in present] + sorted(present - set(FORMAT_STYLES))
        several_formats = len(formats) > 1
        colors = _eval_set_colors(rows)
        models = sorted(set(rows["model"]))
        panels = [(m, t) for m in models for t in task_order(rows.loc[rows["model"] == m, "task"])]
        several_models = len(models) > 1
        fig, axes = _panels_figure(panels)
        for ax, (model, task) in zip(axes, panels):
            panel = rows[(rows["model"] == model) & (rows["task"] == task)]
            for (eval_set, fmt), series in panel.groupby(["eval_set", "prompt_format"], sort=False):
                series = series.sort_values("step")
                y = series["value"].to_numpy(float)
                err = np.vstack([y - series["ci_low"].to_numpy(float), series["ci_high"].to_numpy(float) - y])
                err = np.where(np.isfinite(err), np.clip(err, 0, None), 0.0)
                label = f"{eval_set} ({fmt})" if several_formats else str(eval_set)
                container = ax.errorbar(
                    series["tokens"].to_numpy(float), y, yerr=err, label=label, color=colors[eval_set],
                    linestyle=FORMAT_STYLES.get(fmt, "-."), marker="o", capsize=2.5, elinewidth=0.9,
                )  # fmt: skip
                container[0].set_gid(f"{eval_set}|{fmt}")
            ax.set_xlabel(_token_axis(ax, panel["tokens"].to_numpy(float)))
            ax.set_ylabel(_metric_label(panel["metric"]))
            ax.set_title(f"{model}: {task}" if several_models else task)
            _legend(ax)
        fmt_note = ", ".join(formats)
        fig.suptitle(f"Base models across pre-training ({fmt_note} format, {int(rows['shots'].iloc[0])}-shot)")
    return fig


def plot_base_curves(
    df: pd.DataFrame,
    out_png: Path,
    out_svg: Path,
    prompt_formats: Sequence[str] | None = (DEFAULT_FORMAT,),
    shots: int | None = None,
) -> None:
    """Draw `base_curves_figure` and write it as PNG (dpi 150) and SVG, each atomically."""
    with style():
        _save(base_curves_figure(df, prompt_formats, shots), out_png, out_svg)


def finetune_gain_figure(gain: pd.DataFrame, prompt_format: str = DEFAULT_FORMAT, shots: int | None = None) -> Figure:
    """Fine-tuned minus base per checkpoint: one panel per ft_set (each model on its own rows), x = step in order
    (categorical), hue = eval_set; in-domain solid with filled markers, out-of-domain dashed with open ones; zero line.
    """
    with style():
        rows = gain[gain["prompt_format"] == prompt_format]
        rows = _pick_shots(rows, shots, f"fine-tuning gain (prompt format {prompt_format!r})")
        colors = _eval_set_colors(rows)
        models = sorted(set(rows["model"]))
        ft_rank = rows.drop_duplicates("ft_set").set_index("ft_set")["task"]
        t_order = task_order(ft_rank)
        ft_sets = sorted(ft_rank.index, key=lambda f: (t_order.index(ft_rank[f]), f))
        panels = [(m, f) for m in models for f in ft_sets if ((rows["model"] == m) & (rows["ft_set"] == f)).any()]
        several_models = len(models) > 1
        fig, axes = _panels_figure(panels)
        for ax, (model, ft_set) in zip(axes, panels):
            steps = sorted(set(rows.loc[rows["model"] == model, "step"]))
            position = {s: i for i, s in enumerate(steps)}
            panel = rows[(rows["model"] == model) & (rows["ft_set"] == ft_set)]
            # in-domain first so it leads the legend
            order = panel.drop_duplicates("eval_set").sort_values(["in_domain", "eval_set"], ascending=[False, True])
            for eval_set, in_domain in zip(order["eval_set"], order["in_domain"]):
                series = panel[panel["eval_set"] == eval_set].sort_values("step")
                color = colors[eval_set]
                ax.plot(
                    [position[s] for s in series["step"]], series["gain"].to_numpy(float),
                    label=f"{eval_set} (in-domain)" if in_domain else f"{eval_set} (out-of-domain)",
                    color=color, linestyle="-" if in_domain else "--", marker="o",
                    markerfacecolor=color if in_domain else "white", markeredgecolor=color,
                )  # fmt: skip
            ax.axhline(0.0, color="0.25", linewidth=0.9, zorder=1, label="_zero")
            ax.set_xticks(range(len(steps)), [str(s) for s in steps])
            ax.set_xlim(-0.4, len(steps) - 0.6)
            ax.set_xlabel("Checkpoint (pre-training step)")
            ax.set_ylabel(f"Gain in {_metric_label(panel['metric'])}")
            task = panel["task"].iloc[0]
            ax.set_title(f"{model}: FT on {ft_set} ({task})" if several_models else f"FT on {ft_set} ({task})")
            _legend(ax)
        fig.suptitle(
            f"Gain from fine-tuning (fine-tuned \u2212 base) per checkpoint ({prompt_format} format, {int(rows['shots'].iloc[0])}-shot)"
        )
    return fig


def plot_finetune_gain(
    gain: pd.DataFrame, out_png: Path, out_svg: Path, prompt_format: str = DEFAULT_FORMAT, shots: int | None = None
) -> None:
    """Draw `finetune_gain_figure` and write it as PNG (dpi 150) and SVG, each atomically."""
    with style():
        _save(finetune_gain_figure(gain, prompt_format, shots), out_png, out_svg)
