"""Helpers for the local-model tests: a GGUF writer and a stand-in for llama.cpp's server.

The stand-in is an executable Python script used as ``LocalServer(python=...)``: it is
started exactly like ``python chat/local/llama_server.py --model ... --port ...``, reads the same
PORT/HOST/API_KEY environment, and answers ``GET /v1/models`` like the real server, so the
process handling (start, readiness, keys, stop, dying with the parent) is tested in
milliseconds; tests marked ``local_model`` do the same against the real server.
"""

from __future__ import annotations

import struct
import sys
import textwrap
from pathlib import Path


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("<Q", len(data)) + data


def _value(value) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return 7, struct.pack("<?", value)
    if isinstance(value, int):
        return 4, struct.pack("<I", value)
    if isinstance(value, float):
        return 6, struct.pack("<f", value)
    if isinstance(value, str):
        return 8, _string(value)
    if isinstance(value, list):
        kind = 8 if value and isinstance(value[0], str) else 5
        body = b"".join(_string(v) if kind == 8 else struct.pack("<i", v) for v in value)
        return 9, struct.pack("<IQ", kind, len(value)) + body
    raise TypeError(value)


def write_gguf(path: Path, metadata: dict) -> Path:
    """A GGUF v3 file with this metadata and no tensors (enough for the header reader)."""
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata.items():
        kind, data = _value(value)
        body += _string(key) + struct.pack("<I", kind) + data
    path.write_bytes(body)
    return path


def minilm_like_metadata(**overrides) -> dict:
    metadata = {
        "general.architecture": "bert",
        "general.name": "all-MiniLM-L6-v2",
        "bert.context_length": 512,
        "bert.embedding_length": 384,
        "bert.pooling_type": 1,
        "tokenizer.ggml.model": "bert",
    }
    metadata.update(overrides)
    return {k: v for k, v in metadata.items() if v is not None}


def smol_like_metadata(**overrides) -> dict:
    metadata = {
        "general.architecture": "llama",
        "general.name": "Tiny Test Model",
        "llama.context_length": 8192,
        "llama.block_count": 2,
        "tokenizer.ggml.tokens": [f"tok{i}" for i in range(500)],
        "tokenizer.ggml.token_type": list(range(500)),
        "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}",
        "tokenizer.ggml.add_bos_token": False,
    }
    metadata.update(overrides)
    return {k: v for k, v in metadata.items() if v is not None}


FAKE_SERVER = textwrap.dedent(
    """\
    import argparse, json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("-I", action="store_true")
    parser.add_argument("launcher")
    parser.add_argument("--model")
    parser.add_argument("--model_alias")
    parser.add_argument("--host")
    parser.add_argument("--port")
    parser.add_argument("--n_ctx")
    parser.add_argument("--verbose")
    parser.add_argument("--logits_all")
    parser.add_argument("--chat_format")
    parser.add_argument("--interrupt_requests")
    parser.add_argument("--parley_embedding_model")
    parser.add_argument("--parley_embedding_alias")
    parser.add_argument("--parley_embedding_n_ctx")
    args = parser.parse_args()
    served = [args.model_alias] + ([args.parley_embedding_alias] if args.parley_embedding_alias else [])
    key = os.environ.get("API_KEY", "")
    print("fake llama server", args.model_alias, "env PORT", os.environ.get("PORT"), flush=True)
    if os.environ.get("LLAMA_FAKE_CRASH"):
        print("error loading model: boom", flush=True)
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if key and self.headers.get("Authorization") != "Bearer " + key:
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in served]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    # The real server binds HOST/PORT from the environment over its flags (llama_cpp/server/__main__.py).
    HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def fake_llama_python(folder: Path) -> str:
    """An executable that behaves like Python running the model server, for the process tests."""
    script = folder / "fake-llama-python"
    script.write_text(f"#!{sys.executable}\n" + FAKE_SERVER)
    script.chmod(0o755)
    return str(script)
