"""Rule plot_paper_comparison: the study's findings beside the paper's numbers (ptft.paper_figures)."""

from pathlib import Path

from ptft.provenance import redirect_output_to_log

redirect_output_to_log(snakemake.log[0])

import pandas as pd

from ptft.analysis import write_table_provenance
from ptft.paper_figures import TABLES, paper_comparison_figure
from ptft.paper_results import paper_reference
from ptft.plots import save_figure

tables = {name: pd.read_csv(snakemake.input[name]) for name in TABLES}
reference = paper_reference()
print(f"the paper's numbers: {reference.source}")
save_figure(paper_comparison_figure(tables, reference), Path(snakemake.output.png), Path(snakemake.output.svg))
write_table_provenance(
    snakemake.output.png,
    [snakemake.input[name] for name in TABLES] + list(snakemake.input.get("authors", [])),
    config={"paper_numbers": reference.source},
    svg=snakemake.output.svg,
)
