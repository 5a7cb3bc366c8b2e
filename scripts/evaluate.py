"""Rule evaluate: score one base or fine-tuned model on every eval set x prompt format x shots."""
from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

from ptft.evaluate import evaluate

evaluate(
    model_dir=Path(snakemake.input.model),
    eval_sets=snakemake.params.eval_sets,
    eval_cfg=snakemake.params.settings,
    out_json=Path(snakemake.output.results),
    out_predictions=Path(snakemake.output.predictions),
    threads=snakemake.threads,
    lora_eval=snakemake.params.lora_eval,
    base_dir=Path(snakemake.input.lora_base) if snakemake.input.get("lora_base") else None,
)
