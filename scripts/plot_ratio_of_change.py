"""Rule plot_ratio_of_change: mean ratio of change out of domain (same task) and across task kinds."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import write_table_provenance
from ptft.plots import ratio_of_change_figure, save_figure

out_of_domain = pd.read_csv(snakemake.input.out_of_domain)
transfer = pd.read_csv(snakemake.input.transfer)
save_figure(ratio_of_change_figure(out_of_domain, transfer), Path(snakemake.output.png), Path(snakemake.output.svg))
write_table_provenance(
    snakemake.output.png, [snakemake.input.out_of_domain, snakemake.input.transfer], svg=snakemake.output.svg
)
