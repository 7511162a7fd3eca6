"""Every environment variable Parley reads is documented in README.md and .env.example."""

import ast
import re
from pathlib import Path

from django.conf import settings

BASE = Path(settings.BASE_DIR)
# Variables read with os.environ elsewhere in the code are Parley's own when they carry one
# of these prefixes (XDG_CACHE_HOME, CMAKE_ARGS and the like belong to other tools).
OWN_PREFIXES = ("DJANGO_", "PARLEY_", "OPENAI_", "DATABASE_", "REDIS_")
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE"}


def _settings_variables() -> set[str]:
    """Names passed to env(...), env.int(...), env.list(...) etc. in config/settings.py."""
    tree = ast.parse((BASE / "config" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        reads_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
        )
        first = node.args[0]
        if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def _code_variables() -> set[str]:
    """Names read with os.environ[...] / os.environ.get(...) / os.getenv(...) in the app code."""
    pattern = re.compile(r"""os\.(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*["']([A-Z0-9_]+)["']""")
    names = set()
    for folder in ("config", "accounts", "chat"):
        for path in (BASE / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    return {name for name in names if name.startswith(OWN_PREFIXES)} - NOT_CONFIGURATION


def _variables() -> set[str]:
    return _settings_variables() | _code_variables()


def test_the_parser_finds_the_variables_it_should():
    found = _variables()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "PARLEY_SIGNUP_MODE", "DJANGO_SUPERUSER_PASSWORD"} <= found
    assert len(found) > 30


def test_every_variable_is_in_the_readme_configuration_table():
    table_rows = [line for line in (BASE / "README.md").read_text().splitlines() if line.startswith("|")]
    documented = {name for row in table_rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    missing = sorted(_variables() - documented)
    assert not missing, f"Add these to the configuration table in README.md (default and meaning): {missing}"


def test_every_variable_is_in_env_example():
    lines = (BASE / ".env.example").read_text().splitlines()
    documented = {match.group(1) for line in lines if (match := re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line))}
    missing = sorted(_variables() - documented)
    assert not missing, f"Add these to .env.example, commented, with their default: {missing}"


def _deployment_variables() -> set[str]:
    """Variables docker-compose.yml, the Dockerfile and deploy/ scripts read themselves."""
    files = [BASE / "docker-compose.yml", BASE / "Dockerfile", *(BASE / "deploy").glob("*.sh")]
    text = "\n".join(path.read_text() for path in files if path.exists())
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text))


def test_the_readme_documents_no_variable_nothing_reads():
    # A renamed variable must not linger in the docs.
    rows = [line for line in (BASE / "README.md").read_text().splitlines() if line.startswith("| `")]
    listed = {re.findall(r"`([A-Z][A-Z0-9_]+)`", row)[0] for row in rows}
    stale = sorted(listed - _variables() - _deployment_variables())
    assert not stale, f"README.md documents variables Parley no longer reads: {stale}"
