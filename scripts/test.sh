#!/usr/bin/env bash
# `make test` after set-up: every test of the workspace, in release mode.
#
# Same as `cargo test --workspace --release --no-fail-fast`, with one change of order: the Docker
# Compose test (cli/tests/compose.rs, about 3 minutes on a fresh machine, most of it waiting on
# debootstrap, apt inside `docker build` and the containers) runs beside the rest of the suite
# instead of alone in the middle of it. Its output goes to target/compose-test.log and is printed
# at the end; the exit status is non-zero when either part failed.
#   scripts/test.sh [extra cargo test arguments, e.g. -p replay]
#   COMPOSE_TEST_INLINE=1 scripts/test.sh   # the plain sequential `cargo test`
set -uo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
compose_test=compose_stack_trains_survives_killed_containers_and_cleans_up

if [[ "${COMPOSE_TEST_INLINE:-0}" == 1 || $# -gt 0 ]]; then
  exec "$CARGO" test --workspace --release --no-fail-fast "$@"
fi

# Build every test binary first (the compose test packs target/release's binaries).
"$CARGO" test --workspace --release --no-run || exit 1
compose_bin=$("$CARGO" test --release -p permakey-rl --test compose --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "compose" and m.get("executable"):
        print(m["executable"])')
if [[ ! -x "$compose_bin" ]]; then
  echo "test.sh: error: cannot find the compose test binary (cargo test -p permakey-rl --test compose --no-run)" >&2
  exit 1
fi

log=target/compose-test.log
started=$(date +%s)
"$compose_bin" --exact "$compose_test" --nocapture >"$log" 2>&1 &
compose_pid=$!
echo "[test.sh] $compose_test running beside the suite (pid $compose_pid, output in $log)"

"$CARGO" test --workspace --release --no-fail-fast -- --skip "$compose_test"
suite=$?

wait "$compose_pid"
compose=$?
echo
echo "[test.sh] $compose_test ($(( $(date +%s) - started )) s since it started; its output follows):"
cat "$log"
if (( suite != 0 || compose != 0 )); then
  echo "[test.sh] FAILED: workspace suite exit $suite, compose test exit $compose" >&2
  exit 1
fi
echo "[test.sh] all passed: workspace suite and compose test"
