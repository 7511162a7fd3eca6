"""A real S3-compatible server for the media tests: moto's server mode, in its own process.

``S3Server().start()`` runs ``moto_server -H 127.0.0.1 -p PORT`` (from the moto[server] test
dependency) and returns once it answers HTTP; ``client()`` is a boto3 client for it and
``stop()`` ends the process. Parley talks to it exactly as to any S3-compatible store, through
django-storages and boto3 over HTTP: nothing is patched in-process.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ACCESS_KEY_ID = "parley-test"
SECRET_ACCESS_KEY = "parley-test-secret"  # noqa: S105 - moto accepts any key
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed: pip install -r requirements-dev.txt")
    return found


class S3Server:
    def __init__(self, log_path: Path):
        self.port = _free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> S3Server:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
