"""Rule plot_prompt_sensitivity: spread across prompt formats per checkpoint, base and fine-tuned."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import write_table_provenance
from ptft.plots import prompt_sensitivity_figure, save_figure

sensitivity = pd.read_csv(snakemake.input.sensitivity)
save_figure(prompt_sensitivity_figure(sensitivity), Path(snakemake.output.png), Path(snakemake.output.svg))
write_table_provenance(snakemake.output.png, [snakemake.input.sensitivity], svg=snakemake.output.svg)
