"""The authors' released scores as ptft's tidy results table: the golden input that proves the findings' definitions.

Sun & Dredze publish their per-model scores in github.com/KaiserWhoLearns/AmuroCharPTFTRelationship,
results/analysis/{all_perf_table,official_eval_table}.csv (read here at commit 8b79c396cb2fef1e13ef69df1a56321fee2619db),
and the notebook analysis/gen_paper_figs.ipynb that turns them into the paper's numbers. The CSVs are not part of
this repository (files fetched from a public repository are never committed here); `load_paper_results` reads them
from a folder: its argument, else $PTFT_AUTHORS_RESULTS, else ../shared/authors-results/ beside the repository.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pandas as pd

from ptft.analysis import BASE, COLUMNS, NATIVE_FORMAT, sort_results
from ptft.analysis.results import _typed
from ptft.tasks import TASKS

ENV_VAR = "PTFT_AUTHORS_RESULTS"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "authors-results"
SFT_TABLE = "all_perf_table.csv"  # the fine-tuning sets' eval sets, base and fine-tuned, three prompt formats
OFFICIAL_TABLE = "official_eval_table.csv"  # lm-eval-style benchmarks of the base and Tulu-tuned models
MODEL = "olmo-1b"
# Where a released model id names "main": configs/paper-olmo1b.yaml `models.olmo-1b.main` (the repo's last step branch).
MAIN_STEP, MAIN_TOKENS = 738020, 3_094_000_000_000
# OLMo-1B trains on 2048 sequences x 2048 tokens per step (DESIGN.md: ~4.19M tokens/step). The hub branch names carry
# the exact token counts; this product is an approximation used only to fill the `tokens` column.
TOKENS_PER_STEP = 2048 * 2048
# The notebook's learning rate per training set (gen_paper_figs.ipynb cell 2, LRS) and epochs (cell 14: 3, Tulu 5):
# other runs in the CSVs (lr 2e-5, 2- and 7-shot evaluations, ids without a shots suffix) are the authors'
# explorations and no figure reads them.
PAPER_RUNS = {
    "xsum": ("2e-7", 3),
    "socialiqa": ("2e-6", 3),
    "mnli": ("2e-6", 3),
    "paws": ("2e-6", 3),
    "tulu": ("2e-6", 5),
}
PAPER_SHOTS = 4
# The authors' names -> ptft's (configs/paper-olmo1b.yaml data.datasets / finetune.ft_sets). MNLI "matched" is ptft's
# `mnli` (validation_matched), as the notebook pairs ('mnli_matched', 'mnli') (cell 15). all_perf_table's `sciq` is the
# question-generation set (SciQ's support + answer -> question), which the paper config names `sciq_qg`; the name `sciq`
# is lm-eval's multiple-choice benchmark, official_eval_table's `sciq` (prompt_format "native").
# tests/test_paper_results.py checks every name here is an eval set or training set of the paper config.
FT_SET_NAMES = {"xsum": "xsum", "socialiqa": "social_i_qa", "mnli": "mnli", "paws": "paws", "tulu": "tulu"}
EVAL_SET_NAMES = {
    "xsum": "xsum", "xlsum": "xlsum", "cnn": "cnn_dailymail",
    "socialiqa": "social_i_qa", "sciq": "sciq_qg", "tweetqa": "tweet_qa",
    "mnli_matched": "mnli", "mnli_mismatched": "mnli_mismatched", "rte": "rte", "gpt3nli": "gpt3_nli",
    "paws": "paws", "qqp": "qqp", "stsb": "stsb",
}  # fmt: skip
EVAL_SET_TASKS = {
    "xsum": "summarisation", "xlsum": "summarisation", "cnn_dailymail": "summarisation",
    "social_i_qa": "question_generation", "sciq_qg": "question_generation", "tweet_qa": "question_generation",
    "mnli": "nli", "mnli_mismatched": "nli", "rte": "nli", "gpt3_nli": "nli",
    "paws": "paraphrase", "qqp": "paraphrase", "stsb": "paraphrase",
}  # fmt: skip
# Eval-dataset suffixes -> prompt formats (notebook cells 33-34: '<set>', '<set>_instruct', '<set>_inputoutput').
FORMAT_SUFFIXES = {"_inputoutput": "io", "_instruct": "instruct", "": "default"}
# official_eval_table rows are benchmarks scored by the harness's own task definitions (OLMo-Eval/Catwalk, see
# DESIGN.md), which ptft writes with prompt_format "native" (ptft.analysis.NATIVE_FORMAT). Which of the harness's
# metrics their `Performance` is (acc or length-normalised acc) is not stated in the CSV: ptft labels it "acc", a guess.
NATIVE_METRIC = "acc"
NATIVE_TASK = "instruction"

_SFT_BASE = re.compile(r"^olmo1b_(?:checkpoint-(?P<step>\d+)_)?original_hf_(?P<shots>\d+)shots$")
_SFT_TUNED = re.compile(
    r"^olmo1b_hf_(?:ckpt(?P<step>\d+)|main)_(?P<ft>[a-z0-9]+)_(?P<epochs>\d+)epoch_(?P<lr>[0-9.e-]+)_(?P<shots>\d+)shots$"
)
_OFFICIAL_BASE = re.compile(r"^(?:checkpoint-(?P<step>\d+)|olmo1b_original_hf)$")
_OFFICIAL_TUNED = re.compile(r"^olmo1b_hf_(?:ckpt(?P<step>\d+)|main)_tulu_5epoch_2e-6$")


# Each CSV's sha256, as ../shared/authors-results/README.md lists them (files copied unchanged from the authors'
# repository at commit 8b79c396). `verify_tables` also reads the folder's own README when it has one: both must agree.
SHA256 = {
    SFT_TABLE: "7996bca9ab8b5251892a6658297909d2d19f8210f6fa9785404d00dd1a0ae295",
    "it_perf_table.csv": "04ce16f9713c7d4ff3649fe07bd01c41bba8e89702fece0e449ef0ed5b776afc",
    OFFICIAL_TABLE: "624ea9153af9010972bf95fd866bf74ee2812ed0004601be2ccfbb4fd9d16bcf",
}
_README_ROW = re.compile(r"^\|\s*([\w.-]+\.csv)\s*\|\s*([0-9a-f]{64})\s*\|", re.MULTILINE)


def readme_hashes(folder: Path) -> dict[str, str]:
    """{file name: sha256} from the folder's README.md table (`| file | sha256 | ... |`); {} without a README."""
    readme = folder / "README.md"
    return dict(_README_ROW.findall(readme.read_text())) if readme.is_file() else {}


def verify_tables(folder: str | os.PathLike, names: tuple[str, ...] = (SFT_TABLE, OFFICIAL_TABLE)) -> dict[str, str]:
    """Check each named CSV in `folder` against its pinned sha256 (SHA256) and the folder README's, before any number
    is trusted. Returns {file name: sha256}. Raises FileNotFoundError naming a missing CSV, ValueError naming the
    file whose bytes differ from the published ones (or whose README lists another hash)."""
    folder = Path(folder)
    listed = readme_hashes(folder)
    out = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the authors' results table is missing (see ptft.paper_results)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        pinned = (("ptft.paper_results.SHA256", SHA256.get(name)), (folder / "README.md", listed.get(name)))
        for source, expected in pinned:
            if expected is not None and digest != expected:
                raise ValueError(
                    f"{path}: sha256 {digest} is not the published {expected} ({source}): this is not the authors' "
                    f"unchanged {name}; restore it from their repository at commit 8b79c396"
                )
        out[name] = digest
    return out


def results_dir(folder: str | os.PathLike | None = None) -> Path:
    """The folder holding the authors' CSVs: `folder`, else $PTFT_AUTHORS_RESULTS, else ../shared/authors-results/."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).resolve()


def _step(match: re.Match) -> tuple[int, int]:
    if match.group("step") is None:
        return MAIN_STEP, MAIN_TOKENS
    step = int(match.group("step"))
    return step, step * TOKENS_PER_STEP


def _eval_set(name: str, where: str) -> tuple[str, str, str] | None:
    """(eval_set, task, prompt_format) of an authors' eval dataset name; None for sets ptft does not study (LLMBar)."""
    for suffix, prompt_format in FORMAT_SUFFIXES.items():
        if suffix and not name.endswith(suffix):
            continue
        stem = name[: len(name) - len(suffix)] if suffix else name
        if stem in EVAL_SET_NAMES:
            eval_set = EVAL_SET_NAMES[stem]
            return eval_set, EVAL_SET_TASKS[eval_set], prompt_format
    if name.startswith("llmbar_"):
        return None
    raise ValueError(
        f"{where}: eval dataset {name!r} is none of the authors' sets ptft knows ({sorted(EVAL_SET_NAMES)})"
    )


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the authors' results table is missing (see ptft.paper_results)")
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} are missing (have {list(df.columns)})")
    return df


def _sft_rows(path: Path) -> list[dict]:
    rows = []
    for i, r in _read(path, ["model_id", "eval dataset", "Performance"]).iterrows():
        where = f"{path}: row {i} (model_id {r['model_id']!r})"
        base, tuned = _SFT_BASE.match(r["model_id"]), _SFT_TUNED.match(r["model_id"])
        if base:
            match, ft_set = base, BASE
        elif tuned and PAPER_RUNS.get(tuned.group("ft")) == (tuned.group("lr"), int(tuned.group("epochs"))):
            match, ft_set = tuned, FT_SET_NAMES[tuned.group("ft")]
        else:
            continue  # an exploratory run (see PAPER_RUNS)
        if int(match.group("shots")) != PAPER_SHOTS:
            continue
        found = _eval_set(str(r["eval dataset"]), where)
        if found is None:
            continue
        eval_set, task, prompt_format = found
        step, tokens = _step(match)
        metric = TASKS[task].metric
        rows.append(
            {"model": MODEL, "step": step, "tokens": tokens, "ft_set": ft_set, "eval_set": eval_set, "task": task,
             "prompt_format": prompt_format, "shots": PAPER_SHOTS, "metric": metric, "value": float(r["Performance"])}
        )  # fmt: skip
    return rows


def _official_rows(path: Path) -> list[dict]:
    rows = []
    for _, r in _read(path, ["model_id", "eval dataset", "Performance"]).iterrows():
        base, tuned = _OFFICIAL_BASE.match(r["model_id"]), _OFFICIAL_TUNED.match(r["model_id"])
        if not (base or tuned):
            continue
        step, tokens = _step(base or tuned)
        rows.append(
            {"model": MODEL, "step": step, "tokens": tokens, "ft_set": BASE if base else "tulu",
             "eval_set": str(r["eval dataset"]), "task": NATIVE_TASK, "prompt_format": NATIVE_FORMAT,
             "shots": PAPER_SHOTS, "metric": NATIVE_METRIC, "value": float(r["Performance"])}
        )  # fmt: skip
    return rows


def load_paper_results(folder: str | os.PathLike | None = None, verify: bool = True) -> pd.DataFrame:
    """The authors' released scores (see the module docstring) as a table with exactly ptft's COLUMNS.

    Kept: 4-shot evaluations of the base checkpoints and of the runs the paper reports (PAPER_RUNS), in the default,
    instruct and io formats (all_perf_table.csv), and the lm-eval benchmarks of the base and Tulu-tuned
    checkpoints (official_eval_table.csv, prompt_format "native", metric "acc"). "main" becomes step 738020.
    The CSVs carry no intervals or item counts: ci_low/ci_high are NaN and n is 0.
    `verify` (default) checks both CSVs' sha256 first (`verify_tables`); tests of the parser on tables they write
    themselves pass False.
    Raises FileNotFoundError naming the missing CSV, ValueError naming a CSV whose hash differs, the row of an unknown
    eval dataset or a result given twice (the notebook would skip such a pair: it needs exactly one row, cell 14).
    """
    folder = results_dir(folder)
    if verify:
        verify_tables(folder)
    rows = _sft_rows(folder / SFT_TABLE) + _official_rows(folder / OFFICIAL_TABLE)
    df = pd.DataFrame(rows)
    if df.empty:
        raise ValueError(f"{folder}: no row of the authors' tables matched the paper's runs")
    identity = ["model", "step", "ft_set", "eval_set", "prompt_format", "shots", "metric"]
    dup = df[df.duplicated(identity, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise ValueError(f"{folder}: result given twice: {', '.join(f'{k}={first[k]!r}' for k in identity)}")
    df["ci_low"], df["ci_high"], df["n"] = float("nan"), float("nan"), 0
    return sort_results(_typed(df[COLUMNS]))


# ------------------------------------------------------------------------------------ the paper's numbers, as data

PAPER_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "paper-olmo1b.yaml"
TRANSFER = ("classification \u2192 generation", "generation \u2192 classification")  # ptft.analysis's direction names
# Used only when the authors' CSVs are absent: the same numbers, computed once from the CSVs with the notebook's
# definitions (tests/test_paper_results.py recomputes each from the CSVs and fails if one drifts).
# Task transfer: paper §4.3 and notebook cell 26. Out-of-domain raw change: notebook cell 29 (mean over 8 checkpoints
# and the task's out-of-domain sets; the authors' QQP labels are all -1, DESIGN.md, so paraphrase carries that
# artefact). Group gap: Table 6 (cells 14-15, SciQ listed twice), mean over checkpoints of fine-tuning minus
# pre-training group.
FALLBACK_TRANSFER = {TRANSFER[0]: -0.6146, TRANSFER[1]: 0.0031}
FALLBACK_OOD = {"nli": 0.2458, "paraphrase": -0.1821, "question_generation": 0.0208, "summarisation": -0.0031}
FALLBACK_GROUP_GAP = 0.2208
# What the paper itself prints, where it prints a number (arXiv 2408.06663 v5): §4.3's two transfer ratios and the
# Table 6 cells quoted in tests/test_paper_results.py. Findings 1, 2 and 4 are figures (Figs. 2/14, 5, 2), no number.
PRINTED = {
    "3 task transfer": f"{TRANSFER[0]} \u221261.46%, {TRANSFER[1]} +0.31% (\u00a74.3)",
    "5 gain by group (Table 6)": "learned in pre-training .048 (first checkpoint) \u2192 \u2212.005 (main); learned in "
    "fine-tuning .062 \u2192 .290 (Table 6)",
    "1 prompt sensitivity": "figures only (Figs. 2, 14)",
    "2 out-of-domain raw change": "figure only (Fig. 5)",
    "4 learned in pre-training": "by hand: HellaSwag, ARC-C, ARC-E, SciQ, OBQA learned; the in-domain sets and BoolQ "
    "not (Fig. 2; notebook cells 6-7, 15)",
}


def paper_design() -> dict:
    """The paper's study design (Table 1) and ft_set -> task family, read from configs/paper-olmo1b.yaml:
    ({ft_set: {task, in_domain, out_of_domain}}, {ft_set: task}, {eval_set: task}). Raises FileNotFoundError."""
    import yaml  # noqa: PLC0415

    from ptft.analysis import study_design  # noqa: PLC0415

    config = yaml.safe_load(PAPER_CONFIG.read_text())
    datasets = config["data"]["datasets"]
    ft_sets = {f: datasets[f]["task"] for f in config["finetune"]["ft_sets"]}
    eval_sets = {e: datasets[e]["task"] for e in config["evaluate"]["eval_sets"]}
    groups = config["analysis"]["groups"]
    return {
        "design": study_design(ft_sets, eval_sets, config["analysis"]["design"]),
        "ft_sets": ft_sets,
        "groups": {"learned in pre-training": groups["learned_in_pretraining"],
                   "learned in fine-tuning": groups["learned_in_finetuning"]},
        "keep_duplicates": bool(groups.get("keep_duplicates", False)),
    }  # fmt: skip


def authors_findings(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The findings the paper reports as numbers or curves, computed from the authors' scores (`load_paper_results`)
    by the same ptft.analysis functions a study's findings_tables job runs, over the paper config's design and
    hand-made groups. No per-item scores: no intervals. Keys: sensitivity_by_checkpoint,
    out_of_domain_raw_change_paper, task_transfer_paper, transfer_cluster_test, gain_by_group_paper.
    (Finding 4's grouping and the verdicts are ptft.paper_study's: ptft.verdicts imports this module.)"""
    from ptft import analysis as a  # noqa: PLC0415

    p = paper_design()
    design, groups = p["design"], p["groups"]
    transfer_pairs = a.transfer_pairs_paper(df, design)
    pairs = a.group_pairs_paper(df, design, groups, keep_duplicates=p["keep_duplicates"])
    return {
        "sensitivity_by_checkpoint": a.sensitivity_by_checkpoint(a.prompt_sensitivity(df, p["ft_sets"])),
        "out_of_domain_raw_change_paper": a.out_of_domain_raw_change_paper(a.ood_pairs_paper(df, design)),
        "task_transfer_paper": a.task_transfer_paper(transfer_pairs),
        "transfer_cluster_test": a.transfer_cluster_test(transfer_pairs),
        "gain_by_group_paper": a.gain_by_group_paper(pairs),
    }


class PaperReference:
    """The paper's numbers a study is compared with: from the authors' CSVs when they are there (hash-checked, each
    number computed by `authors_findings`), else the FALLBACK constants. `source` says which, for every table,
    figure and verdict that quotes them.

    transfer: {direction: mean ratio}; ood: {task: mean raw change}; group_gap: float; table6: DataFrame (step,
    group, gain) and findings (`authors_findings`' tables), both None without the CSVs.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        folder = results_dir(folder)
        self.folder = folder
        if (folder / SFT_TABLE).is_file() and (folder / OFFICIAL_TABLE).is_file():
            found = authors_findings(load_paper_results(folder))
            self.findings: dict[str, pd.DataFrame] | None = found
            transfer = found["task_transfer_paper"].set_index("direction")["mean_ratio"]
            self.transfer = {d: round(float(v), 4) for d, v in transfer.items()}
            ood = found["out_of_domain_raw_change_paper"].set_index("task")["mean_raw_change"]
            self.ood = {t: round(float(v), 4) for t, v in ood.items()}
            self.table6 = found["gain_by_group_paper"][["step", "group", "gain"]]
            wide = self.table6.pivot(index="step", columns="group", values="gain")
            self.group_gap = round(float((wide["learned in fine-tuning"] - wide["learned in pre-training"]).mean()), 4)
            self.source = f"computed from the authors' scores in {folder} (sha256 checked; ptft.paper_results)"
            self.origin = "computed from the authors' released scores (sha256 checked)"
        else:
            self.transfer, self.ood, self.group_gap = dict(FALLBACK_TRANSFER), dict(FALLBACK_OOD), FALLBACK_GROUP_GAP
            self.table6, self.findings = None, None
            self.source = (
                f"constants in ptft.paper_results (the authors' CSVs are not in {folder}; set ${ENV_VAR})"
            )
            self.origin = "ptft's stored constants (the authors' CSVs are absent)"


_REFERENCES: dict[Path, PaperReference] = {}


def paper_reference(folder: str | os.PathLike | None = None) -> PaperReference:
    """`PaperReference` for `folder` (default: `results_dir()`), computed once per process."""
    key = results_dir(folder)
    if key not in _REFERENCES:
        _REFERENCES[key] = PaperReference(key)
    return _REFERENCES[key]
