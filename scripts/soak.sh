#!/usr/bin/env bash
# The soak test: 200 scans of an evolving simulated fleet (KBWATCH_SOAK_SCANS to change), every
# snapshot checked against the simulator's truth, memory checked for growth. A few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-build-deps.sh
bash scripts/ensure-postgres.sh
cargo test --release --test it soak -- --ignored --nocapture
