"""Rule lr_search_split: hold out the lr-search dev slice of a training split (ptft.variants.split_dev)."""
from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.variants import split_dev

split_dev(snakemake.input.train, snakemake.output.train, snakemake.output.dev, snakemake.params.n_dev,
          snakemake.params.seed)  # fmt: skip
