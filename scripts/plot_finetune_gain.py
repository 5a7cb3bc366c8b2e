"""Rule plot_finetune_gain: fine-tuned minus base, per checkpoint and training set."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import finetune_gain, read_results, write_table_provenance
from ptft.plots import plot_finetune_gain

fmt = snakemake.params.prompt_format  # analysis.prompt_format
gain = finetune_gain(read_results(snakemake.input.table), snakemake.params.ft_sets)
plot_finetune_gain(gain, Path(snakemake.output.png), Path(snakemake.output.svg), prompt_format=fmt)
write_table_provenance(
    snakemake.output.png,
    [snakemake.input.table],
    config={"ft_sets": snakemake.params.ft_sets, "prompt_format": fmt},
    svg=snakemake.output.svg,
)
