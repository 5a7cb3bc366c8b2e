"""Rule select_lr: a searched training set's chosen lr and every run's dev score (ptft.variants.select_lr)."""
from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.provenance import write_json
from ptft.variants import dev_score, select_lr

candidates = [
    {"step": path.split("/")[-2], "lr": run["lr"], "seed": run["seed"], "label": run["label"], "score": dev_score(path)}
    for path, run in snakemake.params.runs.items()
]
write_json(snakemake.output[0], select_lr(candidates, snakemake.params.select))
