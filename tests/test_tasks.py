import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ptft.tasks import BUILTIN_TASKS, PROMPT_FORMATS, TASKS, TaskDefinitionError, TaskFamily, get_task, register

NLI = {"id": "x-1", "premise": "Tobin lives in Pelbo.", "hypothesis": "Tobin lives in Zarnia.", "label": "entailment"}


def test_every_family_has_the_three_formats_and_a_metric():
    assert set(TASKS) == {"summarisation", "question_generation", "nli", "paraphrase", "instruction"}
    for task in TASKS.values():
        assert tuple(sorted(task.formats)) == tuple(sorted(PROMPT_FORMATS))
        assert task.metric == ("accuracy" if task.kind == "classification" else "rougeL")


def test_render_default_format_exactly():
    assert get_task("nli").render(NLI, "default") == (
        "### Input_1: Tobin lives in Pelbo.\n ### Input_2: Tobin lives in Zarnia.\n ### Inference:"
    )
    assert get_task("nli").render(NLI, "io") == "Tobin lives in Pelbo. Tobin lives in Zarnia."


def test_completion_is_delimiter_plus_label():
    assert get_task("nli").completion(NLI) == " entailment"


def test_bad_label_names_the_record():
    with pytest.raises(ValueError, match=r"x-1.*'maybe'"):
        get_task("nli").target({**NLI, "label": "maybe"})


def test_missing_field_and_unknown_format_are_named():
    with pytest.raises(KeyError, match="hypothesis"):
        get_task("nli").render({"id": "x-2", "premise": "p"}, "default")
    with pytest.raises(KeyError, match="'fancy'"):
        get_task("nli").render(NLI, "fancy")
    with pytest.raises(KeyError, match="unknown task family 'nlii'"):
        get_task("nlii")


def test_template_using_unknown_field_is_rejected():
    with pytest.raises(ValueError, match="not input fields"):
        TaskFamily(
            name="bad",
            kind="generation",
            input_fields=("a",),
            target_field="t",
            formats={"default": "{{ a }} {{ b }}", "instruct": "{{ a }}", "io": "{{ a }}"},
            metric="rougeL",
        )


def test_instruction_answers_follow_the_assistant_cue_with_no_space():
    # open-instruct renders "<|assistant|>\n" + content (the authors' open_instruct/finetune.py line 330)
    record = {"id": "t", "prompt": "<|user|>\nHi\n<|assistant|>\n", "completion": "Hello"}
    assert get_task("instruction").completion(record) == "Hello"
    assert get_task("instruction").target_delimiter == "" and get_task("nli").target_delimiter == " "


def test_question_generation_io_uses_the_optional_untagged_answers():
    qg = get_task("question_generation")
    record = {"id": "q", "context": "Ice is cold.", "answer": "Answer A: cold Answer B: hot", "question": "How?"}
    assert qg.render(record, "io") == "Ice is cold. Answer A: cold Answer B: hot"
    assert qg.render({**record, "answers": "cold hot"}, "io") == "Ice is cold. cold hot"
    with pytest.raises(ValueError, match="falls back to 'missing'"):
        TaskFamily(
            name="bad",
            kind="generation",
            input_fields=("a",),
            target_field="t",
            formats={"default": "{a}", "instruct": "{a}", "io": "{b}"},
            metric="rougeL",
            optional_fields={"b": "missing"},
        )


# ---------------------------------------------------------------- config-defined families (tasks:)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs/examples/custom-tasks.yaml"
SENTIMENT = {"kind": "classification", "input_fields": ["review"], "target_field": "label",
             "formats": {"default": "Review: {{ review }}\nSentiment:"}, "label_words": ["positive", "negative"],
             "metric": "accuracy"}


def test_builtin_families_come_from_their_yaml_through_the_config_path():
    # the same loader a config's tasks: entry goes through; defaults filled from the schema
    assert list(BUILTIN_TASKS) == ["summarisation", "question_generation", "nli", "paraphrase", "instruction"]
    assert get_task("summarisation").stop == ("\n",) and get_task("nli").max_new_tokens == 5
    assert get_task("paraphrase").render({"sentence1": "A b.", "sentence2": "C d."}, "instruct") == (
        "Let’s compare the two sentences: Sentence_1: A b. Sentence_2: C d. Are they paraphrasing?:"
    )


def test_a_config_family_renders_and_reaches_a_job_through_the_environment(restore_tasks):
    register({"sentiment": SENTIMENT})
    record = {"id": "r1", "review": "Nice & warm <3", "label": "positive"}
    assert get_task("sentiment").render(record, "default") == "Review: Nice & warm <3\nSentiment:"  # no escaping
    assert get_task("sentiment").formats.keys() == {"default"}
    # a job Snakemake starts inherits $PTFT_TASKS and knows the family by name
    job = subprocess.run(
        [sys.executable, "-c", "from ptft.tasks import get_task; print(get_task('sentiment').completion("
         "{'label': 'negative'}), end='')"],
        env={**os.environ}, capture_output=True, text=True, check=True,
    )
    assert job.stdout == " negative"
    assert json.loads(os.environ[restore_tasks.TASKS_ENV])["sentiment"]["metric"] == "accuracy"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"formats": {"default": "{{ review }} {{ stars }}"}},
         r"task 'sentiment', format 'default': template uses \['stars'\], which are not input fields"),
        ({"formats": {"default": "{{ review "}}, r"task 'sentiment', format 'default': template .* is not valid Jinja2"),
        ({"formats": {"default": "{review}"}}, r"format 'default': \['\{review\}'\] is str.format syntax"),
        ({"formats": {"instruct": "{{ review }}"}}, r"tasks.sentiment.formats: 'default' is a required property"),
        ({"metric": "rougeL"}, r"metric 'rougeL' scores generation tasks, not classification"),
        ({"metric": "bleu"}, r"tasks.sentiment.metric: 'bleu' is not one of"),
        ({"label_words": []}, r"label_words are required for classification"),
    ],
)
def test_a_bad_config_family_names_task_format_and_field(restore_tasks, change, message):
    with pytest.raises(TaskDefinitionError, match=message):
        register({"sentiment": {**SENTIMENT, **change}})


def test_a_config_family_cannot_redefine_a_builtin(restore_tasks):
    with pytest.raises(TaskDefinitionError, match=r"\['nli'\] are built-in task families"):
        register({"nli": SENTIMENT})
    assert get_task("nli").label_words == ("entailment", "neutral", "contradiction")


def test_the_example_study_renders_the_hand_written_prompts(restore_tasks):
    config = yaml.safe_load(EXAMPLE.read_text())
    restore_tasks.register_from_config(config)
    # the first row of configs/examples/data/sentiment_test.csv and line 1 of headlines.jsonl
    review = {"review": "The jacket made my day. I would go again.", "label": "positive"}
    article = json.loads((ROOT / "configs/examples/data/headlines.jsonl").read_text().splitlines()[0])
    sentiment, headline = get_task("sentiment"), get_task("headline")
    assert sentiment.render(review, "default") == "### Review: The jacket made my day. I would go again.\n ### Sentiment:"
    assert sentiment.render(review, "instruct") == (
        "Read the review and say whether it is positive or negative: The jacket made my day. I would go again. "
        "The review is"
    )
    assert sentiment.completion(review) == " positive"
    assert headline.render(article, "default") == (
        "### Article: On Monday, the old mill reopened after repairs. Local people came to see it and spoke to the "
        "council.\n ### Headline:"
    )
    assert headline.completion(article) == " Old mill reopens"
    assert (headline.metric, headline.max_new_tokens, headline.stop) == ("rougeL", 12, ("\n",))
