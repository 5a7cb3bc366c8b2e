"""`make paper-results` (ptft.paper_study) and the paper's numbers as data (ptft.paper_results.PaperReference): the
authors' scores through a study's own path, and every study's verdicts and figures quoting the CSVs, not constants."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptft.analysis import CLASSIFICATION_TO_GENERATION, GENERATION_TO_CLASSIFICATION
from ptft.paper_figures import PAPER, paper_comparison_figure
from ptft.paper_results import (
    FALLBACK_GROUP_GAP,
    FALLBACK_OOD,
    FALLBACK_TRANSFER,
    OFFICIAL_TABLE,
    SFT_TABLE,
    PaperReference,
    results_dir,
)
from ptft.paper_study import FIGURES, main, run
from ptft.verdicts import F2, F3, F5, REPRODUCED

ROOT = Path(__file__).resolve().parents[1]
FOLDER = results_dir()
needs_authors = pytest.mark.skipif(
    not (FOLDER / SFT_TABLE).is_file(),
    reason=f"the authors' released CSVs are not in {FOLDER} (set $PTFT_AUTHORS_RESULTS or fill ../shared/authors-results/)",
)


@pytest.fixture(scope="module")
def paper_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper-results")
    return out, run(out)


@needs_authors
def test_the_reference_is_computed_from_the_csvs_and_equals_the_documented_fallback():
    ref = PaperReference(FOLDER)
    assert "computed from the authors' scores" in ref.source and str(FOLDER) in ref.source
    assert ref.transfer == FALLBACK_TRANSFER and ref.ood == FALLBACK_OOD and ref.group_gap == FALLBACK_GROUP_GAP
    assert sorted(set(ref.table6["step"]))[0] == 1000 and len(ref.table6) == 16  # Table 6: 8 checkpoints x 2 groups


def test_without_the_csvs_the_constants_stand_in_and_say_so(tmp_path):
    ref = PaperReference(tmp_path)
    assert ref.table6 is None and ref.findings is None
    assert "constants" in ref.source and str(tmp_path) in ref.source
    assert ref.transfer[CLASSIFICATION_TO_GENERATION] == -0.6146


@needs_authors
def test_paper_results_writes_a_study_of_the_authors_scores(paper_results):
    out, written = paper_results
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000, name
    side = {r["finding"]: r for r in json.loads((out / "side_by_side.json").read_text())["findings"]}
    assert len(side) == 5
    # ptft's number from the authors' scores beside the paper's printed one
    assert "-61.46%" in side[F3]["ptft"] and "+0.31%" in side[F3]["ptft"]
    assert "\u221261.46%" in side[F3]["paper"] and "+0.31%" in side[F3]["paper"]
    assert "0.048 -> -0.005" in side[F5]["ptft"] and "0.062 -> 0.290" in side[F5]["ptft"]
    assert ".048" in side[F5]["paper"] and ".290" in side[F5]["paper"]
    assert "question_generation +0.0208 (n=16)" in side[F2]["ptft"]
    verdicts = pd.read_csv(out / "tables" / "verdicts.csv")
    assert set(verdicts.loc[verdicts["finding"].isin([F2, F3, F5]), "verdict"]) == {REPRODUCED}
    html = (out / "report.html").read_text()
    assert 'id="side-by-side"' in html and html.count("data:image/png;base64,") == len(FIGURES)
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["sha256"][SFT_TABLE].startswith("7996bca9")


@needs_authors
def test_a_changed_csv_stops_paper_results_naming_it(tmp_path, capsys):
    for name in (SFT_TABLE, OFFICIAL_TABLE, "README.md"):
        shutil.copy(FOLDER / name, tmp_path / name)
    with (tmp_path / OFFICIAL_TABLE).open("a") as f:
        f.write("99,checkpoint-1000,arc_easy,0.99\n")
    assert main(["--authors", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert f"{OFFICIAL_TABLE}: sha256" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.html").exists()


def _paper_markers(ax):
    (markers,) = [c for c in ax.collections if c.get_label() == PAPER]
    return markers.get_offsets()


@needs_authors
def test_the_comparison_figure_draws_the_papers_numbers(paper_results):
    out, _ = paper_results
    ref = PaperReference(FOLDER)
    tables = {n: pd.read_csv(out / "tables" / f"{n}.csv") for n in
              ("sensitivity_by_checkpoint", "out_of_domain_raw_change_paper", "task_transfer_paper",
               "gain_by_group_paper")}  # fmt: skip
    fig = paper_comparison_figure(tables, ref)
    ood_ax, transfer_ax = fig.axes[1], fig.axes[2]
    drawn = sorted(float(y) for y in _paper_markers(ood_ax)[:, 1])
    assert np.allclose(drawn, sorted(ref.ood.values()))
    drawn = [float(y) for y in _paper_markers(transfer_ax)[:, 1]]
    assert np.allclose(drawn, [ref.transfer[CLASSIFICATION_TO_GENERATION], ref.transfer[GENERATION_TO_CLASSIFICATION]])
    # Table 6 on the paper's own steps: the paper's dashed curves sit on the study's checkpoints
    labels = [line.get_label() for line in fig.axes[3].get_lines()]
    assert "learned in pre-training, paper" in labels


def test_a_study_on_other_checkpoints_gets_the_papers_curves_in_panels_of_their_own(tmp_path):
    """The embedded study's steps are not OLMo-1B's: the paper's Table 6 is drawn apart, never on the study's axis."""
    ref = PaperReference(tmp_path)  # constants: no curves to draw
    steps = [0, 400]
    tables = {
        "sensitivity_by_checkpoint": pd.DataFrame(
            [("m", s, s * 10, st, 0.1, 0.05, 2) for s in steps for st in ("base", "fine-tuned")],
            columns=["model", "step", "tokens", "stage", "spread", "std", "n_eval_sets"]),
        "out_of_domain_raw_change_paper": pd.DataFrame(
            [("m", "nli", 0.1, 4, 2, "b", 0.0, 0.2)],
            columns=["model", "task", "mean_raw_change", "n_pairs", "n_checkpoints", "eval_sets", "ci_low", "ci_high"]),
        "task_transfer_paper": pd.DataFrame(
            [("m", CLASSIFICATION_TO_GENERATION, -0.3, -0.1, 4, 2, -0.5, -0.1)],
            columns=["model", "direction", "mean_ratio", "mean_raw_change", "n_pairs", "n_checkpoints", "ci_low",
                     "ci_high"]),
        "gain_by_group_paper": pd.DataFrame(
            [("m", s, s * 10, g, 0.1, 3) for s in steps for g in ("learned in pre-training", "learned in fine-tuning")],
            columns=["model", "step", "tokens", "group", "gain", "n_pairs"]),
    }  # fmt: skip
    fig = paper_comparison_figure(tables, ref)
    assert "needs the authors' CSVs" in fig.axes[3].get_title()
    assert len(fig.axes) == 4
    # the study's nli bar and the paper's nli diamond; a task the study lacks is said to be missing, not drawn as 0
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts.count("not in this study") == len(FALLBACK_OOD) - 1
    if (FOLDER / SFT_TABLE).is_file():
        fig = paper_comparison_figure(tables, PaperReference(FOLDER))
        assert len(fig.axes) == 6 and "Table 6" in fig.axes[5].get_title()


@needs_authors
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_the_report_renders_in_chromium(paper_results, tmp_path):
    out, written = paper_results
    shot = tmp_path / "report.png"
    subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                    f"--screenshot={shot}", "--window-size=1400,3000", f"file://{written['report']}"],
                   check=True, timeout=180, capture_output=True)  # fmt: skip
    from PIL import Image

    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=int)
    # the table's text on white at the top, and the inlined figures' coloured curves below it
    colourful = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 80).sum())
    assert colourful > 5_000, colourful
    assert math.isfinite(float(pixels.mean())) and pixels[:200].mean() > 200  # a white page with text, not an error
