"""A checkpoint folder from the hub or a local folder: the pinned commit's weights (safetensors only) and configs,
downloaded with retries into the HF cache, hard-linked or copied into the folder atomically, with provenance."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ptft import hubclient
from ptft.config import ConfigError
from ptft.hub.families import NAMING_KEYS
from ptft.hub.gguf import convert_gguf, gguf_file
from ptft.hub.lock import pin
from ptft.hub.revisions import HubError, hub_errors
from ptft.provenance import PROVENANCE_FILE, atomic_dir, provenance, sha256_file, write_json


# What a checkpoint folder needs: weights (safetensors only: pickled *.bin files can run code when loaded), the
# model and tokenizer configs, and the tokenizer's vocabulary files.
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken"]


def download(repo: str, commit: str, *, label: str, attempts: int = 4, backoff_s: float = 5.0,
             token: str | None = None, patterns: list[str] = ALLOW_PATTERNS) -> Path:  # fmt: skip
    """The snapshot folder of repo@commit in the HF cache (weights and configs only), downloading what is missing.

    huggingface_hub already resumes a cut transfer a few times within one call; around that, whole calls are retried
    with exponential backoff (`attempts` in all, backoff_s seconds after the first), resuming from the partial files
    the cache keeps. Raises HubError for a commit that no longer exists, a checkpoint missing from the cache offline,
    the hub's refusals (ptft.hub.hub_errors) and a download that outlasts the attempts.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RevisionNotFoundError

    def fetch() -> Path:
        try:
            with hub_errors(repo, f"download checkpoint {label!r} (commit {commit})"):
                folder = snapshot_download(repo, revision=commit, allow_patterns=patterns,
                                           endpoint=hubclient.endpoint(), cache_dir=hubclient.hub_cache_dir(),
                                           token=token)  # fmt: skip
            return Path(folder)
        except RevisionNotFoundError:
            raise HubError(
                f"{repo}: the pinned commit {commit} of checkpoint {label!r} no longer exists (history rewritten?). "
                f"Delete that entry from the lock file to resolve the checkpoint again, knowing the weights may differ."
            ) from None
        except LocalEntryNotFoundError:
            if hubclient.offline():
                raise HubError(
                    f"{repo}@{commit} (checkpoint {label!r}) is not in the HF cache (HF_HOME={os.environ.get('HF_HOME')}) "
                    f"and offline is true (HF_HUB_OFFLINE), so it cannot be downloaded. Set offline: false in the study "
                    f"config, or fill the cache where the hub is reachable."
                ) from None
            raise  # online: the hub could not be reached, and nothing is cached (transient)

    def on_retry(err: Exception, attempt: int, wait: float) -> None:
        print(f"download of {repo}@{commit} failed ({hubclient.first_line(err)}); retry {attempt}/{attempts - 1} in "
              f"{wait:g} s", file=sys.stderr)  # fmt: skip

    def on_failure(err: Exception, attempt: int, transient: bool) -> None:
        if transient:  # the attempts ran out; anything else propagates as it is
            raise HubError(
                f"{repo}@{commit} (checkpoint {label!r}): download failed after {attempts} attempts with backoff "
                f"(each attempt also resumes cut transfers itself): {hubclient.first_line(err)}. Nothing was written "
                f"to the checkpoint folder; rerun to resume from the partial files in the HF cache."
            ) from err

    return hubclient.retrying(fetch, attempts=attempts, wait_s=backoff_s,
                              is_transient=lambda err: hubclient.transient(err, cut_transfers=True),
                              on_retry=on_retry, on_failure=on_failure)  # fmt: skip


def _place(src: Path, dst: Path, link: bool) -> None:
    """Hard-link src to dst (no space beside the HF cache's copy; nothing ever writes a checkpoint file in place), or
    copy it when link is false or the file system refuses a link."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src.resolve(), dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _fill(tmp: Path, source: Path, where: str, link: bool) -> dict[str, str]:
    """Put the checkpoint files of `source` into `tmp`; return the weights' sha256 by file name."""
    from huggingface_hub.utils import filter_repo_objects

    # local_dir downloads keep metadata under .cache/ inside the folder: never part of a checkpoint
    files = [rel.as_posix() for rel in (p.relative_to(source) for p in source.rglob("*") if p.is_file())
             if ".cache" not in rel.parts]  # fmt: skip
    keep = sorted(filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS))
    weights = [f for f in keep if f.endswith(".safetensors")]
    if not weights:
        pickles = [f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        raise HubError(
            f"{where} has no *.safetensors weights" + (f" (only pickled {pickles[:3]})" if pickles else "")
            + "; ptft loads safetensors only and never unpickles weights. Choose a revision with safetensors."
        )
    for name in keep:
        _place(source / name, tmp / name, link)
    return {name: sha256_file(tmp / name) for name in weights}


def _check_loadable(folder: Path, where: str) -> dict[str, Any]:
    """Load the model config without remote code (cheap): fails here, not in the first fine-tuning job."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    except (ValueError, OSError, KeyError) as err:
        raise HubError(
            f"{where}: its config.json does not load with transformers without remote code ({hubclient.first_line(err)}); "
            f"ptft never runs repository code. Use the repository's native transformers version (e.g. the -hf repo)."
        ) from None
    return {"model_type": cfg.model_type, "architectures": getattr(cfg, "architectures", None)}


def materialize(model: str, label: str | int, spec: dict[str, Any], lock_file: Path, out_dir: Path, *,
                attempts: int = 4, backoff_s: float = 5.0, rehearsal: bool = False) -> dict[str, Any]:  # fmt: skip
    """Write checkpoint `label` of a hub, local or GGUF model (ptft.hub.gguf) to `out_dir` (atomically) with
    provenance.json; return it.

    rehearsal: the checkpoint still resolves to its branch and commit, but only its configs and tokenizer are
    downloaded and the weights are a random model of the same architecture with its layers shrunk
    (ptft.rehearsal.standin_checkpoint); provenance says so."""
    from ptft.rehearsal import STANDIN_PATTERNS, standin_checkpoint
    from ptft.studies import project_path

    out_dir = Path(out_dir)
    label = _label(label)
    source = spec["source"]
    if source == "hub":
        entry = pin(project_path(lock_file), model, spec, label)  # lock_file and a local path: relative to the project
        repo = entry.get("repo") or spec["repo"]  # a one-repository-per-step model's entry names its repository
        where = f"{repo}@{entry['commit']} (branch {entry['branch']})"
        snapshot = download(repo, entry["commit"], label=str(label), attempts=attempts, backoff_s=backoff_s,
                            patterns=STANDIN_PATTERNS if rehearsal else ALLOW_PATTERNS)  # fmt: skip
        naming = {k: spec[k] for k in (*NAMING_KEYS, "tokens_per_step") if spec.get(k) is not None}
        identity = {"repo": repo, **naming, **entry}
        link = True
    elif source == "local":
        if not isinstance(label, int):
            raise ConfigError(f"models.{model}.checkpoints: a local model's checkpoints are steps (integers), got {label!r}")
        snapshot = project_path(str(spec["path"]).replace("{checkpoint}", str(label)))
        if not snapshot.is_dir():
            raise HubError(f"models.{model}.path: {snapshot} (checkpoint {label}) is not a folder")
        where = str(snapshot)
        identity = {"path": str(snapshot.resolve()), "step": label, "tokens": label * int(spec["tokens_per_step"])}
        link = False  # a copy: later edits of the source folder must not change the study's checkpoint
    elif source == "gguf":
        snapshot, identity = gguf_file(model, label, spec)
        where = str(snapshot)
    else:
        raise ConfigError(f"models.{model}.source is {source!r}; materialize handles hub, local and gguf models")
    with atomic_dir(out_dir) as tmp:
        if source == "gguf":  # converted whole, also in a rehearsal: the file is all there is
            weights = convert_gguf(snapshot, tmp, where)
        elif rehearsal:
            try:
                standin = standin_checkpoint(snapshot, tmp, seed=sum(map(ord, f"{model}/{label}")))
            except ValueError as err:
                raise HubError(f"{where}: {err}; ptft never runs repository code") from None
            identity["rehearsal"] = standin
            weights = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))}
        else:
            weights = _fill(tmp, snapshot, where, link)
        arch = _check_loadable(tmp, where)
        record = provenance("checkpoint", spec, None, model=model, label=str(label), source=source,
                            weights_sha256=weights, **arch, **identity)  # fmt: skip
        write_json(tmp / PROVENANCE_FILE, record)
    return record


def _label(label: str | int) -> str | int:
    """A checkpoint label as configured: an int for a step, a string for a revision name (wildcards are strings)."""
    return int(label) if isinstance(label, str) and label.isdigit() else label
