"""Helpers and fixtures shared by the integration tests: running Snakemake/DVC on a copy of the
workflow, parsing job counts, the local reference run, and a real one-node SLURM cluster."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from snakemake.common import NOTHING_TO_BE_DONE_MSG as NOTHING_TO_DO  # Snakemake's own words for "up to date"

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"
DVC = BIN / "dvc"
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "schemas", "envs", "profiles", "report"]
MINI_CONFIG = ROOT / "tests/integration/config.yaml"


def load_bench(name: str):
    """The module bench/<name>.py (the benchmarks are scripts, not a package), loaded fresh."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def run_env(workdir: Path) -> dict[str, str]:
    # The venv's bin LAST, as in a user's shell that runs .venv/bin/snakemake without activating the venv: dvc stages
    # find `snakemake`/`dvc` there, and any job that ran a `python` other than Snakemake's own would fail.
    return {
        **os.environ,
        "PATH": f"{os.environ.get('PATH', '')}{os.pathsep}{BIN}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "XDG_CACHE_HOME": str(workdir / ".cache"),
    }


def snakemake(workdir: Path, *args: str, check: bool = True, cores: str = "2",
              timeout: int = 1500) -> subprocess.CompletedProcess:  # fmt: skip
    prefix = ["--cores", cores] if cores else []
    proc = subprocess.run(
        [str(SNAKEMAKE), *prefix, *args], cwd=workdir, env=run_env(workdir), capture_output=True, text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def dvc(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(DVC), *args], cwd=workdir, env=run_env(workdir), capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}; empty only when Snakemake itself says "Nothing to be
    done". Output with neither (a changed format, an error) fails the test that reads it, never passes as an empty
    plan."""
    counts: dict[str, int] = {}
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n\s*total", output, re.S)
    if not match:
        assert NOTHING_TO_DO in output, f"neither a Job stats table nor {NOTHING_TO_DO!r} in Snakemake's output:\n{output[-3000:]}"
        return counts
    for line in match.group(1).splitlines():
        rule, count = line.split()
        counts[rule] = int(count)
    return counts


def outputs(workdir: Path, study: str = "integration") -> Path:
    """The folder of a study's outputs in a workflow copy (ptft.studies): studies/<study>/; `integration` is the
    miniature's study (tests/integration/config.yaml)."""
    return workdir / "studies" / study


def copy_workflow(workdir: Path, extra: tuple[str, ...] = ()) -> Path:
    """The workflow (and `extra` project files) with the miniature config as params.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (*WORKFLOW_FILES, *extra):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    shutil.copy(MINI_CONFIG, workdir / "params.yaml")
    return workdir


@pytest.fixture(scope="session")
def local_study(tmp_path_factory) -> Path:
    """The miniature study run once locally; `reference_results.csv` keeps its first results table."""
    workdir = copy_workflow(tmp_path_factory.mktemp("study"))
    first = snakemake(workdir)
    (workdir / "first_run.log").write_text(first.stderr)
    shutil.copy(outputs(workdir) / "results/tables/results.csv", workdir / "reference_results.csv")
    return workdir


# ---------------------------------------------------------------- a real one-node SLURM cluster
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, what: str, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """munged + slurmctld + slurmd on this machine, state and logs in a temp folder, stopped by PID.

    The config must sit at the default path (/etc/slurm/slurm.conf): the SLURM jobstep's srun drops
    SLURM_CONF. An existing file there is put back afterwards.
    """
    missing = [b for b in SLURM_BINARIES if not shutil.which(b)]
    if missing and os.environ.get("PTFT_REQUIRE_SLURM"):
        pytest.fail(f"PTFT_REQUIRE_SLURM is set but SLURM binaries are absent: {', '.join(missing)}")
    if missing:
        pytest.skip(f"SLURM binaries absent ({', '.join(missing)}); .ci/run installs slurmctld slurmd slurm-client munge")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs slurmd, which needs root")
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "munge"):
        (base / sub).mkdir()
    key = base / "munge/munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = base / "munge/munge.socket"
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    hostname = node.split()[0].split("=", 1)[1]
    conf = f"""# ptft test cluster (written by tests/integration/conftest.py)
ClusterName=ptfttest
SlurmctldHost={hostname}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={base / 'state'}
SlurmdSpoolDir={base / 'spool'}
SlurmctldPidFile={base / 'slurmctld.pid'}
SlurmdPidFile={base / 'slurmd.pid'}
SlurmctldLogFile={base / 'log/slurmctld.log'}
SlurmdLogFile={base / 'log/slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# finished jobs stay visible to squeue well past 3x the plugin's first status check
MinJobAge=600
{node}
PartitionName=debug Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
"""
    conf_path = base / "slurm.conf"
    conf_path.write_text(conf)
    backup = None
    if SYSTEM_SLURM_CONF.exists():
        backup = base / "slurm.conf.system"
        shutil.copy2(SYSTEM_SLURM_CONF, backup)
    SYSTEM_SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(conf_path, SYSTEM_SLURM_CONF)

    pids: list[tuple[str, Path]] = []
    try:
        subprocess.run(
            ["munged", "--force", f"--key-file={key}", f"--socket={munge_socket}",
             f"--pid-file={base / 'munge/munged.pid'}", f"--log-file={base / 'log/munged.log'}",
             f"--seed-file={base / 'munge/munge.seed'}"],
            check=True,
        )
        pids.append(("munged", base / "munge/munged.pid"))
        subprocess.run(["slurmctld", "-f", str(SYSTEM_SLURM_CONF)], check=True)
        pids.append(("slurmctld", base / "slurmctld.pid"))
        subprocess.run(["slurmd", "-f", str(SYSTEM_SLURM_CONF)], check=True)
        pids.append(("slurmd", base / "slurmd.pid"))

        def node_idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
            return "idle" in out

        _wait_for(node_idle, "the SLURM node to become idle")
        yield {"base": base, "conf": SYSTEM_SLURM_CONF, "ctld_log": base / "log/slurmctld.log"}
    finally:
        for name, pidfile in reversed(pids):
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, 15)
                _wait_for(lambda: not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) to stop", timeout=20)
            except (OSError, ValueError, RuntimeError):
                pass
        if backup is not None:
            shutil.copy2(backup, SYSTEM_SLURM_CONF)
        else:
            SYSTEM_SLURM_CONF.unlink(missing_ok=True)
