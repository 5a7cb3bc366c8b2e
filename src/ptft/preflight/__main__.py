"""`python -m ptft.preflight --configfile ... [--json preflight.json]`: the preflight table of a study config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import ptft.preflight
from ptft.preflight.data_sets import SAMPLE_ROWS
from ptft.preflight.driver import check_configfile, format_table


def main(argv: list[str] | None = None) -> int:
    """The command line (argv: its arguments); 0 when every check is ok, 1 when any finds a problem."""
    parser = argparse.ArgumentParser(prog="python -m ptft.preflight", description=ptft.preflight.__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", required=True, nargs="+", help="the study config (as given to snakemake)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--rows", type=int, default=SAMPLE_ROWS, help=f"rows sampled per split (default {SAMPLE_ROWS})")
    args = parser.parse_args(argv)
    # Preflight asks the hub, whatever the shell or the study's offline setting say; caches stay in the project.
    # Set before huggingface_hub, datasets and transformers are imported: they read these once.
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "0"
    os.environ.setdefault("HF_HOME", str(Path.cwd() / ".cache" / "huggingface"))
    rows = check_configfile(args.configfile, k=args.rows)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1) + "\n", encoding="utf-8")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
