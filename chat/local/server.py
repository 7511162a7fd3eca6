"""Start, probe and stop llama.cpp's OpenAI-compatible server (chat/local/llama_server.py).

The server is a child process that must never outlive Parley. Two mechanisms, on purpose:

- On Linux the child asks the kernel for SIGTERM when its parent ends
  (``prctl(PR_SET_PDEATHSIG)``). That holds whatever way Parley ends: Ctrl+C, SIGTERM from
  Docker or systemd, a crash, even SIGKILL, which no signal handler or atexit hook sees. It
  also lets ``manage.py serve`` keep replacing itself with daphne (``os.execv``), so daphne
  stays the process that make, Docker and systemd signal and wait for.
- :meth:`LocalServer.stop` terminates the child's whole process group, for callers that stay
  alive (the test fixture, serve on other systems).

The child runs in its own session, so the terminal's Ctrl+C reaches only Parley, which then
shuts down first and takes the model server with it, instead of both racing.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chat.local.gguf import ModelInfo

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# llama_cpp.server with the streamed usage chunk added; run by path, so the child needs
# nothing of Parley on its import path.
LAUNCHER = Path(__file__).with_name("llama_server.py")

# Beyond this the KV cache, not the weights, dominates memory (it grows linearly with the
# context): a model trained for 128k tokens would reserve many gigabytes. SmolLM2's 8192
# is well under it.
MAX_CONTEXT = 32768

# The child's environment is built, not inherited: llama_cpp.server reads its settings from
# the environment too (HOST, PORT, MODEL, API_KEY, N_CTX, CONFIG_FILE...), and a PORT meant
# for Parley must not move the model server.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "SSL_CERT_FILE")
_PASSED_ENV_PREFIXES = ("OMP_", "GGML_", "LLAMA_")


class LocalServerError(RuntimeError):
    """The model server did not start; the message says why (with its log's tail)."""


def context_window(model: ModelInfo) -> int:
    return min(model.context_length, MAX_CONTEXT)


def embedding_context(model: ModelInfo) -> int:
    """An embedding model reads at most its learnt positions (512 for BERT models): the server
    cuts a longer input there (llama-cpp-python's embed truncates to its batch, this size)."""
    return min(model.context_length, 8192)


def max_output_tokens(model: ModelInfo) -> int:
    """The reply budget Parley reserves for a local model.

    A local model has no output limit of its own, only the context window that prompt and
    reply share. A quarter of it (2048 of SmolLM2's 8192) leaves the rest for history, and a
    135M model rarely says anything useful past that.
    """
    return min(2048, context_window(model) // 4)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent(parent_pid: int):
    """A preexec_fn that makes the kernel send SIGTERM to the child when the parent ends."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@dataclass
class LocalServer:
    model: ModelInfo
    port: int
    host: str = "127.0.0.1"
    api_key: str = ""
    log_path: Path | None = None
    python: str = sys.executable
    # An embedding model served by the same process (documents offline), or None.
    embedding: ModelInfo | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def command(self) -> list[str]:
        command = [
            self.python,
            "-I",  # isolated: chat/local/ must not shadow top-level modules, nor PYTHON* variables leak in
            str(LAUNCHER),
            "--model",
            str(self.model.path),
            "--model_alias",
            self.model_id,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(context_window(self.model)),
            "--verbose",
            "false",
            # The server keeps logits for every position by default (for `logprobs`, which
            # Parley never asks for): a float per vocabulary entry per token, 1.6 GB at 8192
            # tokens of SmolLM2, and twice the prompt-evaluation time. Last position only.
            "--logits_all",
            "false",
            # By default the server ends a streaming reply ("[DONE]" mid-sentence) as soon as
            # another request arrives: a document's embeddings, or another member's message,
            # would cut a reply short. Requests wait their turn instead (one runs at a time).
            "--interrupt_requests",
            "false",
        ]
        # A GGUF with its own chat template (SmolLM2's is ChatML with its default system
        # prompt) is formatted by that template, which is what the model was trained on.
        # Without one, llama-cpp-python would fall back to Llama 2's format; ChatML is the
        # better guess for today's small instruct models.
        if not self.model.has_chat_template:
            command += ["--chat_format", "chatml"]
        if self.embedding is not None:
            # Read by llama_server.py, not by llama_cpp.server: the second model it keeps loaded.
            command += [
                "--parley_embedding_model",
                str(self.embedding.path),
                "--parley_embedding_alias",
                self.embedding.model_id,
                "--parley_embedding_n_ctx",
                str(embedding_context(self.embedding)),
            ]
        return command

    @property
    def model_ids(self) -> list[str]:
        return [self.model_id] + ([self.embedding.model_id] if self.embedding is not None else [])

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith(_PASSED_ENV_PREFIXES)}
        env.update({"HOST": self.host, "PORT": str(self.port), "PYTHONUNBUFFERED": "1"})
        if self.api_key:
            env["API_KEY"] = self.api_key
        return env

    def start(self) -> None:
        if port_in_use(self.host, self.port):
            raise LocalServerError(
                f"port {self.port} on {self.host} is already in use; set PARLEY_LOCAL_PORT to a free port"
            )
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # handed to the child, closed below
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.command())}\n".encode())
            log.flush()
        else:
            log = subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def _models(self) -> list[str] | None:
        """Model ids from GET /v1/models, or None while the server does not answer yet.

        A loopback probe of our own child before any provider exists, so it does not go
        through chat/upstream/client.py (the door to upstreams); it never leaves 127.0.0.1.
        """
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            connection.request("GET", "/v1/models", headers=headers)
            response = connection.getresponse()
            body = response.read()
        except OSError:
            return None
        finally:
            connection.close()
        if response.status != 200:
            return None
        try:
            return [item["id"] for item in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError):
            return None

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait until /v1/models lists the model; return the seconds it took."""
        if self.process is None:
            raise LocalServerError("the model server was not started")
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise LocalServerError(
                    f"the model server exited with status {self.process.returncode}" + self._log_tail()
                )
            models = self._models()
            if models is not None and all(m in models for m in self.model_ids):
                return time.monotonic() - started
            time.sleep(0.2)
        self.stop()
        raise LocalServerError(f"the model server did not answer within {timeout:.0f} s" + self._log_tail())

    def _log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with contextlib.suppress(OSError):
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            return f"; the end of {self.log_path}:\n" + "\n".join(tail)
        return ""

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process (Linux), for the docs' numbers."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
