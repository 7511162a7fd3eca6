"""Reading docker-compose.yml without Docker: YAML with compose's variable interpolation."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy.processes import BASE_DIR

COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
ENV_EXAMPLE = BASE_DIR / ".env.example"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ is a literal $.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value, env: dict[str, str]):
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        current = env.get(name)
        unset_or_empty = current is None or (operator or "").startswith(":") and current == ""
        if operator in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {argument}")
        if operator in (":-", "-") and unset_or_empty:
            return argument
        return current or ""

    return _VARIABLE.sub(substitute, value)


def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def load(env: dict[str, str]) -> dict:
    """The compose file as `docker compose config` would see it with this environment."""
    return interpolate(raw(), env)


def variables_used() -> set[str]:
    return {m.group(1) for m in _VARIABLE.finditer(COMPOSE_FILE.read_text()) if m.group(1)}


def documented_variables(path: Path = ENV_EXAMPLE) -> set[str]:
    """Names in .env.example, set (NAME=) or shown commented out with their default (# NAME=)."""
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", path.read_text(), flags=re.M))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
