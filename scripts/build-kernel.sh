#!/usr/bin/env bash
# Builds Hearth's minimal guest kernel (an uncompressed ELF vmlinux, which QEMU
# boots through PVH without a decompression step) from Debian's linux-source.
#
# The result is cached outside the repository, keyed by a hash of the config
# fragment and the kernel source tarball, so a rebuild happens only when one of
# them changes:  $HEARTH_CACHE_DIR/kernel/<hash>/vmlinux, and a stable link
# $HEARTH_CACHE_DIR/kernel/vmlinux that Hearth looks for.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
fragment="$here/kernel/guest.config"
tarball=${LINUX_SOURCE_TARBALL:-$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n1 || true)}
cache=${HEARTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}

if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "build-kernel: no linux-source tarball; install it: apt-get install linux-source-6.1 bc flex bison libelf-dev libssl-dev" >&2
  exit 1
fi

hash=$( { cat "$fragment"; basename "$tarball"; stat -c %s "$tarball"; } | sha256sum | cut -c1-16)
out="$cache/kernel/$hash"
if [ -f "$out/vmlinux" ]; then
  ln -sfn "$hash/vmlinux" "$cache/kernel/vmlinux"
  echo "build-kernel: cached $out/vmlinux"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-kernel: unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$work"
src=$(ls -d "$work"/linux-source-*)
cd "$src"
make -s tinyconfig
./scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s olddefconfig
# A fragment line that olddefconfig dropped means a missing dependency: say so.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=y) grep -qx "$line" .config || { echo "build-kernel: not applied: $line" >&2; missing=1; } ;; esac
done < "$fragment"
echo "build-kernel: compiling (about 8 minutes on 2 cores)"
make -s -j"$(nproc)" vmlinux
mkdir -p "$out"
cp vmlinux "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp .config "$out/config"
ln -sfn "$hash/vmlinux" "$cache/kernel/vmlinux"
echo "build-kernel: built $out/vmlinux"
[ "$missing" -eq 0 ] || echo "build-kernel: some options were not applied (see above)" >&2
