"""Preflight of hub models: every configured checkpoint resolves to a branch and commit as materialize would resolve
it (ptft.hub, the revisions lock winning), and each model's tokenizer and config load without remote code."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from ptft import hub, hubclient
from ptft.config import ConfigError
from ptft.preflight.rows import Row, ok, problem


@dataclasses.dataclass
class ModelFacts:
    """What the checkpoint checks learned about one hub model: the commit whose tokenizer and config are read."""

    repo: str
    commit: str | None = None
    label: str | None = None
    tokenizer: Any = None
    context: int | None = None  # tokens, as lm-eval resolves it (model_context)
    context_source: str = ""


def check_model(model: str, spec: Mapping[str, Any], lock: Mapping[str, Any]) -> tuple[list[Row], ModelFacts]:
    """Rows for every configured checkpoint of a hub model (one call for the list of refs), then its tokenizer; the
    facts for the context checks. lock: the study's revisions lock (ptft.hub.read_lock), whose pins win."""
    rows: list[Row] = []
    facts = ModelFacts(hub.model_repo(spec))
    base = f"models.{model}"
    try:
        family = hub.model_family(spec, model)
        if family.repo_template is not None:
            return _check_step_repos(model, spec, family)
        refs = hub.list_refs(spec["repo"], family, os.environ.get("HF_TOKEN"))
    except (hub.HubError, ConfigError) as err:
        return [problem("checkpoint", f"{base}.repo", str(err), "fix models.<name>.repo / family, or set HF_TOKEN")], facts
    commits = {r.commit for r in refs}
    pinned = lock.get("models", {}).get(model, {})
    if pinned and pinned.get("repo") != spec["repo"]:
        rows.append(problem("lock", f"{base}.repo", f"the revisions lock pins {model} to repo {pinned.get('repo')!r}, "
                            f"the config names {spec['repo']!r}", f"delete models.{model} from the lock file"))
        pinned = {}
    used: list[tuple[str, str]] = []  # (label, commit) of every checkpoint that resolved
    for i, item in enumerate(spec["checkpoints"]):
        subject = f"{base}.checkpoints[{i}]"
        entry = None if isinstance(item, dict) else pinned.get("checkpoints", {}).get(str(item))
        if isinstance(item, dict):
            row, resolved = _rule_row(model, spec, item, subject, refs, pinned)
        elif entry is not None:
            row, resolved = _pinned_row(spec, item, subject, entry, commits)
        else:
            row, resolved = _resolved_row(model, spec, item, subject, refs)
        rows.append(row)
        used += resolved
    if used:
        facts.label, facts.commit = used[-1]
        rows.append(_check_tokenizer(model, spec, facts))
    return rows, facts


def _rule_row(model: str, spec: Mapping[str, Any], rule: dict[str, Any], subject: str, refs: list[hub.Ref],
              pinned: Mapping[str, Any]) -> tuple[Row, list[tuple[str, str]]]:  # fmt: skip
    """The row of a selection rule (the steps it picks from the branches, as the lock pins them) and the
    (label, commit) of each checkpoint it picks."""
    key = hub.rule_key(rule)
    try:
        picked = hub.select(rule, refs, repo=spec["repo"], model=model)
    except hub.HubError as err:
        return problem("checkpoint", subject, str(err), "choose another selection rule or repo"), []
    locked = pinned.get("rules", {}).get(key)
    steps = [r.step for r in picked]
    used = [(str(r.step), r.commit) for r in picked]
    if locked is not None and [int(s) for s in locked] != steps:
        return problem("lock", subject, f"rule {key} is pinned in the revisions lock to steps {locked}; the hub's "
                       f"branches now give {steps}", "keep the lock (it wins), or delete the rule's entry to "
                       f"re-resolve: make lock-revisions"), used  # fmt: skip
    return ok("checkpoint", subject, f"{key} -> steps {steps}"), used


def _pinned_row(spec: Mapping[str, Any], item: Any, subject: str, entry: Mapping[str, Any],
                commits: set[str]) -> tuple[Row, list[tuple[str, str]]]:  # fmt: skip
    """The row of a checkpoint the lock pins (its commit must still exist when no branch points at it any more) and
    its (label, commit) when it does."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionNotFoundError

    commit = entry["commit"]
    if commit not in commits:  # the branch moved on since it was pinned: the pinned commit must still exist
        try:
            with hub.hub_errors(spec["repo"], f"read pinned commit {commit}"):
                api = HfApi(endpoint=hubclient.endpoint(), token=os.environ.get("HF_TOKEN"))
                api.model_info(spec["repo"], revision=commit)
        except RevisionNotFoundError:
            return problem("checkpoint", subject, f"{item!r} is pinned in the revisions lock to commit {commit}, "
                           f"which {spec['repo']} no longer has", "delete that entry of the lock file to resolve the "
                           "checkpoint again (the weights may differ)"), []  # fmt: skip
        except hub.HubError as err:
            return problem("checkpoint", subject, str(err), "see the message"), []
    row = ok("checkpoint", subject, f"{item!r} pinned: branch {entry['branch']} commit {commit[:10]}")
    return row, [(str(item), commit)]


def _resolved_row(model: str, spec: Mapping[str, Any], item: Any, subject: str,
                  refs: list[hub.Ref]) -> tuple[Row, list[tuple[str, str]]]:  # fmt: skip
    """The row of a step or revision name the lock does not pin yet (resolved as materialize would) and its
    (label, commit) when it resolves."""
    base = f"models.{model}"
    try:
        entry = hub.resolve(item, refs, repo=spec["repo"], model=model, snap=spec.get("snap", "exact"),
                            main=spec.get("main"))  # fmt: skip
    except hub.HubError as err:
        fix = (f"request a step that has a branch, or set {base}.snap: nearest" if isinstance(item, int)
               else f"name an existing branch or tag, or set {base}.main")  # fmt: skip
        return problem("checkpoint", subject, str(err), fix), []
    snapped = f" (snapped from {item})" if entry["snapped"] else ""
    return ok("checkpoint", subject, f"{item!r} -> branch {entry['branch']}{snapped}, step {entry['step']}, "
              f"commit {entry['commit'][:10]}"), [(str(item), entry["commit"])]  # fmt: skip


def _check_step_repos(model: str, spec: Mapping[str, Any], family: hub.Family) -> tuple[list[Row], ModelFacts]:
    """Rows for a model published one repository per step (repo_template): each step's repository and its main."""
    rows: list[Row] = []
    facts = ModelFacts(spec["repo_template"])
    for i, item in enumerate(spec["checkpoints"]):
        subject = f"models.{model}.checkpoints[{i}]"
        try:
            entry = hub.step_repo_entry(item, family, model=model, token=os.environ.get("HF_TOKEN"))
        except hub.HubError as err:
            rows.append(problem("checkpoint", subject, str(err), f"fix models.{model}.repo_template or the step"))
            continue
        rows.append(ok("checkpoint", subject, f"{item!r} -> {entry['repo']} main, commit {entry['commit'][:10]}"))
        facts.repo, facts.label, facts.commit = entry["repo"], str(item), entry["commit"]
    if facts.commit is not None:
        rows.append(_check_tokenizer(model, spec, facts))
    return rows, facts


def _check_tokenizer(model: str, spec: Mapping[str, Any], facts: ModelFacts) -> Row:
    """Load the tokenizer and model config of one checkpoint (their files only, never weights, no remote code)."""
    from transformers import AutoConfig, AutoTokenizer

    subject = f"models.{model}"
    where = f"{facts.repo}@{facts.commit[:10]} (checkpoint {facts.label!r})"
    kwargs = dict(revision=facts.commit, cache_dir=hubclient.hub_cache_dir(), token=os.environ.get("HF_TOKEN"),
                  trust_remote_code=False)  # fmt: skip
    try:
        config = AutoConfig.from_pretrained(facts.repo, **kwargs)
        facts.tokenizer = AutoTokenizer.from_pretrained(facts.repo, **kwargs)
    except Exception as err:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError for these
        return problem("tokenizer", subject, f"{where}: tokenizer or config.json does not load without remote code: "
                       f"{hubclient.first_line(err)}", "use the repository's native transformers version (e.g. the -hf repo); "
                       "for a gated repo set HF_TOKEN to a token of an account that accepted its terms")  # fmt: skip
    facts.context, facts.context_source = model_context(config, facts.tokenizer)
    return ok("tokenizer", subject, f"{where}: {type(facts.tokenizer).__name__}, vocabulary {len(facts.tokenizer)}, "
              f"context {facts.context} ({facts.context_source})")  # fmt: skip


def model_context(config: Any, tokenizer: Any) -> tuple[int, str]:
    """The longest sequence, in tokens, that ptft gives the model, and where that number came from
    (ptft.tokens.context_length, the number evaluation passes to lm-eval's HFLM as max_length and fine-tuning caps
    max_length at). Raises ValueError when neither the config nor the tokenizer gives one."""
    from ptft.tokens import context_length

    return context_length(config, "the model config", tokenizer)
