"""Synthetic studies whose verdicts are known by construction: items are shared across models (one uniform draw per
item and eval set, a model scores 1 where the draw is below its rate), so paired intervals are tight where the
effect is real and wide where it is noise."""

import numpy as np
import pandas as pd
import pytest

from ptft.analysis import (
    CLASSIFICATION_TO_GENERATION,
    GENERATION_TO_CLASSIFICATION,
    GROUP_FINETUNING,
    GROUP_PRETRAINING,
    gain_table,
    study_design,
)
from ptft.paired import ITEM_COLUMNS, ItemBootstrap
from ptft.paper_results import paper_reference
from ptft.analysis import SINGLE_CHECKPOINT_GROUP
from ptft.paper_results import PaperReference
from ptft.verdicts import (
    ABOVE_ZERO,
    BELOW_ZERO,
    BOTH_GROUPS,
    CONTRADICTED,
    F1,
    F2,
    F3,
    F4,
    F5,
    INCONCLUSIVE,
    LEARNED,
    NOT_APPLICABLE,
    NOT_LEARNED,
    REPRODUCED,
    UNDECIDED,
    groups_from_rule,
    learned_by_evidence,
    verdicts,
    verdicts_json,
    verdicts_markdown,
)

EVAL_SETS = {"nli_a": "nli", "nli_b": "nli", "sum_a": "summarisation", "sum_b": "summarisation"}
METRIC = {"nli": "accuracy", "summarisation": "rougeL"}


def synth(rate, steps=(0, 10, 20), ft_sets=("nli_a", "sum_a"), n=200, formats=("default", "io"), seed=0):
    """Results table and item scores of a study where model (step, ft_set) scores item i of eval set e in format f
    as 1 when u[e][i] < rate(step, ft_set, e, f)."""
    rng = np.random.default_rng(seed)
    u = {e: rng.random(n) for e in EVAL_SETS}
    items, results = [], []
    for step in steps:
        for ft_set in ("base", *ft_sets):
            for e, task in EVAL_SETS.items():
                for f in formats:
                    scores = (u[e] < rate(step, ft_set, e, f)).astype(float)
                    items += [("m", step, ft_set, e, f, 1, METRIC[task], f"d{i}", s) for i, s in enumerate(scores)]
                    results.append(("m", step, step * 100, ft_set, e, task, f, 1, METRIC[task], scores.mean(),
                                    np.nan, np.nan, n))  # fmt: skip
    cols = ["model", "step", "tokens", "ft_set", "eval_set", "task", "prompt_format", "shots", "metric", "value",
            "ci_low", "ci_high", "n"]  # fmt: skip
    return pd.DataFrame(results, columns=cols), pd.DataFrame(items, columns=ITEM_COLUMNS)


OOD_SIGN = {t: (1 if paper_reference().ood.get(t, -1) > 0 else -1) for t in ("nli", "summarisation")}


def paper_like(step, ft_set, e, f):
    """nli_a is learned in pre-training (rises 0.4 -> 0.9), sum_a is not (flat 0.2). Fine-tuning gains 0.5 on sum_a
    and nothing on nli_a, only in the training format; the classification model loses generation (0.2 -> 0.05),
    the generation model leaves classification alone; out-of-domain sets move by 0.15 the paper's way."""
    base = {"nli_a": 0.4 + 0.025 * step, "nli_b": 0.5, "sum_a": 0.2, "sum_b": 0.4}[e]
    if ft_set == "base":
        return base
    if ft_set == "sum_a":
        if e == "sum_a":
            return base + 0.5 if f == "default" else base
        if e == "sum_b":
            return base + 0.15 * OOD_SIGN["summarisation"]
        return base
    if e == "sum_a":
        return 0.05
    if e == "nli_b":
        return base + 0.15 * OOD_SIGN["nli"]
    return base


def _run(df, items, groups=None, resamples=300, ft_sets=("nli_a", "sum_a")):
    design = study_design({f: EVAL_SETS[f] for f in ft_sets}, EVAL_SETS)
    boot = ItemBootstrap(items, resamples, seed=0)
    learned = learned_by_evidence(df, boot, min_gain=0.05)
    groups = groups if groups is not None else groups_from_rule(learned, design)
    return verdicts(df, design, groups, learned, boot), learned


def _by(table, finding, detail=None):
    rows = table[table["finding"] == finding]
    if detail is not None:
        rows = rows[rows["detail"].str.contains(detail, regex=False)]
    return list(rows["verdict"])


def test_a_study_like_the_paper_reproduces_every_finding():
    df, items = synth(paper_like)
    table, learned = _run(df, items)
    groups = learned.set_index("eval_set")["group"]
    assert groups["nli_a"] == LEARNED and groups["sum_a"] == NOT_LEARNED
    assert _by(table, F1) and set(_by(table, F1)) == {REPRODUCED} | (
        {INCONCLUSIVE} if len(_by(table, F1)) > 1 else set()
    )
    assert _by(table, F1, "rougeL") == [REPRODUCED]
    assert _by(table, F2) == [REPRODUCED, REPRODUCED]
    assert _by(table, F3, CLASSIFICATION_TO_GENERATION) == [REPRODUCED]
    assert _by(table, F3, GENERATION_TO_CLASSIFICATION) == [REPRODUCED]
    assert _by(table, F4) == [REPRODUCED]
    assert _by(table, F5) == [REPRODUCED]
    row = table[table["finding"] == F5].iloc[0]
    assert row["ci_low"] > 0 and row["value"] == pytest.approx(0.5, abs=0.1)
    assert table["n"].gt(0).all()
    assert "reproduced" in verdicts_markdown(table) and verdicts_json(table)[F5]


def test_the_opposite_study_contradicts():
    def opposite(step, ft_set, e, f):
        r = paper_like(step, ft_set, e, f)
        if ft_set == "nli_a" and e == "sum_a":
            return 0.35  # classification training helps generation
        if ft_set == "sum_a" and e == "nli_a":
            return 0.1  # generation training hurts classification
        if ft_set != "base" and e in ("nli_b", "sum_b"):
            return paper_like(step, "base", e, f) - 0.15 * OOD_SIGN[EVAL_SETS[e]]
        return r

    df, items = synth(opposite)
    # the pre-training group gains more than the fine-tuning one
    table, _ = _run(df, items, groups={GROUP_PRETRAINING: ["sum_a"], GROUP_FINETUNING: ["nli_a"]})
    assert _by(table, F2) == [CONTRADICTED, CONTRADICTED]
    assert _by(table, F3, CLASSIFICATION_TO_GENERATION) == [CONTRADICTED]
    assert _by(table, F3, GENERATION_TO_CLASSIFICATION) == [CONTRADICTED]
    assert _by(table, F5) == [CONTRADICTED]


def test_noise_is_inconclusive():
    def noisy(step, ft_set, e, f):
        return {"nli_a": 0.5, "nli_b": 0.5, "sum_a": 0.3, "sum_b": 0.3}[e] + (0.1 if ft_set == "nli_a" else 0)

    df, items = synth(noisy, n=6, seed=3)
    table, learned = _run(df, items, groups={GROUP_PRETRAINING: ["nli_a"], GROUP_FINETUNING: ["sum_a"]})
    assert _by(table, F2, "summarisation") == [INCONCLUSIVE]
    assert _by(table, F5) == [INCONCLUSIVE]
    assert set(learned["group"]) <= {UNDECIDED, NOT_LEARNED}


def test_grouping_by_evidence_clear_rise_no_rise_noisy_rise():
    def rate(step, ft_set, e, f):
        return {"nli_a": 0.2 + 0.03 * step, "nli_b": 0.5, "sum_a": 0.3, "sum_b": 0.3}[e]

    df, items = synth(rate, ft_sets=(), n=200)
    learned = learned_by_evidence(df, ItemBootstrap(items, 300, seed=0), min_gain=0.05).set_index("eval_set")
    assert learned.loc["nli_a", "group"] == LEARNED and learned.loc["nli_a", "ci_low"] > 0
    assert learned.loc["nli_b", "group"] == NOT_LEARNED and learned.loc["nli_b", "ci_high"] < 0.05
    # a rise of 0.1 on 8 items, without pairing: independent draws at the two checkpoints
    df, items = synth(rate, ft_sets=(), n=8, seed=5)
    rng = np.random.default_rng(1)
    last = (items["step"] == 20) & (items["eval_set"] == "sum_b")
    items.loc[last, "score"] = (rng.random(int(last.sum())) < 0.45).astype(float)
    df.loc[(df["step"] == 20) & (df["eval_set"] == "sum_b"), "value"] = items.loc[last].groupby(
        "prompt_format")["score"].mean().reindex(df.loc[(df["step"] == 20) & (df["eval_set"] == "sum_b"), "prompt_format"]).to_numpy()  # fmt: skip
    noisy = learned_by_evidence(df, ItemBootstrap(items, 300, seed=0), min_gain=0.05).set_index("eval_set")
    assert noisy.loc["sum_b", "group"] == UNDECIDED
    assert noisy.loc["sum_b", "ci_low"] <= 0 < noisy.loc["sum_b", "ci_high"]


def test_a_gain_that_grows_has_tight_intervals_per_checkpoint():
    def growing(step, ft_set, e, f):
        base = {"nli_a": 0.3, "nli_b": 0.3, "sum_a": 0.2, "sum_b": 0.2}[e]
        return base + 0.02 * step if ft_set == e else base

    df, items = synth(growing)
    gain = gain_table(df, {"nli_a": "nli", "sum_a": "summarisation"}, boot=ItemBootstrap(items, 300, seed=0))
    nli = gain[gain["ft_set"] == "nli_a"].sort_values("step")
    assert list(nli["gain"]) == pytest.approx([0.0, 0.2, 0.4], abs=0.05)
    assert nli["ci_low"].iloc[2] > nli["ci_high"].iloc[1] > 0
    # the group means carry their own paired interval
    groups = pd.DataFrame({"model": "m", "eval_set": ["nli_a", "sum_a"], "group": ["learned", "not learned"]})
    grouped = gain_table(df, {"nli_a": "nli", "sum_a": "summarisation"}, groups, boot=ItemBootstrap(items, 300, seed=0))
    means = grouped[grouped["ft_set"].str.startswith("mean (")]
    assert set(means["ft_set"]) == {"mean (learned)", "mean (not learned)"}
    assert means[["ci_low", "ci_high"]].notna().all().all()


def test_what_a_study_lacks_is_not_applicable():
    df, items = synth(paper_like, steps=(10,), ft_sets=("nli_a",), formats=("default",))
    table, _ = _run(df, items, ft_sets=("nli_a",))
    assert _by(table, F1) == [NOT_APPLICABLE]  # one format
    assert _by(table, F3) == [NOT_APPLICABLE]  # one task kind
    assert _by(table, F4) == [NOT_APPLICABLE]  # one checkpoint
    assert _by(table, F5) == [NOT_APPLICABLE]  # no groups without two checkpoints
    assert _by(table, F2) == [REPRODUCED]  # nli_b is out-of-domain for nli_a
    design = study_design({"sum_a": "summarisation"}, {"sum_a": "summarisation"})
    assert design["sum_a"]["out_of_domain"] == []


# ---------------------------------------------------------------------------------------------- fit to the study


def test_a_study_of_its_own_tasks_is_described_not_judged(tmp_path):
    """A reference whose tasks are not this study's (as a lab's `topic` study against the paper): the same
    statistics, verdicts by where the interval lies, no "reproduced"/"contradicted", and a title that says so."""
    df, items = synth(paper_like)
    design = study_design({f: EVAL_SETS[f] for f in ("nli_a", "sum_a")}, EVAL_SETS)
    boot = ItemBootstrap(items, 300, seed=0)
    learned = learned_by_evidence(df, boot, min_gain=0.05)
    other = PaperReference(tmp_path)  # the stored constants, then made a paper of other tasks
    other.ood = {"topic": 0.1}
    table = verdicts(df, design, groups_from_rule(learned, design), learned, boot, paper=other)
    assert not table["compared"].any()
    assert not set(table["verdict"]) & {REPRODUCED, CONTRADICTED}
    assert _by(table, F3, CLASSIFICATION_TO_GENERATION) == [BELOW_ZERO]  # the same interval, described
    assert _by(table, F5) == [ABOVE_ZERO] and _by(table, F4) == [BOTH_GROUPS]
    assert set(table["paper"]) == {"not compared (the study's tasks are not the paper's)"}
    md = verdicts_markdown(table)
    assert md.startswith("# What this study shows") and "reproduce" not in md.lower()
    # the paper's own tasks: compared, and titled so
    same = verdicts(df, design, groups_from_rule(learned, design), learned, boot, paper=PaperReference(tmp_path))
    assert same["compared"].all() and verdicts_markdown(same).startswith("# Does this study reproduce the paper?")


def test_every_verdict_states_its_evidence_and_one_checkpoint_is_undetermined():
    df, items = synth(paper_like, steps=(10,), ft_sets=("nli_a",), formats=("default",), n=30)
    table, learned = _run(df, items, ft_sets=("nli_a",))
    assert set(table["n_checkpoints"]) == {1} and set(table["n_items"]) == {30} and set(table["n_eval_sets"]) == {4}
    assert "Evidence: 1 checkpoint, 4 eval sets, at least 30 items per scored cell." in verdicts_markdown(table)
    # finding 4 with one checkpoint: "needs several checkpoints", never "undecided" with a zero-width [0, 0]
    assert set(learned["group"]) == {SINGLE_CHECKPOINT_GROUP}
    assert learned[["change", "ci_low", "ci_high"]].isna().all().all()
