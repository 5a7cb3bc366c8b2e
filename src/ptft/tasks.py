"""The task families of the study, each defined once: fields, prompt formats, label words, metric, limits.

Data preparation, fine-tuning (which trains on the Default format) and evaluation (which renders every format
through lm-evaluation-harness) all read these definitions; nothing else spells a prompt. The built-in families are
data (task_families.yaml, beside this module); a study config may add its own under `tasks:` in the same shape
(schemas/config.schema.yaml, $defs/task_family), and both go through family_from_definition. Templates are Jinja2
with StrictUndefined, the engine lm-eval renders doc_to_text with.

The three formats are the paper's Table 5, word for word as the authors' released code builds them
(github.com/KaiserWhoLearns/AmuroCharPTFTRelationship, open_instruct/format_generalization.py, including the
curly apostrophe of "Let’s"), with two deliberate differences:
- A template ends at its colon (or "The relation is") and TARGET_DELIMITER adds the space: the authors end the
  prompt with a space and append the target, which gives the same text; ours keeps the space with the target word,
  as a BPE tokenizer sees it in running text and as lm-eval splits context from continuation.
- Their slips are not copied: the missing spaces in "... Answer B: {b}Answer C: ..." and "...{answer}Generate a
  suitable question", and IO prompts that glue context and answers together with no space. Question generation
  takes one `answer` field; a data set with several answer options renders them into it ("Answer A: ... Answer
  B: ...", see the data-set specs) exactly as the authors laid them out, and may give the same options without
  tags in the optional `answers` field, which the IO format shows (the authors' IO has no tags).

Config-defined families reach every job: register_from_config adds them here and exports them in $PTFT_TASKS, which
Snakemake's jobs inherit and this module reads when it is imported.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jinja2
import jinja2.meta

# lm-eval joins context and target with this delimiter and few-shot examples with FEWSHOT_DELIMITER;
# fine-tuning uses the same delimiter so the training text is exactly what evaluation scores.
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
PROMPT_FORMATS = ("default", "instruct", "io")
NATIVE_FORMAT = "native"  # prompt_format of a result row scored with lm-eval's own task definition (ptft.evaluate.native)
TRAINING_PROMPT_FORMAT = "default"  # every family has it: fine-tuning trains on it
BUILTIN_FILE = Path(__file__).with_name("task_families.yaml")
TASKS_ENV = "PTFT_TASKS"  # the config's own families (JSON: name -> definition), for the jobs Snakemake starts
_ENGINE = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
# "{field}" outside "{{ }}": a str.format placeholder, which Jinja2 would print as it stands
_FORMAT_PLACEHOLDER = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")
# open-instruct's Tulu chat format (the authors' open_instruct/finetune.py lines 323-333), which OLMo's instruction
# tuning used: each turn is its role cue + content + "\n"; data preparation and fine-tuning both render it from here.
CHAT_ROLE_PREFIX = {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n"}


@functools.lru_cache(maxsize=None)
def _template(source: str) -> jinja2.Template:
    return _ENGINE.from_string(source)


class TaskDefinitionError(ValueError):
    """A task family's definition is unusable: the message names the task, the key (and format) and what was expected."""


@dataclass(frozen=True)
class TaskFamily:
    """One task family: the record fields it reads, how each prompt format renders them, and how it is scored.

    formats: prompt_format -> Jinja2 template over input_fields and optional_fields (no trailing space); metric: a
    name of ptft.metrics.METRICS that scores this kind. Raises TaskDefinitionError naming the task, format and field.
    """

    name: str
    kind: str  # "generation" | "classification"
    input_fields: tuple[str, ...]
    target_field: str
    formats: Mapping[str, str]
    metric: str  # a ptft.metrics name: "accuracy" | "f1" | "rougeL" | "exact_match"
    label_words: tuple[str, ...] = ()
    max_new_tokens: int = 5
    # ptft's default; the paper stops only at EOS or max_new_tokens (evaluate.stop_sequences switches it per family)
    stop: tuple[str, ...] = field(default=("\n",))
    # what joins prompt and target, in training and in evaluation (lm-eval's target_delimiter)
    target_delimiter: str = TARGET_DELIMITER
    # optional record field -> the input field that stands in for it when a record lacks it (or holds null)
    optional_fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ptft.metrics import METRICS

        where = f"task {self.name!r}"
        if self.kind not in ("generation", "classification"):
            raise TaskDefinitionError(f"{where}: kind must be generation or classification, got {self.kind!r}")
        unknown = sorted(set(self.formats) - set(PROMPT_FORMATS))
        if unknown or TRAINING_PROMPT_FORMAT not in self.formats:
            raise TaskDefinitionError(
                f"{where}: formats must include {TRAINING_PROMPT_FORMAT!r} (the training format) and be among "
                f"{PROMPT_FORMATS}, got {tuple(self.formats)}"
            )
        for optional, fallback in self.optional_fields.items():
            if fallback not in self.input_fields:
                raise TaskDefinitionError(f"{where}: optional field {optional!r} falls back to {fallback!r}, not an input field")
        known = set(self.input_fields) | set(self.optional_fields)
        for fmt, source in self.formats.items():
            try:
                used = jinja2.meta.find_undeclared_variables(_ENGINE.parse(source))
            except jinja2.TemplateSyntaxError as err:
                raise TaskDefinitionError(f"{where}, format {fmt!r}: template {source!r} is not valid Jinja2 ({err})") from None
            if not used <= known:
                raise TaskDefinitionError(
                    f"{where}, format {fmt!r}: template uses {sorted(used - known)}, which are not input fields "
                    f"{self.input_fields} or optional fields {tuple(self.optional_fields)}"
                )
            placeholders = _FORMAT_PLACEHOLDER.findall(source)
            if placeholders:
                raise TaskDefinitionError(
                    f"{where}, format {fmt!r}: {['{' + p + '}' for p in placeholders]} is str.format syntax; "
                    f"templates are Jinja2: write {{{{ {placeholders[0]} }}}}"
                )
        if (self.kind == "classification") != bool(self.label_words):
            raise TaskDefinitionError(f"{where}: label_words are required for classification and only there")
        if self.metric not in METRICS:
            raise TaskDefinitionError(f"{where}: metric {self.metric!r} is not one of {sorted(METRICS)} (ptft.metrics)")
        if self.kind not in METRICS[self.metric].kinds:
            raise TaskDefinitionError(
                f"{where}: metric {self.metric!r} scores {' or '.join(METRICS[self.metric].kinds)} tasks, "
                f"not {self.kind}; use one of {sorted(m for m, v in METRICS.items() if self.kind in v.kinds)}"
            )

    def render(self, record: Mapping[str, Any], prompt_format: str) -> str:
        """The prompt (context) for one record in one format, without the target.

        Raises KeyError naming the format (unknown to the family) or the fields the record lacks."""
        try:
            source = self.formats[prompt_format]
        except KeyError:
            raise KeyError(
                f"task {self.name!r} has no prompt format {prompt_format!r}; known: {tuple(self.formats)}"
            ) from None
        missing = [f for f in self.input_fields if f not in record]
        if missing:
            raise KeyError(f"task {self.name!r}: record {record.get('id', '?')!r} lacks fields {missing}")
        values = {f: record[f] for f in self.input_fields}
        for optional, fallback in self.optional_fields.items():
            value = record.get(optional)
            values[optional] = record[fallback] if value is None else value
        return _template(source).render(**values)

    def target(self, record: Mapping[str, Any]) -> str:
        """The gold completion text (a label word for classification)."""
        value = record[self.target_field]
        if self.label_words and value not in self.label_words:
            raise ValueError(
                f"task {self.name!r}: record {record.get('id', '?')!r} has label {value!r}, expected one of {self.label_words}"
            )
        return value

    def completion(self, record: Mapping[str, Any]) -> str:
        """What the model is trained to produce after the prompt (the delimiter plus the target; EOS is added by the trainer)."""
        return self.target_delimiter + self.target(record)

    def definition(self) -> dict[str, Any]:
        """The family as a config `tasks:` entry (JSON-able, every mapping's keys sorted: Snakemake params compare by
        repr, so reordering keys in a config file must not rerun jobs)."""
        out = asdict(self)
        del out["name"]
        out = {k: (list(v) if isinstance(v, tuple) else dict(sorted(v.items())) if isinstance(v, Mapping) else v)
               for k, v in out.items()}
        return {k: out[k] for k in sorted(out)}


def _definition_schema() -> dict[str, Any]:
    from ptft.config import load_schema

    schema = load_schema()
    return {"$defs": schema["$defs"], **schema["$defs"]["task_family"]}


def family_from_definition(name: str, definition: Mapping[str, Any]) -> TaskFamily:
    """A TaskFamily from one `tasks:` entry (the built-ins' entries in task_families.yaml too): validated against the
    schema's $defs/task_family, its defaults filled from there, then checked as a whole (templates included).
    Raises TaskDefinitionError naming the task and the key."""
    import jsonschema

    from ptft.config import fill_defaults

    schema = _definition_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(dict(definition)), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"tasks.{name}.{'.'.join(map(str, e.absolute_path)) or '<entry>'}: {e.message}" for e in errors[:5]]
        raise TaskDefinitionError("; ".join(lines))
    full = fill_defaults(dict(definition), schema)
    return TaskFamily(
        name=name,
        kind=full["kind"],
        input_fields=tuple(full["input_fields"]),
        target_field=full["target_field"],
        formats=dict(full["formats"]),
        metric=full["metric"],
        label_words=tuple(full["label_words"]),
        max_new_tokens=int(full["max_new_tokens"]),
        stop=tuple(full["stop"]),
        target_delimiter=full["target_delimiter"],
        optional_fields=dict(full["optional_fields"]),
    )


def _builtin_families() -> dict[str, TaskFamily]:
    import yaml

    with open(BUILTIN_FILE, encoding="utf-8") as fh:
        return {name: family_from_definition(name, d) for name, d in yaml.safe_load(fh).items()}


# The built-in families, in their file's order (analysis orders tables by it).
BUILTIN_TASKS: dict[str, TaskFamily] = _builtin_families()
# Every family this process knows: the built-ins and the config's own (register_from_config, $PTFT_TASKS).
TASKS: dict[str, TaskFamily] = dict(BUILTIN_TASKS)


def register(definitions: Mapping[str, Mapping[str, Any]]) -> dict[str, TaskFamily]:
    """Add config-defined families (name -> `tasks:` entry) to TASKS and export them in $PTFT_TASKS for the jobs this
    process starts; return them. A name of a built-in family is an error (no overrides: the built-ins are the
    paper's definitions), as is a bad definition (TaskDefinitionError naming task, key or format and field)."""
    clash = sorted(set(definitions) & set(BUILTIN_TASKS))
    if clash:
        raise TaskDefinitionError(
            f"tasks: {clash} are built-in task families (src/ptft/task_families.yaml) and cannot be redefined; "
            "give your family another name"
        )
    families = {name: family_from_definition(name, d) for name, d in definitions.items()}
    for name in [n for n in TASKS if n not in BUILTIN_TASKS]:
        del TASKS[name]
    TASKS.update(families)
    os.environ[TASKS_ENV] = json.dumps({n: f.definition() for n, f in sorted(families.items())}, sort_keys=True)
    return families


def register_from_config(config: Mapping[str, Any]) -> dict[str, TaskFamily]:
    """register(config["tasks"]) (none when the config has no `tasks:`)."""
    return register(config.get("tasks") or {})


# What of a family each job kind reads, for its Snakemake params (the rerun trigger): data preparation the fields and
# labels; fine-tuning also the training format's template and the delimiter; evaluation everything.
_USES = {
    "data": ("kind", "input_fields", "target_field", "label_words", "optional_fields"),
    "finetune": ("kind", "input_fields", "target_field", "label_words", "optional_fields", "target_delimiter", "formats"),
}


def family_science(name: str, use: str = "evaluate") -> dict[str, Any]:
    """The part of family `name`'s definition a job of kind `use` ("data", "finetune", "evaluate") reads, keys
    sorted: what its params carry, so that editing a template reruns exactly the jobs that render it (fine-tuning
    renders only the training format). KeyError for an unknown family or use."""
    definition = get_task(name).definition()
    if use == "evaluate":
        return definition
    if use not in _USES:
        raise KeyError(f"unknown job kind {use!r}; expected data, finetune or evaluate")
    part = {key: definition[key] for key in _USES[use]}
    if "formats" in part:
        part["formats"] = {TRAINING_PROMPT_FORMAT: part["formats"][TRAINING_PROMPT_FORMAT]}
    return part


if os.environ.get(TASKS_ENV):
    register(json.loads(os.environ[TASKS_ENV]))


def get_task(name: str) -> TaskFamily:
    """The family of that name (built-in or registered); KeyError naming it and the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; known: {sorted(TASKS)}") from None


def stop_in_references(
    eval_set: str, family: TaskFamily, stops: Sequence[str], records: Iterable[Mapping[str, Any]]
) -> str | None:
    """Why a generation eval set cannot be scored with these stop strings, or None: the first record whose reference
    (family.target) contains one of them. Generation ends at a stop string, so such a reference can never be
    produced whole: a perfect copy of a multi-line CNN/DailyMail highlight, cut at its first "\\n", scores ROUGE-L
    0.533. The message names the eval set, the record id, the stop string and the knob (evaluate.stop_sequences)."""
    if family.kind != "generation" or not stops:
        return None
    for i, record in enumerate(records):
        reference = family.target(record)
        hit = next((stop for stop in stops if stop in reference), None)
        if hit is not None:
            return (
                f"eval set {eval_set!r}: reference of record {record.get('id', i)!r} contains the stop string {hit!r}, "
                f"so no generation can reproduce it; set evaluate.stop_sequences.{family.name} to strings its "
                f"references never contain (the paper: [], EOS or max_new_tokens)"
            )
    return None
