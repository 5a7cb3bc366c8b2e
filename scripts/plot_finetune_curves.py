"""Rule plot_finetune_curves: training loss along fine-tuning, one line per checkpoint."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import write_table_provenance
from ptft.plots import finetune_curves_figure, save_figure

curves = pd.read_csv(snakemake.input.curves)
save_figure(finetune_curves_figure(curves), Path(snakemake.output.png), Path(snakemake.output.svg))
write_table_provenance(snakemake.output.png, [snakemake.input.curves], svg=snakemake.output.svg)
