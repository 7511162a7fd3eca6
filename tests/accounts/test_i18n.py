"""English and Simplified Chinese ship: chosen from the browser or the switcher, fully translated."""

import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

CATALOG = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


@pytest.mark.parametrize("accept", ["zh-Hans", "zh-CN", "zh-hans,en;q=0.5"])
def test_a_chinese_browser_gets_the_sign_in_page_in_chinese(client, accept):
    response = client.get(reverse("login"), headers={"accept-language": accept})
    body = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="zh-hans">' in body
    assert "登录 Parley" in body
    assert "用户名" in body
    assert "Sign in to Parley" not in body


def test_an_english_browser_gets_english(client):
    body = client.get(reverse("login"), headers={"accept-language": "en-US,en;q=0.9"}).content.decode()
    assert "Sign in to Parley" in body
    assert "登录 Parley" not in body


def test_the_switcher_changes_the_language_for_the_next_pages(client):
    page = client.get(reverse("login")).content.decode()
    assert '<label for="language-select">Language</label>' in page
    assert 'action="/i18n/setlang/"' in page
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": reverse("login")})
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert "登录 Parley" in client.get(reverse("login")).content.decode()


def test_the_switcher_names_each_language_in_its_own_language(client):
    page = client.get(reverse("login"), headers={"accept-language": "zh-Hans"}).content.decode()
    assert "简体中文" in page
    assert ">English<" in page


def test_sign_up_refusals_are_translated(client, settings):
    settings.PARLEY_SIGNUP_MODE = "closed"
    body = client.get(reverse("signup"), headers={"accept-language": "zh-Hans"}).content.decode()
    assert "注册已关闭" in body


def test_error_messages_are_translated():
    from django.utils import translation

    from chat.errors import RateLimited

    with translation.override("zh-hans"):
        assert RateLimited().message == "请求过多。请稍候再试。"


def _entries(text):
    for block in re.split(r"\n\s*\n", text.strip())[1:]:
        msgid = re.search(r'^msgid ((?:".*"\n?)+)', block + "\n", re.M)
        strings = re.findall(r'^msgstr(?:\[\d+\])? ((?:".*"\n?)+)', block + "\n", re.M)
        translated = all("".join(re.findall(r'"(.*)"', s)) for s in strings)
        text = "".join(re.findall(r'"(.*)"', msgid.group(1))) if msgid else block
        yield text, translated, "fuzzy" in block.split("msgid")[0]


def test_every_string_has_a_chinese_translation():
    untranslated = [msgid for msgid, translated, fuzzy in _entries(CATALOG.read_text()) if not translated or fuzzy]
    assert not untranslated, (
        f"{len(untranslated)} strings in {CATALOG} have no Chinese translation (or are fuzzy): "
        f"{untranslated[:20]}. Run `make messages-update`, translate them and remove the fuzzy flags."
    )


def test_the_catalog_compiles_with_matching_placeholders(tmp_path):
    result = subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "django.mo"), str(CATALOG)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
