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

import math
import re
import string
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ptft import hubclient
from ptft.data.card import CARD_FILE, target_summary  # the same card name and target summary as generated sets
from ptft.provenance import PROVENANCE_FILE, atomic_dir, provenance, write_json, write_jsonl
from ptft.tasks import CHAT_ROLE_PREFIX, TaskFamily, get_task

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

# The plain chat template: open-instruct's Tulu format, which is what OLMo's instruction tuning used. Base
# checkpoints have no chat template of their own, and a data set is prepared once for every model.
PLAIN_ROLE_PREFIX = CHAT_ROLE_PREFIX


class HubDataError(RuntimeError):
    """A hub data set cannot be prepared: it, its config or split does not exist, is gated, or will not download."""


def _log(message: str) -> None:
    print(f"[hubdata] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- spec checks


def template_columns(source: str) -> list[str]:
    """The columns a field mapping reads: the column itself, or the roots of a format string's fields."""
    if "{" not in source:
        return [source]
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(source) if f is not None]
    except ValueError as err:
        raise ValueError(f"format string {source!r} is malformed ({err})") from None
    roots = [re.split(r"[.\[]", n, maxsplit=1)[0] for n in names]
    if not all(roots):
        raise ValueError(f"format string {source!r} has an empty field; name a column, e.g. '{{Answer[0]}}'")
    return list(dict.fromkeys(roots))


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


def field_problems(name: str, spec: Mapping[str, Any]) -> list[str]:
    """What is wrong with a hub or local data set's task, fields and labels (empty when they are usable)."""
    where = f"data.datasets.{name}"
    problems = []
    try:
        family = get_task(spec.get("task"))
    except KeyError as err:
        return [f"{where}.task: {err.args[0]}"]
    fields = spec.get("fields") or {}
    wanted = (*family.input_fields, family.target_field)
    missing = [f for f in wanted if f not in fields]
    if missing:
        problems.append(f"{where}.fields must map every field of task {family.name!r} {list(wanted)} to a column "
                        f"or format string; missing {missing}")
    extra = sorted(set(fields) - set(wanted) - set(family.optional_fields))
    if extra:
        problems.append(f"{where}.fields: {extra} are not fields of task {family.name!r}; expected {list(wanted)}"
                        f"{f' (optional: {list(family.optional_fields)})' if family.optional_fields else ''}")
    for field_name, source in fields.items():
        try:
            template_columns(str(source))
        except ValueError as err:
            problems.append(f"{where}.fields.{field_name}: {err}")
    labels, threshold = spec.get("labels"), spec.get("label_threshold")
    if family.kind == "classification":
        if "{" in str(fields.get(family.target_field, "")):
            problems.append(f"{where}.fields.{family.target_field} must name the column of raw labels, not a format string")
        if (labels is None) == (threshold is None):
            problems.append(f"{where}: a classification set needs exactly one of labels (raw value -> label word) "
                            f"or label_threshold (numeric score); got {'both' if labels is not None else 'neither'}")
        if labels is not None:
            wrong = sorted({str(w) for w in labels.values()} - set(family.label_words))
            if wrong:
                problems.append(f"{where}.labels maps to {wrong}, which are not label words of task "
                                f"{family.name!r} {list(family.label_words)}")
        if threshold is not None and len(family.label_words) != 2:
            problems.append(f"{where}.label_threshold needs a task with two label words (above -> first, else "
                            f"second); task {family.name!r} has {list(family.label_words)}")
    elif labels is not None or threshold is not None:
        problems.append(f"{where}: labels / label_threshold are only for classification tasks; "
                        f"task {family.name!r} is {family.kind}")
    return problems


# ----------------------------------------------------------------------------------------- rows -> records


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m and "content" in m
                                                           for m in value)


def _last_assistant(messages: Sequence[Mapping[str, str]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return i
    return None


def render_conversation_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The turns before the last assistant message in the plain (Tulu) template, ending with the assistant cue.

    Earlier assistant turns are context here; open-instruct puts the tokenizer's EOS after each of them,
    which a model-independent data set cannot know, so they end with a newline only.
    """
    last = _last_assistant(messages)
    if last is None:
        return ""
    parts = []
    for message in messages[:last]:
        try:
            prefix = PLAIN_ROLE_PREFIX[message["role"]]
        except KeyError:
            raise ValueError(f"message role {message['role']!r} is not one of {sorted(PLAIN_ROLE_PREFIX)}") from None
        parts.append(prefix + (message["content"] or "").strip() + "\n")
    return "".join(parts) + PLAIN_ROLE_PREFIX["assistant"]


def render_conversation_completion(messages: Sequence[Mapping[str, str]]) -> str:
    last = _last_assistant(messages)
    return "" if last is None else (messages[last]["content"] or "").strip()


def conversation_turns(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The conversation as role/content turns (content stripped, as open-instruct renders it), kept in the record's
    `messages` field so that fine-tuning can put the loss on every assistant turn (finetune assistant_turns: all).
    Raises ValueError on a role outside the plain template's."""
    turns = []
    for message in messages:
        if message["role"] not in PLAIN_ROLE_PREFIX:
            raise ValueError(f"message role {message['role']!r} is not one of {sorted(PLAIN_ROLE_PREFIX)}")
        turns.append({"role": str(message["role"]), "content": (message["content"] or "").strip()})
    return turns


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class _Unrenderable(Exception):
    """A format string that does not apply to a row (e.g. {Answer[0]} of an empty list)."""


def field_text(source: str, row: Mapping[str, Any], field_name: str, target_field: str) -> str:
    """One record field from a row: a column's value, or a format string over columns.

    A column of chat messages (lists of role/content) gives the prompt turns for the input field and the
    last assistant message for the target field.
    """
    if "{" in source:
        try:
            return string.Formatter().vformat(source, (), {k: "" if v is None else v for k, v in row.items()})
        except (IndexError, KeyError, TypeError) as err:
            raise _Unrenderable(f"{type(err).__name__}: {err}") from None
    value = row[source]
    if _is_conversation(value):
        if field_name == target_field:
            return render_conversation_completion(value)
        return render_conversation_prompt(value)
    return _text(value)


def label_word(raw: Any, spec: Mapping[str, Any], family: TaskFamily) -> str | None:
    """The label word of a raw label (None when it has none: the caller names the row)."""
    threshold = spec.get("label_threshold")
    if threshold is not None:
        try:
            score = float(raw)
        except (TypeError, ValueError):
            return None
        if math.isnan(score):
            return None
        return family.label_words[0] if score > threshold else family.label_words[1]
    mapping = {str(k): str(v) for k, v in spec["labels"].items()}  # YAML keys may be ints or strings
    return mapping.get(_text(raw))


def to_records(name: str, split: str, rows: Sequence[Mapping[str, Any]], indices: Sequence[int],
               spec: Mapping[str, Any], family: TaskFamily) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Records (id + the family's fields) of the rows, and how many rows were dropped, by reason.

    A row is dropped when its target is empty (nothing to learn or score) or a format string does not
    apply to it; an empty input is kept, as the authors kept it (SciQ has questions without support).
    `indices` are the rows' positions in the source split, so an id names the hub row it came from.
    """
    fields = spec["fields"]
    records, dropped = [], Counter()
    for row, index in zip(rows, indices):
        record = {"id": f"{name}-{split}-{index}"}
        reason = None
        for field_name, source in fields.items():
            if family.kind == "classification" and field_name == family.target_field:
                raw = row[source]
                word = label_word(raw, spec, family)
                if word is None:
                    expected = (f"a number (label_threshold {spec['label_threshold']})"
                                if spec.get("label_threshold") is not None
                                else f"one of {sorted(str(k) for k in spec['labels'])}")
                    raise HubDataError(f"data set {name!r}: {split} row {index} has label {raw!r} in column "
                                       f"{source!r}, expected {expected}")
                record[field_name] = word
                continue
            try:
                text = field_text(str(source), row, field_name, family.target_field)
            except _Unrenderable:
                reason = reason or f"{field_name}: format string does not apply"
                continue
            if field_name == family.target_field and not text.strip():
                reason = reason or f"{field_name}: empty"
            record[field_name] = text
            if "{" not in str(source) and _is_conversation(row[source]) and "messages" not in record:
                record["messages"] = conversation_turns(row[source])
        if reason:
            dropped[reason] += 1
            continue
        records.append(record)
    return records, dict(dropped)


def check_columns(name: str, split: str, columns: Sequence[str], fields: Mapping[str, str]) -> None:
    for field_name, source in fields.items():
        unknown = [c for c in template_columns(str(source)) if c not in columns]
        if unknown:
            raise HubDataError(f"data set {name!r}: fields.{field_name} = {source!r} reads column(s) {unknown}, "
                               f"which split {split!r} lacks; its columns are {list(columns)}")


def subsample(dataset: Any, n: int | None, seed: int, exclude: frozenset[int] = frozenset()) -> tuple[Any, list[int]]:
    """The authors' sample: `dataset.shuffle(seed=seed).select(range(n))`, with each row's source index.

    `exclude` leaves rows out first (the test rows, when training and test come from the same split).
    """
    indexed = dataset.add_column("__ptft_index__", list(range(len(dataset))))
    if exclude:
        indexed = indexed.select([i for i in range(len(dataset)) if i not in exclude], keep_in_memory=True)
    if n is not None:
        if n > len(indexed):
            raise ValueError(f"n = {n} but only {len(indexed)} rows are left to draw from")
        indexed = indexed.shuffle(seed=seed, keep_in_memory=True).select(range(n), keep_in_memory=True)
    indices = indexed["__ptft_index__"]
    return indexed.remove_columns("__ptft_index__"), list(indices)


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


def prepare_hub_dataset(name: str, spec: Mapping[str, Any], seed: int, out_dir: Path) -> dict[str, Any]:
    """Write out_dir/train.jsonl, test.jsonl, card.json and provenance.json from the hub, all at once; return the card."""
    problems = hub_spec_problems(name, spec)
    if problems:
        raise HubDataError("; ".join(problems))
    family = get_task(spec["task"])
    hub = spec["hub"]
    repo, config = hub["repo"], hub.get("config")
    requested = str(hub.get("revision") or "main")
    cache_dir = hubclient.datasets_cache_dir()
    commit, snapshot = retrying(name, f"{repo} revision {requested!r}", lambda: pin_revision(name, repo, requested))
    where = f"the hub cache {snapshot}" if snapshot else "the hub"
    _log(f"{name}: {repo} revision {requested} is commit {commit}, read from {where}")
    sizes: dict[str, dict[str, Any]] = {}
    out: dict[str, list[dict[str, str]]] = {}
    dropped: dict[str, dict[str, int]] = {}
    loaded: dict[str, Any] = {}
    test_rows: frozenset[int] = frozenset()
    for role in ("test", "train"):  # test first: a training set drawn from the same split must avoid its rows
        split = spec["splits"].get(role)
        if split is None:  # a set used only for fine-tuning (Tulu) has no test split of its own
            out[role], sizes[role] = [], {"source_split": None, "rows_in_split": 0, "rows_sampled": 0, "rows_written": 0}
            continue
        if split not in loaded:
            _log(f"{name}: loading {repo} config {config!r} split {split!r}")
            loaded[split] = load_split(name, repo, config, split, commit, cache_dir, snapshot, hub.get("data_dir"))
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
