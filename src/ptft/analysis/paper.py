"""The paper's definitions: each finding as the authors computed it, over the study design of the config.

The authors' notebook is analysis/gen_paper_figs.ipynb (KaiserWhoLearns/AmuroCharPTFTRelationship at commit
8b79c396cb2fef1e13ef69df1a56321fee2619db; cells numbered from 0 in file order); `study_design` is the paper's
Table 1. Where we think another statistic is better it stands beside, named as ours.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from ptft.analysis.findings import (
    CLASSIFICATION_TO_GENERATION,
    GENERATION_TO_CLASSIFICATION,
    sign_flip_needs,
    sign_flip_test,
)
from ptft.analysis.pairs import INSTRUCTION_TASK, PAIR_COLUMNS, _mean_n, _one_setting, _pairs, ratio_of_change
from ptft.analysis.results import DEFAULT_FORMAT, NATIVE_FORMAT
from ptft.tasks import TASKS


GROUP_PRETRAINING = "learned in pre-training"
GROUP_FINETUNING = "learned in fine-tuning"


def study_design(
    ft_sets: Mapping[str, str], eval_sets: Mapping[str, str], given: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per training set: its task family, in-domain and out-of-domain eval sets (the paper's Table 1).

    `ft_sets` and `eval_sets` map names to task families; `given` is config `analysis.design` (a training set ->
    {in_domain: [...], out_of_domain: [...]}). A training set the config does not describe gets in_domain [itself]
    (its own test split, when it is an eval set) and out_of_domain every other eval set of its family. Instruction
    tuning has neither: it is read off the lm-eval benchmark rows (prompt_format "native"). The first in-domain
    set is the training set's own test set (the one task transfer scores). Raises naming the key when the config
    names an unknown training set or eval set, or an eval set of another family.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(ft_sets))
    if unknown:
        raise KeyError(f"analysis.design: {unknown} are not training sets (finetune.ft_sets: {sorted(ft_sets)})")
    design: dict[str, dict[str, Any]] = {}
    for ft_set, task in ft_sets.items():
        spec = dict(given.get(ft_set) or {})
        if task == INSTRUCTION_TASK:
            default_in, default_out = [], []
        else:
            default_in = [ft_set] if ft_set in eval_sets else []
            default_out = [e for e, t in eval_sets.items() if t == task and e not in default_in]
        entry = {"task": task, "in_domain": list(spec.get("in_domain", default_in))}
        entry["out_of_domain"] = list(
            spec.get("out_of_domain", [e for e in default_out if e not in entry["in_domain"]])
        )
        for side in ("in_domain", "out_of_domain"):
            for e in entry[side]:
                if e not in eval_sets:
                    raise KeyError(f"analysis.design.{ft_set}.{side}: {e!r} is not an eval set ({sorted(eval_sets)})")
                if eval_sets[e] != task:
                    raise ValueError(
                        f"analysis.design.{ft_set}.{side}: {e!r} is a {eval_sets[e]} set, {ft_set!r} trains {task}"
                    )
        both = sorted(set(entry["in_domain"]) & set(entry["out_of_domain"]))
        if both:
            raise ValueError(f"analysis.design.{ft_set}: {both} are listed both in-domain and out-of-domain")
        design[ft_set] = entry
    return design


def _kind(task: str) -> str:
    if task not in TASKS:
        raise KeyError(f"task family {task!r} is not in ptft.tasks.TASKS (known: {sorted(TASKS)})")
    return TASKS[task].kind


def transfer_pairs_paper(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
) -> pd.DataFrame:
    """Finding 3's pairs as the paper formed them: each classification training set scored on the own test set of
    every generation training set, and the reverse (notebook cell 25: {mnli, paws} -> {xsum, socialiqa} and
    {xsum, socialiqa} -> {mnli matched, paws}; not MNLI-mismatched or XLSum, and no out-of-domain set).

    PAIR_COLUMNS plus `direction`, `raw_change` (FT - BASE) and `ratio` ((FT - BASE) / BASE, Eq. 1; NaN where
    BASE == 0). Instruction tuning takes no part.
    """
    rows = _one_setting(df, prompt_format, shots, "task transfer")
    own = {f: d["in_domain"][0] for f, d in design.items() if d["task"] != INSTRUCTION_TASK and d["in_domain"]}
    wanted = [
        (a, own[b], prompt_format)
        for a in own for b in own if _kind(design[a]["task"]) != _kind(design[b]["task"])
    ]  # fmt: skip
    out = _pairs(rows, wanted, required="task transfer")
    out["direction"] = [
        CLASSIFICATION_TO_GENERATION if _kind(design[f]["task"]) == "classification" else GENERATION_TO_CLASSIFICATION
        for f in out["ft_set"]
    ]
    out["raw_change"] = out["finetuned"] - out["base"]
    out["ratio"] = ratio_of_change(out["finetuned"], out["base"]).to_numpy()
    return out


def task_transfer_paper(pairs: pd.DataFrame) -> pd.DataFrame:
    """Finding 3 as the paper reports it (§4.3, -61.46% / +0.31%): per (model, direction) the mean of (FT - BASE) /
    BASE over every pair and checkpoint pooled (notebook cell 26: `class_to_gen_tab.mean()` over the rows of
    cell 25's table). NaN ratios (BASE == 0) propagate: the mean is then undefined, as in the notebook.

    Input: `transfer_pairs_paper`. One row per (model, direction): mean_ratio (a fraction, not %), mean_raw_change,
    n_pairs (pairs x checkpoints), n_checkpoints.
    """
    out = []
    for (model, direction), g in pairs.groupby(["model", "direction"], sort=True):
        ratio, n = _mean_n(g["ratio"])
        out.append(
            {"model": model, "direction": direction, "mean_ratio": ratio, "mean_raw_change": _mean_n(g["raw_change"])[0],
             "n_pairs": n, "n_checkpoints": int(g["step"].nunique())}
        )  # fmt: skip
    return pd.DataFrame(
        out, columns=["model", "direction", "mean_ratio", "mean_raw_change", "n_pairs", "n_checkpoints"]
    )


def transfer_cluster_test(pairs: pd.DataFrame, resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Ours: is a direction's transfer ratio different from 0, tested over checkpoint clusters.

    The paper calls the generation -> classification change "not statistically significant" (§4.3) without naming
    a test. Pairs of one checkpoint share its base model, so they are not independent; the checkpoints are the
    independent units. Per (model, direction): each checkpoint's mean ratio over its pairs, then the two-sided
    sign-flip test of their mean = 0 (`sign_flip_test`, exact up to 16 checkpoints). Columns: model, direction,
    mean_ratio (mean of checkpoint means), n_checkpoints, n_negative (checkpoints), p_value (NaN with one
    checkpoint), needs (filled below 6 checkpoints: such a test cannot reach p < 0.05).
    """
    out = []
    for (model, direction), g in pairs.groupby(["model", "direction"], sort=True):
        per_step = g.groupby("step")["ratio"].mean().dropna()
        needs = sign_flip_needs(len(per_step))
        out.append(
            {"model": model, "direction": direction, "mean_ratio": float(per_step.mean()) if len(per_step) else math.nan,
             "n_checkpoints": int(len(per_step)), "n_negative": int((per_step < 0).sum()),
             "p_value": sign_flip_test(per_step.to_numpy(), resamples, seed) if len(per_step) > 1 else math.nan,
             "needs": needs}
        )  # fmt: skip
    columns = ["model", "direction", "mean_ratio", "n_checkpoints", "n_negative", "p_value", "needs"]
    return pd.DataFrame(out, columns=columns)


def ood_pairs_paper(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
) -> pd.DataFrame:
    """Finding 2's pairs: each training set on its out-of-domain eval sets (Table 1; notebook cell 29: rte, gpt3nli
    for MNLI; cnn for XSum; tweetqa, sciq for SocialIQa; qqp, stsb for PAWS). PAIR_COLUMNS plus ft_task and
    raw_change (FT - BASE)."""
    rows = _one_setting(df, prompt_format, shots, "out-of-domain change")
    wanted = [(f, e, prompt_format) for f, d in design.items() for e in d["out_of_domain"]]
    out = _pairs(rows, wanted, required="out-of-domain change")
    out["ft_task"] = out["ft_set"].map({f: d["task"] for f, d in design.items()})
    out["raw_change"] = out["finetuned"] - out["base"]
    return out


def out_of_domain_raw_change_paper(pairs: pd.DataFrame) -> pd.DataFrame:
    """Finding 2 as the paper computed Fig. 5: per (model, task of the training set) the raw change FT - BASE
    averaged over every checkpoint and out-of-domain eval set of that task (notebook cell 29, the "Raw Change"
    column of `change_table_by_checkpoint_for_plot`, cell 24), whatever the caption's "ratio" says. Raw changes
    stay finite where a base score is near 0; the ratio (`out_of_domain_ratio`, ours before) explodes there.

    Input: `ood_pairs_paper`. Columns: model, task, mean_raw_change, n_pairs, n_checkpoints, eval_sets.
    """
    out = []
    for (model, task), g in pairs.groupby(["model", "ft_task"], sort=True):
        mean, n = _mean_n(g["raw_change"])
        out.append(
            {"model": model, "task": task, "mean_raw_change": mean, "n_pairs": n,
             "n_checkpoints": int(g["step"].nunique()), "eval_sets": " ".join(sorted(set(g["eval_set"])))}
        )  # fmt: skip
    return pd.DataFrame(out, columns=["model", "task", "mean_raw_change", "n_pairs", "n_checkpoints", "eval_sets"])


def group_pairs_paper(
    df: pd.DataFrame,
    design: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Iterable[str]],
    prompt_format: str = DEFAULT_FORMAT,
    shots: int | None = None,
    native_metric: str = "acc",
    keep_duplicates: bool = False,
) -> pd.DataFrame:
    """Finding 5's (eval set, model) pairs per group, as the notebook forms them (cells 14-15).

    `groups` maps a group name (GROUP_PRETRAINING, GROUP_FINETUNING) to its eval sets. An eval set enters with
    every training set that has it in-domain (scored in `prompt_format`) and with every instruction-tuned model
    that has lm-eval benchmark rows for it (prompt_format "native", metric `native_metric`): the notebook reads
    HellaSwag, ARC, OBQA, BoolQ and SciQ off the Tulu model (cell 14). The authors' pre-training list names SciQ
    twice (cell 15), which moves Table 6's first cell from .037 to .048: `keep_duplicates=True` counts a repeated
    entry as often as it is listed (the paper's numbers), False once (ours). Columns: PAIR_COLUMNS, group, copy.
    Raises naming the group and eval set when no fine-tuned model was scored on it that way.
    """
    rows = df[df["prompt_format"].isin([prompt_format, NATIVE_FORMAT])]
    if rows.empty:
        raise ValueError(f"gain by group: no results in prompt_format {prompt_format!r} or {NATIVE_FORMAT!r}")
    shots = int(rows.loc[rows["prompt_format"] == prompt_format, "shots"].max()) if shots is None else shots
    rows = rows[(rows["prompt_format"] == NATIVE_FORMAT) | (rows["shots"] == shots)]
    instruction = [f for f, d in design.items() if d["task"] == INSTRUCTION_TASK]
    parts = []
    for group, eval_sets in groups.items():
        listed = list(eval_sets) if keep_duplicates else list(dict.fromkeys(eval_sets))
        for copy, eval_set in enumerate(listed):
            wanted = [(f, eval_set, prompt_format) for f, d in design.items() if eval_set in d["in_domain"]]
            if ((rows["eval_set"] == eval_set) & (rows["prompt_format"] == NATIVE_FORMAT)).any():
                wanted += [(f, eval_set, NATIVE_FORMAT) for f in instruction]
            found = _pairs(rows, wanted, metric=native_metric, required=f"analysis.groups.{group}") if wanted else None
            if found is None or found.empty:
                raise ValueError(
                    f"analysis.groups.{group}: eval set {eval_set!r} has no pair of a fine-tuned and a base score: it "
                    f"is no training set's in-domain set in {prompt_format!r} and no instruction-tuned model has a "
                    f"{NATIVE_FORMAT!r} {native_metric!r} row for it"
                )
            parts.append(found.assign(group=group, copy=copy))
    if not parts:
        return pd.DataFrame(columns=PAIR_COLUMNS + ["group", "copy"])
    return pd.concat(parts, ignore_index=True)


def gain_by_group_paper(pairs: pd.DataFrame) -> pd.DataFrame:
    """Finding 5, Table 6 as the paper computed it: per checkpoint and group, the mean of FT - BASE over the
    group's (eval set, model) pairs (notebook cell 14, `avg_change_table_by_checkpoint`, "Average Raw Change";
    "Total DS" is our n_pairs). Input: `group_pairs_paper`. Columns: model, step, tokens, group, gain, n_pairs."""
    pairs = pairs.assign(gain=pairs["finetuned"] - pairs["base"])
    out = (
        pairs.groupby(["model", "step", "tokens", "group"], sort=True)
        .agg(gain=("gain", lambda g: g.to_numpy().mean()), n_pairs=("gain", "size"))  # a NaN is kept, not skipped
        .reset_index()
    )
    return out[["model", "step", "tokens", "group", "gain", "n_pairs"]]
