"""The paper's task data sets from the Hugging Face hub, written in the same shape as the generated ones.

`prepare_hub_dataset` loads the configured splits of a data set at a pinned revision with
`datasets.load_dataset` (the path the authors used, so the README's `configs:` and the parquet layout
are read exactly as they read them), maps columns to the task family's fields, turns raw labels into
label words, draws the authors' training sample (`Dataset.shuffle(seed).select(range(n))`) and writes
data/{name}/train.jsonl, test.jsonl and card.json, so fine-tuning and evaluation need no change.

Offline (HF_HUB_OFFLINE=1) the same README configs are read from the hub-cache snapshot of the pinned
commit: datasets' own offline fallback finds only its Arrow cache, whose folder names depend on the data
files asked for, so it cannot tell which split it holds.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from ptft import hubclient
from ptft.data.card import CARD_FILE, target_summary  # the same card name and target summary as generated sets
from ptft.provenance import PROVENANCE_FILE, atomic_dir, discard_provenance, provenance, write_json, write_jsonl
from ptft.records import HubDataError, check_columns, field_problems, subsample, to_records
from ptft.tasks import TaskFamily, get_task

README = "README.md"  # the dataset card, whose YAML `configs:` section maps configs and splits to files
CHAT_TEMPLATES = ("plain",)
DOWNLOAD_ATTEMPTS = 3  # a broken download is retried this many times in all, then the job fails
RETRY_WAIT_S = 1.0  # doubled after each failed attempt

# Why a set's numbers differ from the paper's, written into its card (matched on repo name and config).
NOTES: dict[tuple[str, str | None], str] = {
    ("glue", "qqp"): (
        "The authors evaluated on SetFit/qqp test, whose labels are all -1 (hidden GLUE test labels), so their QQP "
        "accuracies measure agreement with a constant; we use GLUE qqp validation, which is labelled."
    ),
    ("glue", "stsb"): (
        "STS-B is a regression task (similarity 0-5); as the authors did, a score above label_threshold is 'yes' "
        "and any other 'no'. GLUE stsb test labels are hidden, so the labelled validation split is used."
    ),
}

def _log(message: str) -> None:
    print(f"[hubdata] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- spec checks


def hub_spec_problems(name: str, spec: Mapping[str, Any]) -> list[str]:
    """What is wrong with a hub data set's spec, beyond the schema (empty when it is usable)."""
    where = f"data.datasets.{name}"
    problems = field_problems(name, spec)
    splits = spec.get("splits") or {}
    if not splits.get("train"):
        problems.append(f"{where}.splits.train must name the split that gives the training set / few-shot pool")
    elif splits.get("train") == splits.get("test") and spec.get("n_test") is None:
        problems.append(f"{where}: splits.train and splits.test are both {splits['train']!r}; set n_test so that the "
                        "rest of the split can be the training set / few-shot pool (test rows are left out of it)")
    if spec.get("train_fraction") is not None and spec.get("n_train") is not None:
        problems.append(f"{where}: set n_train (rows) or train_fraction (a share of the split), not both")
    chat = spec.get("chat_template", "plain")
    if chat not in CHAT_TEMPLATES:
        problems.append(f"{where}.chat_template: {chat!r} is not one of {list(CHAT_TEMPLATES)}")
    return problems


# ----------------------------------------------------------------------------------------- rows -> records


# ------------------------------------------------------------------------------------------------- hub I/O


def _offline_error(name: str, repo: str, what: str, cache: Path) -> HubDataError:
    return HubDataError(
        f"data set {name!r}: the study is offline (offline: true sets HF_HUB_OFFLINE=1) and {repo} {what} is not in "
        f"the hub cache {cache}; run its prepare_dataset job once with offline: false (network), or copy a hub "
        "cache that has it there (HF_HOME)"
    )


def pin_revision(name: str, repo: str, revision: str) -> tuple[str, Path | None]:
    """The commit hash a revision names, and (offline) the hub-cache snapshot folder holding its files.

    Online, the dataset card is fetched at the revision as `datasets` itself does: that resolves the
    commit, records refs/{revision} in the hub cache for later offline runs, and raises the client's own
    errors for a missing, private or gated repo or a missing revision.
    """
    from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if hubclient.offline():
        cached = try_to_load_from_cache(repo, README, revision=revision, repo_type="dataset")
        if isinstance(cached, str):
            return Path(cached).parent.name, Path(cached).parent
        # A repo or branch without a card (the parquet conversion) is found by its commit hash only.
        from huggingface_hub.file_download import repo_folder_name

        cache = Path(hubclient.client_hub_cache())
        snapshot = cache / repo_folder_name(repo_id=repo, repo_type="dataset") / "snapshots" / revision
        if re.fullmatch(r"[0-9a-f]{40}", revision) and snapshot.is_dir():
            return revision, snapshot
        raise _offline_error(name, repo, f"revision {revision!r} (for a branch without a README.md, pin "
                             "hub.revision to the commit its card records)", cache)
    try:
        return Path(hf_hub_download(repo, README, repo_type="dataset", revision=revision)).parent.name, None
    except GatedRepoError:
        raise HubDataError(f"data set {name!r}: {repo} is gated on the hub; accept its terms on "
                           f"https://huggingface.co/datasets/{repo} and set HF_TOKEN to a token of that account") from None
    except RevisionNotFoundError:
        raise HubDataError(f"data set {name!r}: {repo} has no revision {revision!r} (hub.revision: a branch, tag or "
                           "commit hash)") from None
    except RepositoryNotFoundError:
        raise HubDataError(f"data set {name!r}: {repo} does not exist on the hub, or it is private or gated: check "
                           "hub.repo, and if you have access set HF_TOKEN") from None
    except EntryNotFoundError:  # a repo without a card: datasets infers its layout from file names
        return HfApi().dataset_info(repo, revision=revision).sha, None


def _loading_script(err: BaseException) -> bool:
    """Whether `datasets` refused a repo because a loading script defines it."""
    return "scripts are no longer supported" in str(err)


def retrying(name: str, what: str, action: Callable[[], Any]) -> Any:
    """action()'s result (a hub lookup or download for data set `name`, `what` naming it in messages), retrying
    transient failures (ptft.hubclient.transient) DOWNLOAD_ATTEMPTS times in all with a growing wait, from
    RETRY_WAIT_S. Raises HubDataError for a repo defined by a loading script (naming the hub's parquet conversion as
    the fix), and for any other failure that is not transient or outlasts the attempts; a HubDataError of action's
    own passes unchanged."""

    def is_transient(err: Exception) -> bool:
        return not isinstance(err, HubDataError) and not _loading_script(err) and hubclient.transient(err)

    def on_retry(err: Exception, attempt: int, wait: float) -> None:
        _log(f"{name}: {what}: {hubclient.summary(err)}; retrying in {wait:.0f} s "
             f"(attempt {attempt + 1} of {DOWNLOAD_ATTEMPTS})")

    def on_failure(err: Exception, attempt: int, transient: bool) -> None:
        if isinstance(err, HubDataError):
            return
        if _loading_script(err):
            raise HubDataError(
                f"data set {name!r}: {what} is defined by a loading script, which datasets no longer runs ({err}); "
                "the hub's own parquet conversion of it is the branch refs/convert/parquet: set hub.revision: "
                "refs/convert/parquet and hub.data_dir to its config folder there (e.g. default), hub.config: null"
            ) from None
        outcome = "download failed" if transient else "could not be loaded"
        raise HubDataError(f"data set {name!r}: {what} {outcome} after {attempt} attempt(s): "
                           f"{hubclient.summary(err)}") from err

    return hubclient.retrying(action, attempts=DOWNLOAD_ATTEMPTS, wait_s=RETRY_WAIT_S, is_transient=is_transient,
                              on_retry=on_retry, on_failure=on_failure)


def _config_names(source: str, revision: str | None) -> list[str]:
    import datasets

    try:
        return sorted(datasets.get_dataset_config_names(source, revision=revision))
    except Exception:  # only for an error message, which says enough without the list
        return []


def split_data_files(name: str, repo: str, config: str | None, revision: str | None, cache_dir: Path,
                     data_dir: str | None = None, source: str | None = None) -> dict[str, list[str]]:
    """The data files of each split of a hub data set's config at a revision, as `datasets` resolves them from the
    README's `configs:` or the file names (hub metadata only: no data file is downloaded).

    Raises HubDataError when the repo has no such config; `datasets`' own error for a loading-script repo
    (run it through `retrying` for the wording that names the fix).
    """
    import datasets

    source = source or repo
    try:
        builder = datasets.load_dataset_builder(source, config, revision=revision, cache_dir=str(cache_dir),
                                                data_dir=data_dir)
    except ValueError as err:
        if "BuilderConfig" not in str(err) and "config" not in str(err).lower():
            raise
        raise HubDataError(f"data set {name!r}: {repo} has no config {config!r}; available configs: "
                           f"{_config_names(source, revision)}") from None
    return {str(split): list(files) for split, files in (builder.config.data_files or {}).items()}


def no_split_message(name: str, repo: str, config: str | None, split: str, files: Mapping[str, Any]) -> str:
    return (f"data set {name!r}: {repo} (config {config!r}) has no split {split!r}; "
            f"available splits: {sorted(files) if files else []}")


def load_split(name: str, repo: str, config: str | None, split: str, revision: str, cache_dir: Path,
               snapshot: Path | None = None, data_dir: str | None = None) -> Any:
    """One split of a hub data set at a commit as a `datasets.Dataset`.

    Only that split's files are downloaded (the builder's data files of the split, from the README's
    configs), so an out-of-domain test split does not fetch a large training split. Offline, `snapshot`
    is the hub-cache folder of the commit and the same README configs are read from there.
    """
    import datasets

    source = str(snapshot) if snapshot else repo
    pinned = None if snapshot else revision
    what = f"{repo} (config {config!r}, split {split!r}, commit {revision})"

    def load():
        files = split_data_files(name, repo, config, pinned, cache_dir, data_dir, source=source)
        if split not in files:
            if snapshot:
                raise _offline_error(name, repo, f"config {config!r} split {split!r}", snapshot)
            raise HubDataError(no_split_message(name, repo, config, split, files))
        return datasets.load_dataset(source, config, split=split, revision=pinned, cache_dir=str(cache_dir),
                                     data_dir=data_dir, data_files={split: list(files[split])})

    if snapshot:
        def load_offline():
            try:
                return load()
            except (datasets.exceptions.DataFilesNotFoundError, FileNotFoundError, ValueError) as err:
                # The snapshot holds only the files earlier runs downloaded; this split's are not among them.
                raise _offline_error(name, repo, f"config {config!r} split {split!r} ({hubclient.summary(err)})",
                                     snapshot) from None

        return retrying(name, what, load_offline)

    return retrying(name, what, load)


# --------------------------------------------------------------------------------------------------- main


LOCK_ENV = "PTFT_REVISIONS_LOCK"  # the study's revisions lock, set by rules/common.smk for the jobs it starts


def locked_revision(name: str, hub: Mapping[str, Any], lock_file: Path | None = None) -> tuple[str, Path | None]:
    """(commit, hub-cache snapshot or None) of data.datasets.<name>.hub: the commit the revisions lock pins (added to
    it on first use), read as pin_revision reads any revision. lock_file defaults to $PTFT_REVISIONS_LOCK; with
    neither the revision is resolved unpinned. Raises HubDataError as pin_revision does, HubError for a lock entry
    made for another repo or revision."""
    from ptft.hub.lock import pin_dataset

    repo, requested = hub["repo"], str(hub.get("revision") or "main")
    lock_file = lock_file or os.environ.get(LOCK_ENV)
    if lock_file:
        entry = pin_dataset(Path(lock_file), name, dict(hub), lambda revision: retrying(
            name, f"{repo} revision {revision!r}", lambda: pin_revision(name, repo, revision))[0])  # fmt: skip
        if entry["commit"] != requested:
            _log(f"{name}: {repo} revision {requested} is pinned to commit {entry['commit']} in {lock_file}")
        requested = entry["commit"]
    return retrying(name, f"{repo} revision {requested!r}", lambda: pin_revision(name, repo, requested))


def prepare_hub_dataset(name: str, spec: Mapping[str, Any], seed: int, out_dir: Path,
                        lock_file: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Write out_dir/train.jsonl, test.jsonl, card.json and provenance.json from the hub, all at once; return the card.
    The set is read at the commit the revisions lock (lock_file, else $PTFT_REVISIONS_LOCK) pins (locked_revision)."""
    discard_provenance(out_dir)  # a failure below must not leave the previous run's record
    problems = hub_spec_problems(name, spec)
    if problems:
        raise HubDataError("; ".join(problems))
    family = get_task(spec["task"])
    hub = spec["hub"]
    repo, config = hub["repo"], hub.get("config")
    requested = str(hub.get("revision") or "main")
    commit, snapshot = locked_revision(name, hub, lock_file)
    _log(f"{name}: {repo} revision {requested} is commit {commit}, read from "
         f"{f'the hub cache {snapshot}' if snapshot else 'the hub'}")
    sizes: dict[str, dict[str, Any]] = {}  # per role; out: its records; dropped: what to_records dropped
    out: dict[str, list[dict[str, str]]] = {}
    dropped, loaded = {}, {}  # loaded: split -> datasets.Dataset, each split loaded once
    test_rows: frozenset[int] = frozenset()
    for role in ("test", "train"):  # test first: a training set drawn from the same split must avoid its rows
        split = spec["splits"].get(role)
        if split is None:  # a set used only for fine-tuning (Tulu) has no test split of its own
            out[role], sizes[role] = [], {"source_split": None, "rows_in_split": 0, "rows_sampled": 0, "rows_written": 0}
            continue
        if split not in loaded:
            _log(f"{name}: loading {repo} config {config!r} split {split!r}")
            loaded[split] = load_split(name, repo, config, split, commit, hubclient.datasets_cache_dir(), snapshot,
                                       hub.get("data_dir"))
            check_columns(name, split, loaded[split].column_names, spec["fields"])
        dataset = loaded[split]
        exclude = test_rows if role == "train" and split == spec["splits"].get("test") else frozenset()
        n = spec.get(f"n_{role}")
        if role == "train" and spec.get("train_fraction") is not None:
            # the authors' process_tulu_v2(percentage): int(len(train) * percentage) rows after shuffle(seed=42)
            # (open_instruct/format_generalization.py lines 813-815)
            n = int((len(dataset) - len(exclude)) * float(spec["train_fraction"]))
        try:
            sample, indices = subsample(dataset, n, seed, exclude)
        except ValueError as err:
            raise HubDataError(f"data set {name!r}: n_{role}: split {split!r} of {repo} has {len(dataset)} rows"
                               f"{f' ({len(exclude)} of them test rows)' if exclude else ''}: {err}; lower n_{role} or "
                               "set it to null (all rows)") from None
        if role == "test":
            test_rows = frozenset(indices)
        records, dropped[role] = to_records(name, split, sample.to_list(), indices, spec, family)
        if not records:
            raise HubDataError(f"data set {name!r}: no {role} records left from split {split!r} "
                               f"(dropped: {dropped[role]})")
        out[role] = records
        sizes[role] = {"source_split": split, "rows_in_split": len(dataset), "rows_excluded_as_test": len(exclude),
                       "rows_sampled": len(sample), "rows_written": len(records)}
        _log(f"{name}: {role} = {len(records)} records from {split!r} ({len(dataset)} rows, "
             f"{len(sample)} sampled, dropped {dropped[role] or 'none'})")
    card = hub_dataset_card(name, spec, seed, requested, commit, sizes, dropped, out, family)
    with atomic_dir(out_dir) as tmp:
        for role, rows in out.items():
            write_jsonl(tmp / f"{role}.jsonl", rows)
        write_json(tmp / CARD_FILE, card)
        write_json(tmp / PROVENANCE_FILE, card["provenance"])
    return card


def hub_dataset_card(name: str, spec: Mapping[str, Any], seed: int, requested: str, commit: str,
                     sizes: dict, dropped: dict, splits: dict[str, list[dict[str, str]]],
                     family: TaskFamily) -> dict[str, Any]:
    hub = spec["hub"]
    repo, config = hub["repo"], hub.get("config")
    card: dict[str, Any] = {
        "name": name,
        "task": family.name,
        "source": "hub",
        "hub": {"repo": repo, "config": config, "data_dir": hub.get("data_dir"), "revision_requested": requested,
                "commit": commit, "url": f"https://huggingface.co/datasets/{repo}"},
        "seed": seed,
        "splits": {role: len(rows) for role, rows in splits.items()},
        "sizes": sizes,
        "sampling": "train: Dataset.shuffle(seed=seed).select(range(n_train)) of the source split, the authors' "
        "sample; test: the whole split unless n_test (then the same seeded draw); when both come from one split "
        "the test rows are drawn first and left out of the training draw; ids are "
        "{name}-{source split}-{row index in the source split}",
        "fields": dict(spec["fields"]),
        "dropped_rows": dropped,
    }
    if family.kind == "classification":
        card["labels"] = ({str(k): v for k, v in spec["labels"].items()} if spec.get("labels") is not None
                          else {"label_threshold": spec["label_threshold"],
                                "rule": f"score > {spec['label_threshold']} -> {family.label_words[0]!r}, "
                                        f"else {family.label_words[1]!r}"})
    card.update(target_summary(family, splits))
    if family.name == "instruction":
        card["chat_template"] = {
            "name": spec.get("chat_template", "plain"),
            "prompt": "turns before the last assistant message, each '<|role|>\\n' + content + '\\n', then "
            "'<|assistant|>\\n' (open-instruct's Tulu format without the EOS after earlier assistant turns)",
            "completion": "the last assistant message (no delimiter; fine-tuning appends EOS)",
            "messages": "every turn (role, stripped content): fine-tuning with assistant_turns: all renders them as "
            "open-instruct does, with the loss on every assistant turn and EOS after each",
        }
    note = NOTES.get((repo.rsplit("/", 1)[-1], config))
    if note:
        card["note"] = note
    card["provenance"] = provenance("dataset", {"name": name, "spec": dict(spec)}, seed=seed, hub_commit=card["hub"]["commit"])
    return card
