"""Signing in in a real browser: Debian's chromium, a real daphne serving Parley with the
provider from the environment (PARLEY_OIDC_*), and the real test identity provider.

Single sign-on: the provider's button, the chat with the model the directory group grants,
signing out through the provider's end-session endpoint, and the next sign-in asking for the
provider's password again. Two-factor sign-in: set up from the QR code drawn in the page (no
CSP violation), then a sign-in with a recovery code.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from tests.accounts.idp import CLIENT_ID, CLIENT_SECRET, free_port, start_idp, stop_idp
from tests.browser.conftest import ARTIFACTS, WATCH_SCRIPT, Live, Watch, _http_ok, _start, shot, wait_for
from tests.browser_support import CHROMIUM, launch_chromium

pytestmark = pytest.mark.browser

SETUP = """
from django.core.management import call_command
call_command("migrate", "--noinput", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
from django.contrib.auth.models import Group
from chat.models import ChatModel, Provider
provider = Provider(name="Upstream", base_url="http://127.0.0.1:9/v1")
provider.api_key = "sk-browser-KEY0123456789wxyz"
provider.save()
ChatModel.objects.create(provider=provider, model_id="gpt-4o-mini", display_name="GPT-4o mini", is_default=True)
special = ChatModel.objects.create(provider=provider, model_id="gpt-4o", display_name="GPT-4o")
special.groups.add(Group.objects.create(name="engineering"))
from accounts.models import User
User.objects.create_user("alice", password="correct-horse-battery-9", email="alice@example.test")
"""


@pytest.fixture(scope="module")
def sso_live(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    idp = start_idp(
        [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{base}/accounts/oidc/sso/callback/"],
                "post_logout_redirect_uris": [f"{base}/accounts/login/"],
            }
        ]
    )
    data = tmp_path_factory.mktemp("parley-sso-live")
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PARLEY_DATA_DIR": str(data),
        "PARLEY_STATIC_ROOT": str(data / "static"),
        "DATABASE_URL": f"sqlite:///{data / 'parley.sqlite3'}",
        "REDIS_URL": "",
        "DJANGO_DEBUG": "false",
        "PARLEY_LOCAL_MODEL": "off",
        "PARLEY_BACKGROUND_TASKS": "false",
        "OPENAI_API_KEY": "",
        "PYTHONUNBUFFERED": "1",
        "PARLEY_OIDC_ISSUER": idp.issuer,
        "PARLEY_OIDC_CLIENT_ID": CLIENT_ID,
        "PARLEY_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "PARLEY_OIDC_NAME": "Acme SSO",
        "PARLEY_OIDC_SCOPES": "openid email profile groups",
        "PARLEY_OIDC_GROUPS_CLAIM": "groups",
        "PARLEY_OIDC_ALLOWED_DOMAINS": "acme.test",
    }
    live = Live(base_url=base, upstream=None, env=env)
    daphne = None
    try:
        live.shell(SETUP)
        daphne = _start(
            [os.path.join(os.path.dirname(sys.executable), "daphne"), "-b", "127.0.0.1", "-p", str(port)]
            + ["config.asgi:application"],
            env,
            logs / "daphne-sso.log",
        )
        wait_for(lambda: _http_ok(f"{base}/healthz") or daphne.poll() is not None, 60, what="daphne")
        if daphne.poll() is not None:
            raise AssertionError("daphne exited:\n" + (logs / "daphne-sso.log").read_text())
        yield live, idp
    finally:
        if daphne is not None:
            daphne.terminate()
            daphne.wait(timeout=10)
        stop_idp(idp)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def sso_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def test_a_member_signs_in_and_out_with_the_provider_in_a_real_browser(sso_live, sso_browser, request):
    from playwright.sync_api import expect

    live, idp = sso_live
    idp.person("carol", email="carol@acme.test", email_verified=True, name="Carol", groups=["engineering"])
    context = sso_browser.new_context(base_url=live.base_url, viewport={"width": 1280, "height": 860})
    context.add_init_script(WATCH_SCRIPT)
    watch = Watch(live.base_url)
    page = context.new_page()
    watch.attach(page)
    try:
        page.goto("/accounts/login/")
        page.get_by_text("Setting up single sign-on?").click()
        expect(page.get_by_text(f"{live.base_url}/accounts/oidc/sso/callback/")).to_be_visible()
        page.get_by_role("link", name="Sign in with Acme SSO").click()

        # At the identity provider.
        page.wait_for_url(f"{idp.issuer}/interaction/**")
        page.get_by_label("Username").fill("carol")
        page.get_by_role("button", name="Sign in to Test IdP").click()

        # Back in Parley, signed in, with the model the "engineering" group grants.
        page.wait_for_url(f"{live.base_url}/")
        expect(page.get_by_role("button", name="carol")).to_be_visible()
        models = page.request.get(f"{live.base_url}/api/models/").json()["models"]
        assert {m["model_id"] for m in models} == {"gpt-4o-mini", "gpt-4o"}

        # Signing out goes through the provider's end-session endpoint and back.
        page.get_by_role("button", name="carol").click()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{idp.issuer}/session/end**")
        page.get_by_role("button", name="Yes, sign me out").click()
        page.wait_for_url(f"{live.base_url}/accounts/login/**")
        page.goto("/")
        page.wait_for_url(f"{live.base_url}/accounts/login/**")

        # The provider's session ended too: it asks who you are again.
        page.get_by_role("link", name="Sign in with Acme SSO").click()
        page.wait_for_url(f"{idp.issuer}/interaction/**")
        expect(page.get_by_role("button", name="Sign in to Test IdP")).to_be_visible()

        # Parley's own pages stayed clean (the provider's pages are not Parley's to judge).
        parley = [r for r in watch.foreign_requests if not r.startswith(idp.issuer)]
        assert parley == [], parley
        assert watch.page_errors == []
    except Exception:
        shot(page, f"FAILED-{request.node.name}")
        raise
    finally:
        context.close()


def _secret_from_page(page) -> bytes:
    from base64 import b32decode

    text = page.locator("code.totp-secret").inner_text().replace(" ", "")
    return b32decode(text + "=" * (-len(text) % 8))


def test_a_member_sets_up_two_factor_sign_in_from_the_qr_code_in_a_real_browser(sso_live, sso_browser, request):
    from django_otp.oath import totp
    from playwright.sync_api import expect

    from tests.browser.conftest import PASSWORD

    live, _ = sso_live
    context = sso_browser.new_context(base_url=live.base_url, viewport={"width": 1280, "height": 860})
    context.add_init_script(WATCH_SCRIPT)
    watch = Watch(live.base_url)
    page = context.new_page()
    watch.attach(page)

    def password_sign_in():
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()

    try:
        password_sign_in()
        page.wait_for_url(f"{live.base_url}/")
        page.get_by_role("button", name="alice").click()
        page.get_by_role("link", name="Two-factor sign-in").click()
        page.get_by_role("link", name="Set up two-factor sign-in").click()
        qr = page.get_by_role("img", name="QR code for your authenticator app")
        expect(qr).to_be_visible()
        assert qr.locator("svg").bounding_box()["width"] > 100
        key = _secret_from_page(page)
        # The server's clock is the real one here (test_twofactor.py controls it); a code from
        # the step before or after is accepted too.
        page.get_by_label("Code", exact=True).fill(f"{totp(key, t0=0, step=30, digits=6, drift=0):06d}")
        page.get_by_role("button", name="Turn on").click()
        codes = page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
        assert len(codes) == 10
        page.get_by_role("link", name="I have saved them").click()
        expect(page.get_by_text("Two-factor sign-in is on")).to_be_visible()

        # Signed out and in again: the password alone is not enough; a recovery code is.
        page.goto("/")
        page.get_by_role("button", name="alice").click()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{live.base_url}/accounts/login/**")
        password_sign_in()
        page.wait_for_url(f"{live.base_url}/accounts/login/verify/")
        page.get_by_label("Code", exact=True).fill(codes[0])
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(f"{live.base_url}/")
        expect(page.get_by_role("button", name="alice")).to_be_visible()
        watch.assert_clean()
    except Exception:
        shot(page, f"FAILED-{request.node.name}")
        raise
    finally:
        context.close()
