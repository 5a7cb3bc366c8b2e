"""Resumable fine-tuning state: a hidden sibling of the output folder holds the Trainer's saves, kept only while the
config slice, base checkpoint, data and launch that made them are this run's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from ptft.provenance import PROVENANCE_FILE, sha256_file, write_json, write_jsonl
from ptft.settings import FinetuneSettings
from ptft.train_log import OPTIMIZER_STEP, TRAIN_LOG_FILE, read_train_log

FINGERPRINT_FILE = "fingerprint.json"


def resume_dir_for(out_dir: Path) -> Path:
    """Hidden sibling that holds resumable state: Snakemake deletes a failed job's output, never this."""
    return out_dir.parent / f".{out_dir.name}.resume"


def fingerprint(settings: FinetuneSettings, checkpoint_dir: Path, train_path: Path) -> str:
    """What resumable state depends on: the config slice (threads aside), the base checkpoint and the data (the
    launch, processes and sharding, is checked on its own by prepare_resume)."""
    checkpoint_files = sorted(
        (p.name, p.stat().st_size) for p in Path(checkpoint_dir).iterdir() if p.is_file()
    )  # sizes, not hashes: a 16 GB checkpoint would take minutes to hash; provenance.json changes on any rebuild
    record = {
        "config": {k: v for k, v in settings.flat().items() if k not in ("threads", "save_steps")},
        "checkpoint": checkpoint_files,
        "checkpoint_provenance": sha256_file(Path(checkpoint_dir) / PROVENANCE_FILE),
        "train": sha256_file(train_path),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def last_complete_checkpoint(resume_dir: Path) -> Path | None:
    """The newest Trainer checkpoint whose state file was written (a kill mid-save leaves one without it)."""
    complete = []
    for folder in resume_dir.glob("checkpoint-*"):
        if (folder / "trainer_state.json").is_file() and folder.name.split("-")[-1].isdigit():
            complete.append((int(folder.name.split("-")[-1]), folder))
    return max(complete)[1] if complete else None


def saved_step(save: Path | None) -> int | None:
    """The optimizer step of a Trainer save (a folder checkpoint-<step>); None for no save."""
    return int(save.name.split("-")[-1]) if save else None


class LaunchChangedError(RuntimeError):
    """Resumable state was saved by another number of processes or another sharding than this run's."""


def prepare_resume(
    resume_dir: Path, key: str, main_process: bool, world_size: int = 1, sharding: str = "none"
) -> Path | None:
    """The checkpoint to resume from, after discarding state made with another config or data.

    State saved by another launch (number of processes, or sharding) is not discarded but refused with
    LaunchChangedError: its optimizer shards and data position belong to that launch, and a long sharded run's state
    is worth more than a silent restart. The error names both launches and the two ways on.
    """
    stored = resume_dir / FINGERPRINT_FILE
    record = json.loads(stored.read_text()) if stored.is_file() else None
    stale = resume_dir.exists() and (record is None or record["fingerprint"] != key)
    if stale:
        print(f"{resume_dir} holds state of another config or data: starting from zero", file=sys.stderr, flush=True)
        if main_process:
            shutil.rmtree(resume_dir)
    # every process decides alike, whichever of them removes the stale folder first
    checkpoint = None if stale or not resume_dir.exists() else last_complete_checkpoint(resume_dir)
    launch = {"world_size": world_size, "sharding": sharding}
    saved = {k: record.get(k, v) for k, v in launch.items()} if record else launch  # pre-sharding records: as today
    if checkpoint is not None and saved != launch:
        raise LaunchChangedError(
            f"{checkpoint} was saved by {saved['world_size']} processes with sharding {saved['sharding']}, this run "
            f"has {world_size} with sharding {sharding}: its optimizer state and data position cannot be re-split. "
            f"Rerun with {saved['world_size']} processes (resources.finetune: gpu x nodes) and finetune.sharding: "
            f"{saved['sharding']}, or delete {resume_dir} to start from zero"
        )
    if main_process:
        resume_dir.mkdir(parents=True, exist_ok=True)
        write_json(stored, {"fingerprint": key, **launch})
    return checkpoint


def resume_state(
    out_dir: Path, settings: FinetuneSettings, checkpoint_dir: Path, train_path: Path, world_size: int, sharding: str,
    ft_set: str,
) -> tuple[Path, Path | None]:
    """(resume_dir, the save to resume from or None) for out_dir; the train log keeps only rows up to that save."""
    resume_dir = resume_dir_for(out_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    resume_from = prepare_resume(
        resume_dir, fingerprint(settings, checkpoint_dir, train_path), main_process, world_size, sharding
    )
    log_file = resume_dir / TRAIN_LOG_FILE
    resumed_step = saved_step(resume_from)
    if main_process:
        # rows past the save we resume from are recomputed, so they are dropped; those kept are written under
        # today's keys (a run saved before the train log's rename resumes into one log of one format)
        kept = read_train_log(log_file) if log_file.exists() else []
        kept = [r for r in kept if r[OPTIMIZER_STEP] <= (resumed_step or 0)]
        write_jsonl(log_file, kept)
    if resume_from:
        print(f"resuming {ft_set} from {resume_from} (optimizer step {resumed_step})", file=sys.stderr, flush=True)
    return resume_dir, resume_from
