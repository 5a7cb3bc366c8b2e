"""Rule findings_tables: the paper's five findings as CSV + Markdown tables (the paper's definitions beside ours),
their headline numbers (findings.json) and a verdict per finding (verdicts.csv/.md/.json)."""

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import (
    GROUP_FINETUNING,
    GROUP_PRETRAINING,
    findings_summary,
    format_gaps,
    gain_by_group_paper,
    gain_table,
    gain_table_wide,
    group_pairs_paper,
    ood_pairs_paper,
    out_of_domain_ratio,
    out_of_domain_raw_change_paper,
    prompt_sensitivity,
    read_results,
    sensitivity_by_checkpoint,
    study_design,
    task_transfer,
    task_transfer_paper,
    task_transfer_test,
    transfer_cluster_test,
    transfer_pairs_paper,
    write_markdown,
    write_table,
    write_table_provenance,
)
from ptft.paired import ItemBootstrap, bootstrap_statistic, read_items
from ptft.provenance import atomic_write_text, write_json
from ptft.variants import findings_items
from ptft.verdicts import groups_from_rule, learned_by_evidence, verdicts, verdicts_json, verdicts_markdown

ft_sets = snakemake.params.ft_sets
settings = snakemake.params.analysis
fmt = settings["prompt_format"]
rule_ = settings["learned_rule"]
test_ = settings["transfer_test"]
boot_ = settings["bootstrap"]
native_metric = settings["native_metric"]
groups_ = settings["groups"]
keep_duplicates = groups_["keep_duplicates"]  # the schema default fills it
df = read_results(snakemake.input.table)
design = study_design(ft_sets, snakemake.params.eval_sets, settings["design"])
# fine-tuning variants: the selected runs' items, seeds resampled before items (ptft.variants.findings_items)
items = findings_items(read_items(snakemake.input.evals), snakemake.params.get("runs"),
                       read_results(snakemake.input.table, every_run=True))  # fmt: skip
boot = ItemBootstrap(items, boot_["resamples"], boot_["seed"])
level = boot_["level"]

sensitivity = prompt_sensitivity(df, ft_sets)
by_checkpoint = sensitivity_by_checkpoint(sensitivity)
out_of_domain = out_of_domain_ratio(df, ft_sets, prompt_format=fmt)
transfer = task_transfer(df, ft_sets, prompt_format=fmt)
test = task_transfer_test(df, ft_sets, prompt_format=fmt, resamples=test_["resamples"], seed=test_["seed"])
learned = learned_by_evidence(
    df, boot, rule_["min_gain"], rule_["min_above_chance"], prompt_format=fmt, native_metric=native_metric, level=level
)
by_hand = "learned_in_pretraining" in groups_ or "learned_in_finetuning" in groups_
groups = (
    {
        GROUP_PRETRAINING: groups_.get("learned_in_pretraining", []),
        GROUP_FINETUNING: groups_.get("learned_in_finetuning", []),
    }
    if by_hand
    else groups_from_rule(learned, design)
)
gain = gain_table(df, ft_sets, learned[learned["prompt_format"] == fmt], prompt_format=fmt, boot=boot, level=level)

# The paper's definitions (ptft.analysis "the paper's definitions"), each with its paired-bootstrap interval.
transfer_paper = bootstrap_statistic(
    lambda t: task_transfer_paper(transfer_pairs_paper(t, design, fmt)),
    df,
    ["model", "direction"],
    "mean_ratio",
    boot,
    level,
)
cluster = transfer_cluster_test(transfer_pairs_paper(df, design, fmt), test_["resamples"], test_["seed"])
ood_paper = bootstrap_statistic(
    lambda t: out_of_domain_raw_change_paper(ood_pairs_paper(t, design, fmt)),
    df,
    ["model", "task"],
    "mean_raw_change",
    boot,
    level,
)
group_gain = bootstrap_statistic(
    lambda t: gain_by_group_paper(group_pairs_paper(t, design, groups, fmt, None, native_metric, keep_duplicates)),
    df, ["model", "step", "group"], "gain", boot, level,
)  # fmt: skip
gaps = bootstrap_statistic(
    lambda t: format_gaps(t, design), df, ["model", "step", "stage", "metric", "prompt_format"], "gap", boot, level
)
verdict = verdicts(df, design, groups, learned, boot, fmt, native_metric, keep_duplicates, level)

pct = f"{level:.0%}"
tables = {
    "prompt_sensitivity": (sensitivity, "Prompt sensitivity: score per prompt format, spread = max - min"),
    "sensitivity_by_checkpoint": (by_checkpoint, "Prompt sensitivity per checkpoint (mean spread over eval sets)"),
    "out_of_domain_ratio": (out_of_domain, f"Ours: out-of-domain mean ratio of change ({fmt} format)"),
    "task_transfer": (transfer, f"Ours: task transfer over every eval set of the other kind, Eq. 1 ({fmt} format)"),
    "task_transfer_test": (test, "Ours (before): sign-flip test over pooled ratios (pairs are not independent)"),
    "learned_in_pretraining": (
        learned,
        f"Learned in pre-training by evidence: rise first->last, paired {pct} interval, floor min_gain "
        f"{rule_['min_gain']}",
    ),
    "gain_table": (gain, f"Gain from fine-tuning, in-domain, paired {pct} bootstrap interval ({fmt} format)"),
    "task_transfer_paper": (transfer_paper, f"Task transfer as the paper (cells 25-26), paired {pct} interval"),
    "transfer_cluster_test": (
        cluster,
        "Ours: sign-flip test over per-checkpoint mean ratios (checkpoints independent)",
    ),
    "out_of_domain_raw_change_paper": (ood_paper, f"Out-of-domain raw change as the paper (cell 29), paired {pct} interval"),
    "gain_by_group_paper": (
        group_gain,
        f"Table 6 as the paper (cells 14-15), groups {'by hand' if by_hand else 'by the rule'}",
    ),
    "format_gaps": (gaps, f"Ours: Default - Instruct and Default - IO gaps apart, per metric, paired {pct} interval"),
    "verdicts": (verdict, "Verdict per finding"),
}
for name, (table, title) in tables.items():
    write_table(table, snakemake.output[f"{name}_csv"])
    if name == "verdicts":
        atomic_write_text(snakemake.output[f"{name}_md"], verdicts_markdown(table))
        continue
    shown = gain_table_wide(gain) if name == "gain_table" else table
    write_markdown(shown, snakemake.output[f"{name}_md"], title=title)

write_json(snakemake.output.metrics, findings_summary(by_checkpoint, out_of_domain, transfer, test, learned, gain))
write_json(snakemake.output.verdicts_metrics, verdicts_json(verdict))
write_table_provenance(
    snakemake.output.metrics,
    [snakemake.input.table, *snakemake.input.evals, *snakemake.input.predictions],
    config={"ft_sets": ft_sets, "eval_sets": snakemake.params.eval_sets, "analysis": settings, "design": design},
    tables=[str(snakemake.output[f"{n}_{e}"]) for n in tables for e in ("csv", "md")],
)
