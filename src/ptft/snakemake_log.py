"""One repair of Snakemake's console output, applied by rules/common.smk in the Snakemake process that plans the jobs.

Snakemake 9's report of a failed job prints `message: None` for every job without an error message of its own (its
DefaultFormatter checks the log record's text, always set, and prints the job's message, None for ptft's rules): the
line tells a user nothing and reads like the cause. `drop_empty_job_messages` removes that one line; the rest of the
report (jobid, input, output, log, and the log's content under --show-failed-logs) stays as Snakemake wrote it.
"""

from __future__ import annotations

from typing import Any

EMPTY_MESSAGE = "    message: None"


def drop_empty_job_messages() -> bool:
    """Patch snakemake.logging.DefaultFormatter so a failed job's report has no `message: None` line; return whether
    the formatter was found (an other Snakemake version without it is left alone). Idempotent."""
    try:
        from snakemake.logging import DefaultFormatter
    except ImportError:
        return False
    original = getattr(DefaultFormatter, "_format_job_error", None)
    if original is None or getattr(original, "_ptft", False):
        return original is not None

    def _format_job_error(self: Any, msg: dict[str, Any]) -> list[str]:
        return [line for line in original(self, msg) if line != EMPTY_MESSAGE]

    _format_job_error._ptft = True  # type: ignore[attr-defined]
    DefaultFormatter._format_job_error = _format_job_error
    return True
