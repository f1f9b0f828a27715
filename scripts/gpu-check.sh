#!/usr/bin/env bash
# Issue 11's GPU checks as one prepared script, for a session that is lent a device machine (its
# time is short: build here, carry the binary, run this once). Build first: `make cuda`. Then:
#   run(command="scripts/gpu-check.sh", carry=["target/cuda/release/permakey-rl", ".deps/roms"], timeout_s=540)
# It writes to $OUT (the device tool's output folder; default gpu-check/ here), packed at the end
# into $OUT/gpu-check.tgz with only doctor.txt and the bench tables left beside it:
#   doctor.txt                     the runtime (GPU, cuDNN, TF32) and a conv train step
#   bench-highest.md, bench-high.md   `keypoints bench` at the reference sizes, full float32 vs TF32
#   atari100k/                     a single-seed Atari-100k run (config/example.toml, MsPacman), its
#                                  config, metrics.csv, eval.csv, final_scores.json (per-phase timing)
#                                  and log; cut at RUN_SECONDS, when its metrics.csv still gives the rates;
#                                  utilisation.txt: every 10 s the load average, GPU utilisation, GPU memory
# PRECISION (default high) is the run's matmul_precision; RUN_SECONDS (default 360) its time limit;
# CACHE_MIB (default 47104, the ~46 GiB a whole run's frames take) its learner feature cache in GPU memory.
# BACKGROUND_EVAL (default true) is the run's train.background_eval: periodic evaluations on their own
# thread while training goes on (same records; false measures them in the foreground).
# MODE (default pipelined) is the run's train.mode: acting and learning overlapped, still
# bit-reproducible (lockstep measures them one after the other; threads free-running).
# FINAL_EVAL_WORKERS (default 5, one per seed) is the run's train.final_eval_workers: the final
# evaluation's seeds played on that many threads at once (same records; 1 plays them one after the other).
# BENCHES=0 skips the doctor's train step and both benches (measured on an H200 on 2026-12-04), to
# give the run the time: the whole single-seed timing (goal < 10 min) needs one call of ~600 s, e.g.
#   run(command="BENCHES=0 RUN_SECONDS=585 scripts/gpu-check.sh", carry=[...as above...], timeout_s=600)
# MODE, BACKGROUND_EVAL and FINAL_EVAL_WORKERS put more than one thread on the device at once, which
# no GPU has run yet. If the run fails (an exit other than 0 or the cut's 124) after its keypoint
# model was pre-trained, the script falls back within the same call: a second run, atari100k-fallback,
# with MODE=lockstep BACKGROUND_EVAL=false FINAL_EVAL_WORKERS=1 (the single-thread run of 2026-12-04)
# on the first run's keypoint checkpoint, for what is left of RUN_SECONDS; both runs' files come back.
# DEVICE, BATCHES and CONFIG exist to try the script itself on a CPU machine, e.g.
#   DEVICE=cpu BATCHES=1 CONFIG=config/quick.toml CACHE_MIB=256 RUN_SECONDS=90 PYTHON=.deps/torch-cuda/bin/python scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/cuda/release/permakey-rl}
OUT=${OUT:-gpu-check}
PRECISION=${PRECISION:-high}
RUN_SECONDS=${RUN_SECONDS:-360}
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-1,32,256}
CONFIG=${CONFIG:-config/example.toml}
CACHE_MIB=${CACHE_MIB:-47104}
BENCHES=${BENCHES:-1}
BACKGROUND_EVAL=${BACKGROUND_EVAL:-true}
FINAL_EVAL_WORKERS=${FINAL_EVAL_WORKERS:-5}
MODE=${MODE:-pipelined}
[ -x "$BIN" ] || { echo "gpu-check: error: $BIN missing; build it with \`make cuda\` and carry it" >&2; exit 1; }
[ -f .deps/roms/md5.json ] || { echo "gpu-check: error: .deps/roms/md5.json missing; carry .deps/roms" >&2; exit 1; }
export PERMAKEY_ROM_DIR=$PWD/.deps/roms
mkdir -p "$OUT/atari100k"
run() { scripts/run-cuda.sh "$BIN" "$@"; }
stamp() { echo "[gpu-check] $(date +%H:%M:%S) $*"; }

stamp "doctor"
if [ "$BENCHES" = 0 ]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; } >"$OUT/doctor.txt" 2>&1
else
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; run --device $DEVICE doctor --batch 32; } >"$OUT/doctor.txt" 2>&1
fi
tail -5 "$OUT/doctor.txt"
precisions="highest high"
[ "$BENCHES" = 0 ] && precisions=""
for precision in $precisions; do
  stamp "keypoints bench, matmul_precision=$precision"
  run --config "$CONFIG" --device $DEVICE --set matmul_precision=$precision \
    keypoints bench --batches "$BATCHES" --seconds 3 >"$OUT/bench-$precision.md" 2>"$OUT/bench-$precision.log"
  cat "$OUT/bench-$precision.md"
done

stamp "$CONFIG single seed (mode=$MODE, matmul_precision=$PRECISION, background_eval=$BACKGROUND_EVAL, final_eval_workers=$FINAL_EVAL_WORKERS), at most $RUN_SECONDS s"
start=$(date +%s)
# every 10 s: seconds since start, load average, GPU utilisation and memory (who is the bottleneck)
( while sleep 10; do
    echo "$(( $(date +%s) - start )) $(cut -d' ' -f1 /proc/loadavg) $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | tr -d '\n')"
  done ) >"$OUT/atari100k/utilisation.txt" 2>&1 &
sampler=$!
timeout -k 20 "$RUN_SECONDS" scripts/run-cuda.sh "$BIN" --config "$CONFIG" --device $DEVICE \
  --set matmul_precision=$PRECISION --set learner.feature_cache_mib=$CACHE_MIB --set train.background_eval=$BACKGROUND_EVAL \
  --set train.final_eval_workers=$FINAL_EVAL_WORKERS --set train.mode=$MODE \
  --set run.out_dir=runs/gpu-check --set run.name=atari100k \
  run >"$OUT/atari100k/log.txt" 2>&1
rc=$?
echo "exit $rc after $(( $(date +%s) - start )) s (124: cut at RUN_SECONDS)" | tee -a "$OUT/atari100k/log.txt"
# every csv/json/toml of a run folder (the trainer's and the pre-training's), not the checkpoints
keep() {
  mkdir -p "$OUT/$1"
  local out_abs; out_abs=$(cd "$OUT/$1" && pwd)
  [ -d "runs/gpu-check/$1" ] && (cd "runs/gpu-check/$1" && find . -path '*/checkpoints' -prune -o \
    -type f \( -name '*.csv' -o -name '*.json' -o -name '*.toml' \) -exec cp --parents {} "$out_abs/" \;)
  tail -3 "$OUT/$1/log.txt"
}
keep atari100k
left=$(( RUN_SECONDS - ($(date +%s) - start) ))
pretrained=runs/gpu-check/atari100k/permakey/checkpoints
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ -e "$pretrained/latest" ] && [ "$left" -gt 60 ]; then
  stamp "the run failed (exit $rc): single-thread fallback on its keypoint model, at most $left s"
  mkdir -p "$OUT/atari100k-fallback"
  timeout -k 20 "$left" scripts/run-cuda.sh "$BIN" --config "$CONFIG" --device $DEVICE \
    --set matmul_precision=$PRECISION --set learner.feature_cache_mib=$CACHE_MIB --set train.background_eval=false \
    --set train.final_eval_workers=1 --set train.mode=lockstep --set keypoints.checkpoint=$pretrained \
    --set run.out_dir=runs/gpu-check --set run.name=atari100k-fallback \
    run >"$OUT/atari100k-fallback/log.txt" 2>&1
  echo "fallback exit $? after $(( $(date +%s) - start )) s since the first run's start" | tee -a "$OUT/atari100k-fallback/log.txt"
  keep atari100k-fallback
fi
kill $sampler 2>/dev/null
# The device tool returns at most 8 files per call: everything goes into one archive, and only the
# archive, the doctor's output and the two bench tables stay loose.
tar czf "$OUT.tgz" -C "$OUT" . && mv "$OUT.tgz" "$OUT/gpu-check.tgz" && rm -rf "$OUT/atari100k" "$OUT/atari100k-fallback" "$OUT"/*.log
ls "$OUT"
stamp "done"
