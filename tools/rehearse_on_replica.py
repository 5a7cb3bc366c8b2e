"""Rehearse a study config with no network: start the hub replica (tests/replica.py, built from the recorded facts
in tests/hub_facts.yaml) on 127.0.0.1, point the hub clients at it, and run `make rehearse`'s Snakemake command.

    make rehearse-offline CONFIG=configs/paper-olmo1b.yaml
    # = .venv/bin/python tools/rehearse_on_replica.py configs/paper-olmo1b.yaml --cores N

The same run as tests/integration/test_rehearsal.py, by hand: outputs in rehearsal/<study>/, its Snakemake log on
this terminal. With network, `make rehearse` reads the real hub instead (real tokenizers and configs, real rows).
Both write rehearsal/<study>/, whose lock pins the commits of the hub it ran against: delete that folder before
switching between the replica and the real hub.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from replica import REPLICA_TOKEN, replica_hub  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a study config, e.g. configs/paper-olmo1b.yaml")
    parser.add_argument("--cores", default=str(os.cpu_count() or 1))
    args = parser.parse_args(argv)
    snakemake = Path(sys.executable).parent / "snakemake"
    with tempfile.TemporaryDirectory(prefix="ptft-replica-") as work, replica_hub(Path(work)) as hub:
        print(f"hub replica at {hub.url}", file=sys.stderr, flush=True)
        # The replica's repos are cached in the temporary folder, never beside the real hub's in .cache/.
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": REPLICA_TOKEN, "HF_HUB_OFFLINE": "0",
               "HF_DATASETS_OFFLINE": "0", "HF_HOME": str(Path(work) / "huggingface")}  # fmt: skip
        command = [str(snakemake), "--configfile", args.config, "--config", "rehearsal=True", "--cores", args.cores,
                   "--profile", "profiles/local"]  # fmt: skip
        return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
