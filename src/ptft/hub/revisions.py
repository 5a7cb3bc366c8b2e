"""A hub model's branches and tags, and the lock entry each configured checkpoint resolves to: a step (exact or
snapped to the nearest branch), a revision name, a selection rule, or a repository per step (repo_template)."""

from __future__ import annotations

import contextlib
import difflib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from ptft import hubclient
from ptft.hub.families import Family, parse_branch

SELECTION_RULES = ("first", "last", "uniform_by_tokens")


class HubError(RuntimeError):
    """A hub repository, revision or download is not what the config expects; the message says what to change."""


@dataclass(frozen=True)
class Ref:
    """A branch or tag of a hub repository, with the pre-training step and tokens its name encodes (None if not)."""

    name: str
    commit: str
    step: int | None = None
    tokens: int | None = None



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
            f"token (huggingface.co/settings/tokens) and rerun.\n({hubclient.first_line(err)})"
        ) from None
    except RevisionNotFoundError:
        raise  # the callers know which revision and list the available ones
    except RepositoryNotFoundError as err:
        raise HubError(
            f"{repo}: repository not found while trying to {what}. Check models.<name>.repo; if the repository is "
            f"private or gated, set HF_TOKEN to a token with access to it.\n({hubclient.first_line(err)})"
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
                f"Set HF_TOKEN to a token with access to it.\n({hubclient.first_line(err)})"
            ) from None
        raise



def list_refs(repo: str, family: Family, token: str | None = None) -> list[Ref]:
    """Every branch and tag of `repo`, step branches parsed by `family` (one call to the hub's list of refs)."""
    from huggingface_hub import HfApi

    with hub_errors(repo, "list its branches"):
        refs = HfApi(endpoint=hubclient.endpoint(), token=token).list_repo_refs(repo)
    out = []
    for ref in [*refs.branches, *refs.tags]:
        parsed = parse_branch(family, ref.name)
        out.append(Ref(ref.name, ref.target_commit, *(parsed or (None, None))))
    return out


def step_refs(refs: list[Ref]) -> list[Ref]:
    """The refs whose names encode a step, by step (then name)."""
    return sorted((r for r in refs if r.step is not None), key=lambda r: (r.step, r.name))


# --------------------------------------------------------------------------------------------------- resolution


def rule_key(rule: dict[str, Any]) -> str:
    """The stable name of a selection rule (its key in the lock file): first, last, uniform_by_tokens=N."""
    (name, value), = rule.items()
    return name if name in ("first", "last") else f"{name}={int(value)}"


def lock_entry(ref: Ref, requested: Any, snapped: bool = False, **extra: Any) -> dict[str, Any]:
    """The lock file's entry of a checkpoint that resolved to `ref` (requested: the configured step or name)."""
    return {"requested": requested, "branch": ref.name, "commit": ref.commit, "step": ref.step, "tokens": ref.tokens,
            "snapped": snapped, **extra}  # fmt: skip


def resolve(
    request: int | str, refs: list[Ref], *, repo: str, model: str, snap: str = "exact", main: dict | None = None
) -> dict[str, Any]:
    """The lock entry of one requested checkpoint: a step (int) or a revision name (branch or tag). Raises HubError
    for a step without a branch (unless snap is nearest) or a name the repository does not have."""
    steps = step_refs(refs)
    if isinstance(request, int):
        exact = [r for r in steps if r.step == request]
        if exact:
            return lock_entry(exact[0], request)
        if not steps:
            raise HubError(f"models.{model}.checkpoints: {repo} has no branch naming a step; known names: "
                           f"{sorted(r.name for r in refs)[:20]}")  # fmt: skip
        nearest = sorted(steps, key=lambda r: (abs(r.step - request), r.step))
        if snap == "nearest":
            return lock_entry(nearest[0], request, snapped=True)
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
    return lock_entry(ref, request)


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
