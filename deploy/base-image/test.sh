#!/usr/bin/env bash
# Checks deploy/base-image/build.sh end to end, against the real docker daemon:
#   1. two build.sh runs started together both succeed; when the tag was missing, exactly one builds
#      and the other waits for the lock, then finds the tag
#   2. a second, sequential run is fast (under FAST_LIMIT_S, default 10 s) and builds nothing
#   3. the tag is listed by `docker images`; a container prints Debian 12's version; the image has
#      the official PATH and CMD ["bash"]
#   4. apt inside the image points at the Debian mirror only; when containers reach that mirror,
#      `apt-get update` + `apt-get install hello` work there and stay slim (skipped, with the reason,
#      when docker's default network cannot reach the mirror)
#   5. `docker build` of `FROM <tag>` with `--network none` uses the local image (no registry)
# Prints the timings and the image size at the end.
#
# Usage: deploy/base-image/test.sh [--cold]
#   --cold  first removes the tag when build.sh made it (its label says so), to time a cold build;
#           an image under the tag that build.sh did not make (e.g. pulled) is never removed
# Environment: BASE_IMAGE_TAG (default debian:bookworm-slim), FAST_LIMIT_S (default 10).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD="$HERE/build.sh"
TAG=${BASE_IMAGE_TAG:-debian:bookworm-slim}
FAST_LIMIT_S=${FAST_LIMIT_S:-10}
LABEL_PREFIX=dev.permakey.base-image
want_cold=0
for arg in "$@"; do
  case "$arg" in
    --cold) want_cold=1 ;;
    *) echo "test.sh: error: unknown option '$arg' (expected --cold)" >&2; exit 2 ;;
  esac
done
export BASE_IMAGE_TAG=$TAG

failures=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures + 1)); }
skip() { printf 'SKIP  %s\n' "$*"; }
info() { printf '      %s\n' "$*"; }
label() { docker image inspect --format "{{index .Config.Labels \"$LABEL_PREFIX.$1\"}}" "$TAG" 2>/dev/null | sed 's/^<no value>$//'; }
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

LOGS=$(mktemp -d /tmp/permakey-base-image-test.XXXXXX)
PROBE_TAG="permakey-base-image-probe:$$"
cleanup() {
  docker rmi "$PROBE_TAG" >/dev/null 2>&1 || true   # only the probe image this test built
  rm -rf "$LOGS"
}
trap cleanup EXIT

# --- 0. cold start on request (only ever removes an image build.sh made) -------------------------
if [[ $want_cold -eq 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  if [[ $(label built-by) == deploy/base-image/build.sh ]]; then
    info "--cold: removing $TAG (made by build.sh) to time a cold build"
    docker rmi "$TAG" >/dev/null
  else
    info "--cold: $TAG exists and was not made by build.sh; keeping it, so this run is warm"
  fi
fi
tag_was_missing=1
docker image inspect "$TAG" >/dev/null 2>&1 && tag_was_missing=0

# --- 1. two concurrent runs ----------------------------------------------------------------------
info "run 1a + 1b: two build.sh started together ($([[ $tag_was_missing -eq 1 ]] && echo "cold: debootstrap takes a few minutes" || echo "warm"))"
timed_build() {   # runs build.sh, logging to $LOGS/$1.log and its wall time to $LOGS/$1.time
  local started=$EPOCHREALTIME rc=0
  "$BUILD" >"$LOGS/$1.log" 2>&1 || rc=$?
  seconds_since "$started" >"$LOGS/$1.time"
  return "$rc"
}
timed_build 1a & pid_a=$!
sleep 1
timed_build 1b & pid_b=$!
rc_a=0; wait "$pid_a" || rc_a=$?; time_a=$(cat "$LOGS/1a.time")
rc_b=0; wait "$pid_b" || rc_b=$?; time_b=$(cat "$LOGS/1b.time")
builds=$(cat "$LOGS/1a.log" "$LOGS/1b.log" | grep -c '^\[base-image\] built ' || true)
if [[ $rc_a -eq 0 && $rc_b -eq 0 ]]; then
  pass "run 1a exited 0 in ${time_a} s, run 1b exited 0 in ${time_b} s"
else
  fail "concurrent runs: 1a rc=$rc_a, 1b rc=$rc_b"
  for log_name in 1a 1b; do sed "s/^/      $log_name | /" "$LOGS/$log_name.log" | tail -n 20; done
fi
expected_builds=$tag_was_missing
if [[ $builds -eq $expected_builds ]]; then
  pass "exactly $expected_builds of the two concurrent runs built the image"
else
  fail "$builds of the two concurrent runs built the image, expected $expected_builds"
fi
builder_log=1a; waiter_log=1b; time_build=$time_a
if grep -q '^\[base-image\] built ' "$LOGS/1b.log"; then builder_log=1b; waiter_log=1a; time_build=$time_b; fi
if [[ $tag_was_missing -eq 1 ]]; then
  if grep -q 'waiting up to' "$LOGS/$waiter_log.log" && grep -q 'already exists' "$LOGS/$waiter_log.log"; then
    pass "run $waiter_log waited for the lock held by run $builder_log, then found the tag"
  else
    fail "run $waiter_log did not wait for the lock and then find the tag"
    sed "s/^/      $waiter_log | /" "$LOGS/$waiter_log.log"
  fi
fi
sed -n "s/^\[base-image\] /      $builder_log | /p" "$LOGS/$builder_log.log"

# --- 2. a second run is fast ---------------------------------------------------------------------
t_warm=$EPOCHREALTIME
rc_warm=0; "$BUILD" >"$LOGS/2.log" 2>&1 || rc_warm=$?
time_warm=$(seconds_since "$t_warm")
if [[ $rc_warm -eq 0 ]] && grep -q 'already exists' "$LOGS/2.log" \
   && awk -v t="$time_warm" -v limit="$FAST_LIMIT_S" 'BEGIN { exit !(t < limit) }'; then
  pass "run 2 (tag present) exited 0 in ${time_warm} s (< ${FAST_LIMIT_S} s) without building"
else
  fail "run 2: rc=$rc_warm in ${time_warm} s (limit ${FAST_LIMIT_S} s)"; sed 's/^/      2 | /' "$LOGS/2.log"
fi

# --- 3. the image --------------------------------------------------------------------------------
if docker images --format '{{.Repository}}:{{.Tag}}' | grep -qxF "$TAG"; then
  pass "docker images lists $TAG"
else
  fail "docker images does not list $TAG"
fi
debian_version=$(docker run --rm "$TAG" cat /etc/debian_version 2>&1 || true)
if [[ $debian_version =~ ^12\.[0-9]+$ ]]; then
  pass "docker run --rm $TAG cat /etc/debian_version -> $debian_version"
else
  fail "docker run --rm $TAG cat /etc/debian_version -> '$debian_version' (expected 12.x)"
fi
codename=$(docker run --rm "$TAG" sh -c '. /etc/os-release && echo "$VERSION_CODENAME"' 2>&1 || true)
if [[ $codename == bookworm ]]; then pass "/etc/os-release: VERSION_CODENAME=bookworm"
else fail "/etc/os-release: VERSION_CODENAME='$codename'"; fi
config=$(docker image inspect --format '{{json .Config.Cmd}} {{json .Config.Env}}' "$TAG")
if [[ $config == '["bash"] ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]' ]]; then
  pass "config: CMD [\"bash\"], ENV PATH as in the official image"
else
  fail "config: $config"
fi
# shellcheck disable=SC2016  # $BASH_VERSION expands inside the container
default_cmd_output=$(echo 'echo "bash $BASH_VERSION"' | docker run --rm -i "$TAG" 2>&1 || true)
if [[ $default_cmd_output == bash\ 5.2* ]]; then pass "the default command is bash ($default_cmd_output)"
else fail "the default command did not run bash: '$default_cmd_output'"; fi

# --- 4. apt: only the Debian mirror, and working when containers can reach it --------------------
built_by=$(label built-by)
mirror=$(label mirror); security_mirror=$(label security-mirror)
if [[ -z $built_by ]]; then
  mirror=http://deb.debian.org/debian; security_mirror=http://deb.debian.org/debian-security
  info "$TAG was not made by build.sh: expecting the official image's deb.debian.org sources"
fi
image_uris=$(docker run --rm "$TAG" sh -c 'cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null; true' \
  | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i } $1 == "deb" { print ($2 ~ /^\[/ ? $3 : $2) }' | sort -u)
unexpected_uris=$(grep -vxF -e "$mirror" -e "$security_mirror" <<<"$image_uris" || true)
if [[ -n $image_uris && -z $unexpected_uris ]]; then
  pass "apt sources in the image: $(paste -sd ' ' <<<"$image_uris")"
else
  fail "apt sources in the image: '$(paste -sd ' ' <<<"$image_uris")', unexpected: '$unexpected_uris'"
fi

mirror_host_port() {   # http://host[:port]/path -> "host port"
  local scheme=${1%%://*} rest=${1#*://}
  local authority=${rest%%/*}
  local port=80; [[ $scheme == https ]] && port=443
  [[ $authority == *:* ]] && { port=${authority##*:}; authority=${authority%:*}; }
  echo "$authority $port"
}
read -r mirror_host mirror_port < <(mirror_host_port "$mirror")
if [[ $mirror != http://* && $mirror != https://* ]]; then
  skip "apt-get in a container: the mirror $mirror is not reachable over the network from a container"
elif ! timeout 20 docker run --rm "$TAG" bash -c "exec 3<>/dev/tcp/$mirror_host/$mirror_port" >/dev/null 2>&1; then
  skip "apt-get in a container: docker's default bridge network cannot reach $mirror_host:$mirror_port (the Debian mirror); the image's apt was not exercised"
else
  # shellcheck disable=SC2016  # the script runs inside the container
  apt_output=$(timeout 300 docker run --rm "$TAG" bash -c '
    set -e
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends hello
    echo "hello says: $(hello)"
    test ! -e /usr/share/man/man1/hello.1.gz && echo "slim: no man page"
    test -e /usr/share/doc/hello/copyright && echo "slim: copyright kept"
    echo "cached debs: $(find /var/cache/apt/archives -name "*.deb" | wc -l)"' 2>&1) && apt_rc=0 || apt_rc=$?
  fetched_hosts=$(grep -oE '^(Get|Hit|Ign):[0-9]+ [a-z+]+://[^/ ]+' <<<"$apt_output" | awk '{ print $2 }' | sort -u)
  allowed_hosts=$(printf '%s\n%s\n' "$mirror" "$security_mirror" | grep -oE '^[a-z+]+://[^/]+' | sort -u)
  foreign_hosts=$(grep -vxF -f <(echo "$allowed_hosts") <<<"$fetched_hosts" || true)
  if [[ $apt_rc -eq 0 ]] && grep -q 'hello says: Hello, world!' <<<"$apt_output" \
     && grep -q 'slim: no man page' <<<"$apt_output" && grep -q 'slim: copyright kept' <<<"$apt_output" \
     && grep -q 'cached debs: 0' <<<"$apt_output" && [[ -n $fetched_hosts && -z $foreign_hosts ]]; then
    pass "apt-get update + install hello in a container: fetched only from $(paste -sd ' ' <<<"$fetched_hosts")"
    pass "later installs stay slim: no man page, copyright kept, no .deb left in /var/cache/apt"
  else
    fail "apt-get in a container (rc=$apt_rc, hosts: $(paste -sd ' ' <<<"$fetched_hosts"))"
    tail -n 20 <<<"$apt_output" | sed 's/^/      apt | /'
  fi
fi

# --- 5. FROM <tag> builds without a registry -----------------------------------------------------
mkdir -p "$LOGS/context"
printf 'FROM %s\nRUN cat /etc/debian_version >/built-from-base\nCMD ["cat", "/built-from-base"]\n' "$TAG" \
  >"$LOGS/context/Dockerfile"
if docker build --network none -t "$PROBE_TAG" "$LOGS/context" >"$LOGS/build.log" 2>&1 \
   && [[ $(docker run --rm "$PROBE_TAG") == "$debian_version" ]]; then
  pass "docker build --network none of 'FROM $TAG' uses the local image"
else
  fail "docker build of 'FROM $TAG'"; tail -n 15 "$LOGS/build.log" | sed 's/^/      build | /'
fi

# --- summary -------------------------------------------------------------------------------------
size_bytes=$(docker image inspect --format '{{.Size}}' "$TAG" 2>/dev/null || echo 0)
echo
info "image $TAG: $(awk -v b="$size_bytes" 'BEGIN { printf "%.1f MB (%d bytes)", b / 1e6, b }')"
info "run $builder_log: ${time_build} s ($([[ $tag_was_missing -eq 1 ]] && echo "cold build" || echo "warm")); run 2: ${time_warm} s (warm)"
if [[ $failures -gt 0 ]]; then
  echo "test.sh: $failures check(s) failed" >&2
  exit 1
fi
echo "test.sh: all checks passed"
