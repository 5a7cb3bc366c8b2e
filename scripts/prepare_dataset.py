"""Rule prepare_dataset: write one task data set (train/test splits and a card), generated here, from the hub or from local files."""
import os
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

spec = dict(snakemake.params.spec)
out_dir = Path(snakemake.output.train).parent

if spec.get("source", "generated") == "hub":
    from ptft.hubdata import prepare_hub_dataset

    prepare_hub_dataset(snakemake.wildcards.dataset, spec, snakemake.params.seed, out_dir)
elif spec.get("source") == "local":
    from ptft.localdata import prepare_local_dataset

    # the files are relative to the project root (a rehearsal's job runs in rehearsal/<study>/)
    root = Path(os.path.relpath(Path(snakemake.scriptdir).parent))
    prepare_local_dataset(snakemake.wildcards.dataset, spec, snakemake.params.seed, out_dir, root=root)
else:
    from ptft.data import write_dataset

    spec.pop("source", None)  # "generated" is the default; the generated spec (and card) stay as they were
    write_dataset(snakemake.wildcards.dataset, spec, snakemake.params.world, snakemake.params.seed, out_dir)
