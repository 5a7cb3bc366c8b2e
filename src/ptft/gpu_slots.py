"""GPU slots on a workstation: each GPU job holds exclusive GPUs from the machine's pool and sees only those.

Snakemake assigns no GPU ids to local jobs (snakemake/snakemake#281): `--resources gpu=G` only caps how many GPU jobs
run at once, and every job would otherwise open cuda:0. So a GPU job takes free slots from a per-machine pool, one
lock file per GPU id and slot (`fcntl.flock`), holds them for its life and runs with `CUDA_VISIBLE_DEVICES` set to
them. The kernel drops a flock when the last descriptor of the open file closes, so a slot frees itself when its
holder dies, however it dies (kill -9 included); nothing is ever cleaned up by hand.

- The pool: $PTFT_GPUS (ids, comma separated: the user's narrowing), else $CUDA_VISIBLE_DEVICES, else the GPUs torch
  sees. Empty on a CPU-only machine, and inside a SLURM job ($SLURM_JOB_ID): SLURM isolates devices itself. An empty
  pool changes nothing.
- $PTFT_JOBS_PER_GPU (default 1): slots per GPU; small evaluations may share a GPU.
- $PTFT_GPU_SLOTS_DIR: where the lock files live (default: a per-user folder in the temporary directory, so every
  study and clone on the machine shares one pool; users who share a machine set one common folder).
- A job holding several GPUs gets a rendezvous port of its own ($PTFT_RENDEZVOUS_PORT, from its first slot: slots are
  exclusive, so two jobs never get the same port), which ptft.launch passes to torchrun.

The finetune rule starts its command under `python -m ptft.gpu_slots --gpus K --` (ptft.launch.finetune_command);
the evaluate job calls hold() itself (ptft.evaluate.evaluate). Either way the job's log starts with the line
"gpu slots: holding GPU ...".
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

POOL_ENV = "PTFT_GPUS"
JOBS_PER_GPU_ENV = "PTFT_JOBS_PER_GPU"
SLOTS_DIR_ENV = "PTFT_GPU_SLOTS_DIR"
PORT_ENV = "PTFT_RENDEZVOUS_PORT"
# Ports above torchrun's default 29500, one per slot (slot_port), so a job's port never meets another job's.
PORT_BASE = 29600
SLOTS_PER_PORT_BLOCK = 16
POLL_SECONDS = 0.5
# The slots this process holds: their descriptors stay open for the life of the process (closing one frees its slot).
_HELD: list["Held"] = []


@dataclass(frozen=True)
class Held:
    """Slots one job holds: the GPU ids (in CUDA_VISIBLE_DEVICES order), their lock files, their descriptors
    (inheritable: an exec'd command keeps them) and the job's rendezvous port."""

    gpus: list[str]
    files: list[Path]
    fds: list[int]
    port: int

    def describe(self, pool: Sequence[str], jobs_per_gpu: int) -> str:
        return (
            f"gpu slots: holding GPU {','.join(self.gpus)} (CUDA_VISIBLE_DEVICES={','.join(self.gpus)}; pool "
            f"{','.join(pool)}, {jobs_per_gpu} job(s) per GPU, rendezvous port {self.port}, pid {os.getpid()})"
        )


def _ids(value: str | None) -> list[str] | None:
    """Device ids of a CUDA_VISIBLE_DEVICES-style list; None when unset, [] for "" or a "-1" (no device)."""
    if value is None:
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    return [] if not ids or ids[0].startswith("-") else ids


def _torch_device_count() -> int:
    """GPUs torch sees; 0 without an NVIDIA driver (checked first, so a CPU machine never imports torch for it)."""
    if not (Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()):
        return 0
    import torch

    return torch.cuda.device_count()


def gpu_pool(env: Mapping[str, str] = os.environ) -> list[str]:
    """The machine's GPU ids that jobs may hold: $PTFT_GPUS, else $CUDA_VISIBLE_DEVICES, else 0..n-1 for the n GPUs
    torch sees. [] inside a SLURM job ($SLURM_JOB_ID: SLURM isolates devices) and on a machine without GPUs.
    Raises ValueError when $PTFT_GPUS names an id outside $CUDA_VISIBLE_DEVICES (the user narrowed to a GPU the
    job cannot see)."""
    if env.get("SLURM_JOB_ID"):
        return []
    visible, narrowed = _ids(env.get("CUDA_VISIBLE_DEVICES")), _ids(env.get(POOL_ENV))
    if narrowed is not None:
        outside = [g for g in narrowed if visible is not None and g not in visible]
        if outside:
            raise ValueError(f"${POOL_ENV}={env[POOL_ENV]} names GPU {outside} outside CUDA_VISIBLE_DEVICES={visible}")
        return narrowed
    if visible is not None:
        return visible
    return [str(i) for i in range(_torch_device_count())]


def jobs_per_gpu(env: Mapping[str, str] = os.environ) -> int:
    """Slots per GPU ($PTFT_JOBS_PER_GPU, default 1). Raises ValueError naming the variable on a value below 1."""
    raw = env.get(JOBS_PER_GPU_ENV, "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${JOBS_PER_GPU_ENV} must be a whole number >= 1, got {raw!r}")
    return int(raw)


def slots_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The folder of the pool's lock files: $PTFT_GPU_SLOTS_DIR, else <tmp>/ptft-gpu-slots-<uid> (one per machine
    and user, whatever the study or clone)."""
    if env.get(SLOTS_DIR_ENV):
        return Path(env[SLOTS_DIR_ENV])
    return Path(tempfile.gettempdir()) / f"ptft-gpu-slots-{os.getuid()}"


def _slot_file(folder: Path, gpu: str, slot: int) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.slot{slot}.lock"


def _try_lock(path: Path) -> int | None:
    """An exclusive flock on path (created if missing), its descriptor; None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a reader of the folder
    return fd


def slot_port(gpu: str, position: int, slot: int) -> int:
    """The rendezvous port of a job whose first slot is `slot` of GPU `gpu` (at `position` in the pool): from the GPU's
    own number when it has one, so jobs of pools listed in different orders still never share a port."""
    number = int(gpu) if gpu.isdigit() else position
    return PORT_BASE + number * SLOTS_PER_PORT_BLOCK + slot % SLOTS_PER_PORT_BLOCK


def try_acquire(n: int, pool: Sequence[str], per_gpu: int, folder: Path) -> Held | None:
    """n slots on n different GPUs of pool, or None (holding nothing) when that many are not free now.

    Fills every GPU's first slot before any second one, so jobs spread over the GPUs before they share one."""
    folder.mkdir(parents=True, exist_ok=True)
    gpus, files, fds, port = [], [], [], None
    for slot in range(per_gpu):
        for position, gpu in enumerate(pool):
            if len(gpus) == n:
                break
            if gpu in gpus:
                continue
            path = _slot_file(folder, gpu, slot)
            fd = _try_lock(path)
            if fd is None:
                continue
            gpus.append(gpu)
            files.append(path)
            fds.append(fd)
            port = slot_port(gpu, position, slot) if port is None else port
    if len(gpus) < n:
        for fd in fds:
            os.close(fd)
        return None
    for fd in fds:
        os.set_inheritable(fd, True)
    return Held(gpus, files, fds, port)


def acquire(n: int, env: Mapping[str, str] = os.environ, poll_seconds: float = POLL_SECONDS) -> Held | None:
    """Wait until n slots on n different GPUs of the pool are free and take them; None when the pool is empty
    (CPU machine, SLURM job). Raises ValueError when the pool has fewer than n GPUs (the job could never start)."""
    pool, per_gpu, folder = gpu_pool(env), jobs_per_gpu(env), slots_dir(env)
    if not pool or n < 1:
        return None
    if n > len(pool):
        raise ValueError(f"a job asks {n} GPUs but the pool has {len(pool)} ({','.join(pool)}; ${POOL_ENV})")
    waited = False
    while (held := try_acquire(n, pool, per_gpu, folder)) is None:
        if not waited:
            print(f"gpu slots: waiting for {n} free GPU(s) of {','.join(pool)} ({folder})", file=sys.stderr, flush=True)
            waited = True
        time.sleep(poll_seconds)
    print(held.describe(pool, per_gpu), file=sys.stderr, flush=True)
    return held


def hold(n: int = 1, env: Mapping[str, str] | None = None) -> Held | None:
    """Take n slots for the rest of this process's life and point this process at them: CUDA_VISIBLE_DEVICES and
    $PTFT_RENDEZVOUS_PORT are set in os.environ. Call it before torch initialises CUDA. None (and nothing changed)
    when the pool is empty or CUDA has started already; the slots already held when this process took some before
    (a second job in one process keeps the GPUs CUDA was initialised on)."""
    if _HELD:
        return _HELD[0]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        # too late to choose this process's GPUs: taking a slot would only keep another job off a GPU it does not use
        print("gpu slots: none taken, CUDA already started in this process", file=sys.stderr, flush=True)
        return None
    held = acquire(n, os.environ if env is None else env)
    if held is not None:
        _HELD.append(held)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held.gpus)
        os.environ[PORT_ENV] = str(held.port)
    return held


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ptft.gpu_slots --gpus K -- command ...`: take K slots, then exec the command holding them."""
    parser = argparse.ArgumentParser(prog="python -m ptft.gpu_slots", description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the command holds (one per process)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    hold(args.gpus)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
