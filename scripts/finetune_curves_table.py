"""Rule finetune_curves_table: every fine-tuning run's train_log.jsonl in one table (loss per optimizer step)."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.analysis import read_train_logs, write_table, write_table_provenance
from ptft.provenance import read_provenance

# models/{model}/{label}/{ft_set}: the label may be a revision name (main), so the numeric step comes from provenance.
logs = {
    (Path(m).parts[-3], int(read_provenance(m)["step"]), Path(m).parts[-1]): Path(m) / "train_log.jsonl"
    for m in snakemake.input.models
}
write_table(read_train_logs(logs), snakemake.output.table)
write_table_provenance(snakemake.output.table, sorted(str(p) for p in logs.values()))
