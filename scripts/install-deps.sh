#!/usr/bin/env bash
# Installs the Debian packages Hearth needs to build its guest kernel, boot
# microVMs and run its tests, and creates the system user QEMU runs as.
# Idempotent: installs and creates only what is missing.
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# QEMU runs as this user when Hearth runs as root: no login, no home.
vmm_user() {
  if ! getent passwd hearth-vmm >/dev/null; then
    echo "install-deps: creating the system user hearth-vmm"
    $sudo useradd --system --no-create-home --shell /usr/sbin/nologin hearth-vmm
  fi
}

pkgs=(qemu-system-x86 linux-image-amd64 linux-source-6.1 bc flex bison libelf-dev libssl-dev
      make gcc xz-utils cpio e2fsprogs curl awscli chromium python3 nodejs mmdebstrap
      iproute2 nftables conntrack)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: Go is not on PATH: install Go 1.26 or newer (https://go.dev/doc/install)" >&2
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  vmm_user
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
vmm_user
