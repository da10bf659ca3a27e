#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries are installed (kbwatch starts its own private server from
# them; nothing here starts a server). Installs Debian's `postgresql` package when they are missing.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
echo "PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
# Debian's package starts a cluster of its own; kbwatch does not use it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
