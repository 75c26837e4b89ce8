#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with this project and its test tools.
# torch is pinned and installed first, so that mace-torch's unpinned torch requirement does not
# pull a newer multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # A pinned torch first. On this project's CPU machines pip takes a local CPU wheel; on a CPU-only
  # machine elsewhere, set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to get one.
  pip install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
pip install -e ".[test]"
echo "set-up done: $(.venv/bin/python -c 'import torch, mace, ray; print(f"torch {torch.__version__}, mace {mace.__version__}, ray {ray.__version__}")')"
