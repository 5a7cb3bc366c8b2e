"""The bill of a study before it runs: jobs, tokens to train and to score, GPU-hours and disk, per rule family.

    python -m ptft.estimate --configfile configs/paper-olmo1b.yaml --gpu h200     (make estimate CONFIG=... GPU=...)

Needs no network and no GPU. Throughput, model sizes and assumed example lengths come from one table,
bench/figures.yaml, each figure with its source; example lengths are measured instead where the prepared data
(data/<set>/*.jsonl) and a tokenizer of the model (a checkpoint folder) are on disk. Item counts: the prepared test
file, else the set's n_test, else the split's size in tests/hub_facts.yaml (the project's record of hub facts).

Counting (per evaluated model, i.e. per evaluate job):
- a k-shot prompt holds k + 1 inputs and k targets (each + 1 delimiter token), capped at the prompt budget (the
  model's context less max_new_tokens, or less the label for classification): evaluate.shots_overflow keeps every
  prompt within it (drop_shots, truncate_documents) or stops the run (error);
- tokens to score: classification by TokenProb scores the prompt once, by log-likelihood once per label word
  (prompt + label); generation scores the prompt and generates max_new_tokens (an upper bound: the paper's setting
  stops only at EOS); lm-eval's own multiple-choice tasks score context + choice once per choice;
- tokens to train: n_train x epochs x (input + target + EOS), each example capped at finetune max_length.
GPU-hours = tokens / the GPU's figure, scaled by reference_params / the model's parameters (FLOPs per token scale
with parameters: 6N to train, 2N to score, at the same MFU). Disk: checkpoints at the hub's bytes per parameter,
fine-tuned models at 4 (ptft saves fp32 weights; finetune.py loads fp32), LoRA adapters r x 2h per target module
and layer at 4, predictions at bytes_per_prediction per scored item.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ptft import config as study_config
from ptft import hub
from ptft.checks import small_test_warnings, validate
from ptft.studies import study_dir  # a study's prepared data and checkpoints: studies/<study>/
from ptft.config import ConfigError, load_yaml
from ptft.estimate_eval import format_precision, kshot_tokens, precision_rows, set_tokens, shares_prefix
from ptft.estimate_inputs import (SAMPLE_RECORDS, EstimateError, add_job_starts, device_rates, hours_text,
                                  lengths_of_records, local_source_config, local_split_size)
from ptft.tasks import get_task

PROJECT = Path(__file__).resolve().parents[2]
FIGURES = PROJECT / "bench" / "figures.yaml"
HUB_FACTS = PROJECT / "tests" / "hub_facts.yaml"
GPUS = ("h100", "h200", "a100", "cpu")
FAMILIES = {  # rule family -> its rules (names as `snakemake -n` counts them)
    "data": ("prepare_corpus", "prepare_dataset", "lr_search_split"),
    "materialize": ("train_tokenizer", "pretrain", "materialize"),
    "finetune": ("finetune",),
    "evaluate": ("evaluate", "evaluate_dev"),
    "analysis": (),  # every rule of rules/analysis.smk, and `all`
}
SAVED_BYTES_PER_PARAM = 4  # fine-tuned weights: fp32 (ptft.finetune loads and saves fp32 master weights)
GB = 1e9


@dataclass
class FamilyBill:
    family: str
    jobs: int = 0
    train_tokens: float = 0.0
    score_tokens: float = 0.0  # prompt (and continuation) tokens through the forward pass
    generated_tokens: float = 0.0
    gpu_hours: float = 0.0
    disk_gb: float = 0.0


@dataclass
class Bill:
    config: str
    gpu: str
    families: list[FamilyBill]
    lengths: dict[str, dict[str, Any]] = field(default_factory=dict)  # set -> input, target, source
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # eval set -> n, source
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # figure -> value, source
    hours: str = "GPU-hours"  # what FamilyBill.gpu_hours counts on this device (device_rates)
    shared_prefix: bool = False  # shot blocks computed once (ptft.estimate_eval.shares_prefix)
    set_hours: dict[str, float] = field(default_factory=dict)  # eval set -> GPU-hours of its evaluations
    evaluate_hours_unshared: float = 0.0  # the evaluate family's GPU-hours with every prompt computed whole
    precision: list[dict[str, Any]] = field(default_factory=list)  # ptft.estimate_eval.precision_rows

    def total(self) -> FamilyBill:
        total = FamilyBill("total")
        for bill in self.families:
            for key in ("jobs", "train_tokens", "score_tokens", "generated_tokens", "gpu_hours", "disk_gb"):
                setattr(total, key, getattr(total, key) + getattr(bill, key))
        return total


# ---------------------------------------------------------------- sources


def load_figures(path: Path = FIGURES) -> dict[str, Any]:
    figures = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for gpu, values in figures["gpus"].items():
        for name, figure in values.items():
            if not isinstance(figure, dict) or "value" not in figure or not figure.get("source"):
                raise EstimateError(f"{path}: gpus.{gpu}.{name} needs a value and a source (measured ... / assumed: ...)")
    return figures


def _split_size(facts: Mapping[str, Any], hub_spec: Mapping[str, Any], split: str) -> int | None:
    repo = facts.get("datasets", {}).get(hub_spec.get("repo"), {})
    configs = repo.get("configs", {})
    for name in (hub_spec.get("config"), hub_spec.get("data_dir"), "default"):
        if name in configs and split in configs[name].get("splits", {}):
            return int(configs[name]["splits"][split])
    return None


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def eval_items(config: Mapping[str, Any], name: str, facts: Mapping[str, Any], project_dir: Path) -> tuple[int, str]:
    """(items scored per prompt format and shot count, where the number comes from) for one eval set."""
    spec = config["data"]["datasets"][name]
    test = Path(project_dir, study_dir(config), "data", name, "test.jsonl")
    local = local_split_size(spec, "test", project_dir) if not test.is_file() else None
    if test.is_file():
        n, source = _count_lines(test), f"{test}"
    elif local is not None:
        n, source = local
    elif spec.get("n_test") is not None:
        n, source = int(spec["n_test"]), f"data.datasets.{name}.n_test"
    else:
        split = (spec.get("splits") or {}).get("test")
        n = _split_size(facts, spec.get("hub") or {}, split) if spec.get("source") == "hub" else None
        if n is None:
            raise EstimateError(
                f"data.datasets.{name}: n_test is null and the size of its test split is in no source (prepared "
                f"data/{name}/test.jsonl, or {HUB_FACTS.name}); set n_test or evaluate.limit"
            )
        source = f"{HUB_FACTS.name}: {spec['hub']['repo']} {split}"
    limit = config["evaluate"].get("limit")
    if limit is not None and limit < n:
        return int(limit), f"evaluate.limit (of {n}: {source})"
    return n, source


def train_examples(config: Mapping[str, Any], ft_set: str, facts: Mapping[str, Any], project_dir: Path) -> tuple[int, str]:
    """(training examples of one fine-tuning job, their source)."""
    spec = config["data"]["datasets"][ft_set]
    train = Path(project_dir, study_dir(config), "data", ft_set, "train.jsonl")
    local = local_split_size(spec, "train", project_dir) if not train.is_file() else None
    if train.is_file():
        n, source = _count_lines(train), str(train)
    elif local is not None:
        n, source = local
    elif spec.get("n_train") is not None:
        n, source = int(spec["n_train"]), f"data.datasets.{ft_set}.n_train"
    elif spec.get("train_fraction") is not None:
        size = _split_size(facts, spec.get("hub") or {}, (spec.get("splits") or {}).get("train"))
        if size is None:
            raise EstimateError(f"data.datasets.{ft_set}: train_fraction needs its train split's size ({HUB_FACTS.name})")
        n, source = int(size * float(spec["train_fraction"])), f"train_fraction x {HUB_FACTS.name}"
    else:
        raise EstimateError(f"data.datasets.{ft_set}: no n_train, train_fraction or prepared data/{ft_set}/train.jsonl")
    cap = study_config.finetune_settings(config, ft_set).get("n_train")
    return (min(n, int(cap)), f"finetune n_train (of {n})") if cap is not None and cap < n else (n, source)


def _tokenizer(config: Mapping[str, Any], model: str, project_dir: Path):
    """A tokenizer of the model from a checkpoint folder on disk, or None (nothing is downloaded)."""
    folders = sorted(Path(project_dir, study_dir(config), "checkpoints", model).glob("*/tokenizer_config.json"))
    if not folders:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folders[0].parent, local_files_only=True)


def example_lengths(
    config: Mapping[str, Any], name: str, tokenizer, figures: Mapping[str, Any], project_dir: Path
) -> dict[str, Any]:
    """Mean tokens of one example of data set `name`: {"input", "target", "source"}. Measured on the prepared data
    (the default format's prompt; the target with its delimiter) when it and a tokenizer are on disk, else the
    assumed figure of bench/figures.yaml (by data set, then by task family). Raises EstimateError if neither."""
    family = get_task(config["data"]["datasets"][name]["task"])
    for split in ("train", "test"):
        path = Path(project_dir, study_dir(config), "data", name, f"{split}.jsonl")
        if tokenizer is not None and path.is_file():
            from ptft.provenance import read_jsonl

            records = read_jsonl(path)[:SAMPLE_RECORDS]

            def mean(texts):
                return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) / len(texts)

            return {
                "input": mean([family.render(r, "default") for r in records]),
                "target": mean([family.target_delimiter + family.target(r) for r in records]),
                "source": f"measured: {len(records)} records of {path}",
            }
    lengths = figures["lengths"]
    figure = lengths["eval_sets"].get(name) or lengths["task_families"].get(family.name)
    if figure is None:
        return lengths_of_records(config, name, tokenizer, project_dir)
    return {"input": float(figure["input"]), "target": float(figure["target"]), "source": figure["source"]}


def model_size(config: Mapping[str, Any], model: str, figures: Mapping[str, Any], project_dir: Path) -> dict[str, Any]:
    """{"n_params", "hidden_size", "num_hidden_layers", "context", "checkpoint_bytes_per_param", "source"}: from the
    model's config (embedded, or a checkpoint on disk) through ptft.memory.model_shape, else bench/figures.yaml."""
    from ptft.memory import model_shape, study_architecture

    spec = config["models"][model]
    outputs = Path(project_dir, study_dir(config))
    architecture = study_architecture(dict(config), model, outputs) or local_source_config(spec)
    if architecture is not None:
        shape = model_shape(architecture)
        return {
            "n_params": shape.n_params,
            "hidden_size": shape.hidden_size,
            "num_hidden_layers": shape.n_layers,
            "context": shape.max_position_embeddings,
            "checkpoint_bytes_per_param": 4,
            "source": "model_shape of its config (study config or a checkpoint on disk)",
        }
    repo = spec.get("repo")
    if repo not in figures["models"]:
        raise EstimateError(
            f"models.{model}: no checkpoint of {repo or model} is on disk and bench/figures.yaml models has no entry "
            f"for it; add n_params, hidden_size, num_hidden_layers, context, checkpoint_bytes_per_param and a source"
        )
    return dict(figures["models"][repo])


def job_counts(config: Mapping[str, Any], project_dir: Path = PROJECT) -> dict[str, int]:
    """{rule: jobs} of a fresh run, as `snakemake -n` counts them (rules with no job left out); the revisions lock
    under project_dir expands selection rules."""
    lock = hub.read_lock(hub.lock_path(dict(config), project_dir))
    counts: dict[str, int] = {}
    runs = [run for ft_set in config["finetune"]["ft_sets"] for run in study_config.finetune_variants(dict(config), ft_set)]
    n_ft = len(runs)  # fine-tuning runs: one per set, or per lr value x seed (ptft.config.finetune_variants)
    searched = {run["ft_set"] for run in runs if run["lr_search"]}

    def add(rule: str, n: int) -> None:
        if n:
            counts[rule] = counts.get(rule, 0) + n

    embedded = [m for m, s in config["models"].items() if s["source"] == "embedded"]
    add("prepare_corpus", 1 if embedded else 0)
    add("prepare_dataset", len(config["data"]["datasets"]))
    add("lr_search_split", len(searched))
    for model, spec in config["models"].items():
        n_ckpt = len(hub.checkpoint_labels(dict(config), model, lock))
        if spec["source"] == "embedded":
            add("train_tokenizer", 1)
            add("pretrain", n_ckpt)
        else:
            add("materialize", n_ckpt)
        add("finetune", n_ckpt * n_ft)
        add("evaluate", n_ckpt * (1 + n_ft))
        add("evaluate_dev", n_ckpt * sum(run["lr_search"] for run in runs))
        add("select_lr", len(searched))
    rules = re.findall(r"^rule (\w+):", (PROJECT / "rules" / "analysis.smk").read_text(), re.M)
    for rule in [*rules, "all"]:
        add(rule, 1)
    return counts


def _family_of(rule: str) -> str:
    return next((family for family, rules in FAMILIES.items() if rule in rules), "analysis")


# ---------------------------------------------------------------- the bill


def evaluate_tokens(config: Mapping[str, Any], context: int, lengths, items, facts, figures,
                    shared: bool | None = None, per_set: dict | None = None) -> tuple[float, float, float]:  # fmt: skip
    """(prompt tokens scored, tokens generated, items scored) by one evaluate job (one model on every condition).

    shared: whether a shared few-shot prefix is computed once (default: as the config says, shares_prefix);
    per_set, if given, receives eval set -> (prompt tokens, generated tokens) of ptft's own sets (set_tokens)."""
    ev = config["evaluate"]
    shared = shares_prefix(ev) if shared is None else shared
    scored = generated = n_items = 0.0
    conditions = len(ev["prompt_formats"]) * len(ev["shots"])
    for name in ev["eval_sets"]:
        n = items[name]["n"]
        tokens = set_tokens(config, name, context, lengths[name], n, shared)
        scored, generated = scored + tokens[0], generated + tokens[1]
        if per_set is not None:
            per_set[name] = tokens
        n_items += n * conditions
    native_shots = ev.get("lm_eval_shots") or 0
    split = "validation" if ev.get("lm_eval_split") == "validation" else "test"
    for task in [t for t in ev.get("lm_eval_tasks") or [] if isinstance(t, str)]:
        fact = facts.get("lm_eval_tasks", {}).get(task)
        figure = figures["lengths"]["lm_eval_tasks"].get(task)
        if fact is None or figure is None:
            raise EstimateError(f"evaluate.lm_eval_tasks: {task!r} needs its data set in {HUB_FACTS.name} lm_eval_tasks "
                                f"and its lengths in bench/figures.yaml lengths.lm_eval_tasks")  # fmt: skip
        hub_spec = {"repo": fact["dataset_path"], "config": fact.get("dataset_name")}
        n = _split_size(facts, hub_spec, split) or _split_size(facts, hub_spec, "validation")
        if n is None:
            raise EstimateError(f"{HUB_FACTS.name}: no {split} size for lm-eval task {task!r} ({fact['dataset_path']})")
        n = min(n, ev["limit"]) if ev.get("limit") else n
        per_choice = min(kshot_tokens(native_shots, figure) + figure["target"], context)
        scored += n * figure["choices"] * per_choice
        n_items += n
        items[task] = {"n": n, "source": f"{HUB_FACTS.name}: {fact['dataset_path']} {split}"}
        lengths[task] = {k: figure[k] for k in ("input", "target", "source")}
    return scored, generated, n_items


def estimate(
    config: Mapping[str, Any],
    gpu: str,
    *,
    figures: Mapping[str, Any] | None = None,
    facts: Mapping[str, Any] | None = None,
    project_dir: Path = PROJECT,
    source: str = "config",
    cores: int | None = None,
) -> Bill:
    """The study's bill on `gpu` (a key of bench/figures.yaml gpus). config: a validated config (defaults filled).
    cores: for gpu "cpu", the machine's cores (default: this machine's); hours are then wall-clock (device_rates).

    Raises EstimateError naming a missing figure, KeyError for an unknown gpu.
    """
    figures = figures or load_figures()
    facts = facts if facts is not None else (yaml.safe_load(HUB_FACTS.read_text()) if HUB_FACTS.is_file() else {})
    rates, reference, hours, cores = device_rates(figures, gpu, cores)
    counts = job_counts(config, project_dir)
    bills = {family: FamilyBill(family) for family in FAMILIES}
    for rule, n in counts.items():
        bills[_family_of(rule)].jobs += n
    ev = config["evaluate"]
    sets = sorted(set(ev["eval_sets"]) | set(config["finetune"]["ft_sets"]))
    lock = hub.read_lock(hub.lock_path(dict(config), project_dir))
    bill = Bill(source, gpu, list(bills.values()),
                figures={k: dict(v) for k, v in rates.items()}, hours=hours)  # fmt: skip
    items = {name: dict(zip(("n", "source"), eval_items(config, name, facts, project_dir))) for name in ev["eval_sets"]}
    for model, spec in config["models"].items():
        size = model_size(config, model, figures, project_dir)
        scale = reference / size["n_params"]
        tokenizer = _tokenizer(config, model, project_dir)
        lengths = {name: example_lengths(config, name, tokenizer, figures, project_dir) for name in sets}
        n_ckpt = len(hub.checkpoint_labels(dict(config), model, lock))
        bills["materialize"].disk_gb += n_ckpt * size["n_params"] * size["checkpoint_bytes_per_param"] / GB
        _bill_finetuning(bills["finetune"], config, size, scale, n_ckpt, lengths, facts, figures, rates, project_dir)
        n_runs = sum(len(study_config.finetune_variants(dict(config), s)) for s in config["finetune"]["ft_sets"])
        n_eval = n_ckpt * (1 + n_runs)  # the lr search's dev evaluations (a slice of the training set) are not billed
        scored, generated, n_items = evaluate_tokens(config, size["context"], lengths, items, facts, figures)
        ev_bill = bills["evaluate"]
        ev_bill.score_tokens += n_eval * scored
        ev_bill.generated_tokens += n_eval * generated
        ev_bill.gpu_hours += n_eval * (
            scored / (rates["evaluate_prompt_tokens_per_s"]["value"] * scale)
            + generated / (rates["evaluate_generated_tokens_per_s"]["value"] * scale)
        ) / 3600
        ev_bill.disk_gb += n_eval * n_items * figures["bytes_per_prediction"]["value"] / GB
        bill.lengths.update({f"{name}": v for name, v in lengths.items()})
        _bill_sharing(bill, config, size["context"], lengths, items, facts, figures, rates, scale, n_eval)
    bill.items = items
    bill.precision = precision_rows(config, items, bill.set_hours)
    add_job_starts(bill.families, rates, cores)
    return bill


def _bill_sharing(bill: Bill, config, context: int, lengths, items, facts, figures, rates, scale: float,
                  n_eval: int) -> None:  # fmt: skip
    """Add one model's per-eval-set GPU-hours (bill.set_hours) and its evaluations' GPU-hours with no prefix
    shared (bill.evaluate_hours_unshared: the before of fixed shots and shared prefixes) to the bill."""
    prompt_rate = rates["evaluate_prompt_tokens_per_s"]["value"] * scale
    generated_rate = rates["evaluate_generated_tokens_per_s"]["value"] * scale
    per_set: dict[str, tuple[float, float]] = {}
    evaluate_tokens(config, context, lengths, dict(items), facts, figures, per_set=per_set)
    for name, (scored, generated) in per_set.items():
        bill.set_hours[name] = bill.set_hours.get(name, 0.0) + n_eval * (scored / prompt_rate + generated / generated_rate) / 3600
    scored, generated, _ = evaluate_tokens(config, context, lengths, dict(items), facts, figures, shared=False)
    bill.evaluate_hours_unshared += n_eval * (scored / prompt_rate + generated / generated_rate) / 3600
    bill.shared_prefix = shares_prefix(config["evaluate"])


def _bill_finetuning(bill: FamilyBill, config: Mapping[str, Any], size: Mapping[str, Any], scale: float, n_ckpt: int,
                     lengths: Mapping[str, Any], facts: Mapping[str, Any], figures: Mapping[str, Any],
                     rates: Mapping[str, Any], project_dir: Path) -> None:  # fmt: skip
    """Add one model's fine-tuning runs (every training set's lr values x seeds, from each of its n_ckpt checkpoints)
    to the finetune family's bill: tokens to train, GPU-hours at the GPU's rates scaled by `scale` (reference
    parameters / the model's), and GB of saved weights (the model's size from model_size, or LoRA adapters)."""
    overhead = figures["model_folder_overhead_bytes"]["value"]
    for ft_set in config["finetune"]["ft_sets"]:
        settings = study_config.finetune_settings(config, ft_set)
        n_train, _ = train_examples(config, ft_set, facts, project_dir)
        per_example = min(lengths[ft_set]["input"] + lengths[ft_set]["target"] + 1, settings["max_length"])
        n_runs = len(study_config.finetune_variants(dict(config), ft_set))  # lr values x seeds
        tokens = n_runs * n_ckpt * n_train * settings["epochs"] * per_example
        bill.train_tokens += tokens
        bill.gpu_hours += tokens / (rates["finetune_tokens_per_s"]["value"] * scale) / 3600
        if settings["method"] == "lora":
            lora = settings["lora"]
            weights = lora["r"] * 2 * size["hidden_size"] * size["num_hidden_layers"] * len(lora["target_modules"])
        else:
            weights = size["n_params"]
        bill.disk_gb += n_runs * n_ckpt * (weights * SAVED_BYTES_PER_PARAM + overhead) / GB


# ---------------------------------------------------------------- printing


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def format_bill(bill: Bill) -> str:
    """The bill as text: the table per rule family and total, then every figure and length with its source."""
    column = "GPU-hours" if bill.hours == "GPU-hours" else "hours"
    header = f"{'family':<12}{'jobs':>7}{'train tokens':>15}{'score tokens':>15}{'generated':>12}{column:>11}{'disk GB':>10}"
    lines = [f"Estimate of {bill.config} on {bill.gpu} (no run; figures from bench/figures.yaml)", "", header, "-" * len(header)]
    if column != bill.hours:
        lines.insert(1, f"hours: {bill.hours}")
    for row in [*bill.families, bill.total()]:
        if row.family == "total":
            lines.append("-" * len(header))
        lines.append(
            f"{row.family:<12}{row.jobs:>7}{_si(row.train_tokens):>15}{_si(row.score_tokens):>15}"
            f"{_si(row.generated_tokens):>12}{hours_text(row.gpu_hours):>11}{row.disk_gb:>10.1f}"
        )
    evaluate = next(row for row in bill.families if row.family == "evaluate")
    if bill.shared_prefix:
        lines += ["", f"Shot blocks computed once per model x eval set x format (fewshot_source train_fixed, "
                      f"share_prefix): evaluate {evaluate.gpu_hours:.1f} {bill.hours}; every prompt whole: "
                      f"{bill.evaluate_hours_unshared:.1f} (derived: counted tokens / the rates below)"]  # fmt: skip
    else:
        lines += ["", f"No prompt prefix shared (fewshot_source is not train_fixed, or share_prefix is off): "
                      f"evaluate {evaluate.gpu_hours:.1f} {bill.hours}"]  # fmt: skip
    lines += ["", *format_precision(bill.precision)]
    lines += ["", f"Throughput on {bill.gpu} (for the model of reference_params, else reference_model; scaled by parameters):"]
    lines += [f"  {k} = {v['value']:,}  ({v['source']})" for k, v in bill.figures.items()]
    lines += ["", "Items scored per condition:"]
    lines += [f"  {k}: {v['n']:,}  ({v['source']})" for k, v in bill.items.items()]
    lines += ["", "Mean tokens per example (input / target):"]
    lines += [f"  {k}: {v['input']:.0f} / {v['target']:.0f}  ({v['source']})" for k, v in bill.lengths.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptft.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", type=Path, default=Path("params.yaml"))
    parser.add_argument("--gpu", default="h200", help=f"a GPU of bench/figures.yaml ({', '.join(GPUS)})")
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--json", type=Path, help="also write the bill as JSON here")
    parser.add_argument("--cores", type=int, help="--gpu cpu: the machine's cores (default: this machine's)")
    args = parser.parse_args(argv)
    try:
        config = validate(load_yaml(args.configfile), source=str(args.configfile))
        bill = estimate(config, args.gpu, figures=load_figures(args.figures), project_dir=Path.cwd(),
                        source=str(args.configfile), cores=args.cores)  # fmt: skip
    except (OSError, ConfigError, EstimateError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    for warning in small_test_warnings(config, Path.cwd()):
        print(f"WARNING: {warning}", file=sys.stderr)
    print(format_bill(bill))
    if args.json:
        args.json.write_text(json.dumps({**asdict(bill), "total": asdict(bill.total())}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
