"""Rule prepare_dataset: write one task data set (train/test splits and a card)."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.data import write_dataset

write_dataset(
    snakemake.wildcards.dataset,
    snakemake.params.spec,
    snakemake.params.world,
    snakemake.params.seed,
    Path(snakemake.output.train).parent,
)
