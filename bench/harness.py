"""The processes a benchmark runs against: the fake upstream and Parley (daphne), on 127.0.0.1.

Every server is a real separate process; the benchmark itself is only the client. Parley gets
its own temporary data folder and database (a fresh SQLite file, or a fresh PostgreSQL database
that is dropped afterwards), migrated with ``manage.py migrate``; members and the provider that
points at the fake upstream are created with ``manage.py shell``.

Settings every benchmark server runs with (docs/performance.md repeats them):

- ``PARLEY_AUTO_TITLE=false``: the automatic title is a second completion call per new chat,
  which would double the upstream traffic and the count of requests.
- ``PARLEY_RATE_LIMIT_PER_MINUTE=1000000``: one member sends the 50 replies of scenario 1 in
  well under a minute. Concurrency (scenario 3) uses one member per reply instead, so the
  per-member concurrency limit (``PARLEY_MAX_CONCURRENT_REPLIES``) keeps its default of 3.
- No ``REDIS_URL``: one daphne process with the in-memory channel layer, the embedded default.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The Parley tree the servers run from: this checkout, or another one to compare against
# (e.g. `git archive <rev> | tar -x -C /tmp/before`, then PARLEY_BENCH_TREE=/tmp/before).
SERVER_ROOT = Path(os.environ.get("PARLEY_BENCH_TREE") or ROOT)
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
DAPHNE = str(Path(PYTHON).parent / "daphne")
# Fresh bench databases are named <prefix>_<pid>_<port> (several people's benches share a server).
PG_PREFIX = os.environ.get("PARLEY_BENCH_PG_PREFIX", "parley_bench")
# The revision before this wave's changes: what `--baseline` compares against by default.
DEFAULT_BASELINE = "acd3e09"
POSTGRES_ADMIN_URL = os.environ.get("PARLEY_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
MODEL_ID = "gpt-4o-mini"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Environment variables of the machine that would change what is measured: a configured
# provider, a Redis layer, another data folder.
_SCRUB = (
    "DATABASE_URL",
    "REDIS_URL",
    "PARLEY_DATA_DIR",
    "PARLEY_STATIC_ROOT",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PARLEY_LOCAL_MODEL",
    "DJANGO_DEBUG",
    "PARLEY_PRODUCTION",
)
BENCH_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "PARLEY_AUTO_TITLE": "false",
    "PARLEY_RATE_LIMIT_PER_MINUTE": "1000000",
    "PARLEY_BACKGROUND_TASKS": "false",
    "PARLEY_LOG_LEVEL": "WARNING",
    "PYTHONUNBUFFERED": "1",
}


# --- numbers ----------------------------------------------------------------------------------
def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "–"
    value = seconds * 1000
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def ratio(a: float, b: float) -> str:
    if not b or a != a or b != b:
        return "–"
    return f"{a / b:.2f}×"


# --- the machine --------------------------------------------------------------------------------
def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = subprocess.run([PYTHON, "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": out.stdout.strip() or out.stderr.strip(),
        "kernel": platform.release(),
        "loadavg": loadavg(),
    }


# --- processes --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ProcStat:
    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float


def proc_stat(pid: int) -> ProcStat:
    """CPU seconds (user + system) from /proc/<pid>/stat, current and peak RSS from /proc/<pid>/status."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: field 3 is fields[0], so utime (14) and stime (15) are [11] and [12].
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return ProcStat(cpu, rss, peak)


def _stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_get(url: str, *, cookie: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class FakeUpstream:
    """``python -m tests.fakeupstream`` as a process; requests shape themselves by directive."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 30) -> FakeUpstream:
        self.log = tempfile.NamedTemporaryFile(prefix="parley-bench-upstream-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.fakeupstream", "--port", str(self.port)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while b"listening" not in Path(self.log.name).read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _stop(self.proc)
                raise RuntimeError(f"the fake upstream did not start:\n{Path(self.log.name).read_text()}")
            time.sleep(0.01)
        return self

    def stats(self) -> dict:
        return json.loads(http_get(f"http://127.0.0.1:{self.port}/_fake/stats")[1])

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{self.port}/_fake/reset", data=b"{}", method="POST"), timeout=5
        ).read()

    def stat(self) -> ProcStat:
        return proc_stat(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.log.close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_static_root: Path | None = None


def static_root() -> Path:
    """Collected static files for the chat page, made once per benchmark run (about 15 s).

    ``bench.run`` passes its folder to every scenario in PARLEY_BENCH_STATIC_ROOT.
    """
    global _static_root
    shared = os.environ.get("PARLEY_BENCH_STATIC_ROOT")
    if shared and (Path(shared) / "staticfiles.json").exists():
        return Path(shared)
    if _static_root is None:
        target = Path(shared) if shared else Path(tempfile.mkdtemp(prefix="parley-bench-static-"))
        env = _base_env()
        env["PARLEY_STATIC_ROOT"] = str(target)
        env["PARLEY_DATA_DIR"] = tempfile.mkdtemp(prefix="parley-bench-collect-")
        try:
            _manage(env, "collectstatic", "--noinput", "-v", "0")
        finally:
            shutil.rmtree(env["PARLEY_DATA_DIR"], ignore_errors=True)
        _static_root = target
    return _static_root


def _base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(BENCH_SETTINGS)
    return env


def _manage(env: dict, *args: str, stdin: str | None = None, root: Path | None = None) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=root or SERVER_ROOT, env=env, input=stdin, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# Runs inside `manage.py shell`: members with ready sessions, and the provider and model.
_SETUP_CODE = r"""
import json, sys
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from chat.models import ChatModel, Provider

args = json.loads(sys.stdin.read())
provider, _ = Provider.objects.get_or_create(name="Fake upstream", defaults={"base_url": args["base_url"]})
provider.base_url = args["base_url"]
provider.api_key = "sk-bench-0123456789abcdef"
provider.save()
ChatModel.objects.get_or_create(
    provider=provider, model_id=args["model"],
    defaults={"context_window": 128000, "max_output_tokens": 16384, "is_default": True,
              "input_price_per_million": "0.15", "output_price_per_million": "0.60"},
)
User = get_user_model()
sessions = []
start = User.objects.filter(username__startswith="bench-").count()
for i in range(start, args["members"]):
    User.objects.create_user(f"bench-{i:04d}", password=args.get("password"))
for user in User.objects.filter(username__startswith="bench-").order_by("username")[: args["members"]]:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    sessions.append(store.session_key)
print("BENCH-JSON " + json.dumps({"sessions": sessions}))
"""

# Runs inside `manage.py shell`: the saved state of the replies a benchmark received.
_VERIFY_CODE = r"""
import json, sys
from django.db.models.functions import Length
from chat.models import Message

ids = json.loads(sys.stdin.read())
rows = Message.objects.filter(id__in=ids).annotate(length=Length("content")).values_list("id", "status", "length")
print("BENCH-JSON " + json.dumps({str(i): [s, n] for i, s, n in rows}))
"""


def _shell_json(env: dict, code: str, payload, root: Path | None = None) -> dict:
    out = _manage(env, "shell", "-c", code, stdin=json.dumps(payload), root=root)
    for line in out.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON ") :])
    raise RuntimeError(f"no result from manage.py shell:\n{out}")


@dataclass
class Parley:
    """A Parley installation (data folder + database) and its daphne process.

    ``database`` is "sqlite" (a file in the data folder, WAL as in production) or "postgres"
    (a fresh database on the local server, dropped by :meth:`destroy`).
    """

    upstream: FakeUpstream
    database: str = "sqlite"
    members: int = 1
    static: bool = False
    extra_env: dict = field(default_factory=dict)
    # The virtualenv daphne runs from: the checkout's (with the test tools) unless a scenario
    # measures the production install (bench/footprint.py).
    daphne: str = DAPHNE
    # The ASGI application daphne serves: Parley, or bench.floor_app on the same installation.
    app: str = "config.asgi:application"
    # The tree daphne and manage.py run from: this checkout, or a baseline revision's worktree
    # (:func:`baseline_tree`), which migrates its own database with its own migrations.
    root: Path = SERVER_ROOT
    port: int = field(default_factory=free_port)
    sessions: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    startup_seconds: float = float("nan")

    def __post_init__(self):
        self.data_dir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
        self.env = _base_env()
        self.env["PARLEY_DATA_DIR"] = str(self.data_dir)
        self.env.update(self.extra_env)
        self.pg_name: str | None = None
        if self.database == "postgres":
            self.pg_name = f"{PG_PREFIX}_{os.getpid()}_{self.port}"
            _pg_admin(f'CREATE DATABASE "{self.pg_name}"')
            self.env["DATABASE_URL"] = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.pg_name
        if self.static:
            self.env["PARLEY_STATIC_ROOT"] = str(static_root())
        _manage(self.env, "migrate", "--noinput", "-v", "0", root=self.root)
        self.add_members(self.members)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    def add_members(self, count: int, password: str | None = None) -> list[str]:
        """Make sure ``count`` members exist; a fresh session for each (returned and kept)."""
        result = _shell_json(
            self.env,
            _SETUP_CODE,
            {"base_url": self.upstream.base_url, "model": MODEL_ID, "members": count, "password": password},
            root=self.root,
        )
        self.sessions = result["sessions"]
        return self.sessions

    def verify(self, message_ids: list[str]) -> dict[str, tuple[str, int]]:
        """{message id: (status, length of the saved content)} read back from the database."""
        return {k: tuple(v) for k, v in _shell_json(self.env, _VERIFY_CODE, message_ids, root=self.root).items()}

    def start(self, timeout: float = 60) -> Parley:
        """Start daphne and wait for the first 200 on /healthz (that wait is the start-up time)."""
        self.log = open(self.data_dir / "daphne.log", "ab")  # noqa: SIM115 - closed in stop()
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [self.daphne, "-b", "127.0.0.1", "-p", str(self.port), self.app],
            cwd=self.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        url = f"{self.origin}/healthz"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_get(url, timeout=2)[0] == 200:
                    break
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"daphne did not answer /healthz within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.005)
        self.startup_seconds = time.perf_counter() - started
        return self

    def sibling(self, app: str) -> Parley:
        """Another daphne serving ``app`` on this installation (same data, database, members),
        on a port of its own. Stop it with :meth:`stop`; :meth:`destroy` belongs to this one."""
        twin = copy.copy(self)
        twin.app, twin.port, twin.proc = app, free_port(), None
        twin.startup_seconds = float("nan")
        return twin

    def stat(self) -> ProcStat:
        return proc_stat(self.proc.pid)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.data_dir / "daphne.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
            self.log.close()

    def destroy(self) -> None:
        self.stop()
        if self.pg_name:
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            self.pg_name = None
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Parley:
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()


@contextlib.contextmanager
def baseline_tree(rev: str):
    """A ``git worktree add --detach`` of ``rev`` in a temporary folder, removed afterwards.

    Its daphne runs from the same virtualenv as this checkout's (``PYTHON``/``DAPHNE``), from
    its own tree, so it imports its own code; a :class:`Parley` with ``root=`` this folder gets
    its own data folder and database, migrated with the revision's own migrations.
    """
    folder = Path(tempfile.mkdtemp(prefix="parley-bench-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), rev], cwd=ROOT, check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=False)
        shutil.rmtree(folder.parent, ignore_errors=True)


def short_rev(rev: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or rev


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def postgres_available() -> bool:
    try:
        _pg_admin("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not here": the Postgres rows are skipped
        return False
    return True


# --- results ----------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: reported, not judged


@dataclass
class Section:
    """One scenario's output: Markdown for docs/performance.md and the targets it judged."""

    key: str
    title: str
    markdown: str
    targets: list[Target] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "markdown": self.markdown,
            "targets": [t.__dict__ for t in self.targets],
            "data": self.data,
        }


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def emit(sections: list[Section], json_path: str | None) -> None:
    """Print the sections (and their targets) and, for bench.run, write them as JSON."""
    for section in sections:
        print(f"\n## {section.title}\n\n{section.markdown}\n")
        if section.targets:
            print(targets_table(section.targets) + "\n")
    sys.stdout.flush()
    if json_path:
        Path(json_path).write_text(json.dumps([s.as_json() for s in sections], indent=1, default=str))


def targets_table(targets: list[Target]) -> str:
    mark = {True: "met", False: "**missed**", None: "reported"}
    return table(["target", "goal", "measured", ""], [[t.name, t.goal, t.measured, mark[t.met]] for t in targets])
