"""The miniature study on a real one-node SLURM cluster through profiles/slurm: every job is an sbatch
submission, and the results equal a local run's byte for byte."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import copy_workflow, job_counts, outputs, snakemake

pytestmark = pytest.mark.integration


def test_miniature_study_runs_through_sbatch(slurm_cluster, local_study, tmp_path):
    workdir = copy_workflow(tmp_path / "study")
    run = snakemake(
        workdir,
        "--profile", "profiles/slurm",
        # site settings of this test cluster: its one partition, no accounting, quick status checks
        "--default-resources", "slurm_partition=debug", "mem_mb=500", "runtime=30",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks", "2",
        "--jobs", "2",
        cores="",
    )
    output = run.stdout + run.stderr
    counts = job_counts(output)
    n_jobs = sum(n for rule, n in counts.items() if rule != "all")  # `all` is local, never submitted
    assert n_jobs > 0, output[-4000:]

    # SLURM's own records: slurmctld holds one finished job per Snakemake job, named by the run's id
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    shown = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.splitlines() if line.strip()]
    ours = [r for r in records if r.get("JobName") == run_id]
    assert len(ours) == n_jobs, shown[-3000:]
    assert {r["JobState"] for r in ours} == {"COMPLETED"}, shown[-3000:]
    ctld_log = slurm_cluster["ctld_log"].read_text()
    for record in ours:
        assert f"_slurm_rpc_submit_batch_job: JobId={record['JobId']} " in ctld_log, record["JobId"]
    # and Snakemake's per-job SLURM logs are named by those same job ids
    logged = {p.stem for p in (outputs(workdir) / ".snakemake/slurm_logs").rglob("*.log")}
    assert logged == {r["JobId"] for r in ours}

    assert (outputs(workdir) / "results/tables/results.csv").read_bytes() == (local_study / "reference_results.csv").read_bytes()


def test_a_sharded_two_process_finetune_is_one_slurm_job(slurm_cluster, tmp_path):
    """finetune.sharding fsdp over 2 processes (resources.finetune.processes_per_node, CPU/gloo here; gpu on a GPU
    cluster) runs as one sbatch job: ptft.launch starts both processes inside it and the model is saved whole."""
    import json

    import yaml

    workdir = copy_workflow(tmp_path / "study")
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["finetune"]["sharding"] = "fsdp"
    params["finetune"]["defaults"]["micro_batch_size"] = 2  # x 2 processes = the batch of 4
    params["resources"] = {"finetune": {"processes_per_node": 2}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    target = "models/tiny/0/news_sum"
    snakemake(workdir, "checkpoints/tiny/0", "data/news_sum/train.jsonl")  # its inputs, locally
    run = snakemake(
        workdir, target,
        "--profile", "profiles/slurm",
        "--default-resources", "slurm_partition=debug", "mem_mb=500", "runtime=30",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks", "2",
        "--jobs", "1",
        cores="",
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert job_counts(output) == {"finetune": 1}, output[-4000:]
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    shown = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    ours = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.splitlines() if f"JobName={run_id} " in line]
    assert [r["JobState"] for r in ours] == ["COMPLETED"], shown[-3000:]
    record = json.loads((outputs(workdir) / target / "provenance.json").read_text())
    assert (record["world_size"], record["sharding"]) == (2, "fsdp")
    assert record["wrapped_by"].startswith("FSDP")
    log = (outputs(workdir) / "logs/finetune/tiny/0/news_sum.log").read_text()
    assert "launching: " in log and "torch.distributed.run --standalone --nproc_per_node 2" in log
    assert (outputs(workdir) / target / "model.safetensors").is_file()
