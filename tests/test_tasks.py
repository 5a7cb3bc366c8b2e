import pytest

from ptft.tasks import PROMPT_FORMATS, TASKS, TaskFamily, get_task

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
