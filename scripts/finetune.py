"""Rule finetune: fine-tune one checkpoint on one training set."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.finetune import finetune

finetune(
    checkpoint_dir=Path(snakemake.input.checkpoint),
    train_path=Path(snakemake.input.train),
    task=snakemake.params.task,
    ft_set=snakemake.wildcards.ft_set,
    ft_cfg=snakemake.params.settings,
    out_dir=Path(snakemake.output[0]),
    threads=snakemake.threads,
)
