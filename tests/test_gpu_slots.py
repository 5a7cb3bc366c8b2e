"""Tests for ptft.gpu_slots: the pool, exclusive slots, slots freed by a killed holder, the launcher's port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptft import gpu_slots
from ptft.launch import finetune_command, rendezvous


def test_the_pool_comes_from_the_user_then_cuda_visible_devices_and_is_empty_under_slurm():
    assert gpu_slots.gpu_pool({"CUDA_VISIBLE_DEVICES": "0,1,2"}) == ["0", "1", "2"]
    assert gpu_slots.gpu_pool({"CUDA_VISIBLE_DEVICES": "0,1,2", "PTFT_GPUS": "2,0"}) == ["2", "0"]
    assert gpu_slots.gpu_pool({"PTFT_GPUS": "1"}) == ["1"]
    assert gpu_slots.gpu_pool({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu_slots.gpu_pool({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpu_slots.gpu_pool({"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "42"}) == []
    with pytest.raises(ValueError, match=r"\$PTFT_GPUS=3 names GPU \['3'\] outside CUDA_VISIBLE_DEVICES"):
        gpu_slots.gpu_pool({"CUDA_VISIBLE_DEVICES": "0,1", "PTFT_GPUS": "3"})
    assert gpu_slots.jobs_per_gpu({}) == 1
    assert gpu_slots.jobs_per_gpu({"PTFT_JOBS_PER_GPU": "3"}) == 3
    with pytest.raises(ValueError, match="PTFT_JOBS_PER_GPU must be a whole number >= 1, got '0'"):
        gpu_slots.jobs_per_gpu({"PTFT_JOBS_PER_GPU": "0"})


def test_slots_are_exclusive_spread_over_the_gpus_first_and_each_has_its_own_port(tmp_path):
    pool = ["0", "1", "2"]
    one = gpu_slots.try_acquire(1, pool, 1, tmp_path)
    two = gpu_slots.try_acquire(2, pool, 1, tmp_path)
    assert one.gpus == ["0"] and two.gpus == ["1", "2"]
    assert one.port != two.port
    assert gpu_slots.slot_port("1", 0, 0) == gpu_slots.slot_port("1", 5, 0)  # the GPU's number, not its place in a pool
    assert gpu_slots.try_acquire(1, pool, 1, tmp_path) is None  # every GPU held
    for fd in one.fds:
        os.close(fd)
    assert gpu_slots.try_acquire(1, pool, 1, tmp_path).gpus == ["0"]

    shared = tmp_path / "shared"
    first = [gpu_slots.try_acquire(1, pool, 2, shared).gpus for _ in range(3)]
    assert first == [["0"], ["1"], ["2"]]  # every GPU's first slot before any second one
    assert gpu_slots.try_acquire(2, pool, 2, shared).gpus == ["0", "1"]
    assert gpu_slots.try_acquire(2, pool, 2, shared) is None  # one slot left: not two different GPUs


def test_acquire_refuses_more_gpus_than_the_pool_and_does_nothing_without_one(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "0", "PTFT_GPU_SLOTS_DIR": str(tmp_path)}
    with pytest.raises(ValueError, match="a job asks 2 GPUs but the pool has 1"):
        gpu_slots.acquire(2, env)
    assert gpu_slots.acquire(1, {"CUDA_VISIBLE_DEVICES": "", "PTFT_GPU_SLOTS_DIR": str(tmp_path)}) is None
    assert gpu_slots.acquire(1, {**env, "SLURM_JOB_ID": "7"}) is None
    assert not list(tmp_path.iterdir())  # nothing locked, nothing created


def _holder(env: dict, gpus: int, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`python -m ptft.gpu_slots --gpus N -- sleep 60`, once it holds its slots; its log."""
    log = tmp_path / f"holder-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ptft.gpu_slots", "--gpus", str(gpus), "--", "sleep", "60"],
            env={**os.environ, **env}, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while "holding GPU" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc, log


def test_a_slot_is_free_again_when_its_holder_is_killed(tmp_path):
    """The wrapper execs the command, which keeps the locks: kill -9 of the command frees them."""
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "PTFT_GPU_SLOTS_DIR": str(tmp_path / "slots")}
    proc, log = _holder(env, 2, tmp_path)
    assert "gpu slots: holding GPU 0,1 (CUDA_VISIBLE_DEVICES=0,1; pool 0,1, 1 job(s) per GPU" in log.read_text()
    assert gpu_slots.try_acquire(1, ["0", "1"], 1, tmp_path / "slots") is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    held = gpu_slots.acquire(2, env, poll_seconds=0.05)
    assert held.gpus == ["0", "1"]


def test_the_finetune_command_holds_one_gpu_per_process_on_a_workstation_only():
    config = {"resources": {"finetune": {"gpu": 2, "nodes": 1, "processes_per_node": 0, "gpu_mem_gb": 0}},
              "finetune": {"sharding": "none"}}  # fmt: skip
    assert finetune_command(config) == "python -m ptft.launch --nproc-per-node 2 --"
    assert finetune_command(config, ["0", "1", "2"]) == (
        "python -m ptft.gpu_slots --gpus 2 -- python -m ptft.launch --nproc-per-node 2 --"
    )
    config["resources"]["finetune"]["gpu"] = 0
    assert finetune_command(config, ["0"]) == "python -m ptft.gpu_slots --gpus 1 -- python -m ptft.finetune"


def test_the_launcher_rendezvous_on_the_slots_port():
    assert rendezvous({"PTFT_RENDEZVOUS_PORT": "29603"}, 2) == [
        "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", "29603", "--nproc_per_node", "2",
    ]  # fmt: skip
    assert rendezvous({}, 2) == ["--standalone", "--nproc_per_node", "2"]


def _dry_run_jobs(workdir: Path, **env: str) -> dict[str, tuple[str, str]]:
    """rule -> (its resources line, its shell command) in a dry run of the real workflow for one fine-tune and one
    evaluation, with env added to this process's environment."""
    root = Path(__file__).parents[1]
    (workdir / "params.yaml").write_text((root / "params.yaml").read_text())
    base = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "PTFT_GPUS", "SLURM_JOB_ID")}
    dry = subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"), "-n", "-p", "--cores", "1", "-s", str(root / "Snakefile"),
            "--directory", str(workdir), "models/tiny-olmo/0/news_sum", "results/eval/tiny-olmo/0/base.json",
        ],
        env={**base, "PYTHONPATH": os.pathsep.join(sys.path), **env}, capture_output=True, text=True,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = {}
    for block in dry.stdout.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        resources = next(line.strip() for line in block.splitlines() if line.strip().startswith("resources:"))
        shell = next((line for line in block.splitlines() if line.startswith("Shell command:")), "")
        jobs[rule] = (resources, shell)
    return jobs


def test_on_a_gpu_workstation_gpu_jobs_ask_one_gpu_and_their_commands_do_not_change(tmp_path):
    """The `gpu` resource (what `--resources gpu=G` counts) is 1 for fine-tuning and evaluation when the machine has a
    GPU pool, 0 on this CPU machine; pre-training stays on CPU. Resources are not params and the finetune command
    travels in $PTFT_FINETUNE_COMMAND, so no job's params or shell text changes: a finished study reruns nothing."""
    cpu = _dry_run_jobs(tmp_path, CUDA_VISIBLE_DEVICES="")
    gpus = _dry_run_jobs(tmp_path, CUDA_VISIBLE_DEVICES="0,1,2", PTFT_JOBS_PER_GPU="2")
    for rule in ("finetune", "evaluate"):
        assert " gpu=0," in cpu[rule][0] and " gpu=1," in gpus[rule][0], (cpu[rule], gpus[rule])
    assert " gpu=0," in gpus["pretrain"][0]
    assert cpu["finetune"][1] == gpus["finetune"][1]
    assert gpus["finetune"][1].startswith("Shell command: $PTFT_FINETUNE_COMMAND --checkpoint")


def test_hold_points_this_process_at_its_slot_once_and_not_after_cuda_started(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(gpu_slots, "_HELD", [])  # this process holds nothing yet
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    monkeypatch.setenv("PTFT_GPU_SLOTS_DIR", str(tmp_path))
    monkeypatch.delenv("PTFT_RENDEZVOUS_PORT", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert gpu_slots.hold(1) is None  # too late to choose: nothing taken, nothing changed
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5" and not list(tmp_path.iterdir())
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    held = gpu_slots.hold(1)
    assert held.gpus == ["4"] and os.environ["CUDA_VISIBLE_DEVICES"] == "4"
    assert os.environ["PTFT_RENDEZVOUS_PORT"] == str(gpu_slots.PORT_BASE + 4 * gpu_slots.SLOTS_PER_PORT_BLOCK)
    assert gpu_slots.hold(1) is held  # a second job in this process keeps the GPU CUDA will start on
    for fd in held.fds:
        os.close(fd)
