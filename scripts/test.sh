#!/usr/bin/env bash
# The test suite: unit tests and integration tests against a real PostgreSQL (the private one
# kbwatch starts under target/, or $DATABASE_URL when set) and the simulator over real HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-build-deps.sh
bash scripts/ensure-postgres.sh
bash scripts/ensure-test-tools.sh
# Before the tests: it installs systemd-analyze, which tests/it/deploy.rs also uses.
bash scripts/validate-deploy.sh
cargo test --all-targets "$@"
