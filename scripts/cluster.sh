#!/usr/bin/env bash
# `make cluster`: the distributed mode on one machine without Docker — replay-server,
# keypoint-server, learner and $ACTORS actors as separate processes on 127.0.0.1.
#
#   scripts/cluster.sh [--config FILE] [--set key=value ...]
#
# Environment: ACTORS (default 2), PORT_BASE (default 50051: replay, +1 keypoints, +2 learner),
# RUN_NAME (default cluster-<unix time>), OUT_DIR (default runs), BIN (default target/release),
# METRICS_PORT_BASE (unset: no /metrics; else replay, keypoints, learner, actor 0, 1, ... serve
# Prometheus metrics on 127.0.0.1 ports METRICS_PORT_BASE, +1, +2, +3, +4, ...).
# The run folder <OUT_DIR>/<RUN_NAME> gets the learner's files and logs/<component>.log. The
# script waits for the learner to finish the budget, then stops the other processes with SIGTERM
# (the replay writes its snapshot). Ctrl-C stops everything gracefully.
set -euo pipefail
ACTORS=${ACTORS:-2}
PORT_BASE=${PORT_BASE:-50051}
RUN_NAME=${RUN_NAME:-cluster-$(date +%s)}
OUT_DIR=${OUT_DIR:-runs}
BIN=${BIN:-target/release}
for exe in replay-server keypoint-server learner actor; do
  [[ -x "$BIN/$exe" ]] || { echo "cluster: $BIN/$exe is missing; build with cargo build --release -p permakey-rl" >&2; exit 1; }
done
replay_port=$PORT_BASE; keypoint_port=$((PORT_BASE + 1)); learner_port=$((PORT_BASE + 2))
dir="$OUT_DIR/$RUN_NAME"; logs="$dir/logs"
mkdir -p "$logs"
common=("$@"
  --set "run.out_dir=\"$OUT_DIR\"" --set "run.name=\"$RUN_NAME\""
  --set "replay_server.listen=\"127.0.0.1:$replay_port\"" --set "replay_server.snapshot_path=\"$dir/replay.snapshot\""
  --set "keypoint_server.listen=\"127.0.0.1:$keypoint_port\"" --set "learner_server.listen=\"127.0.0.1:$learner_port\""
  --set "cluster.replay=\"http://127.0.0.1:$replay_port\"" --set "cluster.keypoints=\"http://127.0.0.1:$keypoint_port\""
  --set "cluster.learner=\"http://127.0.0.1:$learner_port\"")
metrics() { if [[ -n "${METRICS_PORT_BASE:-}" ]]; then echo --set "metrics.listen=\"127.0.0.1:$((METRICS_PORT_BASE + $1))\""; fi; }
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'echo "cluster: stopping"; pids+=(${learner:-}); stop_all; exit 130' INT TERM
"$BIN/replay-server" "${common[@]}" $(metrics 0) >"$logs/replay.log" 2>&1 & pids+=($!)
"$BIN/keypoint-server" "${common[@]}" $(metrics 1) >"$logs/keypoint-service.log" 2>&1 & pids+=($!)
"$BIN/learner" "${common[@]}" $(metrics 2) >"$logs/learner.log" 2>&1 & learner=$!
for ((i = 0; i < ACTORS; i++)); do
  "$BIN/actor" "${common[@]}" $(metrics $((3 + i))) --id "$i" >"$logs/actor-$i.log" 2>&1 & pids+=($!)
done
echo "cluster: replay :$replay_port, keypoints :$keypoint_port, learner :$learner_port, $ACTORS actors; logs in $logs"
status=0
wait "$learner" || status=$?
# Actors stop by themselves once the learner reports the budget spent; give them a moment.
sleep 1
stop_all
tail -n 1 "$logs/learner.log"
for ((i = 0; i < ACTORS; i++)); do tail -n 1 "$logs/actor-$i.log"; done
if [[ $status -ne 0 ]]; then echo "cluster: the learner failed (exit $status); see $logs/learner.log" >&2; fi
exit $status
