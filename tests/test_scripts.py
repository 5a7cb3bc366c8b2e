"""The rule scripts (scripts/*.py) against the package they call.

Snakemake reruns every job of a script rule whose script file is newer than the job's outputs (rerun-trigger code,
snakemake/jobs.py `outputs_older_than_script_or_notebook`), so a refactor of src/ptft must leave scripts/ as they are:
every name a script imports must still be importable from the module it names, and every keyword a script passes
must still be a parameter of the function it calls. These tests fail when a move or a rename breaks that contract.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


def _ptft_imports(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """local name -> (module, attribute) for every `from ptft... import name` in a script, nested ones included."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ptft":
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
    return names


def test_every_rule_script_is_checked():
    assert len(SCRIPTS) >= 15, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_resolve_and_keywords_match(script: Path):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    imported = _ptft_imports(tree)
    objects = {}
    for local, (module, attribute) in imported.items():
        mod = importlib.import_module(module)
        assert hasattr(mod, attribute), f"{script.name}: `from {module} import {attribute}` no longer resolves"
        objects[local] = getattr(mod, attribute)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in objects):
            continue
        target = objects[node.func.id]
        if not callable(target):
            continue
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # a builtin or C function without a signature
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for keyword in node.keywords:
            if keyword.arg is not None:
                assert keyword.arg in params, (
                    f"{script.name} line {node.lineno}: {node.func.id}() has no parameter {keyword.arg!r} "
                    f"(it takes {list(params)})"
                )
