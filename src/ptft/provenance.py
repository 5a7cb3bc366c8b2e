"""Atomic outputs and provenance: every target appears complete or not at all, and says how it was made."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

PROVENANCE_FILE = "provenance.json"
_LIBRARIES = ("ptft", "torch", "transformers", "tokenizers", "lm_eval", "datasets", "snakemake", "numpy", "pandas")


def package_version(name: str) -> str | None:
    """The installed version of a distribution (None if it is not installed)."""
    try:
        return importlib.metadata.version(name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        version = package_version(lib)
        if version is not None:
            versions[lib] = version
    return versions


def provenance(kind: str, config: Any, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The record stored beside an output: what produced it, from which config slice and seed, with which libraries."""
    record = {"kind": kind, "config": config, "seed": seed, "versions": library_versions()}
    record.update(extra)
    return record


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (corpus, tokenizer and input fingerprints)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(obj: Any) -> Any:
    # numpy / torch scalars and arrays, paths and tuples come out of libraries; JSON wants plain types.
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")


def dumps(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, no NaN surprises beyond JSON's null-free form)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable, ensure_ascii=False) + "\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary file beside `path` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates owner-only files; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj))


def write_jsonl(path: str | os.PathLike, rows: Any) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=_jsonable, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {lineno}: not valid JSON ({err.msg})") from None
    return rows


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `path`, on failure it is removed.

    A job killed inside the block leaves only a dot-named `.NAME.tmp-*` folder, never a folder at
    `path` that looks finished.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates an owner-only folder
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def discard_provenance(folder: str | os.PathLike) -> None:
    """Remove folder/provenance.json before the folder is remade. Snakemake deletes a job's declared outputs before it
    runs, not this record beside them: a job that then fails before publishing (atomic_dir) would leave the old
    record describing outputs that no longer exist."""
    (Path(folder) / PROVENANCE_FILE).unlink(missing_ok=True)


def read_provenance(folder: str | os.PathLike) -> dict[str, Any]:
    file = Path(folder) / PROVENANCE_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} is missing: {folder} was not produced by ptft or is incomplete") from None


def redirect_output_to_log(log_path: str | os.PathLike | None) -> None:
    """Send this process's stdout and stderr (progress bars included) to the rule's log file."""
    if not log_path:
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "w", buffering=1, encoding="utf-8")
    os.dup2(fh.fileno(), 1)
    os.dup2(fh.fileno(), 2)
    sys.stdout = sys.stderr = fh
