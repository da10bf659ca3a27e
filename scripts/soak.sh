#!/usr/bin/env bash
# The soak test: 200 scheduled scans (a 2-second cron) of an evolving simulated fleet (KBWATCH_SOAK_SCANS to change), every
# snapshot checked against the simulator's truth, memory checked for growth. About 7 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-build-deps.sh
bash scripts/ensure-postgres.sh
cargo test --test it soak -- --ignored --nocapture
