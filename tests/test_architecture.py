"""The layers of docs/architecture.md, enforced: no module imports a higher layer, and no import circles.

Every import of a project module (at module level or inside a function) is read from the
source with ``ast``; nothing is imported or run. A new package must be given a layer here
and in docs/architecture.md, or this test fails.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chat", "accounts", "config")

# Lowest first: a module may import its own layer and the layers below it.
LAYERS = {
    "lib": 0,  # chat.errors, chat.tokens, chat.crypto, chat.runtime, chat.prepared: no project imports but each other
    "chat.models": 1,
    "chat.upstream": 2,
    "chat.core": 3,
    "chat.catalog": 3,
    "chat.local": 3,
    "chat.services": 4,
    "chat.selectors": 4,
    "chat.serializers": 4,
    "chat.media": 4,
    "chat.transport": 5,
    "chat.web": 5,
    "chat.admin": 5,
    "chat.jobs": 5,
    "chat.management": 5,
    "chat.v1": 5,
    "chat.templatetags": 5,
    "accounts": 5,
    "wiring": 6,  # config, chat.apps: put the layers together
}
LIB = {"errors", "tokens", "crypto", "runtime", "prepared"}
HTTP_CLIENTS = {"httpx", "httpcore", "aiohttp", "requests", "urllib3"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _area(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "config" or module == "chat.apps":
        return "wiring"
    if parts[0] == "accounts":
        return "accounts"
    if len(parts) == 1:
        return "lib"  # the chat package itself
    return "lib" if parts[1] in LIB else f"chat.{parts[1]}"


def _imports(path: Path, modules: dict[str, Path], *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    targets = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                targets.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return {t for t in targets if t in modules}


MODULES = _modules()


def test_every_package_has_a_layer():
    assert {_area(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    area = _area(module)
    higher = [
        target
        for target in _imports(MODULES[module], MODULES, top_level_only=False)
        if LAYERS[_area(target)] > LAYERS[area]
    ]
    assert not higher, f"{module} ({area}) imports a higher layer: {higher}"


def test_there_are_no_import_circles():
    graph = {m: _imports(p, MODULES, top_level_only=True) - {m} for m, p in MODULES.items()}
    # A package's __init__ importing its own submodules is not a circle of the design.
    graph = {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circle = path[path.index(target) :] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def _python_files():
    # The project's own code: not installed packages (any virtualenv, whatever its name, such
    # as make bench's .venv-prod), vendored files or local data.
    skip = {"node_modules", "data", "static", ".git", "__pycache__"}
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [
            name for name in subfolders if name not in skip and not (Path(folder, name) / "pyvenv.cfg").exists()
        ]
        yield from (Path(folder, name) for name in files if name.endswith(".py"))


def _imports_http_client(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in HTTP_CLIENTS for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in HTTP_CLIENTS:
            return True
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).split(".")[0] in HTTP_CLIENTS
        ):
            return True
    return False


def test_only_the_upstream_client_speaks_http():
    """Anywhere in the repository, tests and benchmarks included, by import or import_module."""
    importers = sorted(str(p.relative_to(ROOT)) for p in _python_files() if _imports_http_client(p))
    assert importers == ["chat/upstream/client.py"]
