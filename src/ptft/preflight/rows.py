"""The preflight table's rows: what was checked, the config key it concerns, ok or problem, and the fix."""

from __future__ import annotations

import dataclasses

OK, PROBLEM = "ok", "problem"


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the preflight table: what was checked (check), the config key it concerns (subject), ok or
    problem (status), what was found (detail) and, for a problem, what to change (fix)."""

    check: str
    subject: str
    status: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def ok(check: str, subject: str, detail: str) -> Row:
    """A row saying the check found nothing to fix."""
    return Row(check, subject, OK, detail)


def problem(check: str, subject: str, detail: str, fix: str) -> Row:
    """A row saying what the check found wrong (detail) and what to change (fix)."""
    return Row(check, subject, PROBLEM, detail, fix)
