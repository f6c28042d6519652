#!/bin/sh
# Runs every check CI runs, installing what it needs first (on a machine that has none
# of it): cargo-deny, the embedding model, the Python tools used as reference peers and
# real model servers in tests, and the StartOS package's npm modules.
#
#   scripts/test.sh            everything
#   scripts/test.sh --no-setup skip the installs (they are idempotent, but take a moment)
#
# CARGO_TARGET_DIR is honoured; .ci/run points it outside the clone so runs on one
# machine are incremental.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)

setup=1
for arg in "$@"; do
    case "$arg" in
        --no-setup) setup=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
elapsed() { printf '    (%ss)\n' "$(( $(date +%s) - started ))"; }

if [ "$setup" = 1 ]; then
    step "setup"
    started=$(date +%s)
    "$root/scripts/setup.sh"
    elapsed
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
started=$(date +%s)
cargo clippy --workspace --all-targets --locked -- -D warnings
elapsed

step "tests"
started=$(date +%s)
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi
elapsed

step "StartOS package, entrypoint and scripts (tsc, SDK lint, fixtures, shellcheck, binary flags)"
"$root/scripts/check-package.sh" --bin-dir "${CARGO_TARGET_DIR:-$root/target}/debug"

step "cargo deny (licenses, bans, sources; advisories need the network)"
cargo deny --locked check licenses bans sources

echo
echo "all checks passed"
