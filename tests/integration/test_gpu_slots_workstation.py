"""GPU slots under a real local Snakemake run (issue 24): a faked pool of 3 GPU ids, `--resources gpu=3`, one-GPU jobs
that take their slot in the job (as ptft.evaluate does) and a 2-process job under `python -m ptft.gpu_slots` and
torchrun (as the finetune rule does). Every job records the CUDA_VISIBLE_DEVICES it ran with and when."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, job_counts, snakemake
from ptft import gpu_slots

pytestmark = pytest.mark.integration

ONE_GPU_JOBS = 6
SNAKEFILE = f"""
import os, sys

# as rules/common.smk does: `python` in a shell rule is the interpreter running Snakemake
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]


rule all:
    input:
        expand("out/one{{i}}.json", i=range({ONE_GPU_JOBS})),
        "out/two.json",


rule one_gpu:
    output:
        "out/one{{i}}.json",
    resources:
        gpu=1,
    script:
        "one_gpu.py"


rule two_processes:
    output:
        "out/two.json",
    resources:
        gpu=2,
    shell:
        "python -m ptft.gpu_slots --gpus 2 -- python two_processes.py {{output}} 2> out/two.log"
"""
# A one-GPU job as ptft.evaluate runs one: hold(1) in the job's own process, before any GPU work.
ONE_GPU = """
import json, os, time
from ptft import gpu_slots

gpu_slots.hold(1)
start = time.time()
time.sleep(2)
record = {"gpus": os.environ["CUDA_VISIBLE_DEVICES"].split(","), "start": start, "end": time.time()}
open(snakemake.output[0], "w").write(json.dumps(record))
"""
# A 2-process job as ptft.launch runs one: torchrun on the slots' rendezvous port; each worker records what it sees.
TWO_PROCESSES = """
import json, os, subprocess, sys, time
from pathlib import Path
from ptft.launch import rendezvous

out = Path(sys.argv[1])
start = time.time()
worker = Path(__file__).with_name("worker.py")
subprocess.run([sys.executable, "-m", "torch.distributed.run", *rendezvous(os.environ, 2), str(worker), str(out)],
               check=True)
workers = [json.loads(out.with_name(f"two.rank{rank}.json").read_text()) for rank in range(2)]
record = {"gpus": os.environ["CUDA_VISIBLE_DEVICES"].split(","), "start": start, "end": time.time(),
          "workers": workers, "port": os.environ["PTFT_RENDEZVOUS_PORT"]}
out.write_text(json.dumps(record))
"""
WORKER = """
import json, os, sys, time
from pathlib import Path

time.sleep(1)
rank = os.environ["RANK"]
Path(sys.argv[1]).with_name(f"two.rank{rank}.json").write_text(json.dumps(
    {"rank": rank, "gpus": os.environ["CUDA_VISIBLE_DEVICES"], "master_port": os.environ["MASTER_PORT"]}))
"""


@pytest.fixture
def workdir(tmp_path) -> Path:
    for name, text in {"Snakefile": SNAKEFILE, "one_gpu.py": ONE_GPU, "two_processes.py": TWO_PROCESSES,
                       "worker.py": WORKER}.items():  # fmt: skip
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_concurrent_jobs_hold_disjoint_gpus_and_a_killed_holder_frees_its_slots(workdir, monkeypatch):
    slots = workdir / "slots"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")  # the faked pool: this machine has no GPU
    monkeypatch.setenv(gpu_slots.SLOTS_DIR_ENV, str(slots))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run = snakemake(workdir, "--profile", str(ROOT / "profiles" / "local"), "--resources", "gpu=3", cores="4")
    assert job_counts(run.stdout + run.stderr) == {"one_gpu": ONE_GPU_JOBS, "two_processes": 1, "all": 1}

    records = [path for path in (workdir / "out").glob("*.json") if "rank" not in path.name]
    jobs = {path.stem: json.loads(path.read_text()) for path in records}
    assert len(jobs) == ONE_GPU_JOBS + 1
    overlapping = [(a, b) for a, b in itertools.combinations(jobs, 2) if _overlap(jobs[a], jobs[b])]
    assert overlapping, "no two jobs ran at once: the test would show nothing"
    for a, b in overlapping:
        assert not set(jobs[a]["gpus"]) & set(jobs[b]["gpus"]), f"{a} and {b} ran at once on {jobs[a]} / {jobs[b]}"
    assert set().union(*(set(job["gpus"]) for job in jobs.values())) == {"0", "1", "2"}

    two = jobs["two"]
    assert len(two["gpus"]) == 2 and len(set(two["gpus"])) == 2
    assert [w["gpus"] for w in two["workers"]] == [",".join(two["gpus"])] * 2  # both processes see the job's GPUs
    assert {w["master_port"] for w in two["workers"]} == {two["port"]}  # the slots' port, not a shared default
    assert f"gpu slots: holding GPU {','.join(two['gpus'])}" in (workdir / "out" / "two.log").read_text()

    # kill -9 a job holding every GPU: its slots are free again at once
    holder = subprocess.Popen([sys.executable, "-m", "ptft.gpu_slots", "--gpus", "3", "--", "sleep", "60"],
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert "holding GPU 0,1,2" in holder.stderr.readline()
    assert gpu_slots.try_acquire(1, ["0", "1", "2"], 1, slots) is None
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    held = gpu_slots.acquire(3, os.environ, poll_seconds=0.05)
    assert held.gpus == ["0", "1", "2"]
