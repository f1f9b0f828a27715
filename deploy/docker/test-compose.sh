#!/usr/bin/env bash
# The compose stack for real, bounded in time (cli/tests/compose.rs runs it in `make test`):
# build the images, `docker compose up -d` on the sprite corridor (PKRL_CONFIG=toy) with 2
# actors, wait until Prometheus shows the learner's update counter rising, `docker kill` one
# actor and the keypoint service, start them again, see the updates rise again and the other
# actor untouched, kill the replay and the learner, start them again, see the new learner's
# updates rise, then `docker compose down -v`. Prints one line per phase; exit 0 = passed.
#   deploy/docker/test-compose.sh [--no-cargo]
set -euo pipefail
cd "$(dirname "$0")/../.."
project=pkrl-test-$$
limit=${COMPOSE_TEST_LIMIT_S:-900}
started=$(date +%s)
log() { printf '[compose-test %4ds] %s\n' "$(( $(date +%s) - started ))" "$*"; }
fail() { log "FAILED: $*"; dump; exit 1; }
export PKRL_CONFIG=toy
export PROMETHEUS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if docker compose version >/dev/null 2>&1; then dc=(docker compose); else dc=(docker-compose); fi
compose() { "${dc[@]}" -p "$project" "$@"; }
dump() { compose ps -a || true; compose logs --tail 30 learner keypoint-service actor replay 2>/dev/null | tail -80 || true; }
cleanup() { compose down -v --timeout 20 >/dev/null 2>&1 || true; }
trap cleanup EXIT
deadline() { (( $(date +%s) - started < limit )) || fail "over the ${limit}s limit"; }

scripts/docker-build.sh "$@"
log "images built"
compose up -d --scale actor=2 >/dev/null 2>&1 || fail "docker compose up"
log "stack up (prometheus on :$PROMETHEUS_PORT)"

# The learner's update counter as Prometheus sees it (empty until scraped).
updates() {
  curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=max(pkrl_learner_updates_total)" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else -1)' 2>/dev/null || echo -1
}
# Waits until the counter exceeds $1; prints it.
wait_above() {
  local value
  while true; do
    deadline
    value=$(updates)
    if (( value > $1 )); then echo "$value"; return; fi
    sleep 3
  done
}
first=$(wait_above 0)
second=$(wait_above "$first")
log "learner updates rising in Prometheus: $first -> $second"

actors=($(compose ps -q actor))
(( ${#actors[@]} == 2 )) || fail "expected 2 actor containers, got ${#actors[@]}"
victim=${actors[0]}; survivor=${actors[1]}
docker kill "$victim" >/dev/null
docker kill "$(compose ps -q keypoint-service)" >/dev/null
log "killed actor ${victim:0:12} and the keypoint service"
sleep 5
[[ "$(docker inspect -f '{{.State.Running}}' "$survivor")" == true ]] || fail "the other actor stopped"
compose up -d --scale actor=2 >/dev/null 2>&1 || fail "docker compose up (restart)"
log "restarted them"
before=$(updates)
after=$(wait_above $(( before + 20 )))
log "the run continues: updates $before -> $after"
[[ "$(docker inspect -f '{{.RestartCount}} {{.State.Running}}' "$survivor")" == "0 true" ]] \
  || fail "the surviving actor restarted or stopped: $(docker inspect -f '{{.RestartCount}} {{.State.Status}}' "$survivor")"
learner_restarts=$(docker inspect -f '{{.RestartCount}}' "$(compose ps -q learner)")
[[ "$learner_restarts" == 0 ]] || fail "the learner restarted $learner_restarts times"

# SIGKILL the replay (restores its snapshot) and the learner (resumes from its checkpoint); the
# update counter must rise past where it was before the kills.
killed_at=$(updates)
docker kill "$(compose ps -q replay)" "$(compose ps -q learner)" >/dev/null
log "killed the replay and the learner at $killed_at updates"
sleep 3
compose up -d --scale actor=2 >/dev/null 2>&1 || fail "docker compose up (restart replay and learner)"
# the new learner process counts its updates from 0: wait for the reset, then for it to rise
while (( $(updates) >= killed_at )); do deadline; sleep 2; done
restarted=$(updates)
resumed=$(wait_above $(( restarted + 10 )))
log "the run continues after the replay and learner restarts: updates counter $killed_at -> reset -> $resumed"
compose down -v --timeout 30 >/dev/null 2>&1 || fail "docker compose down -v"
trap - EXIT
[[ -z "$(docker volume ls -q --filter "name=${project}_")" ]] || fail "volumes left after down -v"
log "passed"
