#!/usr/bin/env bash
# kbwatch demo on a fresh machine: a private PostgreSQL, the simulated API, scans and a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-build-deps.sh
bash scripts/ensure-postgres.sh
cargo run --release --quiet -- demo "$@"
