"""Rule plot_finetune_gain: fine-tuned minus base, per checkpoint and training set."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import finetune_gain
from ptft.plots import plot_finetune_gain

gain = finetune_gain(pd.read_csv(snakemake.input.table), snakemake.params.ft_sets)
plot_finetune_gain(gain, Path(snakemake.output.png), Path(snakemake.output.svg))
