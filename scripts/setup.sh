#!/usr/bin/env bash
# One idempotent set-up for `make run`, `make test` and `make bench`.
#
# Installs, from registries only (Debian, PyPI, crates.io), into .deps/ inside the repository:
#   .deps/venv          Python venv: ale-py 0.12.1 (parity tests, ROMs), numpy, safetensors
#   .deps/roms          the 108 ROMs + md5.json shipped inside the ale-py 0.12.1 wheel (never committed)
#   .deps/ale-0.12.1    ALE 0.12.1 C++ sources from the ale-py sdist (compiled by atari-sys/build.rs)
#   .deps/libtorch      lean CPU libtorch 2.11.0 cut from the PyTorch wheel (headers + 5 libraries)
#                       plus libcudart/libcupti from the two small NVIDIA runtime wheels
#   .cargo/config.toml  generated: LIBTORCH for tch and an rpath, so binaries need no LD_LIBRARY_PATH
# Each step leaves a stamp; a second run with nothing changed only checks the stamps.
#
# Usage: scripts/setup.sh [--bench] [--cuda]
#   --bench  also installs the Python benchmark baselines (envpool, gymnasium)
#   --cuda   also installs the full torch==2.11.0 (CUDA 13) into .deps/torch-cuda for `make cuda`
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS="$ROOT/.deps"
TORCH_VERSION=2.11.0
ALE_VERSION=0.12.1
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
PY=${PYTHON:-python3}
want_bench=0
want_cuda=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    --cuda) want_cuda=1 ;;
    *) echo "setup: unknown option '$arg' (expected --bench or --cuda)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
mkdir -p "$DEPS"
start=$(date +%s)

# --- 1. Debian packages the build needs --------------------------------------------------------
need_apt=()
# prometheus: the real Prometheus the dashboard test scrapes a run with (cli/tests/dashboards.rs).
for pkg in zlib1g-dev g++ make python3-venv prometheus; do
  if [ "$pkg" = python3-venv ]; then
    "$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=("$pkg")
  else
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt+=("$pkg")
  fi
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  command -v apt-get >/dev/null || die "missing ${need_apt[*]} and no apt-get; install them by hand"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs), then re-run"

# --- 2. Python venv (ale-py for parity tests and ROMs) -----------------------------------------
req="$ROOT/scripts/requirements.txt"
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
venv_stamp=$(stamp_of "$req")
if [ "$(cat "$DEPS/venv/.stamp" 2>/dev/null)" != "$venv_stamp" ]; then
  log "creating Python venv in .deps/venv"
  rm -rf "$DEPS/venv"
  "$PY" -m venv "$DEPS/venv"
  "$DEPS/venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$venv_stamp" > "$DEPS/venv/.stamp"
fi
if [ $want_bench = 1 ]; then
  breq="$ROOT/scripts/requirements-bench.txt"
  if [ "$(cat "$DEPS/venv/.stamp-bench" 2>/dev/null)" != "$(stamp_of "$req" "$breq")" ]; then
    log "installing Python benchmark baselines (envpool, gymnasium)"
    "$DEPS/venv/bin/pip" install -q --disable-pip-version-check -r "$breq"
    stamp_of "$req" "$breq" > "$DEPS/venv/.stamp-bench"
  fi
fi

# --- 3. ROMs from the ale-py wheel ---------------------------------------------------------------
if [ ! -f "$DEPS/roms/.stamp" ]; then
  log "copying the ale-py $ALE_VERSION ROMs to .deps/roms"
  romsrc=$("$DEPS/venv/bin/python" -c 'import ale_py.roms, os; print(os.path.dirname(ale_py.roms.__file__))')
  rm -rf "$DEPS/roms"; mkdir -p "$DEPS/roms"
  cp "$romsrc"/*.bin "$romsrc"/md5.json "$DEPS/roms/"
  n=$(ls "$DEPS/roms"/*.bin | wc -l)
  [ "$n" -ge 100 ] || die "expected the ale-py ROMs in $romsrc, found only $n"
  echo "$ALE_VERSION" > "$DEPS/roms/.stamp"
fi

# --- 4. ALE C++ sources from the ale-py sdist ----------------------------------------------------
if [ ! -f "$DEPS/ale-$ALE_VERSION/.stamp" ]; then
  log "fetching ALE $ALE_VERSION sources (ale-py sdist)"
  tmp=$(mktemp -d)
  "$DEPS/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary ale-py \
    --no-build-isolation "ale-py==$ALE_VERSION" -d "$tmp" 2>/dev/null \
    || "$DEPS/venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary ale-py "ale-py==$ALE_VERSION" -d "$tmp"
  rm -rf "$DEPS/ale-$ALE_VERSION"; mkdir -p "$DEPS/ale-$ALE_VERSION"
  tar xzf "$tmp"/ale_py-$ALE_VERSION.tar.gz -C "$DEPS/ale-$ALE_VERSION" --strip-components=1 \
    "ale_py-$ALE_VERSION/src/ale" "ale_py-$ALE_VERSION/LICENSE.md" "ale_py-$ALE_VERSION/version.txt"
  rm -rf "$tmp"
  echo "$ALE_VERSION" > "$DEPS/ale-$ALE_VERSION/.stamp"
fi

# --- 5. lean CPU libtorch from the PyTorch wheel -------------------------------------------------
lt="$DEPS/libtorch"
if [ "$(cat "$lt/.stamp" 2>/dev/null)" != "$TORCH_VERSION" ]; then
  log "cutting a lean CPU libtorch $TORCH_VERSION out of the PyPI wheel (~530 MB download)"
  tmp=$(mktemp -d -p "$DEPS")
  "$DEPS/venv/bin/pip" download -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION" -d "$tmp"
  rm -rf "$lt"; mkdir -p "$lt/lib"
  "$DEPS/venv/bin/python" - "$tmp" "$lt" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
libs = {"libtorch_cpu.so", "libtorch.so", "libc10.so", "libgomp.so.1", "libshm.so",
        "libcudart.so.13", "libcupti.so.13"}
for wheel in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if name.startswith("torch/include/"):
                dest = os.path.join(out, name[len("torch/"):])
            elif os.path.basename(name) in libs and "/lib/" in name:
                dest = os.path.join(out, "lib", os.path.basename(name))
            else:
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
missing = [l for l in libs if not os.path.exists(os.path.join(out, "lib", l))]
if missing:
    sys.exit(f"setup: error: libraries missing from the wheels: {missing}")
PY
  echo "$TORCH_VERSION" > "$lt/build-version"
  rm -rf "$tmp"
  echo "$TORCH_VERSION" > "$lt/.stamp"
fi

# --- 6. optional: full PyTorch (CUDA 13) for `make cuda` -----------------------------------------
if [ $want_cuda = 1 ] && [ "$(cat "$DEPS/torch-cuda/.stamp" 2>/dev/null)" != "$TORCH_VERSION" ]; then
  log "installing the full torch==$TORCH_VERSION (CUDA 13, ~4.6 GB) into .deps/torch-cuda"
  rm -rf "$DEPS/torch-cuda"
  "$PY" -m venv "$DEPS/torch-cuda"
  "$DEPS/torch-cuda/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION"
  echo "$TORCH_VERSION" > "$DEPS/torch-cuda/.stamp"
fi

# --- 7. cargo configuration (absolute paths of this clone) ---------------------------------------
cfg="$ROOT/.cargo/config.toml"
mkdir -p "$ROOT/.cargo"
new_cfg=$(cat <<TOML
# Generated by scripts/setup.sh for this clone; do not edit (it is rewritten when paths change).
[env]
LIBTORCH = "$lt"
ALE_SRC_DIR = "$DEPS/ale-$ALE_VERSION/src"
PERMAKEY_ROM_DIR = "$DEPS/roms"
PERMAKEY_VENV = "$DEPS/venv"

[target.x86_64-unknown-linux-gnu]
rustflags = ["-C", "link-arg=-Wl,-rpath,$lt/lib"]

[build]
# doctests are linked by rustdoc: same rpath
rustdocflags = ["-C", "link-arg=-Wl,-rpath,$lt/lib"]
TOML
)
if [ "$(cat "$cfg" 2>/dev/null)" != "$new_cfg" ]; then
  printf '%s\n' "$new_cfg" > "$cfg"
  log "wrote .cargo/config.toml"
fi
log "dependencies ready in $(( $(date +%s) - start )) s ($(du -sh "$DEPS" 2>/dev/null | cut -f1) in .deps)"
