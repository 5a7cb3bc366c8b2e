"""Planning cost: time `snakemake -n` on the paper's grid and on one 10x larger, print seconds and ratios.

The paper grid is configs/paper-olmo1b.yaml itself (8 hub checkpoints x 5 fine-tuning sets x 13 eval sets,
3 prompt formats each; planning needs no network). The larger grid has 10x the checkpoints, hence ~10x the
jobs. The smoke grids reshape the embedded study. Nothing runs; only the DAG is built. Goal (issue 7):
under 5 s for the paper grid, growing no worse than linearly.

    python bench/plan_overhead.py            # paper-sized grid and 10x
    python bench/plan_overhead.py --smoke    # a tiny grid and 2x, seconds
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "schemas", "envs", "profiles"]
TASKS = ["summarisation", "question_generation", "nli", "paraphrase"]
DOMAINS = {
    "summarisation": ["news", "story"],
    "question_generation": ["social", "science"],
    "nli": ["places", "animals"],
    "paraphrase": ["statement", "question"],
}


def grid_config(n_checkpoints: int, n_ft_sets: int, n_eval_sets: int) -> dict:
    """The embedded params.yaml reshaped to n_checkpoints x n_ft_sets x n_eval_sets."""
    config = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    model = next(iter(config["models"].values()))
    model["checkpoints"] = [100 * i for i in range(n_checkpoints)]
    config["models"] = {"olmo": model}
    datasets = {}
    for i in range(max(n_ft_sets, n_eval_sets)):
        task = TASKS[i % len(TASKS)]
        domain = DOMAINS[task][(i // len(TASKS)) % 2]
        datasets[f"set{i:03d}"] = {"task": task, "domain": domain, "n_train": 60, "n_test": 60}
    names = sorted(datasets)
    config["data"]["datasets"] = datasets
    config["finetune"]["ft_sets"] = {name: {} for name in names[:n_ft_sets]}
    config["evaluate"]["eval_sets"] = names[:n_eval_sets]
    return config


def paper_config(scale: int) -> dict:
    """configs/paper-olmo1b.yaml with `scale` times its checkpoints (steps only: planning resolves nothing)."""
    config = yaml.safe_load((ROOT / "configs/paper-olmo1b.yaml").read_text())
    model = config["models"]["olmo-1b"]
    if scale > 1:
        model["checkpoints"] = [1000 * (i + 1) for i in range(len(model["checkpoints"]) * scale)]
    return config


def shape_of(config: dict) -> tuple[int, int, int]:
    (model,) = config["models"].values()
    return len(model["checkpoints"]), len(config["finetune"]["ft_sets"]), len(config["evaluate"]["eval_sets"])


def plan(config: dict, workdir: Path) -> tuple[float, int]:
    """Seconds of `snakemake -n` (whole process: parse, validate, build the DAG) and its job count."""
    (workdir / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", "--quiet", "rules"], cwd=workdir,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    jobs = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
    return seconds, int(jobs.group(1)) if jobs else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny grid and 2x, to check the script works")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings per grid")
    args = parser.parse_args()
    if args.smoke:
        grids = [("small", grid_config(2, 2, 4)), ("2x", grid_config(4, 2, 4))]
    else:
        grids = [("paper", paper_config(1)), ("10x", paper_config(10))]
    with tempfile.TemporaryDirectory(prefix="plan_overhead_") as tmp:
        workdir = Path(tmp)
        for name in WORKFLOW_FILES:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
        results = []
        for label, config in grids:
            shape = shape_of(config)
            timings = [plan(config, workdir) for _ in range(max(1, args.repeats))]
            seconds = min(t for t, _ in timings)
            jobs = timings[0][1]
            results.append((label, shape, seconds, jobs))
            print(f"{label:>6}: {shape[0]} checkpoints x {shape[1]} ft_sets x {shape[2]} eval sets "
                  f"-> {jobs} jobs, snakemake -n {seconds:.2f} s")
    (base_label, _, base_s, base_jobs), (big_label, _, big_s, big_jobs) = results
    job_ratio = big_jobs / base_jobs
    time_ratio = big_s / base_s
    print(f"ratio {big_label}/{base_label}: jobs {job_ratio:.1f}x, planning time {time_ratio:.2f}x "
          f"({'no worse than linear' if time_ratio <= job_ratio else 'WORSE than linear'}); "
          f"{base_label} under 5 s: {'yes' if base_s < 5 else 'NO'}")


if __name__ == "__main__":
    main()
