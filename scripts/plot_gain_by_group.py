"""Rule plot_gain_by_group: in-domain gain from fine-tuning with CIs, by learned-in-pre-training group."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import write_table_provenance
from ptft.plots import gain_groups_figure, save_figure

gain = pd.read_csv(snakemake.input.gain, keep_default_na=False, na_values=[""])
save_figure(gain_groups_figure(gain), Path(snakemake.output.png), Path(snakemake.output.svg))
write_table_provenance(snakemake.output.png, [snakemake.input.gain], svg=snakemake.output.svg)
