#!/usr/bin/env bash
# The test command: installs prerequisites, builds every binary, runs every test (unit,
# integration, end-to-end; the docker-compose ones skip loudly where no Docker engine answers),
# and checks formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/corral-target}"
mkdir -p "$CARGO_TARGET_DIR"
cargo fmt --all -- --check
cargo build --workspace --bins
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads 2
