#!/usr/bin/env bash
# Snakemake runs this in the project root, inside the new eval-vllm env, right after creating it
# (snakemake/deployment/conda.py execute_deployment_script). ptft goes in without its dependencies: its pyproject pins
# torch==2.13.0 for the CPU lock, and vLLM brings torch 2.14.0.
set -euo pipefail
python -m pip install --no-deps -e .
