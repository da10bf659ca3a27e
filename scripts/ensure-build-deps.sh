#!/usr/bin/env bash
# Makes sure the C libraries the build links are installed: OpenSSL (azure_identity's
# client-certificate credential parses PKCS#12 with it) and pkg-config to find it.
set -euo pipefail
if pkg-config --exists openssl 2>/dev/null; then
  exit 0
fi
echo "OpenSSL development files not found; installing Debian's libssl-dev and pkg-config" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libssl-dev pkg-config >/dev/null
