"""Checkpoints from the Hugging Face hub and local folders: resolve a configured checkpoint to a branch and commit,
pin it in the study's lock file, and materialize it as a checkpoint folder (safetensors only) with provenance.

    python -m ptft.hub resolve --configfile configs/paper-olmo1b.yaml   # pin every hub checkpoint in the lock file

Modules: families (how a model names its checkpoints), revisions (a repository's refs and what a configured checkpoint
resolves to), lock (the revisions lock, and the checkpoint labels planning reads from it), fetch (download and
materialize a checkpoint folder), __main__ (the command line). Hub access itself (endpoint, cache, offline mode,
retries) is ptft.hubclient.
"""

from ptft.hub.families import FAMILIES, NAMING_KEYS, Family, get_family, model_family, parse_branch
from ptft.hub.fetch import ALLOW_PATTERNS, download, materialize
from ptft.hub.lock import (
    LOCK_HEADER,
    RESOLVE_COMMAND,
    checkpoint_labels,
    lock_path,
    locked_entry,
    pin,
    pin_dataset,
    read_lock,
    resolve_config,
    rule_labels,
    update_lock,
)
from ptft.hub.revisions import (
    SELECTION_RULES,
    HubError,
    Ref,
    hub_errors,
    list_refs,
    lock_entry,
    model_repo,
    resolve,
    rule_key,
    select,
    step_refs,
    step_repo_entry,
)

__all__ = [
    "ALLOW_PATTERNS", "FAMILIES", "LOCK_HEADER", "NAMING_KEYS", "RESOLVE_COMMAND", "SELECTION_RULES", "Family",
    "HubError", "Ref", "checkpoint_labels", "download", "get_family", "hub_errors", "list_refs", "lock_entry",
    "lock_path", "locked_entry", "materialize", "model_family", "model_repo", "parse_branch", "pin", "pin_dataset", "read_lock",
    "resolve", "resolve_config", "rule_key", "rule_labels", "select", "step_refs", "step_repo_entry", "update_lock",
]  # fmt: skip
