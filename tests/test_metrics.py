import pytest

from ptft import evaluate as ev
from ptft.metrics import METRICS, get_metric, macro_f1, rouge_l
from ptft.tasks import TaskFamily


def test_macro_f1_by_hand():
    # yes: tp 2, predicted 3, gold 2 -> F1 2*2/5 = 0.8; no: tp 1, predicted 1, gold 2 -> 2*1/3; mean 0.7333...
    predictions, targets = ["yes", "yes", "yes", "no"], ["yes", "yes", "no", "no"]
    assert macro_f1(predictions, targets, ["yes", "no"]) == pytest.approx((0.8 + 2 / 3) / 2)
    # a label neither predicted nor gold is left out; one never right counts 0
    assert macro_f1(["a", "a"], ["a", "a"], ["a", "b"]) == 1.0
    assert macro_f1(["a", "b"], ["b", "a"], ["a", "b"]) == 0.0
    with pytest.raises(ValueError, match="as many predictions as targets"):
        macro_f1(["a"], [], ["a"])


def test_item_scores_of_the_registry():
    assert get_metric("accuracy").item("yes", "yes") == 1.0 and get_metric("accuracy").item("yes", "no") == 0.0
    assert get_metric("exact_match").item(" Old mill reopens\n", "Old mill reopens") == 1.0
    assert get_metric("rougeL").item("the old mill", "old mill reopens") == pytest.approx(rouge_l("the old mill", "old mill reopens"))
    assert {m.name for m in METRICS.values() if m.corpus is not None} == {"f1"}
    with pytest.raises(KeyError, match="unknown metric 'bleu'"):
        get_metric("bleu")


def test_f1_set_value_is_corpus_level_and_accuracy_stays_the_mean():
    rows = [{"prediction": p, "target": t, "score": float(p == t)}
            for p, t in zip(["yes", "yes", "yes", "no"], ["yes", "yes", "no", "no"])]
    family = TaskFamily(name="pair", kind="classification", input_fields=("a",), target_field="label",
                        formats={"default": "{{ a }}"}, metric="f1", label_words=("yes", "no"))
    value, low, high = ev.set_value(family, rows, 200, seed=1)
    assert value == pytest.approx((0.8 + 2 / 3) / 2) and 0.0 <= low <= value <= high <= 1.0
    accuracy = TaskFamily(**{**family.__dict__, "metric": "accuracy"})
    assert ev.set_value(accuracy, rows, 0, seed=1) == (0.75, 0.75, 0.75)


@pytest.mark.parametrize("metric, prediction, expected", [("exact_match", " Old mill reopens", 1.0),
                                                          ("rougeL", "old mill", 0.8), ("exact_match", "Old", 0.0)])
def test_a_generation_metric_reaches_lm_evals_task_under_its_key(metric, prediction, expected):
    import datasets
    from lm_eval.api.task import ConfigurableTask

    family = TaskFamily(name="headline", kind="generation", input_fields=("text",), target_field="headline",
                        formats={"default": "{{ text }}\nHeadline:"}, metric=metric)
    records = [{"id": f"h{i}", "text": f"Text {i}.", "headline": "Old mill reopens"} for i in range(2)]
    dataset = datasets.DatasetDict({"test": datasets.Dataset.from_list(records[:1]),
                                    "train": datasets.Dataset.from_list(records[1:])})
    task = ConfigurableTask(config=ev.task_config("headlines", family, "default", 0, dataset))
    key = get_metric(metric).lm_eval_key
    assert task.process_results(dataset["test"][0], [prediction]) == {key: pytest.approx(expected)}
    assert task.aggregation()[key]([0.0, 1.0]) == 0.5
