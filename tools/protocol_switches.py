"""How much each evaluation switch of docs/fidelity.md moves a finished study's base-checkpoint scores.

Rescores the base checkpoints of the embedded study (after `make study`, or any checkpoints/ and data/ it built)
with every value of evaluate.classification (classification sets) and of evaluate.stop_sequences x
evaluate.rouge_stemmer (generation sets), using the study's own evaluate settings, and prints one row per
(step, eval_set, prompt_format) with the value under each switch and the mean over rows. Nothing is written into
results/; the rescored files go to --out.

    .venv/bin/python tools/protocol_switches.py --steps 0 150 400 1000 --kind classification
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from ptft import evaluate as ev
from ptft.provenance import read_jsonl
from ptft.tasks import get_task

GENERATION_FAMILIES = ("summarisation", "question_generation")


def _eval_sets(root: Path, names: list[str], kind: str) -> dict[str, dict]:
    sets = {}
    for name in names:
        task = json.loads((root / "data" / name / "card.json").read_text())["task"]
        if get_task(task).kind == kind:
            sets[name] = {"task": task, "test": root / "data" / name / "test.jsonl", "train": root / "data" / name / "train.jsonl"}
    return sets


def _switches(kind: str) -> dict[str, dict]:
    if kind == "classification":
        return {method: {"classification": method} for method in ev.CLASSIFICATION_METHODS}
    return {
        "stop=newline": {"stop_sequences": {}},
        "stop=none": {"stop_sequences": {family: [] for family in GENERATION_FAMILIES}},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("studies/mini"), help="the study's folder (studies/<study>/)")
    parser.add_argument("--config", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", default="tiny-olmo")
    parser.add_argument("--steps", nargs="+", required=True)
    parser.add_argument("--kind", choices=("classification", "generation"), required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ptft-protocol-switches"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="test items per eval set (default: the config's)")
    args = parser.parse_args(argv)

    config = yaml.safe_load((args.root / args.config).read_text())
    settings = {k: v for k, v in config["evaluate"].items() if k not in ("eval_sets", "lm_eval_tasks", "threads")}
    settings["bootstrap_resamples"] = 0  # the means are compared, not their intervals
    if args.limit is not None:
        settings["limit"] = args.limit
    sets = _eval_sets(args.root, config["evaluate"]["eval_sets"], args.kind)
    table: dict[tuple, dict[str, float]] = {}
    for step in args.steps:
        model_dir = args.root / "checkpoints" / args.model / str(step)
        for switch, overrides in _switches(args.kind).items():
            out = args.out / str(step) / switch
            out.mkdir(parents=True, exist_ok=True)
            ev.evaluate(model_dir, sets, {**settings, **overrides}, out / "eval.json", out / "predictions.jsonl", args.threads)
            if args.kind == "classification":
                for row in json.loads((out / "eval.json").read_text())["results"]:
                    table.setdefault((step, row["eval_set"], row["prompt_format"]), {})[switch] = row["value"]
                continue
            by_condition: dict[tuple, list] = {}
            for p in read_jsonl(out / "predictions.jsonl"):
                by_condition.setdefault((step, p["eval_set"], p["prompt_format"]), []).append(p)
            for key, rows in by_condition.items():
                for stem in (False, True):
                    scores = [ev.rouge_l(p["prediction"], p["target"], stem) for p in rows]
                    table.setdefault(key, {})[f"{switch},stemmer={stem}"] = float(np.mean(scores))
    columns = sorted({c for row in table.values() for c in row})
    print("step eval_set prompt_format " + " ".join(columns))
    for key in sorted(table, key=lambda k: (int(k[0]), k[1], k[2])):
        print(*key, *(f"{table[key][c]:.3f}" for c in columns))
    print("mean", "", "", *(f"{np.mean([row[c] for row in table.values()]):.3f}" for c in columns))


if __name__ == "__main__":
    main()
