"""Rule materialize: one checkpoint of a hub model (pinned commit, safetensors only) or of a local folder."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.hub import materialize

materialize(
    model=snakemake.wildcards.model,
    label=snakemake.wildcards.step,
    spec=snakemake.params.model_config,
    lock_file=Path(snakemake.params.revisions_lock),
    out_dir=Path(snakemake.output[0]),
    rehearsal=bool(snakemake.config.get("rehearsal")),
)
