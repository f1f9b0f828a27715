#!/usr/bin/env bash
# Issue 11: the paper's runs with this system, then RESULTS.md.
#
#   scripts/results-runs.sh                                   # every cell, CPU budget, seed 0
#   SEEDS="0 1 2" CONFIG=config/example.toml DEVICE=cuda scripts/results-runs.sh   # Atari-100k on a GPU
#   EXPERIMENTS=main GAMES=MsPacman VARIANTS=pkey-cnn scripts/results-runs.sh      # one cell
#   # the single-seed Atari-100k timing of issue 11 on a GPU machine with the CUDA build:
#   BIN=target/cuda/release/permakey-rl RUNNER=scripts/run-cuda.sh CONFIG=config/example.toml DEVICE=cuda \
#     EXPERIMENTS=main GAMES=MsPacman VARIANTS=pkey-cnn scripts/results-runs.sh
#
# Experiments (the poster's three tables):
#   main      GAMES x VARIANTS (pkey-cnn, pkey-gnn, transporter-cnn), K per game as the reference
#   noisy     Seaquest and MsPacman with "both" distractor bars, pkey-cnn and transporter-cnn
#   keypoints MsPacman pkey-cnn with K = 5 and 10 (K = 7 is the main table's MsPacman pkey-cnn cell,
#             the same configuration, so the report takes that row from there)
#   random    the uniformly random policy on every game (and the noisy ones), whole games without
#             life-loss ends, RANDOM_STEPS agent steps per cell: the floor each score is read against
# Each run is one `permakey-rl run` (it collects random-policy frames, pre-trains its own keypoint
# model with the run's seed, trains the agent and evaluates it), then `eval-keypoints` scores the
# keypoint checkpoint it used. Scratch folders go to $WORK (default runs/results, not committed);
# the small files are copied to $OUT/<experiment>/<cell>/seed<N>/ (committed): config.toml,
# metrics.csv, eval.csv, final_scores.json, keypoints-<noise>.json and run.json (command, device,
# host, the binary's commit, wall time). A cell whose final_scores.json is already in $OUT is skipped
# (FORCE=1 reruns it), so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/runs}
WORK=${WORK:-runs/results}
CONFIG=${CONFIG:-config/results-cpu.toml}
DEVICE=${DEVICE:-auto}
SEEDS=${SEEDS:-0}
EXPERIMENTS=${EXPERIMENTS:-"random main noisy keypoints"}
RANDOM_STEPS=${RANDOM_STEPS:-40000}
GAMES=${GAMES:-"MsPacman Seaquest Frostbite BattleZone"}
VARIANTS=${VARIANTS:-"pkey-cnn pkey-gnn transporter-cnn"}
EVAL_FRAMES=${EVAL_FRAMES:-256}
FORCE=${FORCE:-0}
REPORT=${REPORT:-RESULTS.md}
BIN=${BIN:-target/release/permakey-rl}
# A command the binary runs under (e.g. scripts/run-cuda.sh, which points the loader at torch).
RUNNER=${RUNNER:-}
[ -x "$BIN" ] || cargo build --release -p permakey-rl
log() { echo "[results-runs] $(date +%H:%M:%S) $*" >&2; }
# The commit the binary was built from (its --version; trainer/build.rs), not the checkout's HEAD:
# a rebuild during a long series must not relabel runs. Agent runs read it from their own
# final_scores.json, which the process that ran wrote.
binary_commit() { $RUNNER "$BIN" --version 2>/dev/null | sed -n 's/.*(commit \(.*\))$/\1/p' | grep . || echo unknown; }

# K per game as in the reference: MsPacman 7, BattleZone 8, Seaquest 10, Frostbite 20
default_k() { case $1 in Seaquest) echo 10 ;; Frostbite) echo 20 ;; BattleZone) echo 8 ;; *) echo 7 ;; esac; }

# run_cell EXPERIMENT GAME VARIANT NOISE K SEED
run_cell() {
  local experiment=$1 game=$2 variant=$3 noise=$4 k=$5 seed=$6
  local cell="$game-$variant"
  [ "$noise" = none ] || cell="$cell-noise-$noise"
  [ "$experiment" != keypoints ] || cell="$cell-k$k"
  local dest="$OUT/$experiment/$cell/seed$seed"
  if [ -f "$dest/final_scores.json" ] && [ "$FORCE" != 1 ]; then
    log "skip $experiment/$cell seed $seed (done)"
    return
  fi
  local model=${variant%-*} encoder=${variant##*-}
  [ "$model" = pkey ] && model=permakey
  local name="$experiment-$cell-seed$seed"
  rm -rf "${WORK:?}/$name"
  local args=(--device "$DEVICE" --config "$CONFIG"
    --set "env.game=$game" --set "env.noise=$noise" --set "keypoints.model=$model" --set "agent.encoder=$encoder"
    --set "permakey.num_keypoints=$k" --set "transporter.num_keypoints=$k"
    --set "run.seed=$seed" --set "run.out_dir=$WORK" --set "run.name=$name")
  log "run $experiment/$cell seed $seed"
  local start=$SECONDS
  $RUNNER "$BIN" "${args[@]}" run > "$WORK.$name.log" 2>&1 || { log "FAILED $experiment/$cell seed $seed: see $WORK.$name.log"; tail -5 "$WORK.$name.log" >&2; return 1; }
  local run_s=$((SECONDS - start))
  local dir="$WORK/$name"
  mkdir -p "$dest"
  # The keypoint metric of the checkpoint the agent used, on the observations it trained on.
  start=$SECONDS
  $RUNNER "$BIN" --device "$DEVICE" --config "$dir/config.toml" eval-keypoints --checkpoint "$dir/$model/checkpoints" \
    --game "$game" --noise "$noise" --frames "$EVAL_FRAMES" --out "$dir/keypoint-eval" > /dev/null
  local eval_s=$((SECONDS - start))
  cp "$dir/keypoint-eval/"*.json "$dest/keypoints-$noise.json"
  cp "$dir/config.toml" "$dir/metrics.csv" "$dir/eval.csv" "$dir/final_scores.json" "$dest/"
  cat > "$dest/run.json" <<EOF
{
  "experiment": "$experiment",
  "cell": "$cell",
  "game": "$game",
  "variant": "$variant",
  "noise": "$noise",
  "num_keypoints": $k,
  "seed": $seed,
  "profile": "$CONFIG",
  "command": "$BIN ${args[*]} run",
  "keypoint_eval_command": "$BIN --device $DEVICE --config <run>/config.toml eval-keypoints --checkpoint <run>/$model/checkpoints --game $game --noise $noise --frames $EVAL_FRAMES (run.seed = $seed)",
  "run_wall_s": $run_s,
  "keypoint_eval_wall_s": $eval_s,
  "host_cpus": $(nproc),
  "gpu": "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)",
  "commit": "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('commit') or 'unknown')" "$dest/final_scores.json")",
  "finished": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
  log "done $experiment/$cell seed $seed: score $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['score'])" "$dest/final_scores.json") in ${run_s} s"
}

# random_cell GAME NOISE SEED: `permakey-rl collect` (random actions) over RANDOM_STEPS agent steps
random_cell() {
  local game=$1 noise=$2 seed=$3
  local cell="$game"
  [ "$noise" = none ] || cell="$cell-noise-$noise"
  local dest="$OUT/random/$cell/seed$seed"
  if [ -f "$dest/summary.json" ] && [ "$FORCE" != 1 ]; then
    log "skip random/$cell seed $seed (done)"
    return
  fi
  local name="random-$cell-seed$seed"
  rm -rf "${WORK:?}/$name"
  local args=(--config "$CONFIG" --set "env.game=$game" --set "env.noise=$noise" --set env.terminal_on_life_loss=false
    --set "collect.agent_steps=$RANDOM_STEPS" --set collect.record_steps=0 --set collect.keypoint_frames=0
    --set "run.seed=$seed" --set "run.out_dir=$WORK" --set "run.name=$name")
  local start=$SECONDS commit
  commit=$(binary_commit)
  $RUNNER "$BIN" "${args[@]}" collect > "$WORK.$name.log" 2>&1 || { log "FAILED random/$cell seed $seed: see $WORK.$name.log"; return 1; }
  mkdir -p "$dest"
  cp "$WORK/$name/summary.json" "$WORK/$name/config.toml" "$dest/"
  cat > "$dest/run.json" <<EOF
{
  "experiment": "random",
  "cell": "$cell",
  "game": "$game",
  "variant": "random",
  "noise": "$noise",
  "seed": $seed,
  "profile": "$CONFIG",
  "command": "$BIN ${args[*]} collect",
  "run_wall_s": $((SECONDS - start)),
  "host_cpus": $(nproc),
  "commit": "$commit",
  "finished": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
  log "done random/$cell seed $seed"
}

mkdir -p "$OUT" "$WORK"
for seed in $SEEDS; do
  for experiment in $EXPERIMENTS; do
    case $experiment in
      main)
        for game in $GAMES; do
          for variant in $VARIANTS; do run_cell main "$game" "$variant" none "$(default_k "$game")" "$seed"; done
        done ;;
      noisy)
        for game in Seaquest MsPacman; do
          for variant in pkey-cnn transporter-cnn; do run_cell noisy "$game" "$variant" both "$(default_k "$game")" "$seed"; done
        done ;;
      keypoints)
        for k in 5 10; do run_cell keypoints MsPacman pkey-cnn none "$k" "$seed"; done ;;
      random)
        for game in $GAMES; do random_cell "$game" none "$seed"; done
        for game in Seaquest MsPacman; do random_cell "$game" both "$seed"; done ;;
      *) echo "unknown experiment '$experiment' (expected random, main, noisy or keypoints)" >&2; exit 2 ;;
    esac
  done
done
python3 scripts/results_report.py "$OUT" > "$REPORT"
log "wrote $REPORT"
