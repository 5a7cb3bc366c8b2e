"""Rule prepare_corpus: write the generated pre-training corpus and its card."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.data import write_corpus

write_corpus(snakemake.params.world, snakemake.params.corpus, snakemake.params.seed, Path(snakemake.output.corpus))
