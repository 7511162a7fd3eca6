"""A member makes an API key in the browser, a script uses it with the official openai
package, and revoking it in the browser stops the script at once."""

from __future__ import annotations

import openai
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot

pytestmark = pytest.mark.browser


def test_a_key_made_on_the_page_works_with_the_openai_package_until_revoked(alice_page, live, watch):
    page = alice_page
    page.goto("/new/")
    page.get_by_role("button", name="alice").click()
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")

    page.get_by_label("Name").fill("notebook")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("Your new API key").input_value()
    shot(page, "api-key-created")

    client = openai.OpenAI(api_key=key, base_url=f"{live.base_url}/v1", max_retries=0, timeout=30)
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": 'Hi [[fake reply="Hello from Parley."]]'}]
    )
    assert answer.choices[0].message.content == "Hello from Parley."

    page.goto("/api-keys/")
    expect(page.get_by_label("Your new API key")).to_have_count(0)
    expect(page.get_by_role("cell", name="notebook", exact=True)).to_be_visible()
    page.get_by_role("button", name="Revoke notebook").click()
    expect(page.get_by_role("status").first).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    client.close()
    watch.assert_clean()
