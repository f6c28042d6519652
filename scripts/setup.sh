#!/bin/sh
# Installs what the tests and benchmarks need and that cargo does not fetch by itself.
# Idempotent: each step checks first and does nothing when the tool is already there.
set -eu

cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
    echo "installing cargo-deny (a few minutes, once per machine)"
    cargo install cargo-deny --locked --quiet
fi
