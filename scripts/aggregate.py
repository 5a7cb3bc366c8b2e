"""Rule aggregate: one tidy long table of every evaluation result, and the study's key numbers."""
import json
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import aggregate, read_results, summary, write_table_provenance
from ptft.provenance import write_json

# A study with fine-tuning variants (lr search, seeds) marks every run; lr_choices: model -> set -> {step: chosen lr}
# (results/lr_search/{model}/{ft_set}.json).
lr_choices = {}
for path in map(Path, snakemake.input.lr_choices):
    chosen = json.loads(path.read_text(encoding="utf-8"))["chosen"]
    lr_choices.setdefault(path.parent.name, {})[path.stem] = chosen
table = aggregate([Path(p) for p in snakemake.input.evals], Path(snakemake.output.table),
                  runs=snakemake.params.get("runs"), lr_choices=lr_choices)  # fmt: skip
fmt = snakemake.params.prompt_format  # analysis.prompt_format: the key numbers read the findings' format
write_json(snakemake.output.summary, summary(read_results(snakemake.output.table), snakemake.params.ft_sets, prompt_format=fmt))
write_table_provenance(
    snakemake.output.table, snakemake.input, config={"ft_sets": snakemake.params.ft_sets, "prompt_format": fmt}
)
