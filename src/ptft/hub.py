"""Checkpoints from the Hugging Face hub and local folders: resolve a configured checkpoint to a branch and commit,
pin it in the study's lock file, and materialize it as a checkpoint folder (safetensors only) with provenance.

    python -m ptft.hub resolve --configfile configs/paper-olmo1b.yaml   # pin every hub checkpoint in the lock file
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from ptft.config import ConfigError
from ptft.provenance import PROVENANCE_FILE, atomic_dir, atomic_write_text, provenance, sha256_file, write_json


@dataclass(frozen=True)
class Family:
    """How a model names its pre-training checkpoints on the hub: branches of one repository matching a pattern, or
    one repository per step (repo_template, e.g. "org/model-step{step}", each checkpoint its repository's main)."""

    name: str
    branch: re.Pattern[str] | None  # named groups: step, and tokens (in tokens_unit) where the name carries them
    tokens_per_step: int | None = None  # only for names that carry no token count
    tokens_unit: int = 10**9  # what one unit of the tokens group counts (OLMo's "tokens4B": billions)
    repo_template: str | None = None


# The built-in naming schemes, each a named pattern (models.<name>.family); anything else is configured with
# models.<name>.branches (a pattern) or models.<name>.repo_template, with no code. Evidence for each scheme:
#   olmo:   allenai/OLMo-1B-hf model card, revisions step{N}-tokens{T}B (tests/hub_facts.yaml [olmo-card])
#   olmo2:  transformers docs model_doc/olmo2.md: from_pretrained("allenai/OLMo-2-0425-1B",
#           revision="stage1-step140000-tokens294B"); later stages (stage2-ingredientN-step...) count steps anew
#   pythia: Pythia model card: step0, step1 ... step143000 (tests/hub_facts.yaml [pythia-card])
# Schemes configured with branches, not built in (tests/test_hub.py serves them):
#   LLM360/Amber: branches ckpt_000 ... ckpt_358 (its README: "change the branch from 'main' to ... 'ckpt_000'";
#           huggingface.co/LLM360/Amber/discussions/3: revision="ckpt_100"); the number counts checkpoints, not
#           optimizer steps, and the tokens per checkpoint are unconfirmed (the card's ~1.26T tokens / 360 is a guess)
#   OLMo-3: stage1-step{N} with no token count (allenai/Olmo-3-1125-32B card: "stage1-stepXXX"); tokens per step
#           unconfirmed
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("olmo", re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")),  # allenai/OLMo-1B-hf
        Family("olmo-0724", re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")),  # allenai/OLMo-1B-0724-hf
        Family("olmo2", re.compile(r"^stage1-step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")),  # allenai/OLMo-2-*
        # Pythia trains every step on 1024 sequences of 2048 tokens (2,097,152 tokens): that is the family's definition
        # of tokens seen, not a guess at a branch suffix (its branch names carry none).
        Family("pythia", re.compile(r"^step(?P<step>\d+)$"), tokens_per_step=2_097_152),
        # Only the released model, no intermediate checkpoints (meta-llama/Meta-Llama-3-8B): no branch names a step, so
        # main's step and tokens come from models.<name>.main.
        Family("final", re.compile(r"(?!)")),
    ]
}

# What a checkpoint folder needs: weights (safetensors only: pickled *.bin files can run code when loaded), the
# model and tokenizer configs, and the tokenizer's vocabulary files.
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken"]
SELECTION_RULES = ("first", "last", "uniform_by_tokens")
LOCK_HEADER = (
    "# ptft revisions lock: every hub checkpoint of the study pinned to a commit hash. Written by the materialize\n"
    "# jobs on first run and by `python -m ptft.hub resolve --configfile ...`; commit it with the study. Later runs\n"
    "# download these commits even when the branch has moved since.\n"
)
RESOLVE_COMMAND = "python -m ptft.hub resolve --configfile {configfile}  (or: make lock-revisions CONFIG={configfile})"


class HubError(RuntimeError):
    """A hub repository, revision or download is not what the config expects; the message says what to change."""


@dataclass(frozen=True)
class Ref:
    """A branch or tag of a hub repository, with the pre-training step and tokens its name encodes (None if not)."""

    name: str
    commit: str
    step: int | None = None
    tokens: int | None = None


# ------------------------------------------------------------------------------------------------------- families


def get_family(name: str | None, model: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"models.{model}.family is {name!r}; known families: {sorted(FAMILIES)}")
    return FAMILIES[name]


NAMING_KEYS = ("family", "branches", "repo_template")


def model_family(spec: dict[str, Any], model: str) -> Family:
    """How hub model `model` names its checkpoints, from its config: exactly one of family (a built-in scheme),
    branches {pattern, tokens_unit} (a regex with a named group step and optionally tokens; tokens_per_step when
    it has none), or repo_template (one repository per step; needs tokens_per_step). Raises ConfigError naming the
    key that is missing, extra or malformed."""
    given = [k for k in NAMING_KEYS if spec.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(f"models.{model} names its checkpoints with exactly one of {list(NAMING_KEYS)}; got {given}")
    per_step = spec.get("tokens_per_step")
    if given == ["family"]:
        if per_step is not None:
            raise ConfigError(f"models.{model}.tokens_per_step: family {spec['family']!r} defines tokens itself; drop it")
        return get_family(spec["family"], model)
    if given == ["repo_template"]:
        template = spec["repo_template"]
        try:
            probe = template.format(step=0)
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"models.{model}.repo_template {template!r}: only {{step}} may be filled in ({err})") from None
        if probe == template.format(step=1) or per_step is None:
            raise ConfigError(f"models.{model}.repo_template {template!r} needs {{step}} in it and "
                              f"models.{model}.tokens_per_step beside it")  # fmt: skip
        return Family("repo_template", None, tokens_per_step=int(per_step), repo_template=template)
    branches = spec["branches"]
    try:
        pattern = re.compile(branches["pattern"])
    except re.error as err:
        raise ConfigError(f"models.{model}.branches.pattern {branches['pattern']!r} is not a regex: {err}") from None
    if "step" not in pattern.groupindex:
        raise ConfigError(f"models.{model}.branches.pattern {pattern.pattern!r} has no named group (?P<step>...)")
    if ("tokens" in pattern.groupindex) == (per_step is not None):
        raise ConfigError(
            f"models.{model}: a branches.pattern with a (?P<tokens>...) group reads tokens from the name, one without "
            f"needs models.{model}.tokens_per_step; give exactly one (pattern {pattern.pattern!r}, "
            f"tokens_per_step {per_step!r})"
        )
    if per_step is not None:
        return Family("branches", pattern, tokens_per_step=int(per_step))
    # the schema's default (1e9) fills tokens_unit in a validated config
    return Family("branches", pattern, tokens_unit=int(float(branches["tokens_unit"])))


def parse_branch(family: Family, name: str) -> tuple[int, int] | None:
    """(step, tokens seen) of a branch name of the family, or None when the name is not a step branch."""
    match = family.branch.match(name) if family.branch is not None else None
    if not match:
        return None
    step = int(match["step"])
    if family.tokens_per_step is not None:
        return step, step * family.tokens_per_step
    return step, int(match["tokens"]) * family.tokens_unit


# ------------------------------------------------------------------------------------------------ hub access


def _endpoint() -> str | None:
    # Read at call time (huggingface_hub reads HF_ENDPOINT once, at import), so a test or a job can point here.
    return os.environ.get("HF_ENDPOINT") or None


def _cache_dir() -> str | None:
    # Like HF_ENDPOINT, read at call time (huggingface_hub fixes its default cache folder at import).
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None


def offline() -> bool:
    """Whether the hub client is in offline mode (HF_HUB_OFFLINE, as read when huggingface_hub was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def transient_http_error(err: BaseException) -> bool:
    """A failure of the hub or the way to it that a retry may cure: a 5xx, timeout or rate-limit answer, or a
    connection that could not be made or broke (the client's httpx2 transport errors)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        return status is None or status >= 500 or status in (408, 429)
    return isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError))


@contextlib.contextmanager
def hub_errors(repo: str, what: str) -> Iterator[None]:
    """Turn the hub client's errors into HubErrors that say what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError as err:
        raise HubError(
            f"{repo} is gated: {what} needs a token of an account that accepted its terms. Set HF_TOKEN to that "
            f"token (huggingface.co/settings/tokens) and rerun.\n({_first_line(err)})"
        ) from None
    except RevisionNotFoundError:
        raise  # the callers know which revision and list the available ones
    except RepositoryNotFoundError as err:
        raise HubError(
            f"{repo}: repository not found while trying to {what}. Check models.<name>.repo; if the repository is "
            f"private or gated, set HF_TOKEN to a token with access to it.\n({_first_line(err)})"
        ) from None
    except OfflineModeIsEnabled:
        raise HubError(
            f"{repo}: cannot {what}: HF_HUB_OFFLINE is set (config offline: true). Set offline: false in the study "
            f"config, or pin the checkpoint in the lock file and pre-fill the HF cache (HF_HOME={os.environ.get('HF_HOME')})."
        ) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise HubError(
                f"{repo}: access denied ({status}) while trying to {what}; the repository may be private or gated. "
                f"Set HF_TOKEN to a token with access to it.\n({_first_line(err)})"
            ) from None
        raise


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def list_refs(repo: str, family: Family, token: str | None = None) -> list[Ref]:
    """Every branch and tag of `repo`, step branches parsed by `family` (one call to the hub's list of refs)."""
    from huggingface_hub import HfApi

    with hub_errors(repo, "list its branches"):
        refs = HfApi(endpoint=_endpoint(), token=token).list_repo_refs(repo)
    out = []
    for ref in [*refs.branches, *refs.tags]:
        parsed = parse_branch(family, ref.name)
        out.append(Ref(ref.name, ref.target_commit, *(parsed or (None, None))))
    return out


def step_refs(refs: list[Ref]) -> list[Ref]:
    return sorted((r for r in refs if r.step is not None), key=lambda r: (r.step, r.name))


# --------------------------------------------------------------------------------------------------- resolution


def rule_key(rule: dict[str, Any]) -> str:
    """The stable name of a selection rule (its key in the lock file): first, last, uniform_by_tokens=N."""
    (name, value), = rule.items()
    return name if name in ("first", "last") else f"{name}={int(value)}"


def _entry(ref: Ref, requested: Any, snapped: bool = False, **extra: Any) -> dict[str, Any]:
    return {"requested": requested, "branch": ref.name, "commit": ref.commit, "step": ref.step, "tokens": ref.tokens,
            "snapped": snapped, **extra}  # fmt: skip


def resolve(
    request: int | str, refs: list[Ref], *, repo: str, model: str, snap: str = "exact", main: dict | None = None
) -> dict[str, Any]:
    """The lock entry of one requested checkpoint: a step (int) or a revision name (branch or tag)."""
    steps = step_refs(refs)
    if isinstance(request, int):
        exact = [r for r in steps if r.step == request]
        if exact:
            return _entry(exact[0], request)
        if not steps:
            raise HubError(f"models.{model}.checkpoints: {repo} has no branch naming a step; known names: "
                           f"{sorted(r.name for r in refs)[:20]}")  # fmt: skip
        nearest = sorted(steps, key=lambda r: (abs(r.step - request), r.step))
        if snap == "nearest":
            return _entry(nearest[0], request, snapped=True)
        listing = ", ".join(f"{r.name} (step {r.step})" for r in sorted(nearest[:4], key=lambda r: r.step))
        raise HubError(
            f"models.{model}.checkpoints: step {request} has no branch in {repo}; the nearest available are "
            f"{listing}. Request one of those steps, or set models.{model}.snap: nearest to use the nearest one "
            f"(the requested and the used step are both recorded)."
        )
    by_name = {r.name: r for r in refs}
    if request not in by_name:
        close = difflib.get_close_matches(request, list(by_name), n=5, cutoff=0.5)
        raise HubError(
            f"models.{model}.checkpoints: revision {request!r} does not exist in {repo}; closest names: "
            f"{close or sorted(by_name)[:5]}"
        )
    ref = by_name[request]
    if ref.step is None:
        # A name that carries no step (main, a tag) is the step branch with the same commit, if there is one.
        same = [r for r in steps if r.commit == ref.commit]
        if same:
            ref = Ref(ref.name, ref.commit, same[-1].step, same[-1].tokens)
        elif request == "main" and main:
            ref = Ref(ref.name, ref.commit, int(main["step"]), int(main["tokens"]))
        else:
            key = f"models.{model}.main: {{step: ..., tokens: ...}}" if request == "main" else "a step branch instead"
            raise HubError(
                f"models.{model}.checkpoints: revision {request!r} of {repo} (commit {ref.commit}) matches no step "
                f"branch, so its step and tokens are unknown; set {key}."
            )
    return _entry(ref, request)


def select(rule: dict[str, Any], refs: list[Ref], *, repo: str, model: str) -> list[Ref]:
    """The step branches a selection rule picks: first, last, or N spread evenly over tokens seen."""
    steps = step_refs(refs)
    if not steps:
        raise HubError(f"models.{model}.checkpoints: {repo} has no step branches for rule {rule_key(rule)}")
    (name, value), = rule.items()
    if name == "first":
        return [steps[0]]
    if name == "last":
        return [steps[-1]]
    n = int(value)
    lo, hi = steps[0].tokens, steps[-1].tokens
    targets = [hi] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    chosen: list[Ref] = []
    for target in targets:
        best = min((r for r in steps if r not in chosen), key=lambda r: (abs(r.tokens - target), r.step), default=None)
        if best is not None:
            chosen.append(best)
    return sorted(chosen, key=lambda r: r.step)


def step_repo_entry(request: Any, family: Family, *, model: str, token: str | None = None) -> dict[str, Any]:
    """The lock entry of a checkpoint of a one-repository-per-step model (family.repo_template): step N is the
    repository repo_template.format(step=N) at the commit of its main branch. Raises HubError for a label that is
    not a step, a repository that does not exist, or one without a main branch."""
    if not isinstance(request, int):
        raise HubError(
            f"models.{model}.checkpoints: {request!r}: a model with repo_template takes steps only (each step is a "
            f"repository of its own); revision names and selection rules need checkpoints that are branches"
        )
    repo = family.repo_template.format(step=request)
    try:
        refs = list_refs(repo, family, token)
    except HubError as err:
        raise HubError(f"models.{model}.repo_template gives {repo} for step {request}: {err}") from None
    main = next((r for r in refs if r.name == "main"), None)
    if main is None:
        raise HubError(f"models.{model}.repo_template gives {repo} for step {request}, which has no branch main")
    return {"requested": request, "repo": repo, "branch": "main", "commit": main.commit, "step": request,
            "tokens": request * family.tokens_per_step, "snapped": False}  # fmt: skip


def model_repo(spec: dict[str, Any]) -> str:
    """What the lock file pins a hub model to: its repository, or its repo_template (one repository per step)."""
    return spec.get("repo") or spec["repo_template"]


# ------------------------------------------------------------------------------------------------------ lock file


def lock_path(config: dict[str, Any], root: Path = Path(".")) -> Path:
    return Path(root) / (config.get("revisions_lock") or f"configs/{config.get('study', 'study')}.lock.yaml")


def read_lock(path: Path) -> dict[str, Any]:
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
    if offline():
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
                    entries.setdefault(str(ref.step), pinned.get(str(ref.step)) or _entry(ref, ref.step, rule=rule_key(item)))
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


# ------------------------------------------------------------------------------------------------- materialize


def _transient(err: BaseException) -> bool:
    """A download error worth retrying: the connection, a cut transfer, or the hub's 5xx / rate limit."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return transient_http_error(err)
    if isinstance(err, LocalEntryNotFoundError):
        return not offline()  # the hub client's word for "could not reach the hub, and nothing cached"
    # OSError covers huggingface_hub's size-consistency check after a cut transfer.
    return transient_http_error(err) or isinstance(err, OSError)


def download(repo: str, commit: str, *, label: str, attempts: int = 4, backoff_s: float = 5.0,
             token: str | None = None, patterns: list[str] = ALLOW_PATTERNS) -> Path:  # fmt: skip
    """The snapshot folder of repo@commit in the HF cache (weights and configs only), downloading what is missing.

    huggingface_hub already resumes a cut transfer a few times within one call; around that, whole calls are retried
    with exponential backoff (`attempts` in all), resuming from the partial files the cache keeps.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RevisionNotFoundError

    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            with hub_errors(repo, f"download checkpoint {label!r} (commit {commit})"):
                folder = snapshot_download(repo, revision=commit, allow_patterns=patterns, endpoint=_endpoint(),
                                           cache_dir=_cache_dir(), token=token)  # fmt: skip
            return Path(folder)
        except HubError:
            raise
        except RevisionNotFoundError:
            raise HubError(
                f"{repo}: the pinned commit {commit} of checkpoint {label!r} no longer exists (history rewritten?). "
                f"Delete that entry from the lock file to resolve the checkpoint again, knowing the weights may differ."
            ) from None
        except LocalEntryNotFoundError as err:
            if offline():
                raise HubError(
                    f"{repo}@{commit} (checkpoint {label!r}) is not in the HF cache (HF_HOME={os.environ.get('HF_HOME')}) "
                    f"and offline is true (HF_HUB_OFFLINE), so it cannot be downloaded. Set offline: false in the study "
                    f"config, or fill the cache where the hub is reachable."
                ) from None
            last = err
        except Exception as err:  # noqa: BLE001 - sorted into transient and not just below
            if not _transient(err):
                raise
            last = err
        if attempt < attempts:
            wait = backoff_s * 2 ** (attempt - 1)
            print(f"download of {repo}@{commit} failed ({_first_line(last)}); retry {attempt}/{attempts - 1} in {wait:g} s",
                  file=sys.stderr)  # fmt: skip
            time.sleep(wait)
    raise HubError(
        f"{repo}@{commit} (checkpoint {label!r}): download failed after {attempts} attempts with backoff "
        f"(each attempt also resumes cut transfers itself): {_first_line(last)}. Nothing was written to the "
        f"checkpoint folder; rerun to resume from the partial files in the HF cache."
    ) from last


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
            f"{where}: its config.json does not load with transformers without remote code ({_first_line(err)}); "
            f"ptft never runs repository code. Use the repository's native transformers version (e.g. the -hf repo)."
        ) from None
    return {"model_type": cfg.model_type, "architectures": getattr(cfg, "architectures", None)}


def materialize(model: str, label: str | int, spec: dict[str, Any], lock_file: Path, out_dir: Path, *,
                attempts: int = 4, backoff_s: float = 5.0, rehearsal: bool = False) -> dict[str, Any]:  # fmt: skip
    """Write checkpoint `label` of a hub or local model to `out_dir` (atomically) with provenance.json; return it.

    rehearsal: the checkpoint still resolves to its branch and commit, but only its configs and tokenizer are
    downloaded and the weights are a random model of the same architecture with its layers shrunk
    (ptft.rehearsal.standin_checkpoint); provenance says so."""
    from ptft.rehearsal import STANDIN_PATTERNS, standin_checkpoint

    out_dir = Path(out_dir)
    label = _label(label)
    source = spec["source"]
    if source == "hub":
        entry = pin(Path(lock_file), model, spec, label)
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
        snapshot = Path(str(spec["path"]).replace("{checkpoint}", str(label))).expanduser()
        if not snapshot.is_dir():
            raise HubError(f"models.{model}.path: {snapshot} (checkpoint {label}) is not a folder")
        where = str(snapshot)
        identity = {"path": str(snapshot.resolve()), "step": label, "tokens": label * int(spec["tokens_per_step"])}
        link = False  # a copy: later edits of the source folder must not change the study's checkpoint
    else:
        raise ConfigError(f"models.{model}.source is {source!r}; materialize handles hub and local models")
    with atomic_dir(out_dir) as tmp:
        if rehearsal:
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


# ------------------------------------------------------------------------------------------------------------ CLI


def _load_config(paths: list[str]) -> dict[str, Any]:
    from ptft.config import validate

    config: dict[str, Any] = {}
    for p in paths:
        config.update(yaml.safe_load(Path(p).read_text(encoding="utf-8")) or {})
    return validate(config, source=", ".join(paths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptft.hub", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    res = sub.add_parser("resolve", help="pin every hub checkpoint of a study config (selection rules too) in its lock file")
    res.add_argument("--configfile", required=True, nargs="+", help="the study config (as given to snakemake)")
    res.add_argument("--lock", help="lock file (default: the config's revisions_lock)")
    args = parser.parse_args(argv)
    try:
        config = _load_config(args.configfile)
        from ptft.config import apply_offline

        apply_offline(config, Path.cwd())  # the study's own offline setting and cache folder, as in its jobs
        path = Path(args.lock) if args.lock else lock_path(config)
        for model, labels in resolve_config(config, path).items():
            print(f"{model}: {len(labels)} checkpoints pinned in {path}: {', '.join(labels)}")
    except (HubError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
