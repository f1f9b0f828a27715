#!/usr/bin/env bash
# Runs a CUDA build of permakey-rl on a machine whose python3 has PyTorch 2.11 with CUDA 13:
# points the dynamic loader at that torch's lib folder (its own rpath finds the NVIDIA libraries).
# Usage: scripts/run-cuda.sh [path/to/permakey-rl] ARGS...   (default binary: target/cuda/release/permakey-rl)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$ROOT/target/cuda/release/permakey-rl"
if [ $# -gt 0 ] && [ -x "$1" ] && [ ! -d "$1" ]; then bin=$1; shift; fi
PY=${PYTHON:-python3}
info=$("$PY" -c 'import torch, os; print(torch.__version__.split("+")[0], os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) \
  || { echo "run-cuda: error: $PY cannot import torch; install torch==2.11.0 (CUDA 13) or set PYTHON" >&2; exit 1; }
read -r version lib <<<"$info"
[ "$version" = "2.11.0" ] || { echo "run-cuda: error: $PY has torch $version; this binary needs 2.11.0" >&2; exit 1; }
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$bin" "$@"
