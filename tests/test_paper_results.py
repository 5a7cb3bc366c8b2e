"""The authors' released scores as a golden input: ptft's definitions of the findings must give the paper's numbers.

The golden tests read the authors' CSVs from ../shared/authors-results/ (or $PTFT_AUTHORS_RESULTS), never from this
repository (see ptft.paper_results), and skip with the reason when the folder is absent.
"""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from ptft.analysis import (
    BASE,
    CLASSIFICATION_TO_GENERATION,
    COLUMNS,
    GENERATION_TO_CLASSIFICATION,
    GROUP_FINETUNING,
    GROUP_PRETRAINING,
    NATIVE_FORMAT,
    finetune_gain,
    gain_by_group_paper,
    group_pairs_paper,
    ood_pairs_paper,
    out_of_domain_raw_change_paper,
    study_design,
    task_transfer_paper,
    transfer_cluster_test,
    transfer_pairs_paper,
)
from ptft.verdicts import (
    LEARNED,
    NOT_LEARNED,
    UNDECIDED,
    groups_from_rule,
    learned_by_evidence,
)
from ptft.paper_results import (
    FALLBACK_GROUP_GAP,
    FALLBACK_OOD,
    FALLBACK_TRANSFER,
    EVAL_SET_NAMES,
    FT_SET_NAMES,
    MAIN_STEP,
    OFFICIAL_TABLE,
    SFT_TABLE,
    load_paper_results,
    results_dir,
    verify_tables,
)

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIG = yaml.safe_load((ROOT / "configs" / "paper-olmo1b.yaml").read_text())
STEPS = [1000, 18000, 342000, 424000, 505000, 592000, 738000, MAIN_STEP]


def _paper_design():
    datasets = PAPER_CONFIG["data"]["datasets"]
    ft_sets = {f: datasets[f]["task"] for f in PAPER_CONFIG["finetune"]["ft_sets"]}
    eval_sets = {e: datasets[e]["task"] for e in PAPER_CONFIG["evaluate"]["eval_sets"]}
    return study_design(ft_sets, eval_sets, PAPER_CONFIG["analysis"]["design"])


def _paper_groups():
    g = PAPER_CONFIG["analysis"]["groups"]
    return {GROUP_PRETRAINING: g["learned_in_pretraining"], GROUP_FINETUNING: g["learned_in_finetuning"]}


# ------------------------------------------------------------------------------------ the loader on a tiny table


def _write(path: Path, rows: list[tuple], std: bool) -> None:
    cols = ["model_id", "eval dataset", "Performance"] + (["std"] if std else [])
    pd.DataFrame([r + ((0.01,) if std else ()) for r in rows], columns=cols).to_csv(path)  # index column, as theirs


def test_loader_maps_the_authors_layout_to_the_results_table(tmp_path):
    _write(
        tmp_path / SFT_TABLE,
        [
            ("olmo1b_checkpoint-1000_original_hf_4shots", "mnli_matched", 0.30),
            ("olmo1b_checkpoint-1000_original_hf_4shots", "xsum_inputoutput", 0.05),
            ("olmo1b_hf_ckpt1000_mnli_3epoch_2e-6_4shots", "mnli_matched", 0.70),
            ("olmo1b_hf_ckpt1000_mnli_3epoch_2e-6_4shots", "xsum_instruct", 0.02),
            ("olmo1b_original_hf_4shots", "socialiqa", 0.11),
            ("olmo1b_hf_main_socialiqa_3epoch_2e-6_4shots", "socialiqa", 0.40),
            ("olmo1b_hf_main_mnli_3epoch_2e-5", "mnli_matched", 0.9),  # exploratory lr: dropped
            ("olmo1b_checkpoint-1000_original_hf_2shots", "mnli_matched", 0.9),  # 2-shot: dropped
            ("olmo1b_hf_ckpt1000_tulu_5epoch_2e-6_4shots", "llmbar_Natural", 0.5),  # not studied: dropped
        ],
        std=True,
    )
    _write(
        tmp_path / OFFICIAL_TABLE,
        [("checkpoint-1000", "hellaswag", 0.25), ("olmo1b_hf_main_tulu_5epoch_2e-6", "hellaswag", 0.61)],
        std=False,
    )
    df = load_paper_results(tmp_path, verify=False)
    assert list(df.columns) == COLUMNS
    got = {(r.step, r.ft_set, r.eval_set, r.prompt_format, r.metric): r.value for r in df.itertuples()}
    assert got == {
        (1000, BASE, "mnli", "default", "accuracy"): 0.30,
        (1000, BASE, "xsum", "io", "rougeL"): 0.05,
        (1000, "mnli", "mnli", "default", "accuracy"): 0.70,
        (1000, "mnli", "xsum", "instruct", "rougeL"): 0.02,
        (MAIN_STEP, BASE, "social_i_qa", "default", "rougeL"): 0.11,
        (MAIN_STEP, "social_i_qa", "social_i_qa", "default", "rougeL"): 0.40,
        (1000, BASE, "hellaswag", "native", "acc"): 0.25,
        (MAIN_STEP, "tulu", "hellaswag", "native", "acc"): 0.61,
    }
    assert set(df["shots"]) == {4} and df["n"].eq(0).all() and df["ci_low"].isna().all()


def test_loader_names_an_unknown_eval_dataset_and_a_missing_table(tmp_path):
    _write(tmp_path / SFT_TABLE, [("olmo1b_original_hf_4shots", "squad", 0.1)], std=True)
    _write(tmp_path / OFFICIAL_TABLE, [], std=False)
    with pytest.raises(ValueError, match="'squad'"):
        load_paper_results(tmp_path, verify=False)
    (tmp_path / OFFICIAL_TABLE).unlink()
    (tmp_path / SFT_TABLE).unlink()
    _write(tmp_path / SFT_TABLE, [("olmo1b_original_hf_4shots", "paws", 0.5)], std=True)
    with pytest.raises(FileNotFoundError, match=OFFICIAL_TABLE):
        load_paper_results(tmp_path, verify=False)


def test_loader_rejects_a_result_given_twice(tmp_path):
    row = ("olmo1b_original_hf_4shots", "paws", 0.5)
    _write(tmp_path / SFT_TABLE, [row, row], std=True)
    _write(tmp_path / OFFICIAL_TABLE, [], std=False)
    with pytest.raises(ValueError, match="given twice"):
        load_paper_results(tmp_path, verify=False)


def test_loader_names_sets_as_the_paper_config_does():
    """Every authors' name maps to an eval set / training set of configs/paper-olmo1b.yaml: a name the design does not
    know would make its pairs vanish (the authors' question-generation `sciq` is the config's `sciq_qg`)."""
    assert set(EVAL_SET_NAMES.values()) == set(PAPER_CONFIG["evaluate"]["eval_sets"])
    assert set(FT_SET_NAMES.values()) == set(PAPER_CONFIG["finetune"]["ft_sets"])


# ------------------------------------------------------------------------------------ golden: the authors' scores

FOLDER = results_dir()
needs_authors = pytest.mark.skipif(
    not (FOLDER / SFT_TABLE).is_file(),
    reason=f"the authors' released CSVs are not in {FOLDER} (set $PTFT_AUTHORS_RESULTS or fill ../shared/authors-results/)",
)


@pytest.fixture(scope="module")
def authors():
    return load_paper_results(FOLDER)


def _notebook_cell(raw: pd.DataFrame, official: pd.DataFrame, pairs: list[tuple[str, str]]) -> list[float]:
    """Table 6 recomputed straight from the authors' model ids, independently of ptft's tidy table: per checkpoint,
    the mean FT - BASE over (eval dataset, training set) pairs (gen_paper_figs.ipynb cell 14's definition)."""
    table = pd.concat([raw, official], ignore_index=True)
    lr = {"xsum": "2e-7", "socialiqa": "2e-6", "mnli": "2e-6", "paws": "2e-6"}
    benchmarks = {"boolq", "openbookqa", "arc_challenge", "arc_easy", "hellaswag", "sciq"}
    out = []
    for ckpt in ["1000", "18000", "342000", "424000", "505000", "592000", "738000", "main"]:
        changes = []
        for eval_ds, train in pairs:
            if eval_ds in benchmarks:
                base = "olmo1b_original_hf" if ckpt == "main" else f"checkpoint-{ckpt}"
                tuned = f"olmo1b_hf_{'main' if ckpt == 'main' else 'ckpt' + ckpt}_tulu_5epoch_2e-6"
            else:
                base = "olmo1b_original_hf_4shots" if ckpt == "main" else f"olmo1b_checkpoint-{ckpt}_original_hf_4shots"
                tuned = f"olmo1b_hf_{'main' if ckpt == 'main' else 'ckpt' + ckpt}_{train}_3epoch_{lr[train]}_4shots"
            b = table[(table["model_id"] == base) & (table["eval dataset"] == eval_ds)]["Performance"]
            f = table[(table["model_id"] == tuned) & (table["eval dataset"] == eval_ds)]["Performance"]
            if len(b) == 1 and len(f) == 1:
                changes.append(float(f.iloc[0]) - float(b.iloc[0]))
        out.append(sum(changes) / len(changes))
    return out


@needs_authors
def test_task_transfer_reproduces_the_paper(authors):
    pairs = transfer_pairs_paper(authors, _paper_design())
    # four pairs per checkpoint and direction (cell 25), eight checkpoints
    assert pairs.groupby("direction").size().to_dict() == {
        CLASSIFICATION_TO_GENERATION: 32,
        GENERATION_TO_CLASSIFICATION: 32,
    }
    result = task_transfer_paper(pairs).set_index("direction")["mean_ratio"]
    # paper §4.3: -61.46% classification -> generation, +0.31% generation -> classification
    assert round(result[CLASSIFICATION_TO_GENERATION] * 100, 2) == -61.46
    assert round(result[GENERATION_TO_CLASSIFICATION] * 100, 2) == 0.31
    cluster = transfer_cluster_test(pairs).set_index("direction")
    assert (cluster["n_checkpoints"] == 8).all()


@needs_authors
@pytest.mark.parametrize("keep_duplicates", [True, False])
def test_table6_reproduces_every_cell(authors, keep_duplicates):
    pairs = group_pairs_paper(
        authors, _paper_design(), _paper_groups(), keep_duplicates=keep_duplicates, native_metric="acc"
    )
    table = gain_by_group_paper(pairs).pivot(index="step", columns="group", values="gain")
    raw = pd.read_csv(FOLDER / SFT_TABLE)
    official = pd.read_csv(FOLDER / OFFICIAL_TABLE)
    pt = [
        ("sciq", "tulu"),
        ("hellaswag", "tulu"),
        ("arc_challenge", "tulu"),
        ("arc_easy", "tulu"),
        ("openbookqa", "tulu"),
    ]
    pt += [("sciq", "tulu")] if keep_duplicates else []
    ft = [("mnli_matched", "mnli"), ("paws", "paws"), ("xsum", "xsum"), ("mnli_mismatched", "mnli"),
          ("xlsum", "xsum"), ("socialiqa", "socialiqa"), ("boolq", "tulu")]  # fmt: skip
    expected = {
        GROUP_PRETRAINING: _notebook_cell(raw, official, pt),
        GROUP_FINETUNING: _notebook_cell(raw, official, ft),
    }
    for group, values in expected.items():
        for step, value in zip(STEPS, values):
            assert round(table.loc[step, group], 3) == round(value, 3), (group, step)
    # Cells printed in the paper (Table 6) and quoted in issues 17/18: with SciQ counted twice the first
    # "learned in pre-training" cell is .048 (.037 once) and the last -.005; "learned in fine-tuning" .062 -> .290.
    first_pt = round(table.loc[1000, GROUP_PRETRAINING], 3)
    assert first_pt == (0.048 if keep_duplicates else 0.037)
    if keep_duplicates:
        assert round(table.loc[MAIN_STEP, GROUP_PRETRAINING], 3) == -0.005
        assert round(table.loc[1000, GROUP_FINETUNING], 3) == 0.062
        assert round(table.loc[MAIN_STEP, GROUP_FINETUNING], 3) == 0.290


@needs_authors
def test_out_of_domain_change_uses_raw_changes_over_the_ood_sets(authors):
    pairs = ood_pairs_paper(authors, _paper_design())
    # the design's names (the paper config's): the authors' question-generation `sciq` is ptft's `sciq_qg`
    assert set(pairs["eval_set"]) == {"cnn_dailymail", "sciq_qg", "tweet_qa", "rte", "gpt3_nli", "qqp", "stsb"}
    result = out_of_domain_raw_change_paper(pairs).set_index("task")
    # notebook cell 29: two out-of-domain sets x 8 checkpoints for NLI, paraphrase and question generation, one for XSum
    assert result["n_pairs"].to_dict() == {"nli": 16, "paraphrase": 16, "question_generation": 16, "summarisation": 8}
    for task, row in result.iterrows():
        assert round(row["mean_raw_change"], 4) == FALLBACK_OOD[task], task


@needs_authors
def test_the_paper_numbers_the_verdicts_quote_are_the_authors(authors):
    pairs = group_pairs_paper(authors, _paper_design(), _paper_groups(), keep_duplicates=True)
    gains = gain_by_group_paper(pairs).pivot(index="step", columns="group", values="gain")
    assert round((gains[GROUP_FINETUNING] - gains[GROUP_PRETRAINING]).mean(), 4) == FALLBACK_GROUP_GAP
    result = task_transfer_paper(transfer_pairs_paper(authors, _paper_design())).set_index("direction")
    for direction, paper in FALLBACK_TRANSFER.items():
        assert round(result.loc[direction, "mean_ratio"], 4) == paper


# ------------------------------------------------------------------------------------ trust before use


def test_a_changed_table_is_refused_by_name(tmp_path):
    """One byte off the published CSV, or a README that lists another hash: refused, naming the file."""
    _write(tmp_path / SFT_TABLE, [("olmo1b_original_hf_4shots", "paws", 0.5)], std=True)
    _write(tmp_path / OFFICIAL_TABLE, [], std=False)
    with pytest.raises(ValueError, match=f"{SFT_TABLE}: sha256 .* is not the published"):
        load_paper_results(tmp_path)
    with pytest.raises(ValueError, match=SFT_TABLE):
        verify_tables(tmp_path, names=(SFT_TABLE,))


@needs_authors
def test_the_shared_tables_are_the_published_ones(tmp_path):
    hashes = verify_tables(FOLDER)
    assert set(hashes) == {SFT_TABLE, OFFICIAL_TABLE}
    # the same bytes with their README's hash changed are refused, naming the README as the source
    for name in (SFT_TABLE, OFFICIAL_TABLE):
        (tmp_path / name).write_bytes((FOLDER / name).read_bytes())
    text = (FOLDER / "README.md").read_text().replace(hashes[OFFICIAL_TABLE], "0" * 64)
    (tmp_path / "README.md").write_text(text)
    with pytest.raises(ValueError, match=f"{OFFICIAL_TABLE}: sha256 .*README.md"):
        load_paper_results(tmp_path)
    (tmp_path / "README.md").write_text((FOLDER / "README.md").read_text())
    assert load_paper_results(tmp_path).equals(load_paper_results(FOLDER))
    # and a flipped digit in a score is caught by the pinned hash, with no README to compare against
    (tmp_path / "README.md").unlink()
    raw = (FOLDER / SFT_TABLE).read_text()
    (tmp_path / SFT_TABLE).write_text(raw.replace("0.5", "0.6", 1))
    with pytest.raises(ValueError, match=f"{SFT_TABLE}: sha256 .*ptft.paper_results.SHA256"):
        load_paper_results(tmp_path)


# ------------------------------------------------------------------------------------ defects found on these scores


def test_a_design_pair_with_no_rows_is_named_not_dropped():
    """The design names `sciq_qg`; results that call it `sciq` used to lose the pair silently (inner join)."""
    rows = []
    for ft_set in (BASE, "social_i_qa"):
        for eval_set in ("social_i_qa", "tweet_qa", "sciq"):
            rows.append({"model": "m", "step": 1, "tokens": 10, "ft_set": ft_set, "eval_set": eval_set,
                         "task": "question_generation", "prompt_format": "default", "shots": 4, "metric": "rougeL",
                         "value": 0.1 if ft_set == BASE else 0.2, "ci_low": None, "ci_high": None, "n": 5})  # fmt: skip
    df = pd.DataFrame(rows)[COLUMNS]
    design = study_design(
        {"social_i_qa": "question_generation"},
        {"social_i_qa": "question_generation", "tweet_qa": "question_generation", "sciq_qg": "question_generation"},
        {"social_i_qa": {"in_domain": ["social_i_qa"], "out_of_domain": ["sciq_qg", "tweet_qa"]}},
    )
    with pytest.raises(ValueError, match=r"out-of-domain change: 1 pair.*\(social_i_qa, sciq_qg, default\)"):
        ood_pairs_paper(df, design)
    named = df.replace({"eval_set": {"sciq": "sciq_qg"}})
    assert set(ood_pairs_paper(named, design)["eval_set"]) == {"sciq_qg", "tweet_qa"}


@needs_authors
def test_finding4_groups_scores_without_items_by_the_point_rule(authors):
    """No per-item scores, no bootstrap: the point rule (rise >= min_gain, above chance) decides, never "undecided"."""
    learned = learned_by_evidence(authors, None).set_index(["eval_set", "prompt_format"])["group"]
    assert UNDECIDED not in set(learned)
    assert learned[("hellaswag", NATIVE_FORMAT)] == LEARNED and learned[("sciq", NATIVE_FORMAT)] == LEARNED
    assert learned[("mnli", "default")] == NOT_LEARNED and learned[("xsum", "default")] == NOT_LEARNED
    groups = groups_from_rule(learned_by_evidence(authors, None), _paper_design())
    assert {"hellaswag", "sciq", "arc_easy"} <= set(groups[GROUP_PRETRAINING])
    assert {"mnli", "paws", "xsum"} <= set(groups[GROUP_FINETUNING])


@needs_authors
def test_finetune_gain_on_the_whole_table_counts_and_names_missing_pairs(authors):
    ft_sets = {f: t for f, t in _paper_design_tasks().items()}
    with pytest.warns(UserWarning, match=r"eval_set='xlsum' prompt_format='io'.*\(1 such rows\)"):
        gain = finetune_gain(authors, ft_sets)
    assert gain.attrs["missing_base"] == [
        {"ft_set": "xsum", "model": "olmo-1b", "step": MAIN_STEP, "eval_set": "xlsum", "prompt_format": "io",
         "shots": 4, "metric": "rougeL"}
    ]  # fmt: skip
    assert not gain.empty and gain["gain"].notna().all()


def _paper_design_tasks():
    datasets = PAPER_CONFIG["data"]["datasets"]
    return {f: datasets[f]["task"] for f in PAPER_CONFIG["finetune"]["ft_sets"]}
