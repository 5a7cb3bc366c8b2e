"""`make paper-results`: the paper reproduced from the authors' own released scores, as a study's outputs.

The authors' CSVs (../shared/authors-results/ or $PTFT_AUTHORS_RESULTS, sha256-checked) go through the path a study's
results take — tidy table -> findings tables -> verdicts -> figures -> one HTML report — with no GPU, no model and no
hub. The report puts, per finding, the number ptft computes from the authors' scores beside the number the paper
prints (ptft.paper_results.PRINTED; a finding the paper shows only as a figure says so).

    python -m ptft.paper_study [--authors DIR] [--out paper-results]
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import re
import sys
import time
from pathlib import Path

import pandas as pd

from ptft import analysis as a
from ptft.paper_figures import paper_comparison_figure
from ptft.paper_results import (
    PRINTED,
    authors_findings,
    load_paper_results,
    paper_design,
    paper_reference,
    results_dir,
    verify_tables,
)
from ptft.plots import base_curves_by_group_figure, prompt_sensitivity_figure, save_figure
from ptft.provenance import atomic_write_text, write_json
from ptft.verdicts import F1, F2, F3, F4, F5, groups_from_rule, learned_by_evidence, verdicts, verdicts_markdown

FIGURES = ("paper_comparison", "prompt_sensitivity", "base_curves_by_group")


def _fmt(x: float, pct: bool = False) -> str:
    if not math.isfinite(x):
        return "undefined"
    return f"{x:+.2%}" if pct else f"{x:+.4f}"


def _sets(learned: pd.DataFrame, group: str) -> str:
    rows = learned[learned["group"] == group]
    names = [e + (" (lm-eval)" if f == a.NATIVE_FORMAT else "") for e, f in zip(rows["eval_set"], rows["prompt_format"])]
    return ", ".join(sorted(names))


def computed_numbers(found: dict[str, pd.DataFrame], verdict: pd.DataFrame) -> dict[str, str]:
    """Per finding (the verdicts' names), ptft's number from the authors' scores as one line of text."""
    sens = found["sensitivity_by_checkpoint"]
    first, last = sens["step"].min(), sens["step"].max()
    spread = {(r.stage, r.step): r.spread for r in sens.itertuples()}
    widen = verdict[verdict["finding"] == F1]
    ood = found["out_of_domain_raw_change_paper"]
    tr = found["task_transfer_paper"]
    learned = found["learned_in_pretraining"]
    g6 = found["gain_by_group_paper"].pivot(index="step", columns="group", values="gain")
    s0, s1 = g6.index.min(), g6.index.max()
    return {
        F1: f"mean spread across formats, base {spread.get((a.STAGE_BASE, first), math.nan):.3f} -> "
        f"{spread.get((a.STAGE_BASE, last), math.nan):.3f}, fine-tuned "
        f"{spread.get((a.STAGE_FINETUNED, first), math.nan):.3f} -> {spread.get((a.STAGE_FINETUNED, last), math.nan):.3f}"
        f" (step {first} -> {last}); widening after fine-tuning: "
        + "; ".join(f"{r.detail.split(' (')[0]} {_fmt(r.value)}" for r in widen.itertuples()),
        F2: "; ".join(f"{r.task} {_fmt(r.mean_raw_change)} (n={r.n_pairs})" for r in ood.itertuples()),
        F3: "; ".join(f"{r.direction} {_fmt(r.mean_ratio, pct=True)} (n={r.n_pairs})" for r in tr.itertuples()),
        F4: "by the point rule: learned " + _sets(learned, "learned") + "; not learned " + _sets(learned, "not learned"),
        F5: f"learned in pre-training {g6.loc[s0, a.GROUP_PRETRAINING]:.3f} -> {g6.loc[s1, a.GROUP_PRETRAINING]:.3f}; "
        f"learned in fine-tuning {g6.loc[s0, a.GROUP_FINETUNING]:.3f} -> {g6.loc[s1, a.GROUP_FINETUNING]:.3f} "
        f"(step {s0} -> {s1})",
    }


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def report_html(side_by_side: list[dict], verdict: pd.DataFrame, figures: dict[str, Path], source: str) -> str:
    """One self-contained page (figures inlined): the side-by-side table, the verdicts, the figures."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(r['finding'])}</td><td>{esc(r['ptft'])}</td><td>{esc(r['paper'])}</td>"
        f"<td>{esc(r['verdict'])}</td></tr>"
        for r in side_by_side
    )
    figs = "".join(
        f'<figure id="{esc(name)}"><img alt="{esc(name)}" src="{_png(path)}"><figcaption>{esc(name)}</figcaption></figure>'
        for name, path in figures.items()
    )
    bold = re.compile(r"\*\*(.+?)\*\*")
    verdict_md = "".join(
        "<li>" + bold.sub(r"<strong>\1</strong>", esc(line[2:])) + "</li>"
        for line in verdicts_markdown(verdict).splitlines()
        if line[:2] == "- "
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Amuro &amp; Char from the authors' scores</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3em .6em;vertical-align:top}}
img{{max-width:100%}}</style></head><body>
<h1>The paper from its authors' released scores</h1>
<p>Source: {esc(source)}. Every number below is computed by ptft's own analysis functions (the ones a study runs)
from the authors' per-model scores; the paper's printed number stands beside it.</p>
<h2>Per finding: ptft from the authors' scores, and the paper</h2>
<table id="side-by-side"><tr><th>finding</th><th>ptft, from the authors' scores</th><th>printed in the paper</th>
<th>verdict</th></tr>{rows}</table>
<h2>Verdicts</h2><ul>{verdict_md}</ul>
<h2>Figures</h2>{figs}
</body></html>
"""


def run(out: Path, folder: Path | None = None) -> dict[str, Path]:
    """Write the whole paper-results study into `out` (tables/, figures/, verdicts, report.html, provenance.json);
    returns {output name: path}. Raises FileNotFoundError / ValueError from the loader (missing or changed CSV)."""
    started = time.perf_counter()
    folder = results_dir(folder)
    hashes = verify_tables(folder)
    df = load_paper_results(folder)
    p = paper_design()
    reference = paper_reference(folder)
    found = authors_findings(df)
    found["learned_in_pretraining"] = learned = learned_by_evidence(df, None)  # no items: the point rule
    found["groups_from_rule"] = pd.DataFrame(
        [(g, e) for g, sets in groups_from_rule(learned, p["design"]).items() for e in sets], columns=["group", "eval_set"]
    )
    verdict = verdicts(df, p["design"], p["groups"], learned, None, keep_duplicates=p["keep_duplicates"],
                       paper=reference)  # fmt: skip
    written: dict[str, Path] = {}
    tables = {"results": df, **found, "verdicts": verdict}
    for name, table in tables.items():
        written[name] = out / "tables" / f"{name}.csv"
        a.write_table(table, written[name])
        if name != "verdicts":
            a.write_markdown(table, out / "tables" / f"{name}.md", title=name)
    atomic_write_text(out / "tables" / "verdicts.md", verdicts_markdown(verdict))
    figures = {
        "paper_comparison": paper_comparison_figure(found, reference),
        "prompt_sensitivity": prompt_sensitivity_figure(a.prompt_sensitivity(df, p["ft_sets"])),
        "base_curves_by_group": base_curves_by_group_figure(df, learned),
    }
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / "figures" / f"{name}.png"
        save_figure(fig, paths[name], paths[name].with_suffix(".svg"))
    written.update({f"figure {n}": q for n, q in paths.items()})
    numbers = computed_numbers(found, verdict)
    side = [
        {"finding": f, "ptft": numbers[f], "paper": PRINTED[f],
         "verdict": ", ".join(dict.fromkeys(verdict.loc[verdict["finding"] == f, "verdict"]))}
        for f in (F1, F2, F3, F4, F5)
    ]  # fmt: skip
    write_json(out / "side_by_side.json", {"source": reference.source, "findings": side})
    written["report"] = out / "report.html"
    atomic_write_text(written["report"], report_html(side, verdict, paths, reference.source))
    write_json(out / "provenance.json", {
        "command": "python -m ptft.paper_study", "authors_results": str(folder), "sha256": hashes,
        "authors_commit": "8b79c396cb2fef1e13ef69df1a56321fee2619db", "paper_config": "configs/paper-olmo1b.yaml",
        "seconds": round(time.perf_counter() - started, 2),
    })  # fmt: skip
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: see the module docstring. Exit 0 with the report's path, 1 naming a missing or changed CSV."""
    parser = argparse.ArgumentParser(prog="python -m ptft.paper_study", description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=Path, default=None, help="folder of the authors' CSVs (default: "
                        "$PTFT_AUTHORS_RESULTS, else ../shared/authors-results/)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("paper-results"), help="output folder (default paper-results/)")
    args = parser.parse_args(argv)
    try:
        written = run(args.out, args.authors)
    except (FileNotFoundError, ValueError) as err:
        print(f"paper-results: {err}", file=sys.stderr)
        return 1
    side = json.loads((args.out / "side_by_side.json").read_text())
    for row in side["findings"]:
        print(f"{row['finding']}\n  ptft:  {row['ptft']}\n  paper: {row['paper']}\n  verdict: {row['verdict']}")
    print(f"report: {written['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
