#!/usr/bin/env bash
# Makes sure the tools the tests drive are installed: tmux (tests/it/terminal.rs runs
# `kbwatch scan` in a real terminal). Installs Debian's package when it is missing.
set -euo pipefail
if command -v tmux >/dev/null 2>&1; then
  exit 0
fi
echo "tmux not found; installing Debian's tmux package" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux >/dev/null
