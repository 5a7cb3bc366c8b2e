"""The study's revisions lock (configs/<study>.lock.yaml): every hub checkpoint pinned to a commit, written under a
file lock by concurrent materialize jobs, and read by planning (checkpoint labels, without the network)."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from ptft import hubclient
from ptft.config import ConfigError, checkpoint_steps
from ptft.hub.families import NAMING_KEYS, model_family
from ptft.hub.revisions import HubError, list_refs, lock_entry, model_repo, resolve, rule_key, select, step_repo_entry
from ptft.provenance import atomic_write_text

LOCK_HEADER = (
    "# ptft revisions lock: every hub checkpoint and hub data set of the study pinned to a commit hash. Written by\n"
    "# the materialize and prepare_dataset jobs on first run and by `python -m ptft.hub resolve --configfile ...`; commit it with the study. Later runs\n"
    "# download these commits even when the branch has moved since.\n"
)
RESOLVE_COMMAND = "python -m ptft.hub resolve --configfile {configfile}  (or: make lock-revisions CONFIG={configfile})"


def lock_path(config: dict[str, Any], root: Path = Path(".")) -> Path:
    """The study's lock file: revisions_lock, else configs/<study>.lock.yaml, under root."""
    return Path(root) / (config.get("revisions_lock") or f"configs/{config.get('study', 'study')}.lock.yaml")


def read_lock(path: Path) -> dict[str, Any]:
    """The lock file's data ({"models": {}} when there is none yet); HubError when it is not a ptft lock."""
    path = Path(path)
    if not path.exists():
        return {"models": {}}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data.get("models", {}), dict):
        raise HubError(f"{path}: expected a mapping 'models: {{<model>: ...}}' (a ptft revisions lock)")
    data.setdefault("models", {})
    return data


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    # Several materialize jobs may add entries at once: serialise read-modify-write on a sidecar lock file.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def update_lock(path: Path, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `change` to the lock's data under an exclusive lock and rewrite the file atomically; return its result."""
    path = Path(path)
    with _exclusive(path):
        data = read_lock(path)
        result = change(data)
        atomic_write_text(path, LOCK_HEADER + yaml.safe_dump(data, sort_keys=True, width=120))
    return result


def _model_lock(data: dict[str, Any], model: str, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    naming = {k: spec[k] for k in NAMING_KEYS if spec.get(k) is not None and k != "repo_template"}
    entry = data["models"].setdefault(model, {"repo": model_repo(spec), **naming, "checkpoints": {}})
    if entry.get("repo") != model_repo(spec):
        raise HubError(
            f"{path}: models.{model} is pinned to repo {entry.get('repo')!r}, but the config names {model_repo(spec)!r}; "
            f"delete models.{model} from the lock file to resolve the new repository."
        )
    entry.setdefault("checkpoints", {})
    return entry


def locked_entry(path: Path, model: str, spec: dict[str, Any], label: Any) -> dict[str, Any] | None:
    """The pinned entry of a checkpoint, if any; a lock made for another repository is an error, not a pin."""
    pinned = read_lock(path)["models"].get(model)
    if pinned is None:
        return None
    return _model_lock({"models": {model: pinned}}, model, spec, path)["checkpoints"].get(str(label))


def rule_labels(lock: dict[str, Any], model: str, rule: dict[str, Any]) -> list[int] | None:
    """The checkpoint labels a selection rule was resolved to in the lock file (None when not resolved yet)."""
    labels = lock.get("models", {}).get(model, {}).get("rules", {}).get(rule_key(rule))
    return None if labels is None else [int(x) for x in labels]


def pin(path: Path, model: str, spec: dict[str, Any], label: Any, token: str | None = None) -> dict[str, Any]:
    """The lock entry of a configured checkpoint (a step or a name): read from the lock, or resolved and added."""
    existing = locked_entry(path, model, spec, label)
    if existing is not None:
        return existing
    if hubclient.offline():
        raise HubError(
            f"models.{model}: checkpoint {label!r} is not pinned in {path}, and offline is true (HF_HUB_OFFLINE) so "
            f"the hub cannot be asked. Set offline: false, or pin it where the hub is reachable: "
            + RESOLVE_COMMAND.format(configfile="<the study config>")
        )
    family = model_family(spec, model)
    if family.repo_template is not None:
        entry = step_repo_entry(label, family, model=model, token=token)
    else:
        refs = list_refs(spec["repo"], family, token)
        entry = resolve(label, refs, repo=spec["repo"], model=model, snap=spec.get("snap", "exact"), main=spec.get("main"))

    def add(data):
        checkpoints = _model_lock(data, model, spec, path)["checkpoints"]
        return checkpoints.setdefault(str(label), entry)  # a concurrent job's entry wins: one pin per label

    return update_lock(path, add)


def resolve_config(config: dict[str, Any], path: Path, token: str | None = None) -> dict[str, list[str]]:
    """Pin every hub checkpoint of a study (selection rules included) in the lock file; return labels per model."""
    done: dict[str, list[str]] = {}
    for model, spec in config["models"].items():
        if spec.get("source") != "hub":
            continue
        family = model_family(spec, model)
        per_step_repos = family.repo_template is not None
        refs = [] if per_step_repos else list_refs(spec["repo"], family, token)
        lock = read_lock(path)
        pinned = lock["models"].get(model, {}).get("checkpoints", {})
        entries: dict[str, dict[str, Any]] = {}
        rules: dict[str, list[int]] = {}
        for item in spec["checkpoints"]:
            if per_step_repos:
                if str(item) not in pinned:
                    entries[str(item)] = step_repo_entry(item, family, model=model, token=token)
            elif isinstance(item, dict):
                picked = select(item, refs, repo=spec["repo"], model=model)
                rules[rule_key(item)] = [r.step for r in picked]
                for ref in picked:
                    entries.setdefault(str(ref.step), pinned.get(str(ref.step)) or lock_entry(ref, ref.step, rule=rule_key(item)))
            elif str(item) not in pinned:
                entries[str(item)] = resolve(item, refs, repo=spec["repo"], model=model,
                                             snap=spec.get("snap", "exact"), main=spec.get("main"))  # fmt: skip

        def add(data, entries=entries, rules=rules, model=model, spec=spec):
            entry = _model_lock(data, model, spec, path)
            for label, value in entries.items():
                entry["checkpoints"].setdefault(label, value)
            if rules:
                entry.setdefault("rules", {}).update(rules)

        update_lock(path, add)
        done[model] = sorted(read_lock(path)["models"][model]["checkpoints"])
    return done


def checkpoint_labels(config: dict[str, Any], model: str, lock: dict[str, Any] | None = None) -> list[int | str]:
    """Every checkpoint label of a model (the {step} wildcard): steps, revision names, and the steps a selection
    rule was pinned to in the revisions lock. Planning needs no network: an unpinned rule is an error."""
    spec = config["models"][model]
    if spec["source"] == "embedded":
        return checkpoint_steps(config, model)
    labels: list[int | str] = []
    for item in spec["checkpoints"]:
        if isinstance(item, dict):
            picked = rule_labels(lock or {}, model, item)
            if picked is None:
                raise ConfigError(
                    f"models.{model}.checkpoints: selection rule {rule_key(item)} is not resolved yet (planning does "
                    f"not ask the hub). Pin it in the revisions lock first: "
                    + RESOLVE_COMMAND.format(configfile="<your config>")
                )
            labels.extend(picked)
        else:
            labels.append(item)
    return list(dict.fromkeys(labels))


DATASET_KEYS = ("repo", "config", "data_dir", "revision")  # what a data set's pin was resolved from


def pin_dataset(path: Path, name: str, hub_spec: dict[str, Any], resolve_commit: Callable[[str], str]) -> dict[str, Any]:
    """The lock entry of hub data set `name` ({repo, config, data_dir, revision, commit}): read from the lock file's
    `datasets:` section, or resolved (resolve_commit(revision) -> the 40-hex commit the revision names now) and added,
    so that a later run reads the same commit when the branch has moved, as checkpoints do.

    hub_spec: data.datasets.<name>.hub. Raises HubError when the lock pins the set for another repo, config, data_dir
    or revision (delete the entry to resolve the new one).
    """
    wanted = {key: hub_spec.get(key) for key in DATASET_KEYS}
    wanted["revision"] = str(wanted["revision"] or "main")

    def checked(entry: dict[str, Any]) -> dict[str, Any]:
        differs = [key for key in DATASET_KEYS if entry.get(key) != wanted[key]]
        if differs:
            raise HubError(
                f"{path}: datasets.{name} is pinned for {', '.join(f'{k}={entry.get(k)!r}' for k in differs)}, but "
                f"data.datasets.{name}.hub names {', '.join(f'{k}={wanted[k]!r}' for k in differs)}; delete "
                f"datasets.{name} from the lock file to resolve the new one"
            )
        return entry

    existing = (read_lock(path).get("datasets") or {}).get(name)
    if existing is not None:
        return checked(existing)
    entry = {**wanted, "commit": resolve_commit(wanted["revision"])}

    def add(data):
        return checked(data.setdefault("datasets", {}).setdefault(name, entry))  # a concurrent job's pin wins

    return update_lock(path, add)
