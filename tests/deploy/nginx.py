"""Debian's nginx running the configuration Parley ships (deploy/nginx.conf), for the tests.

deploy/nginx.conf is a template for the http{} block; the nginx Docker image fills its
``${PARLEY_...}`` placeholders with envsubst. :func:`render` fills them the same way (only
names starting with PARLEY_, as NGINX_ENVSUBST_FILTER says in docker-compose.yml), and
:func:`main_config` wraps the result the way the image's /etc/nginx/nginx.conf does, with
paths in a temporary prefix so nginx runs unprivileged and leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tests.deploy.processes import BASE_DIR, ServerProcess, free_port

TEMPLATE = BASE_DIR / "deploy" / "nginx.conf"
PLACEHOLDER = re.compile(r"\$\{(PARLEY_[A-Z0-9_]*)\}|\$(PARLEY_[A-Z0-9_]*)")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def render(values: dict[str, str], template: str | None = None) -> str:
    """envsubst restricted to PARLEY_* names: every placeholder must have a value."""
    text = TEMPLATE.read_text() if template is None else template

    def fill(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"deploy/nginx.conf uses ${{{name}}} but no value was given for it")
        return values[name]

    return PLACEHOLDER.sub(fill, text)


def placeholders(template: str | None = None) -> set[str]:
    text = TEMPLATE.read_text() if template is None else template
    return {m.group(1) or m.group(2) for m in PLACEHOLDER.finditer(text)}


def main_config(prefix: Path, server_conf: Path) -> str:
    # What the nginx image's own nginx.conf provides around conf.d/*.conf.
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the pytest temp dirs
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {server_conf};
}}
"""


def nginx(
    name: str,
    *,
    upstream_ports: list[int],
    static_dir: Path,
    proxy_timeout: str,
    work_dir: Path,
    extra_conf_dir: Path | None = None,
) -> ServerProcess:
    prefix = work_dir / name
    prefix.mkdir(parents=True, exist_ok=True)
    extra = extra_conf_dir or prefix / "extra"
    extra.mkdir(exist_ok=True)
    port = free_port()
    server_conf = prefix / "parley.conf"
    server_conf.write_text(
        render(
            {
                "PARLEY_LISTEN": f"127.0.0.1:{port}",
                "PARLEY_UPSTREAM_SERVERS": " ".join(f"server 127.0.0.1:{p};" for p in upstream_ports),
                "PARLEY_STATIC_DIR": str(static_dir),
                "PARLEY_PROXY_TIMEOUT": proxy_timeout,
                "PARLEY_EXTRA_CONF_DIR": str(extra),
            }
        )
    )
    main = prefix / "nginx.conf"
    main.write_text(main_config(prefix, server_conf))
    binary = nginx_binary()
    assert binary, "nginx is not installed"
    return ServerProcess(
        name,
        [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(main)],
        port=port,
        env=dict(os.environ),
        log_dir=prefix,
    )
