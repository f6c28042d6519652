#!/bin/sh
# Creates the Python venv with the reference tools the embed tests and `crm-bench embed`
# compare against (fastembed's BM25, a numpy BERT, llama.cpp through xllamacpp), and the
# f32 GGUF of all-MiniLM-L6-v2 that llama.cpp serves; and, through
# scripts/fetch-chat-model.sh, the SmolLM2 chat model of the fuzzy tier's real-model test.
#
#   scripts/setup-python.sh
#
# Venv: $CRM_PYTHON_VENV, else ~/.cache/crm-substrate/venv. Model: $CRM_MODEL_DIR, else
# ~/.cache/crm-substrate/models/all-MiniLM-L6-v2 (fetched by scripts/fetch-model.sh when
# missing); the GGUF is written next to it as all-MiniLM-L6-v2-f32.gguf.
# Idempotent: a venv whose stamp matches scripts/python/requirements-tools.txt, and a GGUF
# written by the current converter, are kept. Needs python3 with venv and pip, PyPI access on the first
# run, and the system libgomp (Debian: apt-get install libgomp1) for xllamacpp.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CRM_PYTHON_VENV:-${HOME}/.cache/crm-substrate/venv}
MODEL_DIR=${CRM_MODEL_DIR:-${HOME}/.cache/crm-substrate/models/all-MiniLM-L6-v2}
GGUF="$(dirname "$MODEL_DIR")/all-MiniLM-L6-v2-f32.gguf"
REQUIREMENTS="$ROOT/scripts/python/requirements-tools.txt"
PYTHON=${PYTHON:-python3}

say() { printf 'setup-python: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3 (3.10 or newer)"

STAMP="$VENV/.crm-requirements"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQUIREMENTS"; then
    say "venv up to date: $VENV"
else
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create a venv; on Debian: apt-get install python3-venv"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS" \
        || die "pip could not install $REQUIREMENTS"
    cp "$REQUIREMENTS" "$STAMP"
fi

# xllamacpp's prebuilt library links the system OpenMP runtime.
if ! "$VENV/bin/python" -c "import xllamacpp" 2>/dev/null; then
    die "xllamacpp does not load; install the OpenMP runtime (Debian: apt-get install libgomp1)"
fi

if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
    "$ROOT/scripts/fetch-model.sh" "$MODEL_DIR"
fi
# The GGUF is rewritten when missing or when the converter changed (its copy is the stamp);
# the model itself is pinned by fetch-model.sh's checksums.
CONVERTER="$ROOT/scripts/python/minilm_to_gguf.py"
if [ ! -f "$GGUF" ] || ! cmp -s "$CONVERTER" "$GGUF.converter"; then
    say "writing $GGUF"
    "$VENV/bin/python" "$CONVERTER" "$MODEL_DIR" "$GGUF.tmp"
    mv "$GGUF.tmp" "$GGUF"
    cp "$CONVERTER" "$GGUF.converter"
fi
# The small real chat model of the fuzzy tier's tests, served by serve_llama.py.
"$ROOT/scripts/fetch-chat-model.sh"
say "ready: venv $VENV, gguf $GGUF, chat model from scripts/fetch-chat-model.sh"
