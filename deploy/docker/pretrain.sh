#!/bin/sh
# pretrain-keypoints CONFIG: the distributed mode's keypoint model, trained once into /data.
# Collects PRETRAIN_FRAMES (default 4096) random-policy frames and trains the configured keypoint model
# (PermaKey or Transporter) to /data/keypoints/run, then writes /data/keypoints/run/READY, which
# the keypoint service and the learner wait for. Skips everything when READY exists (a restarted
# stack reuses the model) and when the config's keypoint model is the toy world's oracle.
set -eu
config=${1:-/etc/permakey/config.toml}
run=/data/keypoints/run
if grep -Eq '^[[:space:]]*model[[:space:]]*=[[:space:]]*"oracle"' "$config"; then
  echo "pretrain-keypoints: the oracle needs no training"; exit 0
fi
if [ -f "$run/READY" ]; then
  echo "pretrain-keypoints: $run is ready"; exit 0
fi
frames=${PRETRAIN_FRAMES:-4096}
rm -rf /data/keypoints/data "$run"
permakey-rl --config "$config" keypoints collect --frames "$frames" --out /data/keypoints/data
permakey-rl --config "$config" keypoints train --data /data/keypoints/data --out "$run"
touch "$run/READY"
echo "pretrain-keypoints: trained into $run"
