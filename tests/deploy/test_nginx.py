"""Debian's nginx with the configuration Parley ships (deploy/nginx.conf) in front of two workers.

Peers stream "all at once" behind nginx (docs/architecture.md, promise 7) because of response buffering, and
drop idle sockets at proxy_read_timeout. Here the reply must arrive in pieces through the
proxy, and an idle socket must outlive the proxy's timeout thanks to daphne's pings.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import subprocess
import sys
import time
import urllib.parse

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from tests.deploy import nginx as nginx_proc
from tests.deploy.client import NetTab, http_request
from tests.deploy.conftest import PROXY_TIMEOUT_SECONDS
from tests.deploy.processes import BASE_DIR, free_port

# The first test also waits for the deployment to start (migrations, three processes).
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.multiprocess, pytest.mark.timeout(300)]


async def test_a_reply_streams_through_nginx_in_pieces_before_it_ends(deployment, proxy):
    tab = await NetTab.open(proxy.port, deployment.sessions["alice"])
    try:
        # 30 tokens, 50 ms apart: about 1.5 s from the first token to the last.
        _, reply = await tab.new_chat("through nginx [[fake tokens=30 token_delay=0.05]]")
        done = await tab.reply_done(reply)
    finally:
        await tab.close()
    assert done["status"] == "complete"
    deltas = tab.deltas(reply)
    assert len(deltas) >= 10  # not one buffered lump
    first_delta = deltas[0][0]
    ended = tab.arrival("reply.done", reply)
    # Buffering would deliver everything at the end; streaming spreads it over the reply.
    assert ended - first_delta > 0.7, ended - first_delta
    assert tab.texts[reply] == done["content"]


async def test_an_idle_socket_outlives_the_proxy_timeout_because_the_workers_ping(deployment, proxy):
    tab = await NetTab.open(proxy.port, deployment.sessions["alice"])
    try:
        await asyncio.sleep(PROXY_TIMEOUT_SECONDS * 2.5)
        await tab.send({"type": "ping"})
        assert (await tab.until_type("pong", timeout=10))["type"] == "pong"
    finally:
        await tab.close()


async def test_without_pings_the_same_proxy_closes_an_idle_socket(deployment, tmp_path):
    """The control for the test above: it passes because of the pings, not by luck."""
    if nginx_proc.nginx_binary() is None:
        pytest.skip("nginx is not installed")
    quiet = deployment.start_worker("worker-quiet", PARLEY_WS_PING_INTERVAL="600")
    server = nginx_proc.nginx(
        "nginx-quiet",
        upstream_ports=[quiet.port],
        static_dir=deployment.static_dir,
        proxy_timeout=f"{PROXY_TIMEOUT_SECONDS}s",
        work_dir=tmp_path,
    ).start(timeout=20)
    try:
        tab = await NetTab.open(server.port, deployment.sessions["alice"])
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while time.monotonic() - started < PROXY_TIMEOUT_SECONDS * 4:
                await tab.next(timeout=PROXY_TIMEOUT_SECONDS * 4)
        assert time.monotonic() - started < PROXY_TIMEOUT_SECONDS * 4
    finally:
        server.stop()
        quiet.stop()


def test_a_members_page_and_json_are_private_through_the_proxy(deployment, proxy):
    session = deployment.sessions["alice"]
    for path in ("/", "/api/conversations/"):
        status, headers, _, _ = http_request(proxy.port, "GET", path, session=session)
        assert status == 200, path
        assert headers["cache-control"] == "private, no-store", path
    # HSTS and the other production headers come through the proxy too.
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    # Without the forwarded scheme, production settings redirect to HTTPS.
    status, headers, _, _ = http_request(proxy.port, "GET", "/", session=session, headers={"X-Forwarded-Proto": ""})
    assert status == 301 and headers["location"].startswith("https://")


def test_static_files_are_served_by_nginx_with_a_year_long_cache(deployment, proxy):
    manifest = json.loads((deployment.static_dir / "staticfiles.json").read_text())["paths"]
    hashed = next(v for k, v in manifest.items() if k.endswith(".js") and k.startswith("app/"))
    status, headers, body, _ = http_request(proxy.port, "GET", f"/static/{hashed}", headers={"Accept-Encoding": ""})
    assert status == 200
    assert body == (deployment.static_dir / hashed).read_bytes()
    # nginx's own header (whitenoise words it differently), so the file came from disk.
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["content-type"].startswith(("application/javascript", "text/javascript"))
    status, headers, zipped, _ = http_request(
        proxy.port, "GET", f"/static/{hashed}", headers={"Accept-Encoding": "gzip"}
    )
    assert headers.get("content-encoding") == "gzip" and gzip.decompress(zipped) == body
    # A name without a content hash may change at the next upgrade: a short cache only.
    unhashed = next(k for k in manifest if k.startswith("app/") and k.endswith(".js"))
    status, headers, _, _ = http_request(proxy.port, "GET", f"/static/{unhashed}")
    assert status == 200 and headers["cache-control"] == "public, max-age=300"
    status, _, _, _ = http_request(proxy.port, "GET", "/static/no-such-file.js")
    assert status == 404


def test_the_sign_in_throttle_counts_the_address_nginx_saw_not_a_forged_one(deployment, proxy):
    status, _, page, cookies = http_request(proxy.port, "GET", "/accounts/login/")
    assert status == 200
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    origin = f"https://127.0.0.1:{proxy.port}"
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "bob", "password": "wrong"}).encode()
    status, _, _, _ = http_request(
        proxy.port,
        "POST",
        "/accounts/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
            "Origin": origin,
            "Referer": f"{origin}/accounts/login/",
            "X-Forwarded-For": "203.0.113.9",  # the client's own claim
        },
    )
    assert status == 200  # the form again, with an error
    addresses = deployment.query("SELECT host(ip_address) FROM axes_accessattempt WHERE username = 'bob'")
    assert addresses == [("127.0.0.1",)]


def test_a_body_over_the_limit_is_refused_by_nginx(proxy):
    # Announced, not sent: nginx answers from the Content-Length alone.
    limit = int(re.search(r"client_max_body_size (\d+)m;", (BASE_DIR / "deploy" / "nginx.conf").read_text()).group(1))
    assert limit * 1024 * 1024 > settings.PARLEY_MEDIA_MAX_FILE_BYTES  # one file at the limit gets through
    headers = {"Content-Type": "text/plain", "Content-Length": str((limit + 1) * 1024 * 1024)}
    status, _, _, _ = http_request(proxy.port, "POST", "/accounts/login/", headers=headers)
    assert status == 413


def test_the_health_check_passes_on_a_live_worker_and_fails_otherwise(deployment):
    def probe(port: int, allowed_hosts: str) -> subprocess.CompletedProcess:
        env = {**deployment.env, "PARLEY_PORT": str(port), "DJANGO_ALLOWED_HOSTS": allowed_hosts}
        script = str(BASE_DIR / "deploy" / "healthcheck.py")
        return subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=30)

    port = deployment.workers[0].port
    healthy = probe(port, deployment.env["DJANGO_ALLOWED_HOSTS"])
    assert healthy.returncode == 0, healthy.stderr
    # The probe names the first allowed host; a worker that does not allow it answers 400.
    wrong_host = probe(port, "chat.example.com")
    assert wrong_host.returncode == 1 and "HTTP 400" in wrong_host.stderr
    dead = probe(free_port(), deployment.env["DJANGO_ALLOWED_HOSTS"])
    assert dead.returncode == 1 and "unhealthy" in dead.stderr


def test_the_tls_and_load_balancer_examples_are_valid_nginx(tmp_path):
    """deploy/nginx.d/*.example, enabled as the docs say, with a throwaway certificate."""
    binary = nginx_proc.nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chat.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / "privkey.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    extra = tmp_path / "nginx.d"
    extra.mkdir()
    for example in (BASE_DIR / "deploy" / "nginx.d").glob("*.conf.example"):
        text = example.read_text().replace("/etc/nginx/certs/", f"{certs}/")
        text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{free_port()} ssl;")
        (extra / example.name.removesuffix(".example")).write_text(text)
    assert sorted(p.name for p in extra.iterdir()) == ["real-ip.conf", "tls.conf"]
    server = nginx_proc.nginx(
        "nginx-examples",
        upstream_ports=[free_port()],
        static_dir=tmp_path,
        proxy_timeout="120s",
        work_dir=tmp_path,
        extra_conf_dir=extra,
    )
    result = subprocess.run([*server.command, "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
