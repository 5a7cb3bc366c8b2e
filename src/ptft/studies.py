"""Where a study's outputs live: everything it writes under studies/<study>/ (a rehearsal: rehearsal/<study>/), so that
several studies share one clone, and moving a study written in the old layout (outputs at the project root) there
without rerunning it.

    python -m ptft.studies dir --configfile configs/x.yaml       # prints studies/<study>
    python -m ptft.studies migrate --configfile configs/x.yaml   # make migrate-layout CONFIG=configs/x.yaml

The Snakefile's `workdir:` is this folder, so every rule's paths (data/..., results/...) stay what they were and
Snakemake's own state (.snakemake/) lives there too. Paths in a config (local data files, local checkpoint folders,
revisions_lock, ...) stay relative to the project root: jobs resolve them with `project_path`. What studies share is
stored once at the root: the Hugging Face cache (.cache/huggingface), from which hub checkpoints are hard-linked.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

STUDIES_DIR = "studies"
PROJECT_ENV = "PTFT_PROJECT_DIR"  # the project root, for jobs that run in the study folder (set by rules/common.smk)
# Every folder a study's jobs write into (relative to its study folder; before, relative to the project root).
OUTPUT_FOLDERS = ("data", "checkpoints", "models", "results", "logs", "benchmarks")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
METADATA = Path(".snakemake") / "metadata"


class LayoutError(Exception):
    """A study name that cannot be a folder, or a migration that would overwrite a study folder's outputs."""


def study_dir(config: Mapping[str, Any]) -> str:
    """The folder (relative to the project root) a study writes everything to: studies/<study>, or
    rehearsal/<study> for a rehearsal (ptft.rehearsal). Raises LayoutError when `study` is not a plain folder name."""
    name = str(config.get("study", "study"))
    if not STUDY_NAME.match(name):
        raise LayoutError(f"study: {name!r} names the study's folder ({STUDIES_DIR}/<study>/): use letters, digits, "
                          f"'.', '_' or '-', starting with a letter or digit")
    if config.get("rehearsal"):
        from ptft.rehearsal import rehearsal_dir

        return rehearsal_dir(config)
    return f"{STUDIES_DIR}/{name}"


def project_path(path: str | os.PathLike) -> Path:
    """A path from a config (relative to the project root) as the current process reaches it: itself when absolute,
    else joined to $PTFT_PROJECT_DIR (set for every job of a study), else left relative to the working directory."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return Path(os.environ.get(PROJECT_ENV, ".")) / path


def _decode(name: str) -> str:
    return base64.urlsafe_b64decode(name.encode()).decode()


def _encode(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode()


def old_layout_records(root: Path) -> dict[str, Path]:
    """Snakemake's records (root/.snakemake/metadata) of outputs written in the old layout, at the project root:
    output path -> record file. Empty when the root holds no study's outputs."""
    folder = Path(root) / METADATA
    found: dict[str, Path] = {}
    for file in sorted(folder.glob("*")) if folder.is_dir() else []:
        try:
            path = _decode(file.name)
        except (ValueError, UnicodeDecodeError):
            continue
        if Path(path).parts and Path(path).parts[0] in OUTPUT_FOLDERS:
            found[path] = file
    return found


def old_layout_message(root: Path, config: Mapping[str, Any]) -> str | None:
    """What to tell a user whose clone still holds a study's outputs at the project root (None when it holds none)."""
    records = old_layout_records(root)
    if not records:
        return None
    folders = sorted({Path(p).parts[0] + "/" for p in records})
    return (f"{', '.join(folders)} at the project root hold a finished study's outputs in the old layout (before each "
            f"study had its own folder). Move them into their study's folder without rerunning anything: "
            f"`make migrate-layout CONFIG=<the config that wrote them>` (for {config.get('study')!r}: "
            f"studies/{config.get('study')}/), or delete them (`make clean-old-layout`).")


def _rebase(path: str, own: list[str], study: str) -> str:
    """An input path of a record: the study's own outputs stay (relative to the study folder, as before); anything else
    (a local data file, a config) was relative to the project root and is now reached from the study folder."""
    if any(path == o or path.startswith(o.rstrip("/") + "/") for o in own) or os.path.isabs(path):
        return path
    return os.path.relpath(path, study)


def rebase_record(record: dict[str, Any], own: list[str], study: str) -> dict[str, Any]:
    """A Snakemake record with its input paths rebased (`_rebase`) so that the input trigger sees the same files."""
    record = dict(record)
    if isinstance(record.get("input"), list):
        record["input"] = [_rebase(p, own, study) for p in record["input"]]
    if isinstance(record.get("input_checksums"), dict):
        record["input_checksums"] = {_rebase(p, own, study): c for p, c in record["input_checksums"].items()}
    return record


def _moved_entries(root: Path, outputs: list[str]) -> list[str]:
    """The root entries to move: data/<set> folders holding a recorded output (the root's data/ may also hold a
    user's own files), every other output folder whole."""
    if not outputs:  # no study's records at the root: whatever is there is the user's
        return []
    entries = {f"data/{Path(p).parts[1]}" for p in outputs if Path(p).parts[0] == "data" and len(Path(p).parts) > 1}
    entries |= {f for f in OUTPUT_FOLDERS if f != "data" and (root / f).exists()}
    return sorted(e for e in entries if (root / e).exists())


def _drop_empty_data(root: Path) -> None:
    """The root's data/ once its study folders left, when it holds nothing of the user's."""
    data = root / "data"
    if data.is_dir() and not any(data.iterdir()):
        data.rmdir()


def migrate(root: Path, config: Mapping[str, Any]) -> list[str]:
    """Move the outputs of the study written at the project root (the old layout) into its study folder, with
    Snakemake's records of them (input paths rebased), so that `snakemake -n` there has nothing to do; return what
    moved. Raises LayoutError, moving nothing, when the study folder already holds one of those entries."""
    root = Path(root)
    study = study_dir(config)
    records = old_layout_records(root)
    entries = _moved_entries(root, list(records))
    clash = [e for e in entries if (root / study / e).exists()]
    if clash:
        raise LayoutError(f"{study}/ already holds {', '.join(clash)}: nothing moved (delete one copy first)")
    for entry in entries:
        (root / study / entry).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(root / entry), str(root / study / entry))
    _drop_empty_data(root)
    target = root / study / METADATA
    target.mkdir(parents=True, exist_ok=True)
    own = list(records)
    for path, file in records.items():
        record = rebase_record(json.loads(file.read_text(encoding="utf-8")), own, study)
        (target / _encode(path)).write_text(json.dumps(record), encoding="utf-8")
        file.unlink()
    return entries


def discard(root: Path) -> list[str]:
    """Delete the outputs of the old layout at the project root (what `migrate` would move) and Snakemake's records
    of them; return what was deleted. The root's data/ keeps every folder that holds no recorded output."""
    root = Path(root)
    records = old_layout_records(root)
    entries = _moved_entries(root, list(records))
    for entry in entries:
        shutil.rmtree(root / entry) if (root / entry).is_dir() else (root / entry).unlink()
    _drop_empty_data(root)
    for file in records.values():
        file.unlink()
    return entries


def _load_config(configfile: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(configfile).read_text(encoding="utf-8")) or {}


def main(argv: list[str] | None = None) -> int:
    """`dir`: print the study's folder; `migrate`: move the old layout's outputs there; `discard`: delete them instead
    (run from the project root)."""
    parser = argparse.ArgumentParser(prog="python -m ptft.studies", description=main.__doc__)
    parser.add_argument("command", choices=["dir", "migrate", "discard"])
    parser.add_argument("--configfile", default="params.yaml")
    args = parser.parse_args(argv)
    if args.command == "discard":
        gone = discard(Path.cwd())
        print(f"deleted {', '.join(gone)} (the old layout's outputs)" if gone else "nothing to delete")
        return 0
    config = _load_config(args.configfile)
    try:
        folder = study_dir(config)
        if args.command == "dir":
            print(folder)
            return 0
        moved = migrate(Path.cwd(), config)
    except LayoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if moved:
        print(f"moved {', '.join(moved)} (and Snakemake's records of them) into {folder}/; nothing reruns")
    else:
        print(f"nothing to move: the project root holds no study outputs in the old layout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
