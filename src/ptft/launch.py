"""Start one fine-tuning job as several processes: on one node, or on several nodes of one SLURM allocation.

The finetune rule runs `python -m ptft.launch --nproc-per-node G -- <ptft.finetune arguments>`; on more than one
node it runs that under `srun --ntasks-per-node 1`, so each node starts one launcher. The launcher execs
torch.distributed.run (torchrun, what `accelerate launch` runs underneath: the Trainer configures accelerate itself
from its TrainingArguments, FSDP included) with the node count, this node's rank and the rendezvous address read from
SLURM's environment, so the job needs no hand-written host list.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from typing import Mapping, Sequence

from ptft.gpu_slots import PORT_ENV

DEFAULT_PORT = 29500
# The environment variable the workflow passes the finetune rule its launcher in (rules/common.smk).
COMMAND_ENV = "PTFT_FINETUNE_COMMAND"


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list ("gpu[03-05,07],cpu1" -> "gpu03"): the rendezvous host.

    Uses `scontrol show hostnames` (SLURM's own expansion) when it is there, else expands the first entry itself.
    Raises ValueError on an empty list.
    """
    if not nodelist.strip():
        raise ValueError("SLURM_JOB_NODELIST is empty: cannot tell the rendezvous host")
    try:
        shown = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        hosts = shown.stdout.split()
        if hosts:
            return hosts[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    prefix, ranges = match.group(1), match.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]  # keeps zero padding: gpu[03-05] -> gpu03


def rendezvous(env: Mapping[str, str], nproc_per_node: int, port: int = DEFAULT_PORT) -> list[str]:
    """torchrun's arguments for this node: on one node (outside SLURM or a one-node job) the rendezvous port of the
    job's GPU slots ($PTFT_RENDEZVOUS_PORT, ptft.gpu_slots) or else standalone, and on several the job's node count
    (SLURM_NNODES), this node's rank (SLURM_NODEID) and the first node as rendezvous host.

    Raises ValueError naming the variable when a multi-node job lacks SLURM_NODEID or SLURM_JOB_NODELIST.
    """
    nodes = int(env.get("SLURM_NNODES", env.get("SLURM_JOB_NUM_NODES", "1")))
    args = ["--nproc_per_node", str(nproc_per_node)]
    if nodes <= 1 and env.get(PORT_ENV):
        # the port of the job's GPU slots (ptft.gpu_slots): no other job on this workstation holds it
        return ["--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", env[PORT_ENV], *args]
    if nodes <= 1:
        return ["--standalone", *args]  # torchrun picks a free local port: jobs sharing a node do not collide
    for name in ("SLURM_NODEID", "SLURM_JOB_NODELIST"):
        if name not in env:
            raise ValueError(f"a {nodes}-node job needs {name} from SLURM: start the launcher under srun")
    job_port = port + int(env.get("SLURM_JOB_ID", "0")) % 1000  # a port per job: jobs may share their first node
    return [
        "--nnodes", str(nodes), "--node_rank", env["SLURM_NODEID"],
        "--master_addr", first_host(env["SLURM_JOB_NODELIST"]), "--master_port", str(job_port), *args,
    ]  # fmt: skip


def command(nproc_per_node: int, finetune_args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The torchrun command line that runs ptft.finetune with finetune_args on this node."""
    return [sys.executable, "-m", "torch.distributed.run", *rendezvous(env, nproc_per_node), "-m", "ptft.finetune",
            *finetune_args]  # fmt: skip


def processes_per_node(resources: Mapping) -> int:
    """Processes per node of a fine-tuning job: resources.finetune.processes_per_node, else one per GPU (one on CPU)."""
    return resources["processes_per_node"] or max(1, resources["gpu"])


def finetune_command(config: Mapping, gpu_pool: Sequence[str] = ()) -> str:
    """The shell words that start a study's fine-tuning jobs (the finetune rule appends ptft.finetune's arguments).

    Plain python for one process; ptft.launch (torchrun) for several or for FSDP; under srun, one launcher per node,
    when the job has several nodes (rendezvous from SLURM's environment). On a workstation with GPUs (gpu_pool, the
    ids of ptft.gpu_slots.gpu_pool; empty on a CPU machine and in a SLURM job) the command runs under
    `python -m ptft.gpu_slots --gpus K --`, holding one GPU per process. It depends on scheduling settings and the
    machine only, so the rule reads it from $PTFT_FINETUNE_COMMAND, not from its shell text (no rerun when it changes).
    """
    res, sharding = config["resources"]["finetune"], config["finetune"]["sharding"]
    processes, nodes = processes_per_node(res), res["nodes"]
    flags = f" --sharding {sharding}" if sharding != "none" else ""
    if res["gpu_mem_gb"]:
        flags += f" --gpu-mem-gb {res['gpu_mem_gb']:g}"
    slots = f"python -m ptft.gpu_slots --gpus {processes} -- " if gpu_pool else ""
    if processes * nodes == 1 and sharding == "none":
        return f"{slots}python -m ptft.finetune{flags}"
    srun = f"srun --nodes {nodes} --ntasks {nodes} --ntasks-per-node 1 --kill-on-bad-exit 1 "
    return f"{srun if nodes > 1 else ''}{slots}python -m ptft.launch --nproc-per-node {processes} --{flags}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc-per-node", type=int, required=True, help="processes on each node (one per GPU)")
    parser.add_argument("finetune_args", nargs=argparse.REMAINDER, help="-- then the arguments of ptft.finetune")
    args = parser.parse_args(argv)
    rest = args.finetune_args[1:] if args.finetune_args[:1] == ["--"] else args.finetune_args
    line = command(args.nproc_per_node, rest, os.environ)
    print("launching: " + " ".join(line[: line.index("ptft.finetune") + 1]), file=sys.stderr, flush=True)
    os.execv(line[0], line)


if __name__ == "__main__":
    main()
