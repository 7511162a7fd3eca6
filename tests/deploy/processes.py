"""Real server processes for the deployment tests: daphne workers, the fake upstream, nginx.

Every process runs in its own session (process group), logs to a file the failing test
prints, and is stopped by the fixture that started it (SIGTERM, then SIGKILL), so a test run
leaves no orphans even when it fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Generous: daphne imports Django and the whole app, on a loaded 2-core machine.
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """One child process listening on a port, with its output in a log file."""

    def __init__(self, name: str, command: list[str], *, port: int, env: dict[str, str], log_dir: Path):
        self.name = name
        self.command = command
        self.port = port
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until it ends
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=BASE_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not listen on {self.port} in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: no handler, no cleanup, as when a machine dies."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"


def run_manage(args: list[str], *, env: dict[str, str], timeout: float = 180.0) -> str:
    """Run a manage.py command in its own process, as an operator would; return its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def daphne(name: str, *, env: dict[str, str], log_dir: Path, **extra_env: str) -> ServerProcess:
    """A Parley worker started by deploy/entrypoint.sh, the command the Docker image runs."""
    port = free_port()
    child_env = {
        **env,
        "PARLEY_BIND": "127.0.0.1",
        "PARLEY_PORT": str(port),
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', os.defpath)}",
        **extra_env,
    }
    return ServerProcess(
        name, [str(BASE_DIR / "deploy" / "entrypoint.sh"), "web"], port=port, env=child_env, log_dir=log_dir
    )


def fake_upstream(*, env: dict[str, str], log_dir: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "fakeupstream",
        [sys.executable, "-m", "tests.fakeupstream", "--port", str(port)],
        port=port,
        env=env,
        log_dir=log_dir,
    )
