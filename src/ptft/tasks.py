"""The task families of the study, each defined once: fields, prompt formats, label words, metric, limits.

Data generation, fine-tuning (which trains on the Default format) and evaluation (which renders every
format through lm-evaluation-harness) all read these definitions; nothing else spells a prompt.

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
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Mapping

# lm-eval joins context and target with this delimiter and few-shot examples with FEWSHOT_DELIMITER;
# fine-tuning uses the same delimiter so the training text is exactly what evaluation scores.
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
PROMPT_FORMATS = ("default", "instruct", "io")
# open-instruct's Tulu chat format (the authors' open_instruct/finetune.py lines 323-333), which OLMo's instruction
# tuning used: each turn is its role cue + content + "\n"; data preparation and fine-tuning both render it from here.
CHAT_ROLE_PREFIX = {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n"}


@dataclass(frozen=True)
class TaskFamily:
    """One task family: the record fields it reads, how each prompt format renders them, and how it is scored."""

    name: str
    kind: str  # "generation" | "classification"
    input_fields: tuple[str, ...]
    target_field: str
    formats: Mapping[str, str]  # prompt_format -> template over input_fields (no trailing space)
    metric: str  # "rougeL" | "accuracy"
    label_words: tuple[str, ...] = ()
    max_new_tokens: int = 5
    # ptft's default; the paper stops only at EOS or max_new_tokens (evaluate.stop_sequences switches it per family)
    stop: tuple[str, ...] = field(default=("\n",))
    # what joins prompt and target, in training and in evaluation (lm-eval's target_delimiter)
    target_delimiter: str = TARGET_DELIMITER
    # optional record field -> the input field that stands in for it when a record lacks it (or holds null)
    optional_fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("generation", "classification"):
            raise ValueError(f"task {self.name!r}: kind must be generation or classification, got {self.kind!r}")
        if set(self.formats) != set(PROMPT_FORMATS):
            raise ValueError(f"task {self.name!r}: formats must be exactly {PROMPT_FORMATS}, got {tuple(self.formats)}")
        for fmt, template in self.formats.items():
            used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            known = set(self.input_fields) | set(self.optional_fields)
            if not used <= known:
                raise ValueError(
                    f"task {self.name!r}, format {fmt!r}: template uses {sorted(used - known)}, "
                    f"which are not input fields {self.input_fields} or optional fields {tuple(self.optional_fields)}"
                )
        for optional, fallback in self.optional_fields.items():
            if fallback not in self.input_fields:
                raise ValueError(f"task {self.name!r}: optional field {optional!r} falls back to {fallback!r}, not an input field")
        if (self.kind == "classification") != bool(self.label_words):
            raise ValueError(f"task {self.name!r}: label_words are required for classification and only there")

    def render(self, record: Mapping[str, str], prompt_format: str) -> str:
        """The prompt (context) for one record in one format, without the target."""
        try:
            template = self.formats[prompt_format]
        except KeyError:
            raise KeyError(f"task {self.name!r} has no prompt format {prompt_format!r}; known: {PROMPT_FORMATS}") from None
        missing = [f for f in self.input_fields if f not in record]
        if missing:
            raise KeyError(f"task {self.name!r}: record {record.get('id', '?')!r} lacks fields {missing}")
        values = {f: record[f] for f in self.input_fields}
        for optional, fallback in self.optional_fields.items():
            value = record.get(optional)
            values[optional] = record[fallback] if value is None else value
        return template.format(**values)

    def target(self, record: Mapping[str, str]) -> str:
        """The gold completion text (a label word for classification)."""
        value = record[self.target_field]
        if self.label_words and value not in self.label_words:
            raise ValueError(
                f"task {self.name!r}: record {record.get('id', '?')!r} has label {value!r}, expected one of {self.label_words}"
            )
        return value

    def completion(self, record: Mapping[str, str]) -> str:
        """What the model is trained to produce after the prompt (the delimiter plus the target; EOS is added by the trainer)."""
        return self.target_delimiter + self.target(record)


TASKS: dict[str, TaskFamily] = {
    t.name: t
    for t in (
        TaskFamily(
            name="summarisation",
            kind="generation",
            input_fields=("document",),
            target_field="summary",
            formats={
                "default": "### Input: {document}\n ### Summary:",
                "instruct": "Please read the following text: {document} Provide a summary:",
                "io": "{document}",
            },
            metric="rougeL",
            max_new_tokens=60,
        ),
        TaskFamily(
            name="question_generation",
            kind="generation",
            input_fields=("context", "answer"),
            target_field="question",
            formats={
                "default": "### Input: {context}\n ### Answer: {answer}\n ### Question:",
                "instruct": "Given the context: {context} And the answer: {answer} Generate a suitable question:",
                # IO: the context followed by the bare answers, without "Answer A:" tags (the authors'
                # format_generalization.py line 251: context + answerA + answerB + answerC). A data set gives
                # them in the optional `answers` field; without it IO shows `answer` as the other formats do.
                "io": "{context} {answers}",
            },
            metric="rougeL",
            max_new_tokens=60,
            optional_fields={"answers": "answer"},
        ),
        TaskFamily(
            name="nli",
            kind="classification",
            input_fields=("premise", "hypothesis"),
            target_field="label",
            formats={
                "default": "### Input_1: {premise}\n ### Input_2: {hypothesis}\n ### Inference:",
                "instruct": "Consider the following texts: Text 1: {premise} Text 2: {hypothesis} The relation is",
                "io": "{premise} {hypothesis}",
            },
            metric="accuracy",
            label_words=("entailment", "neutral", "contradiction"),
        ),
        TaskFamily(
            name="paraphrase",
            kind="classification",
            input_fields=("sentence1", "sentence2"),
            target_field="label",
            formats={
                "default": "### Input_1: {sentence1}\n ### Input_2: {sentence2}\n ### Paraphrase Classification:",
                "instruct": (
                    "Let’s compare the two sentences: Sentence_1: {sentence1} Sentence_2: {sentence2} "
                    "Are they paraphrasing?:"
                ),
                "io": "{sentence1} {sentence2}",
            },
            metric="accuracy",
            label_words=("yes", "no"),
        ),
        # Instruction tuning (Tulu v2): the prompt is already a rendered conversation, so every format is the
        # prompt itself. The paper does not score instruction tuning in these formats but with lm-eval's own
        # tasks (evaluate.lm_eval_tasks); the formats exist because every family has all three. No delimiter: the
        # answer follows "<|assistant|>\n" directly, as open-instruct renders it (the authors'
        # open_instruct/finetune.py line 330: "<|assistant|>\n" + content.strip() + eos_token + "\n").
        TaskFamily(
            name="instruction",
            kind="generation",
            input_fields=("prompt",),
            target_field="completion",
            formats={"default": "{prompt}", "instruct": "{prompt}", "io": "{prompt}"},
            metric="rougeL",
            max_new_tokens=60,
            target_delimiter="",
        ),
    )
}


def get_task(name: str) -> TaskFamily:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; known: {sorted(TASKS)}") from None
