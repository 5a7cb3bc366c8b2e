"""Rule findings_tables: the paper's five findings as CSV + Markdown tables, and their headline numbers (findings.json)."""

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import (
    findings_summary,
    gain_table,
    gain_table_wide,
    learned_in_pretraining,
    out_of_domain_change,
    prompt_sensitivity,
    read_results,
    sensitivity_by_checkpoint,
    task_transfer,
    task_transfer_test,
    write_markdown,
    write_table,
    write_table_provenance,
)
from ptft.provenance import write_json

ft_sets = snakemake.params.ft_sets
settings = snakemake.params.analysis
fmt = settings["prompt_format"]
rule_ = settings["learned_rule"]
test_ = settings["transfer_test"]
df = read_results(snakemake.input.table)

sensitivity = prompt_sensitivity(df, ft_sets)
by_checkpoint = sensitivity_by_checkpoint(sensitivity)
out_of_domain = out_of_domain_change(df, ft_sets, prompt_format=fmt)
transfer = task_transfer(df, ft_sets, prompt_format=fmt)
test = task_transfer_test(df, ft_sets, prompt_format=fmt, resamples=test_["resamples"], seed=test_["seed"])
groups = learned_in_pretraining(
    df, min_gain=rule_["min_gain"], min_above_chance=rule_["min_above_chance"], prompt_format=fmt
)
gain = gain_table(df, ft_sets, groups, prompt_format=fmt)

tables = {
    "prompt_sensitivity": (sensitivity, "Prompt sensitivity: score per prompt format, spread = max - min"),
    "sensitivity_by_checkpoint": (by_checkpoint, "Prompt sensitivity per checkpoint (mean spread over eval sets)"),
    "out_of_domain_change": (out_of_domain, f"Out-of-domain mean ratio of change ({fmt} format)"),
    "task_transfer": (transfer, f"Task transfer: mean ratio of change, Eq. 1 ({fmt} format)"),
    "task_transfer_test": (test, "Task transfer: sign-flip permutation test of mean ratio = 0"),
    "learned_in_pretraining": (
        groups,
        f"Learned in pre-training: rise >= {rule_['min_gain']} and last > chance + {rule_['min_above_chance']}",
    ),
    "gain_table": (gain, f"Gain from fine-tuning, in-domain, 95% CI conservative ({fmt} format)"),
}
for name, (table, title) in tables.items():
    write_table(table, snakemake.output[f"{name}_csv"])
    shown = gain_table_wide(gain) if name == "gain_table" else table
    write_markdown(shown, snakemake.output[f"{name}_md"], title=title)

write_json(snakemake.output.metrics, findings_summary(by_checkpoint, out_of_domain, transfer, test, groups, gain))
write_table_provenance(
    snakemake.output.metrics,
    [snakemake.input.table],
    config={"ft_sets": ft_sets, "analysis": settings},
    tables=[str(snakemake.output[f"{n}_{e}"]) for n in tables for e in ("csv", "md")],
)
