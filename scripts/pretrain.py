"""Rule pretrain: produce one pre-training checkpoint, continuing from the previous configured step."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.checkpoints import pretrain

pretrain(
    model=snakemake.wildcards.model,
    model_cfg=snakemake.params.model_config,
    step=int(snakemake.wildcards.step),
    tokenizer_dir=Path(snakemake.input.tokenizer),
    corpus_path=Path(snakemake.input.corpus),
    previous_dir=Path(snakemake.input.previous) if snakemake.input.previous else None,
    out_dir=Path(snakemake.output[0]),
    threads=snakemake.threads,
)
