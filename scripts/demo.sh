#!/usr/bin/env bash
# kbwatch demo on a fresh machine: a private PostgreSQL, the simulated API, scans and a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-build-deps.sh
bash scripts/ensure-postgres.sh
# As root, PostgreSQL runs as `postgres`, which must reach the state directory (./.kbwatch by
# default). A checkout under /root or in a `mktemp -d` directory is private to root: keep the
# demo's state in /var/lib/kbwatch-demo instead, unless a state directory is given. Only root can
# create a name in /var/lib, so no other user can have prepared it (kbwatch refuses a state
# directory that another user owns or can write to: it is trusted with a superuser). kbwatch
# creates it, 0755 as root.
if [ "$(id -u)" -eq 0 ] && [ -z "${STATE_DIRECTORY:-}" ] && [[ " $* " != *" --state-dir"* ]] \
  && ! runuser -u postgres -- test -x "$PWD"; then
  export STATE_DIRECTORY=/var/lib/kbwatch-demo
  echo "kbwatch demo: $PWD is private to root, so the demo's state goes to $STATE_DIRECTORY" >&2
fi
cargo run --release --quiet -- demo "$@"
