"""Rule plot_base_curves_by_group: base-model curves with eval sets grouped learned / not learned in pre-training."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import read_results, write_table_provenance
from ptft.plots import base_curves_by_group_figure, save_figure

fmt = snakemake.params.analysis["prompt_format"]
groups = pd.read_csv(snakemake.input.groups)
fig = base_curves_by_group_figure(read_results(snakemake.input.table), groups, prompt_format=fmt)
save_figure(fig, Path(snakemake.output.png), Path(snakemake.output.svg))
write_table_provenance(
    snakemake.output.png,
    [snakemake.input.table, snakemake.input.groups],
    config={"prompt_format": fmt},
    svg=snakemake.output.svg,
)
