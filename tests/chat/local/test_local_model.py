"""The bundled local model without llama.cpp: detection, registration, GGUF, process handling.

The real llama.cpp server is exercised in test_local_model_llama.py (marked local_model).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from chat.local import gguf, install
from chat.local.provider import (
    LOCAL_PROVIDER_NAME,
    local_model_path,
    local_model_wanted,
    local_provider_disable,
    local_provider_register,
)
from chat.local.server import LocalServer, LocalServerError, context_window, free_port, max_output_tokens
from chat.models import ChatModel, Provider
from tests.chat.local.local_model_support import fake_llama_python, smol_like_metadata, write_gguf

BASE_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture
def tiny_gguf(tmp_path):
    return write_gguf(tmp_path / "Tiny-Model.Q4_0.gguf", smol_like_metadata())


@pytest.fixture
def no_openai_key(settings):
    settings.OPENAI_API_KEY = ""
    settings.PARLEY_LOCAL_MODEL = ""
    return settings


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- when the local model is wanted -----------------------------------------------------------


@pytest.mark.django_db
def test_it_wants_the_local_model_when_nothing_is_configured(no_openai_key):
    assert local_model_wanted() is True


@pytest.mark.django_db
def test_it_does_not_want_it_when_an_openai_key_is_set(no_openai_key):
    no_openai_key.OPENAI_API_KEY = "sk-test"
    assert local_model_wanted() is False


@pytest.mark.django_db
def test_it_does_not_want_it_when_an_admin_added_a_provider(no_openai_key):
    Provider.objects.create(name="Ollama", base_url="http://localhost:11434/v1")
    assert local_model_wanted() is False


@pytest.mark.django_db
def test_a_disabled_provider_does_not_count(no_openai_key):
    Provider.objects.create(name="Ollama", base_url="http://localhost:11434/v1", enabled=False)
    assert local_model_wanted() is True


@pytest.mark.django_db
def test_the_local_provider_itself_does_not_count(no_openai_key):
    Provider.objects.create(name=LOCAL_PROVIDER_NAME, base_url="http://127.0.0.1:8088/v1")
    assert local_model_wanted() is True


@pytest.mark.django_db
def test_parley_local_model_off_turns_it_off(no_openai_key):
    no_openai_key.PARLEY_LOCAL_MODEL = "off"
    assert local_model_wanted() is False


def test_parley_local_model_points_at_another_file(settings, tiny_gguf):
    settings.PARLEY_LOCAL_MODEL = str(tiny_gguf)
    assert local_model_path() == tiny_gguf


# --- registering the provider -----------------------------------------------------------------


def _register(model_info, base_url="http://127.0.0.1:18088/v1", key="local-key"):
    return local_provider_register(
        base_url=base_url,
        api_key=key,
        model=model_info,
        context_window=context_window(model_info),
        max_output_tokens=max_output_tokens(model_info),
    )


@pytest.mark.django_db
def test_it_registers_local_with_the_models_context_window_as_the_default(tiny_gguf):
    chat_model = _register(gguf.model_info(tiny_gguf))

    provider = Provider.objects.get(name=LOCAL_PROVIDER_NAME)
    assert provider.base_url == "http://127.0.0.1:18088/v1"
    assert provider.api_key == "local-key"
    assert provider.enabled is True
    # llama.cpp has no /moderations: the blocklist is the local provider's moderation.
    assert provider.use_moderation is False
    assert chat_model.model_id == "Tiny-Model.Q4_0"
    assert chat_model.context_window == 8192
    assert chat_model.max_output_tokens == 2048
    assert chat_model.is_default is True
    assert chat_model.cost(1000, 1000) == Decimal(0)


@pytest.mark.django_db
def test_it_leaves_an_existing_default_model_alone(tiny_gguf):
    other = Provider.objects.create(name="Other", base_url="http://other.test/v1")
    ChatModel.objects.create(provider=other, model_id="big", is_default=True)

    chat_model = _register(gguf.model_info(tiny_gguf))

    assert chat_model.is_default is False
    assert ChatModel.objects.get(model_id="big").is_default is True


@pytest.mark.django_db
def test_registering_again_updates_the_row_instead_of_adding_one(tiny_gguf):
    _register(gguf.model_info(tiny_gguf), base_url="http://127.0.0.1:1111/v1", key="first")
    _register(gguf.model_info(tiny_gguf), base_url="http://127.0.0.1:2222/v1", key="second")

    provider = Provider.objects.get(name=LOCAL_PROVIDER_NAME)
    assert provider.base_url == "http://127.0.0.1:2222/v1"
    assert provider.api_key == "second"
    assert provider.chat_models.count() == 1


@pytest.mark.django_db
def test_switching_the_local_file_retires_the_previous_model(tmp_path, tiny_gguf):
    _register(gguf.model_info(tiny_gguf))
    other = write_gguf(tmp_path / "Other.gguf", smol_like_metadata(**{"llama.context_length": 4096}))

    new = _register(gguf.model_info(other))

    old = ChatModel.objects.get(model_id="Tiny-Model.Q4_0")
    assert (old.enabled, old.is_default) == (False, False)
    assert (new.enabled, new.is_default, new.context_window, new.max_output_tokens) == (True, True, 4096, 1024)


@pytest.mark.django_db
def test_disabling_local_takes_its_model_out_of_the_default(tiny_gguf):
    _register(gguf.model_info(tiny_gguf))

    assert local_provider_disable() is True

    assert Provider.objects.get(name=LOCAL_PROVIDER_NAME).enabled is False
    assert ChatModel.objects.filter(is_default=True).count() == 0
    assert local_provider_disable() is False


# --- GGUF metadata ------------------------------------------------------------------------------


def test_it_reads_the_context_window_and_chat_template_from_a_gguf_header(tiny_gguf):
    info = gguf.model_info(tiny_gguf)

    assert (info.architecture, info.name, info.context_length) == ("llama", "Tiny Test Model", 8192)
    assert info.has_chat_template is True
    metadata = gguf.read_metadata(tiny_gguf)
    assert metadata["tokenizer.ggml.tokens"] is None  # the vocabulary is skipped, not kept
    assert metadata["tokenizer.ggml.add_bos_token"] is False


def test_it_caps_a_huge_context_window_to_spare_memory(tmp_path):
    path = write_gguf(tmp_path / "big.gguf", smol_like_metadata(**{"llama.context_length": 131072}))
    info = gguf.model_info(path)

    assert context_window(info) == 32768
    assert max_output_tokens(info) == 2048


def test_it_refuses_a_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(gguf.GGUFError):
        gguf.model_info(path)


def test_it_refuses_a_gguf_without_a_context_length(tmp_path):
    path = write_gguf(tmp_path / "x.gguf", smol_like_metadata(**{"llama.context_length": None}))
    with pytest.raises(gguf.GGUFError, match="context length"):
        gguf.model_info(path)


def test_it_refuses_a_truncated_gguf(tmp_path, tiny_gguf):
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_gguf.read_bytes()[:200])
    with pytest.raises(gguf.GGUFError, match="truncated"):
        gguf.model_info(path)


# --- the server command line ----------------------------------------------------------------


def test_the_server_gets_the_real_context_and_the_models_own_template(tiny_gguf):
    server = LocalServer(model=gguf.model_info(tiny_gguf), port=18088)
    command = server.command()

    assert command[1:3] == ["-I", str(BASE_DIR / "chat" / "local" / "llama_server.py")]
    assert command[command.index("--n_ctx") + 1] == "8192"
    assert command[command.index("--model_alias") + 1] == "Tiny-Model.Q4_0"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "--chat_format" not in command
    assert command[command.index("--logits_all") + 1] == "false"


def test_a_model_without_a_template_is_spoken_to_in_chatml(tmp_path):
    path = write_gguf(tmp_path / "raw.gguf", smol_like_metadata(**{"tokenizer.chat_template": None}))
    command = LocalServer(model=gguf.model_info(path), port=18088).command()

    assert command[command.index("--chat_format") + 1] == "chatml"


def test_parleys_environment_does_not_leak_into_the_model_server(monkeypatch, tiny_gguf):
    monkeypatch.setenv("PORT", "8000")
    monkeypatch.setenv("API_KEY", "someone-elses")
    monkeypatch.setenv("N_CTX", "16")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = LocalServer(model=gguf.model_info(tiny_gguf), port=18088, api_key="ours").environment()

    assert (env["PORT"], env["HOST"], env["API_KEY"]) == ("18088", "127.0.0.1", "ours")
    assert "N_CTX" not in env
    assert env["OMP_NUM_THREADS"] == "2"


# --- starting and stopping the process (with a stand-in for llama.cpp) -------------------------


def test_it_waits_for_the_model_list_with_the_key_and_stops_the_server(tmp_path, tiny_gguf):
    server = LocalServer(
        model=gguf.model_info(tiny_gguf),
        port=free_port(),
        api_key="secret-local-key",
        log_path=tmp_path / "local.log",
        python=fake_llama_python(tmp_path),
    )
    server.start()
    try:
        server.wait_ready(timeout=30)
        assert server.process.poll() is None
        assert "fake llama server Tiny-Model.Q4_0" in (tmp_path / "local.log").read_text()
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_a_server_that_dies_at_start_is_reported_with_its_log(monkeypatch, tmp_path, tiny_gguf):
    monkeypatch.setenv("LLAMA_FAKE_CRASH", "1")
    server = LocalServer(
        model=gguf.model_info(tiny_gguf),
        port=free_port(),
        log_path=tmp_path / "local.log",
        python=fake_llama_python(tmp_path),
    )
    server.start()
    with pytest.raises(LocalServerError, match="error loading model: boom"):
        server.wait_ready(timeout=30)


def test_it_refuses_a_port_that_is_taken(tmp_path, tiny_gguf):
    first = LocalServer(model=gguf.model_info(tiny_gguf), port=free_port(), python=fake_llama_python(tmp_path))
    first.start()
    try:
        first.wait_ready(timeout=30)
        second = LocalServer(model=gguf.model_info(tiny_gguf), port=first.port, python=first.python)
        with pytest.raises(LocalServerError, match="PARLEY_LOCAL_PORT"):
            second.start()
    finally:
        first.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_model_server_dies_when_parley_is_killed(tmp_path, tiny_gguf):
    """Even SIGKILL, which no handler sees: the kernel signals the child (no orphan)."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from chat.local import gguf
                from chat.local.server import LocalServer, free_port
                server = LocalServer(model=gguf.model_info({str(tiny_gguf)!r}), port=free_port(),
                                     python={fake_llama_python(tmp_path)!r})
                server.start()
                server.wait_ready(timeout=30)
                print(server.process.pid, flush=True)
                time.sleep(120)
                """
            ),
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    assert _process_alive(child)

    parent.send_signal(signal.SIGKILL)
    parent.wait()

    deadline = time.monotonic() + 10
    while _process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _process_alive(child)


# --- serve: starting and registering, or explaining -------------------------------------------


@pytest.mark.django_db
def test_serve_starts_and_registers_the_local_model(monkeypatch, no_openai_key, tmp_path, tiny_gguf):
    from chat.management.commands import serve

    no_openai_key.PARLEY_LOCAL_MODEL = str(tiny_gguf)
    no_openai_key.PARLEY_LOCAL_PORT = free_port()
    no_openai_key.DATA_DIR = tmp_path
    fake = fake_llama_python(tmp_path)
    monkeypatch.setattr(serve, "server_installed", lambda: True)
    monkeypatch.setattr(serve, "LocalServer", lambda **kw: LocalServer(python=fake, **kw))
    out, err = io.StringIO(), io.StringIO()

    server = serve.Command(stdout=out, stderr=err).start_local_model()
    try:
        provider = Provider.objects.get(name=LOCAL_PROVIDER_NAME)
        assert provider.base_url == f"http://127.0.0.1:{no_openai_key.PARLEY_LOCAL_PORT}/v1"
        # The server only answers with the per-start key that Parley stored for it.
        assert provider.api_key == server.api_key and len(server.api_key) > 20
        assert ChatModel.objects.get(provider=provider, kind="chat").is_default is True
        assert "Local model ready" in out.getvalue()
        assert (tmp_path / "local-model.log").exists()
    finally:
        server.stop()


@pytest.mark.django_db
def test_serve_without_the_local_group_explains_how_to_add_a_provider(monkeypatch, no_openai_key):
    from chat.management.commands import serve

    Provider.objects.create(name=LOCAL_PROVIDER_NAME, base_url="http://127.0.0.1:8088/v1")
    monkeypatch.setattr(serve, "server_installed", lambda: False)
    out, err = io.StringIO(), io.StringIO()

    assert serve.Command(stdout=out, stderr=err).start_local_model() is None

    assert "OPENAI_API_KEY" in err.getvalue()
    assert "/admin/" in err.getvalue()
    # A Local provider left from an earlier run points at nothing now: it must not be offered.
    assert Provider.objects.get(name=LOCAL_PROVIDER_NAME).enabled is False


@pytest.mark.django_db
def test_serve_reports_a_missing_model_file(monkeypatch, no_openai_key, tmp_path):
    from chat.management.commands import serve

    no_openai_key.PARLEY_LOCAL_MODEL = str(tmp_path / "nope.gguf")
    monkeypatch.setattr(serve, "server_installed", lambda: True)
    out, err = io.StringIO(), io.StringIO()

    assert serve.Command(stdout=out, stderr=err).start_local_model() is None

    assert "nope.gguf does not exist" in err.getvalue()
    assert not Provider.objects.filter(name=LOCAL_PROVIDER_NAME).exists()


@pytest.mark.django_db
def test_serve_leaves_the_local_model_off_when_a_provider_exists(no_openai_key):
    from chat.management.commands import serve

    Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")
    Provider.objects.create(name=LOCAL_PROVIDER_NAME, base_url="http://127.0.0.1:8088/v1")
    out = io.StringIO()

    assert serve.Command(stdout=out, stderr=io.StringIO()).start_local_model() is None

    assert Provider.objects.get(name=LOCAL_PROVIDER_NAME).enabled is False
    assert 'provider "Local" is disabled' in out.getvalue()


# --- the installer ------------------------------------------------------------------------------


def test_the_pin_file_pins_every_server_dependency_exactly():
    pins = install.pins()

    for name in ("llama-cpp-python", "uvicorn", "fastapi", "sse-starlette", "starlette-context", "pydantic-settings"):
        assert name in pins, name
    assert all(version[0].isdigit() for version in pins.values())


def test_the_build_never_uses_native_amx_kernels_on_x86(monkeypatch):
    monkeypatch.setattr(install.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=on")

    args = install.cmake_args()

    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AMX_INT8=OFF" in args
    assert args.endswith("-DGGML_CUDA=on")  # the operator's flags come last and win


def test_the_build_progress_prints_a_line_every_ten_percent_in_logs():
    out = io.StringIO()
    with install._Progress(out, "llama.cpp") as progress:
        progress.feed("-- Configuring done\n")
        for step in range(1, 141):
            progress.feed(f"  [{step}/140] /usr/bin/g++ -O3 -c ggml.c\n")

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  llama.cpp: compiling 1/140 (0%)")
    assert lines[-1].startswith("  llama.cpp: compiling 140/140 (100%)")
    assert 10 <= len(lines) <= 12


def test_a_failed_build_raises_with_the_end_of_its_output():
    with pytest.raises(install.InstallError, match="No CMAKE_C_COMPILER"):
        install._run(["/bin/sh", "-c", "echo 'No CMAKE_C_COMPILER could be found'; exit 1"], out=io.StringIO())


# --- manage.py local_model --ensure-installed (make run) ---------------------------------------


@pytest.mark.django_db
def test_make_run_installs_nothing_when_a_provider_is_configured(monkeypatch, no_openai_key):
    from django.core.management import call_command

    Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")
    monkeypatch.setattr(install, "is_installed", lambda: False)
    monkeypatch.setattr(install, "install", lambda **kw: pytest.fail("the light install must stay light"))

    call_command("local_model", "--ensure-installed", stdout=io.StringIO())


@pytest.mark.django_db
def test_a_failed_build_does_not_stop_make_run(monkeypatch, no_openai_key):
    from django.core.management import call_command

    def no_compiler(**kw):
        raise install.InstallError("No CMAKE_C_COMPILER could be found.")

    monkeypatch.setattr(install, "is_installed", lambda: False)
    monkeypatch.setattr(install, "install", no_compiler)
    err = io.StringIO()

    call_command("local_model", "--ensure-installed", stdout=io.StringIO(), stderr=err)  # returns: make goes on

    assert "No CMAKE_C_COMPILER" in err.getvalue()
    assert "Parley starts without it" in err.getvalue()
