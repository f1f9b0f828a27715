#!/usr/bin/env bash
# Builds the CUDA variant of the binaries against the full PyTorch 2.11.0 (CUDA 13) installed by
# `scripts/setup.sh --cuda` into .deps/torch-cuda. Output: target/cuda/release/permakey-rl.
# The binary links libtorch_cuda explicitly (--no-as-needed), so `--device cuda|auto` sees the GPU.
# Run it here with its rpath, or on another machine that has torch 2.11 + CUDA 13 through
# scripts/run-cuda.sh (which points the loader at that machine's torch/lib).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.deps/torch-cuda"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "build-cuda: error: $VENV missing; run \`scripts/setup.sh --cuda\` (or \`make cuda\`)" >&2; exit 1; }
version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null) \
  || { echo "build-cuda: error: torch does not import from $VENV; rerun \`scripts/setup.sh --cuda\`" >&2; exit 1; }
[ "$version" = "2.11.0" ] || { echo "build-cuda: error: found torch $version in $VENV, tch 0.24 needs 2.11.0" >&2; exit 1; }
TORCH_LIB=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
[ -f "$TORCH_LIB/libtorch_cuda.so" ] || { echo "build-cuda: error: $TORCH_LIB has no libtorch_cuda.so (a CPU-only torch?)" >&2; exit 1; }
export LIBTORCH_USE_PYTORCH=1
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
# RUSTFLAGS replaces the CPU rpath of .cargo/config.toml; the explicit -ltorch_cuda after
# --no-as-needed keeps libtorch_cuda in DT_NEEDED although no symbol of it is referenced directly.
# An explicit --target keeps these flags off the build scripts (host artifacts).
export RUSTFLAGS="-C link-arg=-Wl,-rpath,$TORCH_LIB -C link-arg=-L$TORCH_LIB -C link-arg=-Wl,--no-as-needed -C link-arg=-ltorch_cuda -C link-arg=-lc10_cuda -C link-arg=-Wl,--as-needed"
TARGET=x86_64-unknown-linux-gnu
cargo build --release --target "$TARGET" --target-dir "$ROOT/target/cuda" -p permakey-rl "$@"
mkdir -p "$ROOT/target/cuda/release"
# The copy to carry to a GPU machine keeps its symbols but not its debug info (92 MB -> 13 MB; the
# device tool carries 64 MiB at most); the unstripped one stays under target/cuda/$TARGET/.
strip --strip-debug -o "$ROOT/target/cuda/release/permakey-rl" "$ROOT/target/cuda/$TARGET/release/permakey-rl"
bin="$ROOT/target/cuda/release/permakey-rl"
readelf -d "$bin" | grep -q 'libtorch_cuda.so' || { echo "build-cuda: error: $bin does not link libtorch_cuda" >&2; exit 1; }
echo "built $bin (links libtorch_cuda; run elsewhere with scripts/run-cuda.sh)"
