"""Rule plot_base_curves: base-model performance per eval set across pre-training."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import base_curves
from ptft.plots import plot_base_curves

plot_base_curves(base_curves(pd.read_csv(snakemake.input.table)), Path(snakemake.output.png), Path(snakemake.output.svg))
