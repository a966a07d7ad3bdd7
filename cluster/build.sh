#!/usr/bin/env bash
# Builds the images the docker-compose cluster runs, from local files only (no registry is
# reachable, so every image is FROM scratch):
#   corral:local          the `corral` binary with the shared libraries it links and a minimal /etc
#   corral-busybox:local  a static busybox with its applet links: the workload image for pods
#   corral-pause:local    the infra container that holds a pod's namespaces (tini + busybox sleep)
# Builds the binary first when needed (cargo, in CARGO_TARGET_DIR). Idempotent: an unchanged
# input gives the same image. Prints each image it built with its id.
#
# Usage: cluster/build.sh [corral] [busybox] [pause]   (default: all three; the docker runtime's
# tests build only busybox and pause, which need no corral binary)
#
# Environment:
#   CARGO_TARGET_DIR  where cargo builds (default /var/cache/corral-target)
#   CORRAL_BIN        use this corral binary as it is, without running cargo
#   BUSYBOX           the static busybox (default /bin/busybox, from Debian's busybox-static)
#   TINI              a static tini for the pause image (default /usr/bin/tini-static, from
#                     Debian's tini, which docker.io depends on); without it the pause image
#                     runs busybox sleep as PID 1
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/corral-target}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
TINI="${TINI:-/usr/bin/tini-static}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

say() { printf 'cluster/build.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

want_corral=0 want_busybox=0 want_pause=0
[ $# -eq 0 ] && set -- corral busybox pause
for image in "$@"; do
  case "$image" in
    corral) want_corral=1 ;;
    busybox) want_busybox=1 ;;
    pause) want_pause=1 ;;
    *) die "unknown image $image (corral, busybox, pause)" ;;
  esac
done

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

work="$(mktemp -d "${TMPDIR:-/tmp}/corral-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A minimal /etc and /tmp every image gets: root user, hosts from /etc/hosts then DNS (glibc
# 2.34+ has the files and dns NSS modules built in, so no libnss_*.so is needed).
base_fs() {
  local fs="$1"
  mkdir -p "$fs/etc" "$fs/tmp" "$fs/root"
  chmod 1777 "$fs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$fs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$fs/etc/group"
  printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$fs/etc/nsswitch.conf"
}

# Copies a file into the rootfs at the same absolute path, keeping its mode.
copy_abs() {
  local fs="$1" f="$2"
  mkdir -p "$fs$(dirname "$f")"
  cp -L --preserve=mode "$f" "$fs$f"
}

# Builds image $1 from Dockerfile $2 with context $3; prints the image and its id.
build_image() {
  local tag="$1" dockerfile="$2" ctx="$3" before after log="$work/docker-build.log"
  before="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  if ! docker build -q -f "$dockerfile" -t "$tag" "$ctx" >"$log" 2>&1; then
    cat "$log" >&2
    die "docker build of $tag failed"
  fi
  after="$(docker image inspect -f '{{.Id}}' "$tag")"
  local state=built
  if [ "$before" = "$after" ]; then
    state=unchanged
  elif [ -n "$before" ]; then
    # The replaced image, unless a container still uses it.
    docker image rm "$before" >/dev/null 2>&1 || true
  fi
  printf '%-9s %-22s %s\n' "$state" "$tag" "${after#sha256:}" | cut -c1-45
}

# Deterministic mtimes so an unchanged input hits the build cache.
normalise() { find "$1" -exec touch -h -d @0 {} +; }

is_static() { local out; out="$(ldd "$1" 2>&1 || true)"; [[ "$out" == *"not a dynamic executable"* ]]; }

# --- corral:local ------------------------------------------------------------------------------
if [ "$want_corral" = 1 ]; then
if [ -n "${CORRAL_BIN:-}" ]; then
  bin="$CORRAL_BIN"
  [ -x "$bin" ] || die "CORRAL_BIN=$bin is not an executable file"
else
  # The whole workspace's binaries, as scripts/test.sh builds them: building one package alone
  # unifies dependency features differently and would rebuild much of the dependency tree.
  say "cargo build --workspace --bins (target dir $CARGO_TARGET_DIR)"
  (cd "$root" && cargo build --workspace --bins)
  bin="$CARGO_TARGET_DIR/debug/corral"
  [ -x "$bin" ] || die "cargo did not produce $bin"
fi

fs="$work/corral"
base_fs "$fs"
mkdir -p "$fs/usr/local/bin" "$fs/var/lib/corral"
cp --preserve=mode "$bin" "$fs/usr/local/bin/corral"
# Every library ldd lists, at the path it was found, and the dynamic loader at its exact path.
libs="$(ldd "$bin" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}')"
[ -n "$libs" ] || die "ldd lists no libraries for $bin (is it static? then it needs none)"
while read -r lib; do
  [ -n "$lib" ] && copy_abs "$fs" "$lib"
done <<<"$libs"
if ldd "$bin" | grep -q 'not found'; then
  die "ldd: $(ldd "$bin" | grep 'not found')"
fi
normalise "$fs"
build_image corral:local "$here/corral.Dockerfile" "$fs"
fi

# --- corral-busybox:local ----------------------------------------------------------------------
if [ "$want_busybox" = 1 ] || [ "$want_pause" = 1 ]; then
[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing: apt-get install busybox-static (scripts/setup.sh does)"
is_static "$BUSYBOX" || die "$BUSYBOX is not statically linked: install busybox-static"
fi
if [ "$want_busybox" = 1 ]; then
fs="$work/busybox"
base_fs "$fs"
mkdir -p "$fs/bin" "$fs/sbin" "$fs/usr/bin" "$fs/usr/sbin" "$fs/var/www" "$fs/home"
cp --preserve=mode "$BUSYBOX" "$fs/bin/busybox"
# Each applet at the path busybox names for it (bin/sh, usr/bin/wget, sbin/ip, ...).
"$BUSYBOX" --list-full | while read -r applet; do
  [ "$applet" = "bin/busybox" ] && continue
  mkdir -p "$fs/$(dirname "$applet")"
  ln -sf /bin/busybox "$fs/$applet"
done
[ -e "$fs/bin/sh" ] || die "busybox gave no sh applet"
normalise "$fs"
build_image corral-busybox:local "$here/busybox.Dockerfile" "$fs"
fi

# --- corral-pause:local ------------------------------------------------------------------------
if [ "$want_pause" = 1 ]; then
fs="$work/pause"
mkdir -p "$fs/bin"
cp --preserve=mode "$BUSYBOX" "$fs/bin/busybox"
ln -s busybox "$fs/bin/sleep"
if [ -x "$TINI" ] && is_static "$TINI"; then
  cp --preserve=mode "$TINI" "$fs/bin/tini"
  pause_df="$here/pause.Dockerfile"
else
  say "no static tini at $TINI: the pause image runs busybox sleep as PID 1 (stops take the kill timeout)"
  pause_df="$here/pause-sleep.Dockerfile"
fi
normalise "$fs"
build_image corral-pause:local "$pause_df" "$fs"
fi
