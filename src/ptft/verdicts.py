"""Does this study reproduce the paper's five findings? Each finding's statistic, its paired-bootstrap interval and
a verdict: reproduced, contradicted, inconclusive (the interval admits both), or not applicable (the study lacks
what the finding needs)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.analysis import (
    BASE,
    CLASSIFICATION_TO_GENERATION,
    DEFAULT_FORMAT,
    GENERATION_TO_CLASSIFICATION,
    GROUP_FINETUNING,
    GROUP_PRETRAINING,
    NATIVE_FORMAT,
    STAGE_BASE,
    STAGE_FINETUNED,
    chance_level,
    format_gaps,
    gain_by_group_paper,
    group_pairs_paper,
    ood_pairs_paper,
    out_of_domain_change_paper,
    task_transfer_paper,
    transfer_pairs_paper,
)
from ptft.analysis.pairs import _one_setting
from ptft.paired import ItemBootstrap, bootstrap_statistic

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_APPLICABLE = "reproduced", "contradicted", "inconclusive", "not applicable"
LEARNED, NOT_LEARNED, UNDECIDED = "learned", "not learned", "undecided"
VERDICT_COLUMNS = [
    "finding", "model", "claim", "paper", "statistic", "detail", "value", "ci_low", "ci_high", "n", "needs", "verdict",
]  # fmt: skip

# The paper's numbers, each computed from the authors' released scores with their notebook's definition
# (tests/test_paper_results.py recomputes every one of them from the CSVs when ../shared/authors-results/ is there).
# Task transfer: paper §4.3 and notebook cell 26 (mean "Change Ratio" of cell 25's tables).
PAPER_TRANSFER = {CLASSIFICATION_TO_GENERATION: -0.6146, GENERATION_TO_CLASSIFICATION: 0.0031}
# Out-of-domain raw change FT - BASE per task (notebook cell 29, mean over 8 checkpoints and the task's out-of-domain
# sets; the authors' QQP labels are all -1 (DESIGN.md), so the paraphrase number carries that artefact).
PAPER_OOD: dict[str, float] = {
    "nli": 0.2458,
    "paraphrase": -0.1821,
    "question_generation": 0.0208,
    "summarisation": -0.0031,
}
# Table 6 (notebook cells 14-15, SciQ listed twice): mean over the 8 checkpoints of the "learned in fine-tuning"
# group's gain minus the "learned in pre-training" group's.
PAPER_GROUP_GAP: float | None = 0.2208


def _interval_verdict(low: float, high: float, expect_positive: bool) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if expect_positive:
        return REPRODUCED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE
    return REPRODUCED if high < 0 else CONTRADICTED if low > 0 else INCONCLUSIVE


def learned_by_evidence(
    df: pd.DataFrame,
    boot: ItemBootstrap | None,
    min_gain: float = 0.05,
    min_above_chance: float = 0.0,
    prompt_format: str = DEFAULT_FORMAT,
    native_metric: str = "acc",
    level: float = 0.95,
) -> pd.DataFrame:
    """Finding 4 grouped by evidence: the base model's rise from the first to the last checkpoint, with its paired
    interval (the same items at both checkpoints), per (model, eval_set) in `prompt_format` and for the lm-eval
    benchmark rows (prompt_format "native", metric `native_metric`).

    First-to-last, not a trend over every checkpoint: the paper groups eval sets by whether the curve ends higher
    than it starts (Fig. 2; notebook cells 6-7 by eye), and with two checkpoints (the embedded study) the two agree.
    "learned": the interval lies above 0 AND the rise is at least `min_gain` (the effect-size floor) AND the last
    value exceeds chance by more than `min_above_chance` (chance unknown for benchmarks: not checked);
    "not learned": the interval lies below `min_gain` (a rise that large is excluded) or the last value is at
    chance; "undecided": otherwise (the interval is too wide to tell). Without item scores (`boot` None) the
    interval is NaN and the group falls back to the point rule (rise >= min_gain).
    Columns: model, eval_set, prompt_format, task, metric, first_step, last_step, first, last, change, ci_low,
    ci_high, chance, group.
    """
    base = df[df["ft_set"] == BASE]
    rows = pd.concat(
        [_one_setting(base[base["prompt_format"] != NATIVE_FORMAT], prompt_format, None, "learned in pre-training"),
         base[(base["prompt_format"] == NATIVE_FORMAT) & (base["metric"] == native_metric)]],
        ignore_index=True,
    )  # fmt: skip

    out = bootstrap_statistic(_first_to_last, rows, ["model", "eval_set", "prompt_format"], "change", boot, level)
    if out.empty:
        return out
    out["chance"] = [
        chance_level(task) if fmt != NATIVE_FORMAT else math.nan for task, fmt in zip(out["task"], out["prompt_format"])
    ]
    out["group"] = [_evidence_group(r, boot is not None, min_gain, min_above_chance) for _, r in out.iterrows()]
    return out


def _first_to_last(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, eval_set, prompt_format): the first and last checkpoint's step and value, and the change."""
    out = []
    for (model, eval_set, fmt), g in table.groupby(["model", "eval_set", "prompt_format"], sort=True):
        g = g.sort_values("step", kind="mergesort")
        first, last = g.iloc[0], g.iloc[-1]
        out.append(
            {"model": model, "eval_set": eval_set, "prompt_format": fmt, "task": first["task"],
             "metric": first["metric"], "first_step": int(first["step"]), "last_step": int(last["step"]),
             "first": float(first["value"]), "last": float(last["value"]),
             "change": float(last["value"] - first["value"])}
        )  # fmt: skip
    return pd.DataFrame(out)


def _evidence_group(r: pd.Series, has_items: bool, min_gain: float, min_above_chance: float) -> str:
    """One row of `learned_by_evidence` (with its chance) -> LEARNED, NOT_LEARNED or UNDECIDED, by its rule."""
    at_chance = math.isfinite(r["chance"]) and r["last"] <= r["chance"] + min_above_chance
    big = r["change"] >= min_gain - 1e-12
    if r["first_step"] == r["last_step"]:
        return UNDECIDED
    if not has_items or not math.isfinite(r["ci_low"]):  # scores without items (the authors' CSVs): the point rule
        return LEARNED if big and not at_chance else NOT_LEARNED
    if at_chance or r["ci_high"] < min_gain:
        return NOT_LEARNED
    if r["ci_low"] > 0 and big:
        return LEARNED
    return UNDECIDED


def groups_from_rule(learned: pd.DataFrame, design: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Finding 5's two groups from `learned_by_evidence`: "learned" -> learned in pre-training, "not learned" ->
    learned in fine-tuning; undecided eval sets take part in neither, and neither do eval sets no fine-tuned model
    can be compared on (an in-domain set of a training set, or an lm-eval benchmark row)."""
    in_domain = {e for d in design.values() for e in d["in_domain"]}
    usable = learned["eval_set"].isin(in_domain) | (learned["prompt_format"] == NATIVE_FORMAT)
    pick = lambda g: sorted(set(learned.loc[usable & (learned["group"] == g), "eval_set"]))  # noqa: E731
    return {GROUP_PRETRAINING: pick(LEARNED), GROUP_FINETUNING: pick(NOT_LEARNED)}


def _row(finding: str, model: str, claim: str, paper: str, statistic: str, detail: str, value: float,
         low: float, high: float, n: int, needs: str, verdict: str) -> dict[str, Any]:  # fmt: skip
    return dict(
        zip(VERDICT_COLUMNS, [finding, model, claim, paper, statistic, detail, value, low, high, n, needs, verdict])
    )


def _not_applicable(finding: str, claim: str, paper: str, statistic: str, needs: str, why: str) -> dict[str, Any]:
    return _row(finding, "", claim, paper, statistic, why, math.nan, math.nan, math.nan, 0, needs, NOT_APPLICABLE)


F1, F2, F3, F4, F5 = (
    "1 prompt sensitivity", "2 out-of-domain change", "3 task transfer", "4 learned in pre-training",
    "5 gain by group (Table 6)",
)  # fmt: skip


def _sensitivity(df, design, boot, level) -> list[dict]:
    claim = "after fine-tuning the formats not trained on fall further behind the training format (abstract iv; Figs. 2, 14)"
    stat = "mean over checkpoints and in-domain sets of the gap default - format, fine-tuned minus base"
    needs = "fine-tuned models scored in the default format and at least one other format"
    formats = set(df["prompt_format"]) - {NATIVE_FORMAT}
    if DEFAULT_FORMAT not in formats or len(formats) < 2 or not (df["ft_set"] != BASE).any():
        return [_not_applicable(F1, claim, "per-format curves, no single number", stat, needs, "study lacks it")]

    def widening(table: pd.DataFrame) -> pd.DataFrame:
        gaps = format_gaps(table, design)
        out = []
        for (model, metric, fmt), g in gaps.groupby(["model", "metric", "prompt_format"], sort=True):
            ft = g[g["stage"] == STAGE_FINETUNED]["gap"].to_numpy()
            bs = g[g["stage"] == STAGE_BASE]["gap"].to_numpy()
            out.append({"model": model, "metric": metric, "prompt_format": fmt,
                        "value": float(ft.mean() - bs.mean()) if len(ft) and len(bs) else math.nan,
                        "n": int(g[g["stage"] == STAGE_FINETUNED]["n_pairs"].sum())})  # fmt: skip
        return pd.DataFrame(out, columns=["model", "metric", "prompt_format", "value", "n"])

    res = bootstrap_statistic(widening, df, ["model", "metric", "prompt_format"], "value", boot, level)
    return [
        _row(F1, r["model"], claim, "per-format curves, no single number", stat,
             f"{r['metric']}, default - {r['prompt_format']}", r["value"], r["ci_low"], r["ci_high"], r["n"], needs,
             _interval_verdict(r["ci_low"], r["ci_high"], True))
        for _, r in res.iterrows()
    ]  # fmt: skip


def _ood(df, design, boot, level, prompt_format) -> list[dict]:
    claim = "fine-tuning may forget domain knowledge: out-of-domain sets of the trained task can lose (abstract iii; Fig. 5)"
    stat = "raw FT - BASE, mean over checkpoints and out-of-domain sets (notebook cell 29)"
    needs = "a training set with an out-of-domain eval set of the same task"
    statistic = lambda t: out_of_domain_change_paper(ood_pairs_paper(t, design, prompt_format))  # noqa: E731
    res = bootstrap_statistic(statistic, df, ["model", "task"], "mean_raw_change", boot, level)
    if res.empty:
        return [_not_applicable(F2, claim, "per task, Fig. 5", stat, needs, "study lacks it")]
    rows = []
    for _, r in res.iterrows():
        paper = PAPER_OOD.get(r["task"])
        expect_positive = paper is not None and paper > 0
        rows.append(_row(F2, r["model"], claim, f"{paper:+.4f}" if paper is not None else "not in the paper",
                         stat, f"{r['task']} ({r['eval_sets']})", r["mean_raw_change"], r["ci_low"], r["ci_high"],
                         r["n_pairs"], needs, _interval_verdict(r["ci_low"], r["ci_high"], expect_positive)))  # fmt: skip
    return rows


def _transfer(df, design, boot, level, prompt_format) -> list[dict]:
    claim = (
        "fine-tuning on classification loses generation (-61.46%); on generation, classification does not "
        "change significantly (+0.31%) (§4.3)"
    )
    stat = "(FT - BASE) / BASE pooled over the in-domain pairs of the other kind and checkpoints (cells 25-26)"
    needs = "training sets of both task kinds (classification and generation)"
    statistic = lambda t: task_transfer_paper(transfer_pairs_paper(t, design, prompt_format))  # noqa: E731
    res = bootstrap_statistic(statistic, df, ["model", "direction"], "mean_ratio", boot, level)
    if res.empty:
        return [_not_applicable(F3, claim, "-61.46% / +0.31%", stat, needs, "study lacks it")]
    rows = []
    for _, r in res.iterrows():
        paper = PAPER_TRANSFER[r["direction"]]
        if r["direction"] == CLASSIFICATION_TO_GENERATION:
            verdict = _interval_verdict(r["ci_low"], r["ci_high"], expect_positive=False)
        elif math.isfinite(r["ci_low"]):  # the paper's claim is "no significant change"
            verdict = REPRODUCED if r["ci_low"] <= 0 <= r["ci_high"] else CONTRADICTED
        else:
            verdict = INCONCLUSIVE
        detail = r["direction"]
        if not math.isfinite(r["mean_ratio"]):
            detail += " (undefined: a base score is 0)"
        elif boot is not None and not math.isfinite(r["ci_low"]):
            detail += " (no interval: some resamples have a base score of 0)"
        rows.append(_row(F3, r["model"], claim, f"{paper:+.2%}", stat, detail, r["mean_ratio"], r["ci_low"],
                         r["ci_high"], r["n_pairs"], needs, verdict))  # fmt: skip
    return rows


def _learned(learned: pd.DataFrame) -> list[dict]:
    claim = "some eval sets are learned in pre-training, others are not (abstract iv; Fig. 2)"
    stat = "eval sets whose base rise, first to last checkpoint, is significant and >= min_gain"
    needs = "at least two checkpoints"
    if learned.empty or (learned["first_step"] == learned["last_step"]).all():
        return [_not_applicable(F4, claim, "5 learned, 5 not (cells 6-7)", stat, needs, "study lacks it")]
    rows = []
    for model, g in learned.groupby("model", sort=True):
        counts = g["group"].value_counts()
        n_learned, n_not, n_und = (int(counts.get(k, 0)) for k in (LEARNED, NOT_LEARNED, UNDECIDED))
        if n_learned and n_not:
            verdict = REPRODUCED
        elif n_und == 0:
            verdict = CONTRADICTED
        else:
            verdict = INCONCLUSIVE
        detail = "; ".join(
            f"{r['eval_set']}{'' if r['prompt_format'] != NATIVE_FORMAT else ' (lm-eval)'}: {r['group']} "
            f"{r['change']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            for _, r in g.iterrows()
        )
        rows.append(_row(F4, model, claim, "5 learned, 5 not (cells 6-7)", stat,
                         f"{n_learned} learned, {n_not} not learned, {n_und} undecided: {detail}", float(n_learned),
                         math.nan, math.nan, int(len(g)), needs, verdict))  # fmt: skip
    return rows


def _groups(df, design, groups, boot, level, prompt_format, native_metric, keep_duplicates) -> list[dict]:
    claim = "fine-tuning gains most where pre-training did not already learn the task (abstract iv; Table 6)"
    paper = f"{PAPER_GROUP_GAP:+.4f}" if PAPER_GROUP_GAP is not None else "Table 6"
    stat = "mean over checkpoints of gain(learned in fine-tuning) - gain(learned in pre-training) (cells 14-15)"
    needs = "fine-tuned models and eval sets in both groups"
    if not groups.get(GROUP_PRETRAINING) or not groups.get(GROUP_FINETUNING) or not (df["ft_set"] != BASE).any():
        return [_not_applicable(F5, claim, paper, stat, needs, f"groups: {dict(groups)}")]

    def gap(table: pd.DataFrame) -> pd.DataFrame:
        pairs = group_pairs_paper(table, design, groups, prompt_format, None, native_metric, keep_duplicates)
        gains = gain_by_group_paper(pairs).pivot_table(index=["model", "step"], columns="group", values="gain",
                                                       dropna=False, aggfunc="first")  # fmt: skip
        diff = (gains[GROUP_FINETUNING] - gains[GROUP_PRETRAINING]).groupby("model").agg(lambda s: s.to_numpy().mean())
        return pd.DataFrame({"model": diff.index, "value": diff.to_numpy(), "n": len(pairs)})

    res = bootstrap_statistic(gap, df, ["model"], "value", boot, level)
    return [
        _row(F5, r["model"], claim, paper, stat, f"pre-training: {' '.join(groups[GROUP_PRETRAINING])}; "
             f"fine-tuning: {' '.join(groups[GROUP_FINETUNING])}", r["value"], r["ci_low"], r["ci_high"], r["n"],
             needs, _interval_verdict(r["ci_low"], r["ci_high"], True))
        for _, r in res.iterrows()
    ]  # fmt: skip


def verdicts(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    learned: pd.DataFrame,
    boot: ItemBootstrap | None,
    prompt_format: str = DEFAULT_FORMAT,
    native_metric: str = "acc",
    keep_duplicates: bool = False,
    level: float = 0.95,
) -> pd.DataFrame:
    """One or more rows per finding (VERDICT_COLUMNS): the paper's claim and number, this study's statistic with
    its paired-bootstrap interval (`level`), n, what the finding needs, and the verdict. A verdict needs its
    interval on one side of 0 (`reproduced` on the paper's side, `contradicted` on the other) and is
    `inconclusive` when the interval covers 0 or is undefined; for generation -> classification transfer the
    paper claims no significant change, so an interval covering 0 reproduces it."""
    groups = {k: list(v) for k, v in groups.items()}
    rows = (
        _sensitivity(df, design, boot, level)
        + _ood(df, design, boot, level, prompt_format)
        + _transfer(df, design, boot, level, prompt_format)
        + _learned(learned)
        + _groups(df, design, groups, boot, level, prompt_format, native_metric, keep_duplicates)
    )
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def verdicts_markdown(table: pd.DataFrame) -> str:
    """The verdicts as a Markdown section for the report's front page: one line per row."""
    lines = ["# Does this study reproduce the paper?", ""]
    for _, r in table.iterrows():
        ci = f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if math.isfinite(r["ci_low"]) else ""
        value = f"{r['value']:+.4f}{ci}, n={r['n']}" if math.isfinite(r["value"]) else "-"
        lines.append(
            f"- **{r['finding']}** ({r['detail']}): **{r['verdict']}**. Paper: {r['paper']}. "
            f"This study: {value}. Claim: {r['claim']}. Statistic: {r['statistic']}. Needs: {r['needs']}."
        )
    return "\n".join(lines) + "\n"


def verdicts_json(table: pd.DataFrame) -> dict[str, Any]:
    """The verdicts as plain JSON for `dvc metrics` (finding -> detail -> value, interval, n, verdict)."""
    out: dict[str, Any] = {}
    for _, r in table.iterrows():
        num = lambda x: round(float(x), 6) if math.isfinite(float(x)) else None  # noqa: E731
        key = f"{r['model']}: {r['detail']}" if r["model"] else r["detail"]
        out.setdefault(r["finding"], {})[key[:120]] = {
            "value": num(r["value"]), "ci_low": num(r["ci_low"]), "ci_high": num(r["ci_high"]), "n": int(r["n"]),
            "verdict": r["verdict"],
        }  # fmt: skip
    return out
