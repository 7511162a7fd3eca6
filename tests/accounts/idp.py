"""A real OpenID Connect provider for the sign-in tests: the npm package `oidc-provider` under
node, in its own process (tests/accounts/oidc_provider/server.mjs, installed by `npm ci` from
the Makefile). Its control API sets who can sign in and falsifies ID tokens on demand.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "parley"
CLIENT_SECRET = "parley-test-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class IdP:
    issuer: str
    process: subprocess.Popen

    def _call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.issuer + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.loads(response.read() or b"null")

    def person(self, login: str, **claims):
        """Someone who can sign in at the provider as ``login`` (their ``sub``)."""
        return self._call("PUT", f"/_test/accounts/{urllib.parse.quote(login)}", claims)

    def tamper(self, mode: str = "none"):
        return self._call("POST", "/_test/tamper", {"mode": mode})

    def log(self) -> list[dict]:
        return self._call("GET", "/_test/log")

    def sign_in_at_provider(self, authorize_url: str, login: str, return_prefix: str) -> str:
        """Play the person at the provider: follow the authorization request to the provider's
        sign-in page, sign in as ``login``, and return the URL the provider sends the browser
        back to (starting with ``return_prefix``, not followed)."""
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect)
        url = authorize_url
        for _ in range(10):
            if url.startswith(return_prefix):
                return url
            status, location, text = _open(browser, url)
            if location:
                url = urllib.parse.urljoin(url, location)
                continue
            assert status == 200, (status, text[:500])
            assert "Sign in to Test IdP" in text, text[:500]
            action = text.split('action="', 1)[1].split('"', 1)[0]
            status, location, text = _open(browser, urllib.parse.urljoin(url, action), {"login": login})
            assert location, (status, text[:500])
            url = urllib.parse.urljoin(url, location)
        raise AssertionError(f"the provider never sent the browser back: {url}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The test reads each redirect itself: the last one leads to Parley, not to follow here."""

    def redirect_request(self, *args, **kwargs):
        return None


def _open(browser, url: str, form: dict | None = None) -> tuple[int, str | None, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with browser.open(url, data=data, timeout=10) as response:
            return response.status, None, response.read().decode()
    except urllib.error.HTTPError as answer:
        body = answer.read().decode(errors="replace")
        return answer.code, answer.headers.get("Location") if 300 <= answer.code < 400 else None, body


def start_idp(clients: list[dict]) -> IdP:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").exists():
        pytest.skip("the test identity provider is not installed (npm ci in tests/accounts/oidc_provider)")
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="parley-idp-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [node, "server.mjs", "--port", str(port), "--clients", json.dumps(clients)],
        cwd=HERE,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("the test identity provider exited:\n" + Path(log.name).read_text())
        try:
            with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=1):  # noqa: S310
                return IdP(issuer=issuer, process=process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the test identity provider did not start")


def stop_idp(idp: IdP) -> None:
    idp.process.terminate()
    try:
        idp.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        idp.process.kill()
        idp.process.wait()
