"""`python -m ptft.hub resolve --configfile ...`: pin every hub checkpoint of a study config in its lock file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ptft.hub
from ptft.checks import validate
from ptft.config import ConfigError, apply_offline, read_configfiles
from ptft.hub import HubError, lock_path, resolve_config
from ptft.hubdata import locked_revision
from ptft.records import HubDataError


def main(argv: list[str] | None = None) -> int:
    """The command line (argv: its arguments); 0 when every checkpoint and data set is pinned, 1 with the error on stderr."""
    parser = argparse.ArgumentParser(prog="python -m ptft.hub", description=ptft.hub.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    res = sub.add_parser("resolve", help="pin every hub checkpoint (selection rules too) and hub data set of a study config in its lock file")
    res.add_argument("--configfile", required=True, nargs="+", help="the study config (as given to snakemake)")
    res.add_argument("--lock", help="lock file (default: the config's revisions_lock)")
    args = parser.parse_args(argv)
    try:
        config = validate(read_configfiles(args.configfile), source=", ".join(args.configfile))
        apply_offline(config, Path.cwd())  # the study's own offline setting and cache folder, as in its jobs
        path = Path(args.lock) if args.lock else lock_path(config)
        for model, labels in resolve_config(config, path).items():
            print(f"{model}: {len(labels)} checkpoints pinned in {path}: {', '.join(labels)}")
        for name, spec in config["data"]["datasets"].items():
            if spec.get("source") == "hub":
                commit, _ = locked_revision(name, spec["hub"], path)
                print(f"{name}: data set {spec['hub']['repo']} pinned in {path}: {commit}")
    except (HubError, HubDataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
