#!/usr/bin/env bash
# Builds the images docker-compose.yml runs, without a container registry:
#   1. debian:bookworm-slim, offline from the Debian mirror (deploy/base-image/build.sh; skipped
#      when the tag exists, e.g. pulled from Docker Hub);
#   2. the release binaries on this machine (scripts/setup.sh + cargo build);
#   3. permakey-rl:latest (deploy/docker/Dockerfile) and prometheus:latest
#      (deploy/docker/prometheus.Dockerfile, Debian's prometheus package).
# Usage: scripts/docker-build.sh [--no-cargo]   (environment: IMAGE_TAG, default latest)
#   --no-cargo: use the binaries already in target/release (tests, which run inside cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${IMAGE_TAG:-latest}
cargo=1
[[ "${1:-}" == --no-cargo ]] && cargo=0
log() { printf '[docker-build] %s\n' "$*" >&2; }
command -v docker >/dev/null || { echo "docker-build: error: docker not found on PATH" >&2; exit 1; }
deploy/base-image/build.sh
if [[ $cargo == 1 ]]; then
  scripts/setup.sh
  log "building the release binaries"
  cargo build --release -p permakey-rl --bins
fi
for b in permakey-rl replay-server keypoint-server learner actor; do
  [[ -x target/release/$b ]] || { echo "docker-build: error: target/release/$b is missing (cargo build --release -p permakey-rl --bins)" >&2; exit 1; }
done
start=$(date +%s)
# The two builds run side by side (each mostly waits on apt downloads and layer commits), and
# Prometheus' context is its own folder (one file) rather than the repository's 1.2 GB of binaries
# and libtorch: 83 s -> 60 s for the two images, BENCHMARKS.md "Build and test time".
log "building permakey-rl:$tag and prometheus:$tag"
docker build -q -f deploy/docker/Dockerfile -t "permakey-rl:$tag" . >/dev/null &
main_build=$!
prometheus_ok=1
docker build -q -f deploy/docker/prometheus.Dockerfile -t "prometheus:$tag" deploy/prometheus >/dev/null || prometheus_ok=0
wait "$main_build" || { echo "docker-build: error: building permakey-rl:$tag failed (deploy/docker/Dockerfile)" >&2; exit 1; }
[[ $prometheus_ok == 1 ]] || { echo "docker-build: error: building prometheus:$tag failed (deploy/docker/prometheus.Dockerfile)" >&2; exit 1; }
log "images ready in $(( $(date +%s) - start )) s: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(permakey-rl|prometheus):$tag " | tr '\n' ' ')"
