#!/bin/sh
# Checks the StartOS package, the entrypoint and the shell scripts, as CI runs them:
#   1. npm ci, tsc --noEmit and the SDK's lint (lint.mjs) in start9/0.4;
#   2. the shared config fixtures (bins/tests/fixtures/config.*.json) against the
#      package's zod schema and its Configure/install/migration code (the Rust side is
#      bins/tests/settings_fixture.rs);
#   3. shellcheck on docker_entrypoint.sh and scripts/*.sh;
#   4. with --bin-dir DIR: every binary the package and the entrypoint call exists in
#      DIR and its --help lists the flags they pass (cargo test builds them into
#      $CARGO_TARGET_DIR/debug).
# Installs what is missing: shellcheck (apt-get, as root), the npm modules (npm ci).
# Docker and start-cli are not needed and not used: the image and the .s9pk are not built.
#
#   scripts/check-package.sh [--bin-dir DIR]
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
package="$root/start9/0.4"

bin_dir=
while [ "$#" -gt 0 ]; do
    case "$1" in
        --bin-dir)
            [ "$#" -ge 2 ] || { echo "check-package.sh: --bin-dir needs a directory" >&2; exit 2; }
            bin_dir=$2
            shift 2
            ;;
        -h | --help)
            sed -n '2,16p' "$0"
            exit 0
            ;;
        *)
            echo "check-package.sh: unknown argument $1" >&2
            exit 2
            ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "check-package.sh: $* is missing; install it (apt-get install $*)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
command -v npm >/dev/null 2>&1 || apt_install nodejs npm

step "npm ci (start9/0.4)"
(cd "$package" && npm ci --no-audit --no-fund --loglevel=error)

step "tsc --noEmit (start9/0.4)"
(cd "$package" && npx --no-install tsc --noEmit)

step "start-sdk lint (node_modules/@start9labs/start-sdk/lint.mjs)"
(cd "$package" && node node_modules/@start9labs/start-sdk/lint.mjs)

step "config fixtures: zod schema, Configure, install and 0.1.0 migration"
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
# ncc bundles TypeScript exactly as the package build does (npm run build), so the
# check runs the same code StartOS would.
(cd "$package" && npx --no-install ncc build scripts/check-config-fixtures.ts -o "$bundle" -q)
node "$bundle/index.js" "$root/bins/tests/fixtures"

step "shellcheck"
shellcheck docker_entrypoint.sh scripts/*.sh

# Every binary the package or the entrypoint runs, with the flags they pass to it.
# Kept honest below: each crm-* name and each --flag literal in start9/0.4/startos and
# docker_entrypoint.sh must appear here.
contract='crm-mcp --config --http --sync-every
crm-sync --config --json --watch --interval
crm-backfill --config --json --recreate
crm-resolve --config --json
crm-fuzzy --config --json
crm-demo --config
crm-embed --config
crm-bench --config'

step "package commands are in the contract list"
package_bins=$(grep -rhoE "'crm-[a-z]+'" "$package/startos" | tr -d "'")
entrypoint_bins=$(sed -n 's/^ *\(mcp | [a-z |]*\))$/\1/p' docker_entrypoint.sh | tr -d ' ' | tr '|' '\n' | sed 's/^/crm-/')
[ -n "$entrypoint_bins" ] || { echo "cannot find the dispatch list in docker_entrypoint.sh" >&2; exit 1; }
used_bins=$(printf '%s\n%s\n' "$package_bins" "$entrypoint_bins" | sort -u)
used_flags=$(grep -rhoE "'--[a-z-]+'" "$package/startos" | tr -d "'" | sort -u)
for bin in $used_bins; do
    printf '%s\n' "$contract" | grep -q "^$bin " || { echo "$bin is called but not in the contract list" >&2; exit 1; }
done
for flag in $used_flags; do
    printf '%s\n' "$contract" | grep -qE " $flag( |\$)" || { echo "$flag is passed but not in the contract list" >&2; exit 1; }
done
echo "binaries: $(echo "$used_bins" | tr '\n' ' ')"
echo "flags: $(echo "$used_flags" | tr '\n' ' ')"

if [ -n "$bin_dir" ]; then
    step "binaries accept the flags the package passes (--bin-dir $bin_dir)"
    failures=0
    while read -r bin flags; do
        exe="$bin_dir/$bin"
        if [ ! -x "$exe" ]; then
            echo "FAIL $bin: $exe is missing (the package or the entrypoint runs it)"
            failures=$((failures + 1))
            continue
        fi
        if ! help=$("$exe" --help 2>&1); then
            echo "FAIL $bin: --help failed: $help"
            failures=$((failures + 1))
            continue
        fi
        missing=
        for flag in $flags; do
            printf '%s\n' "$help" | grep -qE -- "(^|[ ,])$flag([ =,]|\$)" || missing="$missing $flag"
        done
        if [ -n "$missing" ]; then
            echo "FAIL $bin: --help does not list$missing, which the package passes"
            failures=$((failures + 1))
        else
            echo "ok   $bin ($flags)"
        fi
    done <<CONTRACT
$contract
CONTRACT
    [ "$failures" -eq 0 ] || { echo "$failures binaries do not match what the package calls" >&2; exit 1; }
else
    step "binaries: skipped (pass --bin-dir DIR to check them)"
fi

echo
echo "package checks passed"
