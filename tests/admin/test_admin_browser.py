"""The console in a real browser (Debian's chromium through Playwright), under the real CSP.

Admin pages are plain HTTP, so pytest-django's ``live_server`` serves them. Every page is
watched for console errors, uncaught exceptions and CSP violations (a ``securitypolicyviolation``
listener installed before any page script runs).
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from chat.models import ChatModel, Provider, UsageRecord
from tests.admin.conftest import MASKED, SECRET_KEY, assert_no_key
from tests.browser_support import launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""));
});
"""


@pytest.fixture
def plain_static(settings):
    # The manifest storage needs collectstatic; these pages only need the files themselves,
    # which the live server serves from the finders.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which makes Django
    # refuse ORM calls from the test body; the test is sequential, so that guard does not apply.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


class Watcher:
    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.bodies: list[str] = []
        self.csp_headers: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("response", self._response)

    def _response(self, response):
        if response.request.resource_type == "document":
            self.csp_headers.append(response.headers.get("content-security-policy", ""))
        try:
            self.bodies.append(response.text())
        except Exception as exc:  # noqa: BLE001 - redirects and aborted responses have no body
            self.bodies.append(f"(no body: {exc})")

    def visit(self, path: str):
        response = self.page.goto(path)
        assert response.status == 200, (path, response.status)
        self.check(path)
        return response

    def check(self, where: str):
        violations = self.page.evaluate("window.__csp")
        assert violations == [], (where, violations)
        assert self.errors == [], (where, self.errors)
        assert self.csp_headers and all("script-src 'self'" in h for h in self.csp_headers), self.csp_headers
        assert all("unsafe-inline" not in h for h in self.csp_headers)


@pytest.fixture
def admin_page(browser, live_server, client, admin_user, plain_static):
    client.force_login(admin_user)
    context = browser.new_context(base_url=live_server.url)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    context.add_init_script(WATCH)
    page = context.new_page()
    yield page, Watcher(page)
    context.close()


@pytest.fixture
def browser_provider(upstream):
    provider = Provider(name="Fake OpenAI", base_url=upstream.base_url)
    provider.api_key = SECRET_KEY
    provider.save()
    ChatModel.objects.create(provider=provider, model_id="gpt-4o-mini", is_default=True, context_window=128_000)
    return provider


def test_the_provider_form_never_contains_the_key(admin_page, browser_provider, upstream):
    page, watch = admin_page
    watch.visit(f"/admin/chat/provider/{browser_provider.pk}/change/")
    assert page.get_by_text(MASKED).first.is_visible()
    key_box = page.get_by_label("New API key")
    assert key_box.get_attribute("type") == "password"
    assert key_box.input_value() == ""

    # Saving with the box left empty keeps the key.
    page.get_by_label("Name:", exact=True).fill("Renamed provider")
    page.get_by_role("button", name="Save and continue editing").click()
    page.wait_for_load_state()
    watch.check("after save")
    assert page.get_by_label("New API key").input_value() == ""
    browser_provider.refresh_from_db()
    assert browser_provider.name == "Renamed provider"
    assert browser_provider.api_key == SECRET_KEY

    # Test connection answers in words, without the key.
    page.get_by_role("button", name="Test connection").click()
    page.wait_for_load_state()
    assert page.get_by_text("connected, ").first.is_visible()
    watch.check("after test connection")
    assert [r.path for r in upstream.requests] == ["/v1/models"]

    watch.visit("/admin/chat/provider/")
    watch.visit(f"/admin/chat/provider/{browser_provider.pk}/history/")
    for body in [*watch.bodies, page.content()]:
        assert_no_key(body)


def test_the_dashboard_and_admin_pages_render_cleanly(admin_page, browser_provider, alice, bob):
    page, watch = admin_page
    today = timezone.localdate()
    for days_ago, user, model, tokens in (
        (0, alice, "gpt-4o", 400),
        (2, bob, "gpt-4o-mini", 900),
        (2, alice, "gpt-4o", 50),
    ):
        UsageRecord.objects.create(
            user=user,
            model_name=model,
            prompt_tokens=tokens,
            completion_tokens=0,
            cost=Decimal("0.01"),
            created_at=timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12))),
        )

    watch.visit("/admin/chat/usagerecord/dashboard/")
    page.get_by_role("heading", name="Tokens per day, by model").wait_for()
    assert page.locator("svg.parley-chart").count() == 3
    bars = page.locator("svg.parley-chart rect")
    assert bars.count() >= 6
    box = bars.first.bounding_box()
    assert box and box["height"] > 0 and box["width"] > 0  # sized by attributes, not inline CSS
    page.get_by_text("The numbers, day by day").click()
    assert page.locator(f'tr[data-day="{today.isoformat()}"] td[data-col="tokens"]').inner_text() == "400"

    for path in (
        "/admin/",
        "/admin/chat/usagerecord/",
        f"/admin/chat/usagerecord/?created_from={today.isoformat()}",
        "/admin/chat/provider/add/",
        f"/admin/chat/chatmodel/{ChatModel.objects.get().pk}/change/",  # two-box group picker (JS)
        "/admin/accounts/user/",
        "/admin/accounts/user/add/",  # password toggles (JS)
        f"/admin/accounts/user/{alice.pk}/change/",
        "/admin/accounts/invite/add/",  # calendar and clock shortcuts (JS)
        "/admin/chat/conversation/",
        "/admin/chat/moderationevent/",
        "/admin/chat/blocklistentry/add/",
    ):
        watch.visit(path)

    # The date range filter works from the sidebar.
    watch.visit("/admin/chat/usagerecord/")
    page.get_by_label("From").fill((today - dt.timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state()
    watch.check("after filtering")
    assert page.locator('[data-total="records"]').inner_text() == "1"
