"""Rule aggregate: one tidy long table of every evaluation result, and the study's key numbers."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import aggregate, summary, write_table_provenance
from ptft.provenance import write_json

table = aggregate([Path(p) for p in snakemake.input], Path(snakemake.output.table))
fmt = snakemake.params.prompt_format  # analysis.prompt_format: the key numbers read the findings' format
write_json(snakemake.output.summary, summary(table, snakemake.params.ft_sets, prompt_format=fmt))
write_table_provenance(
    snakemake.output.table, snakemake.input, config={"ft_sets": snakemake.params.ft_sets, "prompt_format": fmt}
)
