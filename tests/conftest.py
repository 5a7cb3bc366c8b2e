"""Fixtures shared by the unit tests."""

import os

import pytest

from ptft import tasks


@pytest.fixture
def restore_tasks():
    """Config-defined task families registered by a test are dropped afterwards (TASKS and $PTFT_TASKS), so that no
    other test sees them."""
    before = os.environ.get(tasks.TASKS_ENV)
    yield tasks
    tasks.register({})
    if before is None:
        os.environ.pop(tasks.TASKS_ENV, None)
    else:
        os.environ[tasks.TASKS_ENV] = before
