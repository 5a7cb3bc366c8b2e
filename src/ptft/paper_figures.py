"""The study's numbers beside the paper's: one figure with a panel per finding the paper reports as a number or a
curve (prompt sensitivity per checkpoint, out-of-domain raw change per task, task transfer per direction, Table 6's
gain by group per checkpoint), in ptft.plots' one style.

The paper's side comes from `ptft.paper_results.paper_reference()`: the authors' released scores run through the
same functions when ../shared/authors-results/ is there, else the documented constants (then the curves the constants
cannot give are marked as missing). Where the study's checkpoints are not the paper's (any model but OLMo-1B), a
curve of the paper is drawn on its own axis beside the study's, never on the study's steps.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ptft.analysis import GROUP_FINETUNING, GROUP_PRETRAINING, STAGE_BASE, STAGE_FINETUNED
from ptft.paper_results import PaperReference
from ptft.plots import _checkpoint_axis, _panels_figure, _zero_line, style

STUDY, PAPER = "this study", "paper (authors' scores)"
# the findings tables (findings_tables' CSVs) the comparison draws
TABLES = ("sensitivity_by_checkpoint", "out_of_domain_raw_change_paper", "task_transfer_paper", "gain_by_group_paper")
_COLORS = dict(zip((STUDY, PAPER), sns.color_palette("colorblind", 2)))


def _interval(r) -> tuple[float, float]:
    """A findings row's (ci_low, ci_high); NaN where the table has none (scores without items)."""
    return getattr(r, "ci_low", np.nan), getattr(r, "ci_high", np.nan)


def _bars(ax, keys: list[str], study: Mapping[str, tuple[float, float, float]], paper: Mapping[str, float]) -> None:
    """Per key: the study's value as a bar with its interval (NaN interval: none drawn), the paper's as a diamond."""
    x = np.arange(len(keys), dtype=float)
    values = np.array([study.get(k, (np.nan, np.nan, np.nan))[0] for k in keys], dtype=float)
    low = np.array([study.get(k, (np.nan, np.nan, np.nan))[1] for k in keys], dtype=float)
    high = np.array([study.get(k, (np.nan, np.nan, np.nan))[2] for k in keys], dtype=float)
    err = np.vstack([values - low, high - values])
    err = np.where(np.isfinite(err), np.clip(err, 0, None), 0.0)
    ax.bar(x, np.nan_to_num(values), width=0.55, yerr=err, capsize=3, color=_COLORS[STUDY], label=STUDY)
    shown = [(i, paper[k]) for i, k in enumerate(keys) if k in paper]
    if shown:
        ax.scatter([i for i, _ in shown], [v for _, v in shown], marker="D", s=42, zorder=5, color=_COLORS[PAPER],
                   edgecolor="black", label=PAPER)  # fmt: skip
    for i, k in enumerate(keys):
        if k not in study:
            ax.annotate("not in this study", (i, 0), ha="center", va="bottom", fontsize="x-small", rotation=90)
        elif not np.isfinite(values[i]):  # a ratio over a base score of 0: no bar, and say why
            ax.annotate("undefined (a base is 0)", (i, 0), ha="center", va="bottom", fontsize="x-small", rotation=90)
    ax.set_xticks(x, [k.replace(" \u2192 ", "\n\u2192 ").replace("_", "\n") for k in keys], fontsize="x-small")
    _zero_line(ax)
    ax.legend(fontsize="x-small", loc="best")


def _curves(
    ax, study: pd.DataFrame, paper: pd.DataFrame | None, hue: str, value: str, order: list[str], who: str = STUDY
) -> str:
    """Per `hue` level: the study's curve over its checkpoints (solid) and the paper's (dashed) on the same
    categorical axis when the checkpoints are the paper's, else the paper's alone is left out and said so."""
    steps = sorted(set(study["step"]))
    same_steps = paper is not None and set(paper["step"]) == set(steps)
    position = _checkpoint_axis(ax, steps)
    palette = dict(zip(order, sns.color_palette("colorblind", max(len(order), 1))))
    for level in order:
        s = study[study[hue] == level].sort_values("step")
        ax.plot([position[p] for p in s["step"]], s[value].to_numpy(float), marker="o", color=palette[level],
                label=level if who == STUDY else f"{level}, paper")  # fmt: skip
        if same_steps:
            p = paper[paper[hue] == level].sort_values("step")
            ax.plot([position[q] for q in p["step"]], p[value].to_numpy(float), marker="D", linestyle="--",
                    color=palette[level], alpha=0.8, label=f"{level}, paper")  # fmt: skip
    ax.legend(fontsize="xx-small", loc="best", title="solid: this study; dashed \u25c6: paper" if same_steps else None,
              title_fontsize="xx-small")  # fmt: skip
    if paper is None or who == PAPER:
        return "" if who == PAPER else "paper's curve: needs the authors' CSVs"
    return "" if same_steps else "paper's checkpoints differ: see the paper's panel"


def _number_panels(ood_ax, transfer_ax, pick: Mapping[str, pd.DataFrame], reference: PaperReference) -> None:
    """Findings 2 and 3: the study's bars with their intervals, the paper's numbers as diamonds."""
    ood = pick["out_of_domain_raw_change_paper"]
    keys = sorted(set(ood["task"]) | set(reference.ood))
    _bars(ood_ax, keys, {r.task: (r.mean_raw_change, *_interval(r)) for r in ood.itertuples()}, reference.ood)
    ood_ax.set_title("2 out-of-domain raw change (FT \u2212 base)")
    ood_ax.set_ylabel("Mean raw change")
    tr = pick["task_transfer_paper"]
    study = {r.direction: (r.mean_ratio, *_interval(r)) for r in tr.itertuples()}
    _bars(transfer_ax, list(reference.transfer), study, reference.transfer)
    transfer_ax.set_title("3 task transfer ((FT \u2212 base) / base)")
    transfer_ax.set_ylabel("Mean ratio of change")


def _table6_panel(ax, gain: pd.DataFrame, paper: pd.DataFrame | None) -> None:
    """Finding 5: the study's Table 6 curves per group, the paper's dashed on the same checkpoints when given."""
    groups = [g for g in (GROUP_PRETRAINING, GROUP_FINETUNING) if g in set(gain["group"])]
    note = ""
    if gain.empty:
        ax.text(0.5, 0.5, "needs fine-tuned models and eval sets in both groups", ha="center",
                transform=ax.transAxes, fontsize="small")  # fmt: skip
    else:
        note = _curves(ax, gain, paper, "group", "gain", groups)
    ax.set_title(f"5 gain by group, Table 6 {('(' + note + ')') if note else ''}".strip(), fontsize=9)
    ax.set_ylabel("Mean FT \u2212 base")
    _zero_line(ax)


def paper_comparison_figure(
    tables: Mapping[str, pd.DataFrame], reference: PaperReference, model: str | None = None
) -> Figure:
    """Four panels, the study beside the paper: (1) mean prompt-format spread per checkpoint, base and fine-tuned
    (`sensitivity_by_checkpoint`); (2) out-of-domain raw change per task (`out_of_domain_raw_change_paper`, with its
    interval) against the paper's (notebook cell 29); (3) task transfer ratio per direction (`task_transfer_paper`)
    against §4.3's; (4) Table 6's gain per checkpoint and group (`gain_by_group_paper`).

    `tables` maps those table names to a study's findings tables (findings_tables' CSVs); `model` picks one model
    (default: the first). When the study's checkpoints differ from the paper's, the paper's curves get panels of
    their own. Raises ValueError when `tables` has no row for any of them.
    """
    with style():
        tables = {k: tables[k] for k in TABLES}
        models = sorted({str(m) for t in tables.values() if not t.empty for m in t["model"]})
        if not models:
            raise ValueError("paper comparison: the findings tables have no rows")
        model = model or models[0]
        pick = {k: t[t["model"].astype(str) == model] for k, t in tables.items()}
        paper_findings = reference.findings or {}
        panels = [("", "sensitivity"), ("", "ood"), ("", "transfer"), ("", "table6")]
        curves_apart = reference.table6 is not None and set(reference.table6["step"]) != set(
            pick["gain_by_group_paper"]["step"]
        )
        if curves_apart:
            panels += [("", "paper sensitivity"), ("", "paper table6")]
        fig, axes = _panels_figure(panels)
        ax = dict(zip([p for _, p in panels], axes))

        sens = pick["sensitivity_by_checkpoint"]
        paper_sens = paper_findings.get("sensitivity_by_checkpoint")
        note = _curves(ax["sensitivity"], sens, None if curves_apart else paper_sens, "stage", "spread",
                       [s for s in (STAGE_BASE, STAGE_FINETUNED) if s in set(sens["stage"])])  # fmt: skip
        ax["sensitivity"].set_title(f"1 prompt sensitivity {('(' + note + ')') if note else ''}".strip(), fontsize=9)
        ax["sensitivity"].set_ylabel("Mean spread across formats")

        _number_panels(ax["ood"], ax["transfer"], pick, reference)

        _table6_panel(ax["table6"], pick["gain_by_group_paper"], None if curves_apart else reference.table6)

        if curves_apart:
            _curves(ax["paper sensitivity"], paper_sens, None, "stage", "spread", [STAGE_BASE, STAGE_FINETUNED], PAPER)
            ax["paper sensitivity"].set_title("1 the paper's prompt sensitivity (OLMo-1B)", fontsize=9)
            _curves(ax["paper table6"], reference.table6, None, "group", "gain", [GROUP_PRETRAINING, GROUP_FINETUNING],
                    PAPER)  # fmt: skip
            ax["paper table6"].set_title("5 the paper's Table 6 (OLMo-1B)", fontsize=9)
            _zero_line(ax["paper table6"])
        fig.suptitle(f"{model} beside the paper (\u25c6) \u2014 the paper's numbers: {reference.origin}", fontsize=9)
    return fig
