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

from ptft.analysis import DEFAULT_FORMAT, NATIVE_FORMAT, STAGE_BASE, STAGE_FINETUNED, base_curves, task_order

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
    # beside the panel, never over the data; two columns when a long list would outgrow the panel's height
    ax.legend(
        ncol=2 if len(ax.get_legend_handles_labels()[1]) > 10 else 1,
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


def _step_axis(ax, panel: pd.DataFrame) -> None:
    """Name each checkpoint's step on a secondary (top) axis, at its token position on the main axis."""
    checkpoints = panel.drop_duplicates("step").sort_values("tokens")
    top = ax.secondary_xaxis("top")
    tokens = checkpoints["tokens"].to_numpy(float)
    # on a log axis, checkpoints a fraction of a decade apart (342k..738k of OLMo-1B) would print over each other:
    # name the first of each such cluster, tick them all
    keep, last = [], -np.inf
    for t in tokens:
        pos = np.log10(t) if (ax.get_xscale() != "linear" and t > 0) else t
        near = ax.get_xscale() != "linear" and pos - last < 0.45
        keep.append(not near)
        last = pos if not near else last
    top.set_xticks(tokens, labels=[str(s) if k else "" for s, k in zip(checkpoints["step"], keep)])
    top.tick_params(labelsize="small")
    top.set_xlabel("Checkpoint (step)", fontsize="small")


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
            _step_axis(ax, panel)
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


# ---------------------------------------------------------------------------------------------- findings figures


def _checkpoint_axis(ax, steps: Sequence[int]) -> dict[int, int]:
    """Checkpoints as evenly spaced categories in step order (their tokens vary by orders of magnitude)."""
    steps = sorted(set(int(s) for s in steps))
    many = len(steps) > 4  # full step numbers of 5+ checkpoints run into each other: 342k, rotated
    labels = [_human(s) for s in steps] if many else [str(s) for s in steps]
    if len(set(labels)) < len(labels):  # 738000 and 738020 are both "738k"
        labels = [f"{s / 1000:g}k" if s >= 1000 else str(s) for s in steps]
    ax.set_xticks(range(len(steps)), labels, rotation=45 if many else 0)
    ax.set_xlim(-0.4, len(steps) - 0.6)
    ax.set_xlabel("Checkpoint (pre-training step)")
    return {s: i for i, s in enumerate(steps)}


def _zero_line(ax) -> None:
    ax.axhline(0.0, color="0.25", linewidth=0.9, zorder=1, label="_zero")


def _titled(model: str, what: str, several_models: bool) -> str:
    return f"{model}: {what}" if several_models else what


def _legend_titled(ax, title: str) -> None:
    _legend(ax)
    ax.get_legend().set_title(title)


def prompt_sensitivity_figure(sensitivity: pd.DataFrame) -> Figure:
    """Spread across prompt formats (max - min) per checkpoint: one panel per stage (base on every eval set,
    fine-tuned on its in-domain set), each model on its own rows; hue = eval_set, thick black = the mean."""
    with style():
        if sensitivity.empty:
            raise ValueError("prompt sensitivity: no rows to plot")
        colors = _eval_set_colors(sensitivity)
        models = sorted(set(sensitivity["model"]))
        stages = [s for s in (STAGE_BASE, STAGE_FINETUNED) if s in set(sensitivity["stage"])]
        panels = [
            (m, s) for m in models for s in stages if ((sensitivity["model"] == m) & (sensitivity["stage"] == s)).any()
        ]
        fig, axes = _panels_figure(panels)
        for ax, (model, stage) in zip(axes, panels):
            panel = sensitivity[(sensitivity["model"] == model) & (sensitivity["stage"] == stage)]
            position = _checkpoint_axis(ax, sensitivity.loc[sensitivity["model"] == model, "step"])
            for eval_set, series in panel.groupby("eval_set", sort=True):
                series = series.sort_values("step")
                ax.plot([position[s] for s in series["step"]], series["spread"].to_numpy(float), label=str(eval_set),
                        color=colors[eval_set], marker="o", linewidth=1.0, alpha=0.8)  # fmt: skip
            mean = panel.groupby("step")["spread"].mean()
            ax.plot([position[s] for s in mean.index], mean.to_numpy(float), label="mean", color="black",
                    linewidth=2.6, marker="s")  # fmt: skip
            ax.set_ylabel("Spread across formats\n(max \u2212 min)")
            where = "every eval set" if stage == STAGE_BASE else "in-domain eval set"
            ax.set_title(_titled(model, f"{stage} ({where})", len(models) > 1))
            ax.set_ylim(bottom=0)
            _legend(ax)
        formats = [c for c in ("default", "instruct", "io") if c in sensitivity.columns]
        fig.suptitle(f"Prompt sensitivity per checkpoint (formats: {', '.join(formats)})")
    return fig


def ratio_of_change_figure(out_of_domain: pd.DataFrame, transfer: pd.DataFrame) -> Figure:
    """Mean ratio of change after fine-tuning per checkpoint: left, other eval sets of the trained task
    (hue = task family); right, the other task kind (hue = direction). Zero line = no change."""
    with style():
        models = sorted(set(out_of_domain["model"]) | set(transfer["model"]))
        if not models:
            raise ValueError("ratio of change: no rows to plot")
        kinds = [("out-of-domain, same task", out_of_domain, "task", "trained task"),
                 ("across task kinds", transfer, "direction", "trained \u2192 evaluated")]  # fmt: skip
        panels = [(m, k[0]) for m in models for k in kinds]
        fig, axes = _panels_figure(panels)
        for ax, (model, name) in zip(axes, panels):
            _, table, hue, legend_title = next(k for k in kinds if k[0] == name)
            steps = sorted(
                set(out_of_domain.loc[out_of_domain["model"] == model, "step"])
                | set(transfer.loc[transfer["model"] == model, "step"])
            )
            position = _checkpoint_axis(ax, steps)
            panel = table[table["model"] == model]
            order = task_order(panel[hue]) if hue == "task" else sorted(set(panel[hue]))
            palette = sns.color_palette("colorblind", max(len(order), 1))
            for i, key in enumerate(order):
                series = panel[panel[hue] == key].sort_values("step")
                ax.plot([position[s] for s in series["step"]], series["mean_ratio"].to_numpy(float), label=str(key),
                        color=palette[i], marker="o")  # fmt: skip
            _zero_line(ax)
            ax.set_ylabel("Mean ratio of change\n(FT \u2212 base) / base")
            ax.set_title(_titled(model, name, len(models) > 1))
            _legend_titled(ax, legend_title)
        fig.suptitle("Change after fine-tuning on eval sets it was not trained on")
    return fig


def gain_groups_figure(gain: pd.DataFrame) -> Figure:
    """In-domain gain per checkpoint with its CI: one panel per group of `learned_in_pretraining` (each model
    on its own rows), hue = ft_set, black dashed = the group mean."""
    with style():
        if gain.empty or "group" not in gain.columns:
            raise ValueError("gain by group: needs rows with a 'group' column (gain_table(..., groups))")
        sets = gain[~gain["ft_set"].str.startswith("mean (")]
        colors = _eval_set_colors(sets.rename(columns={"ft_set": "eval_set"}))
        models = sorted(set(gain["model"]))
        groups = [g for g in ("learned", "not learned") if g in set(gain["group"])] + sorted(
            set(gain["group"]) - {"learned", "not learned"}
        )
        panels = [(m, g) for m in models for g in groups if ((gain["model"] == m) & (gain["group"] == g)).any()]
        fig, axes = _panels_figure(panels)
        for ax, (model, group) in zip(axes, panels):
            position = _checkpoint_axis(ax, gain.loc[gain["model"] == model, "step"])
            panel = gain[(gain["model"] == model) & (gain["group"] == group)]
            names = sorted(set(panel["ft_set"]), key=lambda f: (f.startswith("mean ("), f))  # the mean last
            for ft_set in names:
                series = panel[panel["ft_set"] == ft_set].sort_values("step")
                is_mean = str(ft_set).startswith("mean (")
                y = series["gain"].to_numpy(float)
                err = np.vstack([y - series["ci_low"].to_numpy(float), series["ci_high"].to_numpy(float) - y])
                err = np.where(np.isfinite(err), np.clip(err, 0, None), 0.0)
                x = np.array([position[s] for s in series["step"]], dtype=float) + (0.08 if is_mean else 0.0)
                container = ax.errorbar(
                    x, y, yerr=err, label="mean" if is_mean else str(ft_set),
                    color="black" if is_mean else colors[ft_set], linestyle="--" if is_mean else "-",
                    marker="s" if is_mean else "o", capsize=2.5, elinewidth=0.9,
                )  # fmt: skip
                container[0].set_gid(str(ft_set))
            _zero_line(ax)
            ax.set_ylabel("In-domain gain\n(fine-tuned \u2212 base)")
            ax.set_title(_titled(model, f"{group} in pre-training", len(models) > 1))
            _legend_titled(ax, "ft set")
        fig.suptitle("Gain from fine-tuning by pre-training group (95% CI, conservative)")
    return fig


def finetune_curves_figure(curves: pd.DataFrame) -> Figure:
    """Training loss along fine-tuning: one panel per ft_set (each model on its own rows), one line per
    checkpoint, coloured light (early) to dark (late pre-training)."""
    with style():
        if curves.empty:
            raise ValueError("fine-tuning curves: no rows to plot")
        models = sorted(set(curves["model"]))
        panels = [(m, f) for m in models for f in sorted(set(curves.loc[curves["model"] == m, "ft_set"]))]
        fig, axes = _panels_figure(panels)
        for ax, (model, ft_set) in zip(axes, panels):
            steps = sorted(set(curves.loc[curves["model"] == model, "step"]))
            palette = sns.color_palette("viridis_r", len(steps))
            panel = curves[(curves["model"] == model) & (curves["ft_set"] == ft_set)]
            for step, series in panel.groupby("step", sort=True):
                series = series.sort_values("train_step")
                ax.plot(series["train_step"].to_numpy(float), series["loss"].to_numpy(float), label=str(step),
                        color=palette[steps.index(step)])  # fmt: skip
            ax.set_xlabel("Fine-tuning step (optimizer updates)")
            ax.set_ylabel("Training loss")
            ax.set_title(_titled(model, f"FT on {ft_set}", len(models) > 1))
            _legend_titled(ax, "checkpoint")
        fig.suptitle("Fine-tuning curves per checkpoint")
    return fig


def base_curves_by_group_figure(
    df: pd.DataFrame, groups: pd.DataFrame, prompt_format: str = DEFAULT_FORMAT, shots: int | None = None
) -> Figure:
    """`base_curves_figure` with panels by the `learned_in_pretraining` group instead of task family."""
    if "prompt_format" not in groups.columns:  # a groups table of one format
        groups = groups.assign(prompt_format=prompt_format)
    # the evidence table also groups lm-eval's benchmark rows (prompt_format "native"): they are drawn too, keyed
    # apart from a set of the same name scored in a ptft format (the authors' RTE and QQP are both)
    keys = ["model", "eval_set", "prompt_format"]
    g = groups[groups["prompt_format"].isin([prompt_format, NATIVE_FORMAT])].set_index(keys)["group"]
    grouped = df.assign(task=g.reindex(pd.MultiIndex.from_frame(df[keys])).fillna("ungrouped").to_numpy())
    formats = (prompt_format, NATIVE_FORMAT) if (df["prompt_format"] == NATIVE_FORMAT).any() else (prompt_format,)
    fig = base_curves_figure(grouped, prompt_formats=formats, shots=shots)
    fig.suptitle(fig.get_suptitle().replace("Base models across pre-training", "Base models by pre-training group"))
    return fig


def save_figure(fig: Figure, out_png: Path, out_svg: Path) -> None:
    """Write any of the `*_figure`s as PNG (dpi 150) and SVG, each atomically, in the one style."""
    with style():
        _save(fig, out_png, out_svg)
