"""Does this study reproduce the paper's five findings? Each finding's statistic, its paired-bootstrap interval and
a verdict: reproduced, contradicted, inconclusive (the interval admits both), or not applicable (the study lacks
what the finding needs). A study of its own tasks (`matches_paper` False) gets the same statistics described
(above 0, below 0, interval covers 0), never judged against the paper; every row states its evidence."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.analysis import (
    BASE,
    SINGLE_CHECKPOINT_GROUP,
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
    out_of_domain_raw_change_paper,
    task_transfer_paper,
    transfer_cluster_test,
    transfer_pairs_paper,
)
from ptft.analysis.pairs import _one_setting
from ptft.paired import ItemBootstrap, bootstrap_statistic
from ptft.paper_results import PaperReference, paper_reference

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_APPLICABLE = "reproduced", "contradicted", "inconclusive", "not applicable"
LEARNED, NOT_LEARNED, UNDECIDED = "learned", "not learned", "undecided"
VERDICT_COLUMNS = [
    "finding", "model", "claim", "paper", "statistic", "detail", "value", "ci_low", "ci_high", "n", "needs", "verdict",
    "compared", "n_checkpoints", "n_eval_sets", "n_items",
]  # fmt: skip
# A study whose design is not the paper's (its own task families) is described, not judged against the paper: the
# same statistics, with these verdicts instead of reproduced / contradicted.
ABOVE_ZERO, BELOW_ZERO, COVERS_ZERO, BOTH_GROUPS, ONE_GROUP = (
    "above 0", "below 0", "interval covers 0", "both groups found", "one group only",
)  # fmt: skip
WHAT_IT_SHOWS = {
    "1 prompt sensitivity": "prompt sensitivity: how far the other formats fall behind the training format after "
    "fine-tuning",
    "2 out-of-domain raw change": "out-of-domain raw change after fine-tuning",
    "3 task transfer": "change on eval sets of the other task kind after fine-tuning",
    "4 learned in pre-training": "eval sets the base model learns during pre-training",
    "5 gain by group (Table 6)": "fine-tuning gain by group",
}

def _interval_verdict(low: float, high: float, expect_positive: bool) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if expect_positive:
        return REPRODUCED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE
    return REPRODUCED if high < 0 else CONTRADICTED if low > 0 else INCONCLUSIVE


POINT_ONLY = " (point estimate: no item scores, no interval)"


def _verdict(r: pd.Series, column: str, expect_positive: bool, boot: ItemBootstrap | None) -> str:
    """The interval verdict of row `r`; without item scores (`boot` None: the authors' CSVs) the point estimate
    stands for both ends, and the row's detail says so (POINT_ONLY)."""
    if boot is None:
        return _interval_verdict(r[column], r[column], expect_positive)
    return _interval_verdict(r["ci_low"], r["ci_high"], expect_positive)


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
    interval is NaN and the group falls back to the point rule (rise >= min_gain). A model with one checkpoint gets
    SINGLE_CHECKPOINT_GROUP ("undetermined (needs several checkpoints)") and NaN change and interval.
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
    one = out["first_step"] == out["last_step"]  # one checkpoint: no rise to read, and no zero-width [0, 0] interval
    out.loc[one, ["change", "ci_low", "ci_high"]] = math.nan
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
        return SINGLE_CHECKPOINT_GROUP
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
        zip(VERDICT_COLUMNS[:12], [finding, model, claim, paper, statistic, detail, value, low, high, n, needs, verdict])
    )


def _evidence(df: pd.DataFrame, model: str) -> tuple[int, int, int]:
    """(checkpoints, eval sets, fewest items per scored cell) of `model` in the results; all models when ''."""
    rows = df if not model else df[df["model"] == model]
    items = pd.to_numeric(rows["n"], errors="coerce")
    items = items[items > 0]
    return int(rows["step"].nunique()), int(rows["eval_set"].nunique()), int(items.min()) if len(items) else 0


def matches_paper(design: Mapping[str, Mapping[str, Any]], paper: PaperReference) -> bool:
    """Whether a study's design is the paper's, by task: some training set trains one of the paper's task families
    (summarisation, question generation, NLI, paraphrase; instruction tuning). The embedded study and the paper
    configs do; a lab's study of its own `topic` family does not, and is then described, not judged."""
    tasks = set(paper.ood) | {"instruction"}
    return any(d["task"] in tasks for d in design.values())


def _describe(r: pd.Series) -> str:
    """A row's verdict in the study's own terms (no "reproduced"/"contradicted"): where its interval lies."""
    if r["verdict"] == NOT_APPLICABLE:
        return NOT_APPLICABLE
    if r["finding"] == "4 learned in pre-training":
        return BOTH_GROUPS if r["verdict"] == REPRODUCED else ONE_GROUP if r["verdict"] == CONTRADICTED else INCONCLUSIVE
    low, high = (r["ci_low"], r["ci_high"]) if math.isfinite(r["ci_low"]) else (r["value"], r["value"])
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    return ABOVE_ZERO if low > 0 else BELOW_ZERO if high < 0 else COVERS_ZERO


def _frame(out: pd.DataFrame, df: pd.DataFrame, compared_study: bool) -> pd.DataFrame:
    """Fill `compared` and the evidence columns; rows not compared with the paper get descriptive verdicts."""
    out = out.copy()
    evidence = [_evidence(df, m) for m in out["model"]]
    out["n_checkpoints"], out["n_eval_sets"], out["n_items"] = (list(col) for col in zip(*evidence))
    out["compared"] = compared_study & ~out["paper"].eq("not in the paper")
    for i, r in out[~out["compared"]].iterrows():
        out.loc[i, "verdict"] = _describe(r)
        out.loc[i, "claim"] = f"what this study shows: {WHAT_IT_SHOWS.get(r['finding'], r['finding'])}"
        if not compared_study:
            out.loc[i, "paper"] = "not compared (the study's tasks are not the paper's)"
    return out


def _not_applicable(finding: str, claim: str, paper: str, statistic: str, needs: str, why: str) -> dict[str, Any]:
    return _row(finding, "", claim, paper, statistic, why, math.nan, math.nan, math.nan, 0, needs, NOT_APPLICABLE)


F1, F2, F3, F4, F5 = (
    "1 prompt sensitivity", "2 out-of-domain raw change", "3 task transfer", "4 learned in pre-training",
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
             f"{r['metric']}, default - {r['prompt_format']}{POINT_ONLY if boot is None else ''}", r["value"],
             r["ci_low"], r["ci_high"], r["n"], needs, _verdict(r, "value", True, boot))
        for _, r in res.iterrows()
    ]  # fmt: skip


def _ood(df, design, boot, level, prompt_format, paper: PaperReference) -> list[dict]:
    claim = "fine-tuning may forget domain knowledge: out-of-domain sets of the trained task can lose (abstract iii; Fig. 5)"
    stat = "raw FT - BASE, mean over checkpoints and out-of-domain sets (notebook cell 29)"
    needs = "a training set with an out-of-domain eval set of the same task"
    statistic = lambda t: out_of_domain_raw_change_paper(ood_pairs_paper(t, design, prompt_format))  # noqa: E731
    res = bootstrap_statistic(statistic, df, ["model", "task"], "mean_raw_change", boot, level)
    if res.empty:
        return [_not_applicable(F2, claim, "per task, Fig. 5", stat, needs, "study lacks it")]
    rows = []
    for _, r in res.iterrows():
        number = paper.ood.get(r["task"])
        expect_positive = number is not None and number > 0
        rows.append(_row(F2, r["model"], claim, f"{number:+.4f}" if number is not None else "not in the paper",
                         stat, f"{r['task']} ({r['eval_sets']}){POINT_ONLY if boot is None else ''}",
                         r["mean_raw_change"], r["ci_low"], r["ci_high"], r["n_pairs"], needs,
                         _verdict(r, "mean_raw_change", expect_positive, boot)))  # fmt: skip
    return rows


def _transfer(df, design, boot, level, prompt_format, paper: PaperReference) -> list[dict]:
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
    # without item scores, significance comes from the checkpoints as clusters (ptft.analysis.transfer_cluster_test)
    p_values = (
        transfer_cluster_test(transfer_pairs_paper(df, design, prompt_format)).set_index(["model", "direction"])
        if boot is None else None
    )  # fmt: skip
    for _, r in res.iterrows():
        number = paper.transfer[r["direction"]]
        if p_values is not None:
            p = float(p_values.loc[(r["model"], r["direction"]), "p_value"])
            significant = math.isfinite(p) and p < 1 - level
            if r["direction"] == CLASSIFICATION_TO_GENERATION:
                verdict = (REPRODUCED if r["mean_ratio"] < 0 else CONTRADICTED) if significant else INCONCLUSIVE
            else:
                verdict = CONTRADICTED if significant else REPRODUCED
        elif r["direction"] == CLASSIFICATION_TO_GENERATION:
            verdict = _interval_verdict(r["ci_low"], r["ci_high"], expect_positive=False)
        elif math.isfinite(r["ci_low"]):  # the paper's claim is "no significant change"
            verdict = REPRODUCED if r["ci_low"] <= 0 <= r["ci_high"] else CONTRADICTED
        else:
            verdict = INCONCLUSIVE
        detail = r["direction"] + (f" (no item scores: sign-flip test over checkpoints, p = {p:.3g})"
                                   if p_values is not None else "")  # fmt: skip
        if not math.isfinite(r["mean_ratio"]):
            detail += " (undefined: a base score is 0)"
        elif boot is not None and not math.isfinite(r["ci_low"]):
            detail += " (no interval: some resamples have a base score of 0)"
        rows.append(_row(F3, r["model"], claim, f"{number:+.2%}", stat, detail, r["mean_ratio"], r["ci_low"],
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
            f"{r['change']:+.3f}" + (f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if math.isfinite(r["ci_low"]) else "")
            for _, r in g.iterrows()
        )
        rows.append(_row(F4, model, claim, "5 learned, 5 not (cells 6-7)", stat,
                         f"{n_learned} learned, {n_not} not learned, {n_und} undecided: {detail}", float(n_learned),
                         math.nan, math.nan, int(len(g)), needs, verdict))  # fmt: skip
    return rows


def _groups(df, design, groups, boot, level, prompt_format, native_metric, keep_duplicates, reference) -> list[dict]:
    claim = "fine-tuning gains most where pre-training did not already learn the task (abstract iv; Table 6)"
    paper = f"{reference.group_gap:+.4f}"
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
             f"fine-tuning: {' '.join(groups[GROUP_FINETUNING])}{POINT_ONLY if boot is None else ''}", r["value"],
             r["ci_low"], r["ci_high"], r["n"], needs, _verdict(r, "value", True, boot))
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
    paper: PaperReference | None = None,
) -> pd.DataFrame:
    """One or more rows per finding (VERDICT_COLUMNS): the paper's claim and number, this study's statistic with
    its paired-bootstrap interval (`level`), n, what the finding needs, and the verdict. A verdict needs its
    interval on one side of 0 (`reproduced` on the paper's side, `contradicted` on the other) and is
    `inconclusive` when the interval covers 0 or is undefined; for generation -> classification transfer the
    paper claims no significant change, so an interval covering 0 reproduces it.
    The paper's numbers come from `paper` (default `paper_reference()`: the authors' CSVs when present, computed by
    the same functions, else documented constants); the table's attrs["paper_source"] says which.
    """
    paper = paper_reference() if paper is None else paper
    groups = {k: list(v) for k, v in groups.items()}
    rows = (
        _sensitivity(df, design, boot, level)
        + _ood(df, design, boot, level, prompt_format, paper)
        + _transfer(df, design, boot, level, prompt_format, paper)
        + _learned(learned)
        + _groups(df, design, groups, boot, level, prompt_format, native_metric, keep_duplicates, paper)
    )
    out = _frame(pd.DataFrame(rows, columns=VERDICT_COLUMNS[:12]), df, matches_paper(design, paper))
    out.attrs["paper_source"] = paper.source
    return out[VERDICT_COLUMNS]


def verdicts_markdown(table: pd.DataFrame) -> str:
    """The verdicts as a Markdown section for the report's front page: one line per row, each with its evidence
    (checkpoints, eval sets, fewest items per cell). Titled "Does this study reproduce the paper?" when some row is
    compared with the paper, else "What this study shows" (a study of its own tasks)."""
    compared = table["compared"].astype(bool).any() if "compared" in table.columns else True
    lines = ["# Does this study reproduce the paper?" if compared else "# What this study shows", ""]
    for _, r in table.iterrows():
        ci = f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if math.isfinite(r["ci_low"]) else ""
        value = f"{r['value']:+.4f}{ci}, n={r['n']}" if math.isfinite(r["value"]) else "-"
        evidence = (
            f" Evidence: {r['n_checkpoints']} checkpoint{'s' if r['n_checkpoints'] != 1 else ''}, {r['n_eval_sets']} "
            f"eval sets, at least {r['n_items']} items per scored cell."
            if "n_items" in table.columns else ""
        )  # fmt: skip
        lines.append(
            f"- **{r['finding']}** ({r['detail']}): **{r['verdict']}**. Paper: {r['paper']}. "
            f"This study: {value}. Claim: {r['claim']}. Statistic: {r['statistic']}. Needs: {r['needs']}.{evidence}"
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
            "verdict": r["verdict"], "paper": r["paper"], "compared": bool(r["compared"]),
            "n_checkpoints": int(r["n_checkpoints"]), "n_eval_sets": int(r["n_eval_sets"]), "n_items": int(r["n_items"]),
        }  # fmt: skip
    if "paper_source" in table.attrs:
        out["paper_source"] = table.attrs["paper_source"]
    return out
