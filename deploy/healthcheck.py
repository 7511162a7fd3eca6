"""Container health check: exit 0 when this worker answers GET /healthz with 200.

Standard library only and no Django import, so a probe every few seconds costs next to
nothing. The request carries the first of DJANGO_ALLOWED_HOSTS as its Host (Django refuses
any other) and ``X-Forwarded-Proto: https`` as nginx would send it behind TLS (/healthz is
exempt from the HTTPS redirect anyway).
"""

from __future__ import annotations

import http.client
import os
import sys


def probe_host() -> str:
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        host = host.strip().lstrip(".")
        if host and "*" not in host:
            return host
    return "localhost"


def main() -> int:
    port = int(os.environ.get("PARLEY_PORT", "8000"))
    timeout = float(os.environ.get("PARLEY_HEALTHCHECK_TIMEOUT", "4"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz", headers={"Host": probe_host(), "X-Forwarded-Proto": "https"})
        response = connection.getresponse()
        body = response.read(2000).decode("utf-8", "replace")
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if response.status != 200:
        print(f"unhealthy: HTTP {response.status} {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
