"""Two evaluation jobs at once on one machine, each in its own process as the evaluate rule runs them: which GPU each
one held (ptft.gpu_slots) and ran on (its log's "scoring ... on" line), and what nvidia-smi saw meanwhile.

    python bench/two_eval_jobs.py                  # on a lent GPU machine (bench/gpu_session.sh runs it)
    CUDA_VISIBLE_DEVICES=0,1 python bench/two_eval_jobs.py   # rehearsal on a CPU: a faked pool of two ids

With two or more GPUs the jobs must run at the same time on different GPUs; with one GPU (one slot per GPU) the
second waits for the first ("gpu slots: waiting" in its log), and with PTFT_JOBS_PER_GPU=2 they share it. Prints one
JSON line: per job its slot line, device line, start and end (seconds from the launch), and the verdict.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CFG = {"prompt_formats": ["default"], "shots": [0], "batch_size": 16, "fewshot_seed": 1, "bootstrap_resamples": 100}


def _eval_bench():
    spec = importlib.util.spec_from_file_location("eval_throughput", HERE / "eval_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job(root: Path, name: str) -> None:
    """One evaluation job (ptft.evaluate.evaluate), timed in its log from when it holds its GPU slot."""
    from ptft import evaluate as ev
    from ptft import gpu_slots

    sets = json.loads((root / "eval_sets.json").read_text())
    gpu_slots.hold(1)  # what evaluate() does first (it then keeps this slot): the job starts once it holds one
    print(f"job {name}: start {time.time():.3f}", file=sys.stderr, flush=True)
    ev.evaluate(root / "model", sets, CFG, root / f"{name}.json", root / f"{name}.predictions.jsonl", threads=1)
    print(f"job {name}: end {time.time():.3f}", file=sys.stderr, flush=True)


def _nvidia_smi() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    query = ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader"]
    return subprocess.run(query, capture_output=True, text=True).stdout.strip()


def _summary(log: str, launched: float) -> dict:
    lines = log.splitlines()
    times = {w.split()[2].rstrip(":"): float(w.split()[-1]) - launched for w in lines if w.startswith("job ")}
    return {
        "slot": next((line for line in lines if line.startswith("gpu slots: holding")), None),
        "waited": any(line.startswith("gpu slots: waiting") for line in lines),
        "device": next((line for line in lines if line.startswith("scoring ")), None),
        "start": round(times.get("start", -1), 2),
        "end": round(times.get("end", -1), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64, help="test items per eval set")
    parser.add_argument("--job", nargs=2, metavar=("ROOT", "NAME"), help=argparse.SUPPRESS)  # a child job
    args = parser.parse_args(argv)
    if args.job:
        job(Path(args.job[0]), args.job[1])
        return {}
    root = Path(tempfile.mkdtemp(prefix="two-eval-jobs-"))
    bench = _eval_bench()
    bench.build_model(root / "model", "olmo-1b" if shutil.which("nvidia-smi") else "tiny")
    sets = bench.build_eval_sets(root, args.items)
    (root / "eval_sets.json").write_text(json.dumps({k: {**v, "test": str(v["test"]), "train": str(v["train"])}
                                                     for k, v in sets.items()}))  # fmt: skip
    env = {**os.environ, "PTFT_GPU_SLOTS_DIR": os.environ.get("PTFT_GPU_SLOTS_DIR", str(root / "slots"))}
    launched = time.time()
    children = {
        name: subprocess.Popen([sys.executable, __file__, "--job", str(root), name], env=env,
                               stderr=open(root / f"{name}.log", "w"), stdout=subprocess.DEVNULL)  # fmt: skip
        for name in ("a", "b")
    }
    samples = []
    while any(child.poll() is None for child in children.values()):
        sample = _nvidia_smi()
        if sample:
            samples.append(sample)
        time.sleep(1)
    jobs = {name: _summary((root / f"{name}.log").read_text(), launched) for name in children}
    codes = {name: child.returncode for name, child in children.items()}
    a, b = jobs["a"], jobs["b"]
    overlapped = a["start"] < b["end"] and b["start"] < a["end"]
    result = {"jobs": jobs, "returncodes": codes, "overlapped": overlapped, "nvidia_smi": samples[:5],
              "different_gpus": a["slot"] is not None and b["slot"] is not None
              and a["slot"].split("(")[0] != b["slot"].split("(")[0]}  # fmt: skip
    print(json.dumps(result, indent=1))
    for name in children:  # the jobs' own logs, for the session's output
        lines = [line for line in (root / f"{name}.log").read_text().splitlines() if line.strip() and "it/s" not in line]
        print(f"--- job {name} log (last lines)\n" + "\n".join(lines[-8:]))
    return result


if __name__ == "__main__":
    main()
