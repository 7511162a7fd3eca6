"""A live Parley for Playwright: a real daphne process, the real fake upstream, Debian's chromium.

``live`` (session) starts, in a temporary PARLEY_DATA_DIR with its own SQLite file:
``python -m tests.fakeupstream`` (its HTTP control API scripts replies), ``manage.py migrate``,
``collectstatic``, a provider pointing at the fake upstream with one priced model, the members
alice and bob and the admin root, then ``daphne config.asgi:application``. Every page a test
opens is watched (``watched_page``): console errors, CSP violations, uncaught exceptions and
requests to any origin other than Parley's are collected and asserted empty after the test.
Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser_support import CHROMIUM, launch_chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
PASSWORD = "correct-horse-battery-9"

# Runs in every page before its own scripts: records CSP violations, and lets the XSS tests
# see whether anything executed (a payload sets window.__pwned).
WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Upstream:
    """The fake upstream process, driven over its HTTP control API."""

    url: str  # http://127.0.0.1:PORT

    def _call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.loads(response.read() or b"null")

    def script(self, *behaviours: dict):
        """Queue behaviours for the next chat completion requests, in order."""
        return self._call("POST", "/_fake/script", {"behaviours": [{"endpoint": "chat", **b} for b in behaviours]})

    def reset(self):
        return self._call("POST", "/_fake/reset", {})

    def always(self, **knobs):
        return self._call("POST", "/_fake/always", knobs)

    def requests(self) -> list[dict]:
        return self._call("GET", "/_fake/requests")

    def completions(self) -> list[dict]:
        return [r for r in self.requests() if r["path"].endswith("/chat/completions")]


@dataclass
class Live:
    base_url: str
    upstream: Upstream
    env: dict
    processes: list = field(default_factory=list)

    def manage(self, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)


SETUP_CODE = """
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
from chat.models import ChatModel, Provider
from accounts.models import User
provider = Provider(name="Fake upstream", base_url={base_url!r})
provider.api_key = "sk-browser-KEY0123456789wxyz"
provider.use_moderation = True
provider.save()
ChatModel.objects.create(
    provider=provider, model_id="gpt-4o-mini", display_name="GPT-4o mini", context_window=128000,
    max_output_tokens=4096, input_price_per_million="0.15", output_price_per_million="0.60", is_default=True,
)
ChatModel.objects.create(provider=provider, model_id="gpt-4o", display_name="GPT-4o", context_window=128000)
for name in ("alice", "bob"):
    User.objects.create_user(name, password={password!r}, email=name + "@example.test")
User.objects.create_superuser("root", password={password!r}, email="root@example.test")
"""


def _start(args, env, log: Path, ready_line: str | None = None):
    handle = log.open("w")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if ready_line:
        wait_for(lambda: ready_line in log.read_text() or process.poll() is not None, 30, what=ready_line)
        if process.poll() is not None:
            raise AssertionError(f"{args[0]} exited:\n{log.read_text()}")
    return process


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    data = tmp_path_factory.mktemp("parley-live")
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    upstream_port, port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PARLEY_DATA_DIR": str(data),
        "PARLEY_STATIC_ROOT": str(data / "static"),
        "DATABASE_URL": f"sqlite:///{data / 'parley.sqlite3'}",
        "REDIS_URL": "",
        "DJANGO_DEBUG": "false",
        "PARLEY_LOCAL_MODEL": "off",
        "OPENAI_API_KEY": "",
        "PARLEY_RATE_LIMIT_PER_MINUTE": "1000",
        "PARLEY_MAX_CONCURRENT_REPLIES": "10",
        "PARLEY_LOGIN_FAILURE_LIMIT": "100",
        "PYTHONUNBUFFERED": "1",
    }
    processes = []
    try:
        processes.append(
            _start(
                # Twenty deltas 60 ms apart: a reply takes over a second, long enough to watch it
                # grow, reload in the middle and stop it.
                [
                    sys.executable,
                    "-m",
                    "tests.fakeupstream",
                    "--port",
                    str(upstream_port),
                    "--tokens",
                    "20",
                    "--token-delay",
                    "0.06",
                ],
                env,
                logs / "fakeupstream.log",
                ready_line="fake upstream listening",
            )
        )
        upstream = Upstream(f"http://127.0.0.1:{upstream_port}")
        live = Live(base_url=f"http://127.0.0.1:{port}", upstream=upstream, env=env, processes=processes)
        # One Django start-up for migrate, collectstatic and the fixtures: each costs seconds here.
        live.shell(SETUP_CODE.format(base_url=f"{upstream.url}/v1", password=PASSWORD))
        processes.append(
            _start(
                [str(ROOT / ".venv" / "bin" / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
                env,
                logs / "daphne.log",
            )
        )
        wait_for(lambda: _http_ok(f"{live.base_url}/healthz") or processes[-1].poll() is not None, 60, what="daphne")
        if processes[-1].poll() is not None:
            raise AssertionError("daphne exited:\n" + (logs / "daphne.log").read_text())
        yield live
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


class Watch:
    """What went wrong on the pages of one test, from the browser's own point of view."""

    def __init__(self, origin: str):
        self.origin = origin
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.foreign_requests: list[str] = []
        self.requests: list = []
        self.pages: list = []

    def attach(self, page):
        self.pages.append(page)
        page.on("console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", self._request)

    def _request(self, request):
        self.requests.append(request)
        url = request.url
        if not (
            url.startswith(self.origin)
            or url.startswith(self.origin.replace("http", "ws", 1))
            or url.startswith("data:")
            or url.startswith("blob:")
        ):
            self.foreign_requests.append(url)

    def csp_violations(self) -> list:
        found = []
        for page in self.pages:
            if page.is_closed():
                continue
            try:
                found += page.evaluate("window.__cspViolations || []")
            except Exception:  # noqa: BLE001 - a page mid-navigation has no window to ask
                continue
        return found

    def assert_clean(self):
        assert self.page_errors == [], f"uncaught exceptions: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.foreign_requests == [], f"requests to other origins: {self.foreign_requests}"
        assert self.csp_violations() == [], "CSP violations"


@pytest.fixture
def watch(live):
    return Watch(live.base_url)


@pytest.fixture
def context(browser, live, watch, request):
    context = browser.new_context(
        base_url=live.base_url, viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    context.add_init_script(WATCH_SCRIPT)
    context.on("page", watch.attach)
    yield context
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for number, page in enumerate(context.pages):
            if not page.is_closed():
                shot(page, f"FAILED-{request.node.name}-{number}")
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@contextlib.contextmanager
def embedding_worker(live, setup: str = ""):
    """An embedding model in the live server's catalog (``setup``: more lines for its shell) and
    a jobs worker (``manage.py db_worker``) beside daphne, as ``manage.py serve`` runs one."""
    live.shell(
        "from chat.models import ChatModel, Provider\n"
        "ChatModel.objects.get_or_create(provider=Provider.objects.get(name='Fake upstream'),"
        " model_id='text-embedding-3-small', defaults={'kind': 'embedding', 'display_name': 'Embedding'})\n" + setup
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.2"],
        cwd=ROOT,
        env=live.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def shot(page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, username: str = "alice"):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return page


@pytest.fixture
def page(context):
    page = context.new_page()
    return page


@pytest.fixture
def alice_page(page):
    return sign_in(page, "alice")
