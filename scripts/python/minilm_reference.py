"""Reference sentence embeddings of all-MiniLM-L6-v2 from an independent implementation:
a BERT forward pass written here in numpy, reading the weights from model.safetensors,
then sentence-transformers' pooling (mean over the attention mask) and L2 normalisation.

    minilm_reference.py MODEL_DIR OUT.jsonl

Writes one JSON line per sentence: {"text", "tokens", "embedding"}. Tokenisation uses the
`tokenizers` package with the model's tokenizer.json, truncated to max_seq_length (256,
from sentence_bert_config.json) including [CLS] and [SEP], without padding — what
sentence-transformers does. Run inside the venv made by scripts/setup-python.sh.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "Hello world",
    "Met with the founders of Acme Custody, Inc. to discuss their Series A.",
    "Ten31 invests in bitcoin infrastructure: custody, mining, payments.",
    "Q3 2026: $12.5M pre-money, 20% pro-rata, +1 (415) 555-0100",
    "Café Müller in Zürich serves the best Apfelstrudel — ask for Ségolène.",
    "北京大学 and 東京大学 signed a research agreement; 서울 joins next year.",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ: a Greek street name, with emoji 🚀👍🏽 and a zero\u200bwidth space.",
    "a",
    "   leading and trailing spaces   ",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Lightning network payments!!! Lightning, LIGHTNING.",
    # More than 256 tokens: checks truncation at max_seq_length.
    " ".join(
        f"Sentence {i} of a very long meeting note about custody, mining and payments."
        for i in range(40)
    ),
]

VEC_ERF = np.vectorize(math.erf)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x):
    return 0.5 * x * (1.0 + VEC_ERF(x / math.sqrt(2.0)))


def linear(x, w, name):
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def forward(ids, w, config):
    """Hidden states [seq, hidden] of one unpadded sequence, in float64."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head = hidden // heads
    eps = config["layer_norm_eps"]
    seq = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:seq]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        q = linear(x, w, f"{p}.attention.self.query").reshape(seq, heads, head).transpose(1, 0, 2)
        k = linear(x, w, f"{p}.attention.self.key").reshape(seq, heads, head).transpose(1, 0, 2)
        v = linear(x, w, f"{p}.attention.self.value").reshape(seq, heads, head).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(seq, hidden)
        attn = linear(context, w, f"{p}.attention.output.dense")
        x = layer_norm(
            attn + x,
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
            eps,
        )
        inter = gelu(linear(x, w, f"{p}.intermediate.dense"))
        out = linear(inter, w, f"{p}.output.dense")
        x = layer_norm(
            out + x, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps
        )
    return x


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = Path(sys.argv[1]), sys.argv[2]
    config = json.loads((model_dir / "config.json").read_text())
    max_seq = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    weights = {
        name.removeprefix("bert."): tensor.astype(np.float64)
        for name, tensor in load_file(str(model_dir / "model.safetensors")).items()
    }
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq)
    with open(out, "w", encoding="utf-8") as f:
        for text in SENTENCES:
            ids = tokenizer.encode(text).ids
            hidden = forward(np.array(ids), weights, config)
            pooled = hidden.mean(axis=0)
            embedding = pooled / np.linalg.norm(pooled)
            record = {"text": text, "tokens": len(ids), "embedding": [float(v) for v in embedding]}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
