#!/usr/bin/env bash
# Builds the base roots of the managed runtimes (python3.11, nodejs18.x): a
# read-only ext4 image each, from Debian 12's packages plus Hearth's runtime
# interface client in /var/runtime (internal/runtimes).
#
# mmdebstrap installs the essential set and the runtime's packages (no
# recommends, no docs, no man pages, no apt lists or caches) and writes them
# as a tar to a pipe; internal/runtimes/mkroot adds the RIC, the function's
# user and the mount points and writes ext4 with tar2ext4. The time stamps
# are pinned (SOURCE_DATE_EPOCH), so the same packages give the same disk.
#
# The result is cached outside the repository, keyed by a hash of this
# script and of internal/runtimes (the package lists, the RIC sources, the
# image writer), so a rebuild happens only when one of them changes:
#   $HEARTH_CACHE_DIR/runtimes/<hash>/{python3.11,nodejs18.x}.{ext4,json}
# and a stable link $HEARTH_CACHE_DIR/runtimes/current that Hearth looks in.
# The .json manifest lists the Debian packages and versions in the root.
# HEARTH_DEBIAN_SOURCES (one apt source line a line) replaces the default
# mirrors, e.g. with a snapshot.debian.org archive to pin the packages too.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${HEARTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}
runtimes=(python3.11 nodejs18.x)
suite=bookworm
# Bookworm's release day: the time stamp of every file in the roots.
export SOURCE_DATE_EPOCH=1686355200
sources=${HEARTH_DEBIAN_SOURCES:-"deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main"}

if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "build-runtimes: mmdebstrap is missing: apt-get install mmdebstrap (or make deps)" >&2
  exit 1
fi

cd "$here"
hash=$( {
  cat "$0"
  printf '%s\n' "$sources"
  go list -m github.com/Microsoft/hcsshim
  find internal/runtimes -type f ! -name '*_test.go' ! -path '*/testdata/*' | LC_ALL=C sort | while read -r f; do
    echo "$f"; cat "$f"
  done
} | sha256sum | cut -c1-16)
out="$cache/runtimes/$hash"
complete=1
for rt in "${runtimes[@]}"; do
  [ -f "$out/$rt.ext4" ] && [ -f "$out/$rt.json" ] || complete=0
done
if [ "$complete" -eq 1 ]; then
  ln -sfn "$hash" "$cache/runtimes/current"
  echo "build-runtimes: cached $out"
  exit 0
fi

mkdir -p "$cache/runtimes"
work=$(mktemp -d "$cache/runtimes/.build-$hash.XXXXXX")
trap 'rm -rf "$work"' EXIT
mode=unshare
[ "$(id -u)" -ne 0 ] || mode=root

go build -trimpath -o "$work/mkroot" ./internal/runtimes/mkroot

# build RUNTIME writes $work/RUNTIME.{ext4,json}; its log is $work/RUNTIME.log.
build() {
  local rt=$1 pkgs
  pkgs=$("$work/mkroot" -packages "$rt")
  mmdebstrap --mode="$mode" --variant=essential --include="$pkgs" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --aptopt='Acquire::Retries "3"' \
    "$suite" - "$sources" |
    "$work/mkroot" -runtime "$rt" -o "$work/$rt.ext4"
}

start=$(date +%s)
# The two roots at once: most of the time goes in downloads and dpkg.
pids=()
for rt in "${runtimes[@]}"; do
  echo "build-runtimes: building $rt (log: $work/$rt.log)"
  build "$rt" >"$work/$rt.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!runtimes[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "build-runtimes: ${runtimes[$i]} failed:" >&2
    tail -n 20 "$work/${runtimes[$i]}.log" >&2
    failed=1
  fi
done
[ "$failed" -eq 0 ] || exit 1

rm -f "$work/mkroot" "$work"/*.log
chmod 0755 "$work"
chmod 0444 "$work"/*.ext4
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
ln -sfn "$hash" "$cache/runtimes/current"
for rt in "${runtimes[@]}"; do
  echo "build-runtimes: built $out/$rt.ext4 ($(du -m --apparent-size "$out/$rt.ext4" | cut -f1) MB)"
done
echo "build-runtimes: done in $(( $(date +%s) - start )) s"
