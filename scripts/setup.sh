#!/bin/sh
# Installs what the tests and benchmarks need and that cargo does not fetch by itself:
#   - cargo-deny (licence, ban and source checks);
#   - through scripts/setup-python.sh: the Python venv of reference tools (fastembed's
#     BM25, a numpy BERT, llama.cpp's server through xllamacpp), the embedded dense model
#     all-MiniLM-L6-v2 (scripts/fetch-model.sh), its GGUF, and the SmolLM2 chat model
#     (scripts/fetch-chat-model.sh);
#   - the system OpenMP runtime xllamacpp links, and `make`, which builds the jemalloc
#     the binaries allocate through (apt-get, as root, when missing).
# The StartOS package's npm modules and shellcheck are installed by
# scripts/check-package.sh, which needs them.
# Idempotent: each step checks first and does nothing when the tool is already there.
set -eu

cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

if ! cargo deny --version >/dev/null 2>&1; then
    say "installing cargo-deny (a few minutes, once per machine)"
    cargo install cargo-deny --version 0.20.2 --locked --quiet
fi

if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing libgomp1 (xllamacpp links it)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null
    fi
fi

if ! command -v make >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing make (tikv-jemalloc-sys builds jemalloc with it)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make >/dev/null
    else
        say "make is missing and cannot be installed here: the build of jemalloc needs it"
    fi
fi

scripts/setup-python.sh
