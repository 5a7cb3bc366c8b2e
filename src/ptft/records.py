"""Rows of a hub or local data set as records of a task family's fields (ptft.hubdata and ptft.localdata share
this): which columns a field reads, the label word of a raw label, conversations rendered in the plain chat template,
the authors' seeded training sample, and the checks of a spec's task, fields and labels.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Mapping, Sequence

from ptft.tasks import CHAT_ROLE_PREFIX, TaskFamily, get_task


# The plain chat template: open-instruct's Tulu format, which is what OLMo's instruction tuning used. Base
# checkpoints have no chat template of their own, and a data set is prepared once for every model.
PLAIN_ROLE_PREFIX = CHAT_ROLE_PREFIX


class HubDataError(RuntimeError):
    """A hub (or local) data set cannot be prepared: it, its config or split does not exist, is gated, will not
    download, or its rows do not fit its fields and labels. Raised here by the record checks local sets share; the
    name (ptft.hubdata.HubDataError as well) is kept from when they lived in ptft.hubdata."""


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
