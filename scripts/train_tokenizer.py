"""Rule train_tokenizer: train the byte-level BPE tokenizer of an embedded model on the corpus."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.checkpoints import train_tokenizer

train_tokenizer(Path(snakemake.input.corpus), snakemake.params.tokenizer, snakemake.params.seed, Path(snakemake.output[0]))
