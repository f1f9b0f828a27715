#!/usr/bin/env bash
# Builds the project's Debian base image without a container registry, under the tag a user with
# registry access would pull (default `debian:bookworm-slim`), so the project's Dockerfiles can say
# `FROM debian:bookworm-slim` on a machine that cannot pull.
#
# How: debootstrap a minimal Debian (variant=minbase) from the Debian mirror this machine's apt
# already uses, add container apt/dpkg settings like the official image's, apply the SUITE-updates
# and SUITE-security updates, strip what the official "slim" image strips (docs except copyright
# files, man and info pages, locales, apt lists and caches, logs), then `tar | docker import` it with
# the official image's PATH and CMD. The image is checked with
# `docker run --rm IMAGE cat /etc/debian_version` before it gets the tag.
#
# Idempotent: when the tag already exists (built here or pulled), it prints that and exits in about
# a second. A lock file makes concurrent runs wait for each other; the waiting run then finds the
# tag and exits. Needs root for debootstrap (uses sudo when not root) and access to the docker daemon.
#
# Usage: deploy/base-image/build.sh [--tag TAG]
# Environment (all optional):
#   BASE_IMAGE_TAG          tag to build (default debian:${DEBIAN_SUITE}-slim); --tag wins
#   DEBIAN_SUITE            Debian suite (default bookworm)
#   DEBIAN_MIRROR           mirror URL (default: the one /etc/apt/sources.list* uses for the suite)
#   DEBIAN_SECURITY_MIRROR  security mirror URL (default: the one apt uses for SUITE-security)
#   BASE_IMAGE_WORK_DIR     where the temporary root file system goes (default /var/tmp)
#   BASE_IMAGE_LOCK_FILE    lock file (default /tmp/permakey-base-image.lock)
#   BASE_IMAGE_LOCK_WAIT_S  how long to wait for another run's lock (default 1800)
set -euo pipefail
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin   # debootstrap lives in /usr/sbin

SUITE=${DEBIAN_SUITE:-bookworm}
TAG=${BASE_IMAGE_TAG:-debian:${SUITE}-slim}
WORK_PARENT=${BASE_IMAGE_WORK_DIR:-/var/tmp}
LOCK_FILE=${BASE_IMAGE_LOCK_FILE:-/tmp/permakey-base-image.lock}
LOCK_WAIT_S=${BASE_IMAGE_LOCK_WAIT_S:-1800}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# The official image's configuration (`docker image inspect debian:bookworm-slim`).
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL_PREFIX=dev.permakey.base-image

while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) [[ $# -ge 2 ]] || { echo "build.sh: error: --tag needs a value" >&2; exit 2; }
           TAG=$2; shift 2 ;;
    --tag=*) TAG=${1#--tag=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: error: unknown option '$1' (expected --tag TAG or --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[base-image] %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
start=$EPOCHSECONDS

# --- 1. docker must be there and answering (checked first: it is all the fast path needs) --------
command -v docker >/dev/null 2>&1 \
  || die "docker not found on PATH; install Docker Engine (e.g. apt-get install docker.io)"
if ! docker_error=$(timeout 30 docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
  case "$docker_error" in
    *"permission denied"*) die "no permission to use the docker daemon socket; run as root or join the docker group" ;;
    "") die "docker daemon did not answer within 30 s" ;;
    *) die "cannot reach the docker daemon (is it running? try: systemctl start docker): $(head -n1 <<<"$docker_error")" ;;
  esac
fi

image_exists() { docker image inspect "$TAG" >/dev/null 2>&1; }
report_existing() {
  local id builder
  id=$(docker image inspect --format '{{.Id}}' "$TAG")
  builder=$(docker image inspect --format "{{index .Config.Labels \"$LABEL_PREFIX.built-by\"}}" "$TAG" 2>/dev/null || true)
  if [[ -n $builder && $builder != "<no value>" ]]; then builder="built by $builder"
  else builder="not built by this script (pulled or imported elsewhere)"; fi
  log "image $TAG already exists (${id:7:12}, $builder); nothing to do"
  log "to rebuild: docker rmi $TAG && $0"
}
if image_exists; then report_existing; exit 0; fi

# --- 2. one build at a time ----------------------------------------------------------------------
( umask 000; : >>"$LOCK_FILE" ) 2>/dev/null || true
exec 9>>"$LOCK_FILE" || die "cannot open lock file $LOCK_FILE (set BASE_IMAGE_LOCK_FILE)"
if ! flock -n 9; then
  log "another build holds $LOCK_FILE; waiting up to ${LOCK_WAIT_S} s"
  flock -w "$LOCK_WAIT_S" 9 || die "timed out after ${LOCK_WAIT_S} s waiting for lock $LOCK_FILE"
fi
# The run that held the lock may have built the image meanwhile.
if image_exists; then report_existing; exit 0; fi

# --- 3. root (debootstrap, apt-get) --------------------------------------------------------------
if [[ $EUID -eq 0 ]]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  as_root() { sudo "$@"; }
  log "not root: using sudo for apt-get, debootstrap and the root file system"
else
  die "building the base image needs root (debootstrap); rerun as root or install sudo"
fi

# --- 4. the mirror this machine's apt uses -------------------------------------------------------
# Prints the first URI of an enabled `deb` source that serves exactly suite $1, from the one-line
# format (sources.list, *.list) and the deb822 format (*.sources). Disabled files are not read.
apt_uri_for_suite() {
  local suite=$1 file
  {
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r $file ]] || continue
      awk -v suite="$suite" '
        $1 == "deb" {
          i = 2
          if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) { print $i; exit }
        }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.sources; do
      [[ -r $file ]] || continue
      awk -v suite="$suite" '
        function end_stanza() {
          if (!found && enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
            split(uris, uri_list, " "); print uri_list[1]; found = 1
          }
          types = ""; uris = ""; suites = ""; enabled = "yes"
        }
        BEGIN { enabled = "yes" }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { end_stanza(); next }
        {
          gsub(/\t/, " ")
          key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
          if (key == "types") types = $0
          else if (key == "uris") uris = $0
          else if (key == "suites") suites = $0
          else if (key == "enabled") enabled = tolower($0)
        }
        END { end_stanza() }' "$file"
    done
  } | head -n1
}
MIRROR=${DEBIAN_MIRROR:-$(apt_uri_for_suite "$SUITE")}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_uri_for_suite "$SUITE-security")}
if [[ -z $MIRROR ]]; then
  MIRROR=http://deb.debian.org/debian
  log "no apt source for suite $SUITE in /etc/apt/sources.list*; using $MIRROR (set DEBIAN_MIRROR)"
fi
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
MIRROR=${MIRROR%/}; SECURITY_MIRROR=${SECURITY_MIRROR%/}
case "$MIRROR" in
  http://*|https://*|file://*) ;;
  *) die "mirror '$MIRROR' is not an http(s):// or file:// URL that debootstrap can use; set DEBIAN_MIRROR" ;;
esac
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
log "building $TAG: Debian $SUITE ($ARCH, minbase) from $MIRROR"

# --- 5. debootstrap ------------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1 || [[ ! -r $KEYRING ]]; then
  log "installing debootstrap and debian-archive-keyring with apt-get"
  as_root apt-get update -qq >/dev/null || die "apt-get update failed"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap debian-archive-keyring >/dev/null || die "apt-get install debootstrap failed"
fi

WORK=$(mktemp -d "$WORK_PARENT/permakey-base-image.XXXXXX") || die "cannot create a temp dir in $WORK_PARENT"
ROOTFS=$WORK/rootfs
IMPORTED_ID=""   # set between `docker import` and `docker tag`: an untagged image of our own

# Unmounts whatever is mounted under the temp dir (an interrupted debootstrap leaves /proc and /sys
# mounted in the root file system); returns non-zero when something stays mounted.
unmount_under_work() {
  local mount_point
  while read -r mount_point; do
    as_root umount -l "$mount_point" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r)
  ! findmnt -rn -o TARGET | grep -qF "$WORK/"
}
# Removes an import that failed its check, then the temp dir, never crossing into other file systems.
cleanup() {
  local rc=$?
  if [[ -n $IMPORTED_ID ]]; then docker rmi "$IMPORTED_ID" >/dev/null 2>&1 || true; fi
  if [[ -n ${WORK:-} && -d $WORK ]]; then
    if unmount_under_work; then as_root rm -rf --one-file-system "$WORK"
    else log "left $WORK in place: something is still mounted under it"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted; cleaning up"; exit 130' INT TERM

as_root mkdir -m 0755 "$ROOTFS"
log "debootstrap --variant=minbase $SUITE (a few minutes; log: $WORK/debootstrap.log)"
step_start=$EPOCHSECONDS
if ! as_root debootstrap --variant=minbase --arch="$ARCH" --components=main --keyring="$KEYRING" \
     "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  cp "$WORK/debootstrap.log" /tmp/permakey-base-image-debootstrap.log 2>/dev/null || true
  tail -n 15 "$WORK/debootstrap.log" >&2
  die "debootstrap failed (full log: /tmp/permakey-base-image-debootstrap.log)"
fi
log "debootstrap done in $(( EPOCHSECONDS - step_start )) s"
unmount_under_work || die "cannot unmount what debootstrap left mounted under $ROOTFS"

# --- 6. container settings, security updates, then slim it like the official image -------------
root_write() { as_root tee "$ROOTFS/$1" >/dev/null; }   # writes stdin to a file in the rootfs
# apt sources: the same Debian mirror, in the deb822 file the official bookworm image uses.
as_root rm -f "$ROOTFS/etc/apt/sources.list"
root_write etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: $KEYRING

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: $KEYRING
EOF
# Keeps later `apt-get install` in this image slim too.
root_write etc/dpkg/dpkg.cfg.d/docker-slim <<'EOF'
# Slim container image (deploy/base-image/build.sh): leave out documentation, man pages and
# translations that containers do not need; copyright files and locale.alias stay.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
root_write etc/dpkg/dpkg.cfg.d/docker-apt-speedup <<'EOF'
# Image layers are written once: skip dpkg's per-file fsync.
force-unsafe-io
EOF
root_write etc/apt/apt.conf.d/docker-clean <<'EOF'
// Container image: drop downloaded .deb files and apt's binary caches after each run.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
root_write etc/apt/apt.conf.d/docker-no-languages <<'EOF'
Acquire::Languages "none";
EOF
root_write etc/apt/apt.conf.d/docker-gzip-indexes <<'EOF'
Acquire::GzipIndexes "true";
EOF
root_write etc/apt/apt.conf.d/docker-autoremove-suggests <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
# No init system in a container: package scripts must not try to start services.
root_write usr/sbin/policy-rc.d <<'EOF'
#!/bin/sh
# Container image: do not start services from package maintainer scripts.
exit 101
EOF
as_root chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

# Security and stable updates, as the official image has them at its build date (debootstrap only
# reads the suite itself). policy-rc.d above keeps package scripts from starting services.
log "apt-get dist-upgrade from $SUITE-updates and $SUITE-security"
step_start=$EPOCHSECONDS
if ! as_root chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive \
       sh -c 'apt-get update -qq && apt-get dist-upgrade -y -qq -o Dpkg::Use-Pty=0' >"$WORK/upgrade.log" 2>&1; then
  tail -n 15 "$WORK/upgrade.log" >&2
  die "apt-get update/dist-upgrade inside the new root file system failed"
fi
upgraded=$(grep -c '^Unpacking ' "$WORK/upgrade.log" || true)
log "$upgraded package(s) upgraded in $(( EPOCHSECONDS - step_start )) s"

# shellcheck disable=SC2016  # the script runs in a root shell with the rootfs as $1
as_root bash -euo pipefail -c '
  cd "$1"
  # apt lists and caches, dpkg/debconf backups, logs (the official image ships none of these)
  rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
         var/cache/apt/archives/partial/* var/cache/debconf/*-old var/lib/dpkg/*-old \
         var/cache/ldconfig/aux-cache
  find var/log -type f -delete
  # documentation: keep only the copyright files, as the slim image does
  if [ -d usr/share/doc ]; then
    find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    find usr/share/doc -mindepth 1 -depth -type d -empty -delete
  fi
  rm -rf usr/share/man/* usr/share/info/* usr/share/groff/* usr/share/lintian/* usr/share/linda/*
  if [ -d usr/share/locale ]; then
    find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  fi
  # host-specific files debootstrap copied in; docker provides them at run time
  : >etc/resolv.conf; : >etc/hostname
  rm -f etc/machine-id var/lib/dbus/machine-id
  # /dev, /proc, /sys, /tmp are empty in an image (docker mounts its own)
  rm -rf dev/* proc/* sys/* tmp/* var/tmp/* root/.bash_history
' bash "$ROOTFS"

DEBIAN_VERSION=$(cat "$ROOTFS/etc/debian_version")
ROOTFS_BYTES=$(as_root du -sb --one-file-system "$ROOTFS" | cut -f1)
log "root file system: Debian $DEBIAN_VERSION, $(( ROOTFS_BYTES / 1000000 )) MB"

# --- 7. import, check, tag -----------------------------------------------------------------------
log "docker import"
IMPORTED_ID=$(as_root tar -C "$ROOTFS" --numeric-owner -c . | docker import \
  --change "ENV PATH=$IMAGE_PATH" \
  --change 'CMD ["bash"]' \
  --change "LABEL $LABEL_PREFIX.built-by=\"deploy/base-image/build.sh\"" \
  --change "LABEL $LABEL_PREFIX.suite=\"$SUITE\" $LABEL_PREFIX.debian-version=\"$DEBIAN_VERSION\"" \
  --change "LABEL $LABEL_PREFIX.mirror=\"$MIRROR\" $LABEL_PREFIX.security-mirror=\"$SECURITY_MIRROR\"" \
  --message "debootstrap --variant=minbase $SUITE $MIRROR (deploy/base-image/build.sh)" \
  - ) || die "docker import failed"
[[ $IMPORTED_ID == sha256:* ]] || die "docker import printed an unexpected id: $IMPORTED_ID"

seen_version=$(docker run --rm "$IMPORTED_ID" cat /etc/debian_version) \
  || die "the imported image does not run: docker run --rm ${IMPORTED_ID:7:12} cat /etc/debian_version failed"
[[ $seen_version == "$DEBIAN_VERSION" ]] \
  || die "the imported image reports Debian '$seen_version', expected '$DEBIAN_VERSION'"
docker tag "$IMPORTED_ID" "$TAG" || die "docker tag ${IMPORTED_ID:7:12} $TAG failed"
image_id=$IMPORTED_ID; IMPORTED_ID=""

size_bytes=$(docker image inspect --format '{{.Size}}' "$TAG")
log "built $TAG (${image_id:7:12}): Debian $seen_version, $(( size_bytes / 1000000 )) MB ($size_bytes bytes), in $(( EPOCHSECONDS - start )) s"
docker images "$TAG"
