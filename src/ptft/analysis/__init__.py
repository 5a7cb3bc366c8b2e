"""Turn per-model evaluation JSONs into the study's tidy results table, fine-tuning gains and key numbers.

Every figure, metric file and the report read the table `aggregate` writes; nothing downstream opens eval JSONs.
The package's modules, each one job:
- results: the table's columns and types, `aggregate` (eval JSONs -> table), `read_results`, writing tables with
  their provenance, the fine-tuning curves' reader;
- pairs: rows of one setting and fine-tuned rows beside their base, which every gain and finding starts from;
- gains: fine-tuned minus base (`finetune_gain`, `gain_table`), base curves and the key numbers (`summary`);
- findings: the paper's five findings as we define them;
- paper: the same findings as the authors computed them, over the study design (`study_design`, *_paper).
The names below are the public API scripts/ and the other modules import from ptft.analysis.
"""

from ptft.analysis.findings import (
    CLASSIFICATION_TO_GENERATION,
    GENERATION_TO_CLASSIFICATION,
    SINGLE_CHECKPOINT_GROUP,
    STAGE_BASE,
    STAGE_FINETUNED,
    chance_level,
    findings_summary,
    format_gaps,
    learned_in_pretraining,
    out_of_domain_ratio,
    prompt_sensitivity,
    sensitivity_by_checkpoint,
    sign_flip_test,
    task_transfer,
    task_transfer_test,
)
from ptft.analysis.gains import (
    GAIN_COLUMNS,
    base_curves,
    finetune_gain,
    gain_table,
    gain_table_wide,
    summary,
    task_order,
)
from ptft.analysis.pairs import INSTRUCTION_TASK, PAIR_COLUMNS, ratio_of_change
from ptft.analysis.paper import (
    GROUP_FINETUNING,
    GROUP_PRETRAINING,
    gain_by_group_paper,
    group_pairs_paper,
    ood_pairs_paper,
    out_of_domain_raw_change_paper,
    study_design,
    task_transfer_paper,
    transfer_cluster_test,
    transfer_pairs_paper,
)
from ptft.analysis.results import (
    BASE,
    COLUMNS,
    DEFAULT_FORMAT,
    NATIVE_FORMAT,
    aggregate,
    provenance_path,
    read_results,
    read_train_logs,
    sort_results,
    write_markdown,
    write_table,
    write_table_provenance,
)

__all__ = [
    "BASE", "CLASSIFICATION_TO_GENERATION", "COLUMNS", "DEFAULT_FORMAT", "GAIN_COLUMNS", "GENERATION_TO_CLASSIFICATION",
    "GROUP_FINETUNING", "GROUP_PRETRAINING", "INSTRUCTION_TASK", "NATIVE_FORMAT", "PAIR_COLUMNS",
    "SINGLE_CHECKPOINT_GROUP", "STAGE_BASE", "STAGE_FINETUNED",
    "aggregate", "base_curves", "chance_level", "finetune_gain", "findings_summary", "format_gaps",
    "gain_by_group_paper", "gain_table", "gain_table_wide", "group_pairs_paper", "learned_in_pretraining",
    "ood_pairs_paper", "out_of_domain_ratio", "out_of_domain_raw_change_paper", "prompt_sensitivity", "provenance_path",
    "ratio_of_change", "read_results", "read_train_logs", "sensitivity_by_checkpoint", "sign_flip_test", "sort_results",
    "study_design", "summary", "task_order", "task_transfer", "task_transfer_paper", "task_transfer_test",
    "transfer_cluster_test", "transfer_pairs_paper", "write_markdown", "write_table", "write_table_provenance",
]  # fmt: skip
