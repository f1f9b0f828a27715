#!/usr/bin/env bash
# Issue 6 report: for each game, collect random-policy frames, pre-train PermaKey and the
# Transporter on them, score both checkpoints with the RAM-grounded keypoint metric on clean and
# noisy ("both" bars) evaluation frames next to the object-blind baselines, then write KEYPOINTS.md.
#
#   scripts/keypoints-report.sh                 # the CPU budget of KEYPOINTS.md (config/keypoints-cpu.toml)
#   GAMES="MsPacman" PK_STEPS=50 TR_STEPS=50 EVAL_FRAMES=64 scripts/keypoints-report.sh   # a smoke run
#
# Everything lands in $OUT (default results/keypoints): <Game>/{permakey,transporter}/ with the
# training metrics.csv, checkpoints (not committed) and eval/<game>-<noise>.{json,md}; the report
# generator (scripts/keypoints_report.py) reads only the eval JSONs and commands.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/keypoints}
GAMES=${GAMES:-"MsPacman Seaquest Frostbite BattleZone"}
CONFIG=${CONFIG:-config/keypoints-cpu.toml}
FRAMES=${FRAMES:-4096}
PK_STEPS=${PK_STEPS:-300}
TR_STEPS=${TR_STEPS:-300}
EVAL_FRAMES=${EVAL_FRAMES:-1000}
NOISES=${NOISES:-"none both"}
REPORT=${REPORT:-KEYPOINTS.md}
BIN=target/release/permakey-rl
[ -x "$BIN" ] || cargo build --release -p permakey-rl
mkdir -p "$OUT"
log() { echo "[keypoints-report] $*" >&2; }
run() {
  # runs a command and records it with its wall time in $dir/commands.txt (the report prints the
  # command behind every number)
  local start=$SECONDS
  "$@"
  echo "$* # $((SECONDS - start)) s" >> "$dir/commands.txt"
}
for game in $GAMES; do
  dir="$OUT/$game"
  mkdir -p "$dir"
  : > "$dir/commands.txt"
  # K per game as in the reference: MsPacman 7, BattleZone 8, Seaquest 10, Frostbite 20
  case $game in Seaquest) k=10 ;; Frostbite) k=20 ;; BattleZone) k=8 ;; *) k=7 ;; esac
  common=(--config "$CONFIG" --set "env.game=$game" --set "permakey.num_keypoints=$k" --set "transporter.num_keypoints=$k")
  [ -f "$dir/data/.done" ] || { run "$BIN" "${common[@]}" keypoints collect --frames "$FRAMES" --out "$dir/data"; touch "$dir/data/.done"; }
  rm -rf "$dir/permakey" "$dir/transporter"
  run "$BIN" "${common[@]}" --set "pretrain.steps=$PK_STEPS" --set pretrain.progress=false \
    keypoints train --model permakey --data "$dir/data" --out "$dir/permakey"
  run "$BIN" "${common[@]}" --set "pretrain_transporter.steps=$TR_STEPS" --set pretrain_transporter.progress=false \
    keypoints train --model transporter --data "$dir/data" --out "$dir/transporter"
  for model in permakey transporter; do
    for noise in $NOISES; do
      run "$BIN" "${common[@]}" eval-keypoints --checkpoint "$dir/$model/checkpoints" --game "$game" \
        --noise "$noise" --frames "$EVAL_FRAMES" --out "$dir/$model/eval" > /dev/null
    done
  done
  log "$game done"
done
python3 scripts/keypoints_report.py "$OUT" --config "$CONFIG" > "$REPORT"
log "wrote $REPORT"
