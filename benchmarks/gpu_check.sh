#!/usr/bin/env bash
# GPU readiness in under 5 minutes (see benchmarks/gpu_check.py): runs with the machine's own PyTorch, with this
# checkout's source on the path (nothing to download), and prints one table.
#   bash benchmarks/gpu_check.sh [--photos DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
nvidia-smi -L || true
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
PYTHONPATH=src PYTHONUNBUFFERED=1 timeout 290 "$PY" benchmarks/gpu_check.py "$@"
