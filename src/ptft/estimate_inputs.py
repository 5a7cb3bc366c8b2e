"""What `make estimate` (ptft.estimate) counts from before a study has prepared or measured anything: a local set's
items from its files, the lengths of a study's own task family from its records, a local model's size from its
source folder, and the CPU's wall-clock rates on this machine's cores (bench/figures.yaml gpus.cpu).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from ptft.localdata import LocalDataError, scan_file
from ptft.tasks import get_task

SAMPLE_RECORDS = 200  # records measured per set (as ptft.estimate measures prepared data)


class EstimateError(ValueError):
    """A figure the estimate needs is in none of its sources; the message names it and where to add it."""


def local_split_size(spec: Mapping[str, Any], split: str, project_dir: Path) -> tuple[int, str] | None:
    """(rows of a local set's split before preparation, where the number comes from), counted from its files as
    prepare_local_dataset will split them: a split's own file, or datasets' train_test_split share of one file
    (test = ceil(test_fraction x rows), train the rest), at most n_<split>. None for other sources. Raises
    EstimateError naming a file that is missing or does not parse (ptft.localdata.scan_file)."""
    if spec.get("source") != "local":
        return None
    files = spec["files"]
    try:
        if split in files:
            n, where = scan_file(Path(project_dir, files[split]))[0], files[split]
        else:
            rows = scan_file(Path(project_dir, files["all"]))[0]
            n_test = math.ceil(float(spec["split"]["test_fraction"]) * rows)
            n, where = (n_test if split == "test" else rows - n_test), f"{files['all']} x split.test_fraction"
    except LocalDataError as err:
        raise EstimateError(str(err)) from None
    cap = spec.get(f"n_{split}")
    return (int(cap), f"n_{split} (of {n}: {where})") if cap is not None and int(cap) < n else (n, where)


CHARS_PER_TOKEN = 4  # assumed: English text in a BPE vocabulary (GPT-2's rule of thumb), used only without a tokenizer


def lengths_of_records(config: Mapping[str, Any], name: str, tokenizer, project_dir: Path) -> dict[str, Any]:
    """Mean tokens of one example of a set that bench/figures.yaml has no lengths for (a study's own task family):
    {"input", "target", "source"} measured on up to SAMPLE_RECORDS records, of the prepared data or else of a local
    set's files (mapped by its fields as preparation maps them), with the model's tokenizer when one is on disk and
    at CHARS_PER_TOKEN characters per token otherwise. Raises EstimateError when there are no records to measure."""
    spec = config["data"]["datasets"][name]
    family = get_task(spec["task"])
    records, where = _sample_records(name, spec, project_dir)
    if not records:
        raise EstimateError(f"bench/figures.yaml: lengths has no entry for data set {name!r} or task {family.name!r}, "
                            f"and data/{name} is not prepared; add one (input, target, source) under lengths.eval_sets")
    inputs = [family.render(r, "default") for r in records]
    targets = [family.target_delimiter + family.target(r) for r in records]
    if tokenizer is not None:
        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        how = "the model's tokenizer"
    else:
        def count(text: str) -> int:
            return math.ceil(len(text) / CHARS_PER_TOKEN)

        how = f"assumed {CHARS_PER_TOKEN} characters per token (no tokenizer of the model on disk yet)"
    return {"input": sum(map(count, inputs)) / len(inputs), "target": sum(map(count, targets)) / len(targets),
            "source": f"measured: {len(records)} records of {where}, {how}"}  # fmt: skip


def _sample_records(name: str, spec: Mapping[str, Any], project_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """Up to SAMPLE_RECORDS records of a set: its prepared train (else test) file, else a local set's first file
    mapped by to_records; ([], "") when neither is on disk."""
    from ptft.provenance import read_jsonl

    for split in ("train", "test"):
        path = Path(project_dir, "data", name, f"{split}.jsonl")
        if path.is_file():
            return read_jsonl(path)[:SAMPLE_RECORDS], str(path)
    if spec.get("source") != "local":
        return [], ""
    from ptft.localdata import load_file
    from ptft.records import to_records

    key = sorted(spec["files"])[-1]  # train, else all
    path = Path(project_dir, spec["files"][key])
    try:
        rows = load_file(path, Path(project_dir, ".cache", "huggingface", "datasets"))
    except LocalDataError as err:
        raise EstimateError(str(err)) from None
    rows = rows.select(range(min(SAMPLE_RECORDS, len(rows)))).to_list()
    records, _ = to_records(name, "train", rows, list(range(len(rows))), spec, get_task(spec["task"]))
    return records, str(spec["files"][key])


def local_source_config(spec: Mapping[str, Any]) -> Path | None:
    """A local model's config.json in its source folder (the first configured step's), before it is copied; None for
    other sources or when it is not there."""
    if spec.get("source") != "local" or not spec.get("checkpoints"):
        return None
    folder = Path(str(spec["path"]).replace("{checkpoint}", str(spec["checkpoints"][0]))).expanduser()
    return folder / "config.json" if (folder / "config.json").is_file() else None


RATE_FIGURES = ("finetune_tokens_per_s", "evaluate_prompt_tokens_per_s", "evaluate_generated_tokens_per_s")


def device_rates(figures: Mapping[str, Any], gpu: str,
                 cores: int | None = None) -> tuple[dict[str, Any], float, str, int | None]:  # fmt: skip
    """(gpu's figures as the bill uses them, the parameters of the model they were measured for, what the hours
    mean, the machine's cores or None for a GPU). A GPU's rates are per GPU, for figures' reference_model: hours are
    GPU-hours. The cpu figures are for the whole machine they were measured on (gpus.cpu.cores cores, a model of
    gpus.cpu.reference_params parameters, from bench/README.md's CPU runs): their rates are scaled by
    cores / gpus.cpu.cores, so hours are wall-clock hours on `cores` cores (default os.cpu_count()), assuming the
    study's jobs run side by side on them (snakemake -j cores); add_job_starts adds each job's start-up.
    Raises KeyError for a gpu bench/figures.yaml has no figures for."""
    if gpu not in figures["gpus"]:
        raise KeyError(f"--gpu {gpu!r}: bench/figures.yaml has figures for {sorted(figures['gpus'])}")
    rates = {name: dict(figure) for name, figure in figures["gpus"][gpu].items()}
    reference = float(rates.get("reference_params", {}).get("value")
                      or figures["models"][figures["reference_model"]]["n_params"])  # fmt: skip
    if "cores" not in rates:
        return rates, reference, "GPU-hours", None
    cores = int(cores or os.cpu_count() or 1)
    measured_on = int(rates["cores"]["value"])
    for name in RATE_FIGURES:
        rates[name]["value"] = rates[name]["value"] * cores / measured_on
        rates[name]["source"] += f" [x {cores}/{measured_on} cores]"
    return rates, reference, f"wall-clock hours on {cores} cores", cores


def add_job_starts(families: list[Any], rates: Mapping[str, Any], cores: int | None) -> None:
    """Add each job's start-up (rates' job_start_s: Python, torch and model loading, which dominate a tiny model's
    jobs) to every family's hours, `cores` jobs at a time; nothing for a GPU (cores None) or without the figure."""
    if cores is None or "job_start_s" not in rates:
        return
    for family in families:
        family.gpu_hours += family.jobs * rates["job_start_s"]["value"] / cores / 3600


def hours_text(x: float) -> str:
    """Hours to three significant figures (a CPU study of minutes is not 0.0 hours), whole hours from 1,000,
    "<0.001" below (under 4 s)."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}" if x >= 0.001 or x == 0 else "<0.001"
