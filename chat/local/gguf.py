"""Read the metadata of a GGUF model file without loading llama.cpp.

Parley needs two facts about a local model before the server starts: its training context
window (``<architecture>.context_length``) and whether it carries its own chat template.
Importing llama_cpp into the web process for that would map the whole model; the header is
a short key/value list at the start of the file (GGUF spec, ggml/docs/gguf.md), read here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"

# Value types of the GGUF spec, mapped to struct formats (little-endian).
_SCALARS = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING = 8
_ARRAY = 9
# Arrays longer than this (the tokenizer's 49k tokens and merges) are skipped, not kept.
_KEEP_ARRAY_MAX = 64


class GGUFError(ValueError):
    """The file is not a GGUF model Parley can read."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    architecture: str
    name: str
    context_length: int
    has_chat_template: bool
    # <architecture>.embedding_length: the length of an embedding model's vectors.
    embedding_length: int = 0
    # <architecture>.pooling_type: set (1 mean, 2 CLS, 3 last) in embedding models' files.
    pooling_type: int = 0

    @property
    def model_id(self) -> str:
        """The id the local server reports on /v1/models (its --model_alias): the file name."""
        return self.path.stem


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _read_string(f: BinaryIO, length_fmt: str) -> str:
    length = _read(f, length_fmt)
    data = f.read(length)
    if len(data) != length:
        raise GGUFError("truncated GGUF string")
    return data.decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, kind: int, length_fmt: str):
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        return _read_string(f, length_fmt)
    if kind == _ARRAY:
        item_kind = _read(f, "<I")
        count = _read(f, length_fmt)
        if item_kind in _SCALARS and count > _KEEP_ARRAY_MAX:
            f.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
            return None
        items = [_read_value(f, item_kind, length_fmt) for _ in range(count)]
        return items if count <= _KEEP_ARRAY_MAX else None
    raise GGUFError(f"unknown GGUF value type {kind}")


def read_metadata(path: str | Path) -> dict:
    """The file's key/value metadata; long arrays (the vocabulary) come back as None."""
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        version = _read(f, "<I")
        # Version 1 counted and sized strings with uint32; versions 2 and 3 with uint64.
        length_fmt = "<I" if version == 1 else "<Q"
        _read(f, length_fmt)  # tensor count
        kv_count = _read(f, length_fmt)
        metadata = {}
        for _ in range(kv_count):
            key = _read_string(f, length_fmt)
            kind = _read(f, "<I")
            metadata[key] = _read_value(f, kind, length_fmt)
        return metadata


def model_info(path: str | Path) -> ModelInfo:
    path = Path(path)
    metadata = read_metadata(path)
    architecture = metadata.get("general.architecture") or ""
    context_length = metadata.get(f"{architecture}.context_length")
    if not isinstance(context_length, int) or context_length <= 0:
        raise GGUFError(f"{path} does not say its context length ({architecture}.context_length)")
    return ModelInfo(
        path=path,
        architecture=architecture,
        name=metadata.get("general.name") or path.stem,
        context_length=context_length,
        has_chat_template=bool(metadata.get("tokenizer.chat_template")),
        embedding_length=_positive(metadata.get(f"{architecture}.embedding_length")),
        pooling_type=_positive(metadata.get(f"{architecture}.pooling_type")),
    )


def _positive(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
