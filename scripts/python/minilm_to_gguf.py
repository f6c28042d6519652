"""Writes a sentence-transformers BERT model (all-MiniLM-L6-v2) as an f32 GGUF file that
llama.cpp (and so xllamacpp) can serve, without torch.

    minilm_to_gguf.py MODEL_DIR OUT.gguf

MODEL_DIR is what scripts/fetch-model.sh produces (config.json, tokenizer.json,
model.safetensors, ...). The layout follows llama.cpp's own convert_hf_to_gguf.py for
`BertModel`: architecture `bert`, mean pooling, a WordPiece (`bert`) vocabulary in
"phantom space" form, tensor names from gguf's TensorNameMap; the pooler and
position_ids tensors are dropped. Weights stay float32, so llama.cpp's vectors can be
compared with the candle model's to cosine 0.9999.
Run inside the venv made by scripts/setup-python.sh.
"""

import json
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

SKIPPED = ("embeddings.position_ids", "pooler.")


def vocab(model_dir: Path):
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    pieces = tok["model"]["vocab"]  # token -> id
    tokens = [""] * len(pieces)
    for piece, i in pieces.items():
        tokens[i] = piece
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    types = [
        gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens
    ]

    def phantom(t: str) -> str:
        # llama.cpp's WordPiece vocabulary marks word starts instead of continuations.
        if t.startswith("[") and t.endswith("]"):
            return t
        if t.startswith("##"):
            return t[2:]
        return "\u2581" + t

    return [phantom(t) for t in tokens], types, pieces


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = Path(sys.argv[1]), sys.argv[2]
    config = json.loads((model_dir / "config.json").read_text())
    blocks = config["num_hidden_layers"]

    writer = gguf.GGUFWriter(out, "bert")
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(blocks)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens, types, pieces = vocab(model_dir)
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_bos_token_id(pieces["[CLS]"])
    writer.add_eos_token_id(pieces["[SEP]"])
    writer.add_unk_token_id(pieces["[UNK]"])
    writer.add_sep_token_id(pieces["[SEP]"])
    writer.add_pad_token_id(pieces["[PAD]"])
    writer.add_mask_token_id(pieces["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
    for name, tensor in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        name = name.removeprefix("bert.")
        if name.startswith(SKIPPED):
            continue
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            sys.exit(f"no GGUF name for tensor {name}")
        writer.add_tensor(new_name, np.ascontiguousarray(tensor.astype(np.float32)))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
