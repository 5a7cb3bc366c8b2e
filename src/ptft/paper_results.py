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
