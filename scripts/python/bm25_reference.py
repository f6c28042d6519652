"""Reference Qdrant/bm25 vectors from Python fastembed, for tests and `crm-bench embed`.

    bm25_reference.py golden OUT.jsonl
        writes vectors of a fixed set of hostile Unicode texts plus seeded random ones
        (the fixture crates/embed/tests/fixtures/bm25_unicode_golden.jsonl);
    bm25_reference.py embed IN.jsonl OUT.jsonl
        reads {"text": ...} lines, writes {"document": ..., "query": ...} lines, and prints
        one JSON line of timing to stdout: {"docs": N, "seconds": S} (documents only,
        the same call the Python pipeline makes).

The stopword list is read from crates/embed/src/bm25/english_stopwords.txt (NLTK's
English list, the one Qdrant/bm25 ships) and written as english.txt into a temporary
model directory, so nothing is downloaded (HF_HUB_OFFLINE=1).
Run inside the venv made by scripts/setup-python.sh.
"""

import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastembed import SparseTextEmbedding  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STOPWORDS = REPO / "crates/embed/src/bm25/english_stopwords.txt"

HOSTILE = [
    "ΟΔΟΣ ΟΔΟΣ's ΣΊΣΥΦΟΣ σοφός Σ ΑΣ. ΑΣΑ ΑΣ1 Σ_Σ",
    "İstanbul İİ İ̇ ISTANBUL ıstanbul",
    "Straße STRASSE ẞ ß ﬁnance ﬂow Ǆemal ǅ ǆ",
    "café cafe\u0301 naïve nai\u0308ve résumé re\u0301sume\u0301",
    "zero\u200bwidth join\u200der non\u200cjoiner soft\u00adhyphen",
    "Ⅻ ⅻ Ⅳ ½ ¾ ² ³ ¹ ⁰ ₀ ① ⑩ ⓐ Ⓐ 🄰",
    "ＦＵＬＬＷＩＤＴＨ ｆｕｌｌ １２３ K Å Ω",
    "हिन्दी भाषा नमस्ते दुनिया",
    "ภาษาไทย สวัสดีครับ",
    "北京大学 東京 서울특별시 한국어",
    "مرحبا بالعالم ١٢٣ ۴۵۶ עברית שלום",
    "emoji 🚀🚀 rocket👍🏽 family👨‍👩‍👧 flags 🇺🇸",
    "tabs\tnew\nlines\r\nunit\x1fsep\x1crec\x1dgroup\x1efield nbsp\u00a0here ideographic\u3000space",
    "ÀÉÎÕÜ àéîõü ÇÑ çñ Ø ø Æ æ Œ œ Ł ł Đ đ",
    "a" * 39 + " " + "b" * 40 + " " + "c" * 41 + " " + "é" * 40 + " " + "é" * 41,
    "_ __ _x_ x_ _1 1_ ___init___",
    "can't won't shouldn't it's O'Brien’s rock ’n’ roll",
    "e-mail e—mail e–mail e‐mail e_mail email",
    "$12.5M 3.14159 1,000,000 20% +1-(415)-555-0100 2026-06-05T13:55:12Z",
    "ǅungla ǈ ǋ ǲ ᾈ ᾼ ῌ ῼ",
    "Ⓚelvin ｷｬﾉﾝ ｶﾞ ㌀ ㍿",
    "\ud7ff\ue000\uf8ff\ufdd0\ufffe\U0001f600\U000e0001\U0010ffff",
    "mixed ΣΑΣ123 ΣΑΣ_ ΣΑΣ\u0301 ΣΑ\u0301Σ",
    "RUNNING RUNS RAN RUNNER EASILY FAIRLY GENERALLY GENERALIZATIONS",
    "the THE The tHe and AND of OF",
    "",
    "   \t\n  ",
]


def random_texts(count: int, seed: int) -> list[str]:
    """Seeded random strings over ASCII, Latin, Greek, combining marks, CJK, digits of many
    scripts, symbols and whitespace: the same list on every run."""
    rng = random.Random(seed)
    pools = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x300, 0x36F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x591, 0x5F4),
        (0x600, 0x6FF),
        (0x900, 0x97F),
        (0xE00, 0xE7F),
        (0x1E00, 0x1FFF),
        (0x2000, 0x206F),
        (0x2150, 0x218B),
        (0x2460, 0x24FF),
        (0x3000, 0x303F),
        (0x4E00, 0x4E80),
        (0xAC00, 0xAC80),
        (0xFF00, 0xFFEF),
        (0x1D400, 0x1D7FF),
        (0x1F300, 0x1F6FF),
    ]
    words = ["runs", "Σ", "ΟΣ", "İ", "the", "and", "_", "x" * 41, "Straße"]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 40)):
            if rng.random() < 0.15:
                parts.append(rng.choice(words))
                continue
            lo, hi = rng.choice(pools)
            cp = rng.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF:
                continue
            parts.append(chr(cp))
            if rng.random() < 0.2:
                parts.append(" ")
        texts.append("".join(parts))
    return texts


def model() -> tuple[SparseTextEmbedding, str]:
    directory = tempfile.mkdtemp(prefix="bm25-model-")
    shutil.copy(STOPWORDS, Path(directory) / "english.txt")
    return SparseTextEmbedding("Qdrant/bm25", specific_model_path=directory), directory


def as_dict(embedding) -> dict:
    pairs = sorted(zip(embedding.indices.tolist(), embedding.values.tolist()))
    return {"indices": [int(i) for i, _ in pairs], "values": [float(v) for _, v in pairs]}


def golden(out: str) -> None:
    bm25, directory = model()
    texts = HOSTILE + random_texts(300, seed=31)
    documents = list(bm25.embed(texts))
    queries = list(bm25.query_embed(texts))
    with open(out, "w", encoding="utf-8") as f:
        for text, doc, query in zip(texts, documents, queries):
            record = {"text": text, "document": as_dict(doc), "query": as_dict(query)}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    shutil.rmtree(directory)


def embed(inp: str, out: str) -> None:
    bm25, directory = model()
    with open(inp, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    # Warm up, then time the documents alone.
    list(bm25.embed(texts[:10]))
    start = time.perf_counter()
    documents = list(bm25.embed(texts))
    seconds = time.perf_counter() - start
    queries = list(bm25.query_embed(texts))
    with open(out, "w", encoding="utf-8") as f:
        for doc, query in zip(documents, queries):
            f.write(json.dumps({"document": as_dict(doc), "query": as_dict(query)}) + "\n")
    shutil.rmtree(directory)
    print(json.dumps({"docs": len(texts), "seconds": seconds}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "golden":
        golden(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "embed":
        embed(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
