"""Rule plot_base_curves: base-model performance per eval set across pre-training."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import base_curves, read_results, write_table_provenance
from ptft.plots import plot_base_curves

fmt = snakemake.params.prompt_format  # analysis.prompt_format
df = base_curves(read_results(snakemake.input.table))
plot_base_curves(df, Path(snakemake.output.png), Path(snakemake.output.svg), prompt_formats=(fmt,))
write_table_provenance(snakemake.output.png, [snakemake.input.table], config={"prompt_format": fmt}, svg=snakemake.output.svg)
