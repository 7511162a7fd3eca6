"""Serving stored files (chat/web/media.py): to their owner only, as a download unless a safe
image or audio is asked for inline, with nosniff, a sandboxing CSP and a private cache (T10, T16).

Run on the data folder and on the S3-compatible server; the view is async, so these tests use
Django's AsyncClient against a committed database (``transaction=True``).
"""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.shortcuts import resolve_url
from django.urls import reverse

from chat.media.services import media_save
from chat.models import MediaFile
from tests.chat.media import samples

pytestmark = pytest.mark.django_db(transaction=True)


def _url(media, **query):
    url = reverse("chat:media", args=[media.id])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def _body(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


async def _save(owner, content, name, kind=MediaFile.Kind.UPLOAD):
    return await sync_to_async(media_save)(owner=owner, content=content, name=name, kind=kind)


async def _signed_in(async_client, user):
    await async_client.aforce_login(user)
    return async_client


def _assert_guarded(response):
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response["Cache-Control"].startswith("private")
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"
    assert response["Content-Type"].split(";")[0] not in ("text/html", "image/svg+xml")


async def test_alice_downloads_her_file_with_every_guard(alice, media_store, async_client):
    content = samples.png()
    media = await _save(alice, content, "holiday.png")
    client = await _signed_in(async_client, alice)
    response = await client.get(_url(media))
    assert response.status_code == 200
    assert await _body(response) == content
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(content))
    assert response["Content-Disposition"] == 'attachment; filename="holiday.png"'
    _assert_guarded(response)


@pytest.mark.parametrize(("content", "content_type"), [(samples.png(), "image/png"), (samples.wav(), "audio/wav")])
async def test_an_image_or_audio_is_shown_inline_only_when_asked(
    alice, media_store, async_client, content, content_type
):
    media = await _save(alice, content, "made")
    client = await _signed_in(async_client, alice)
    for query in ({}, {"inline": 0}, {"inline": "yes"}):
        assert (await client.get(_url(media, **query)))["Content-Disposition"] == 'attachment; filename="made"'
    response = await client.get(_url(media, inline=1))
    assert response["Content-Disposition"] == 'inline; filename="made"'
    assert response["Content-Type"] == content_type
    assert await _body(response) == content
    _assert_guarded(response)


@pytest.mark.parametrize("name", ["x.html", "x.svg"])
@pytest.mark.parametrize("content", [samples.png_polyglot(), samples.wav_polyglot()])
async def test_a_polyglot_named_html_or_svg_is_never_html_or_svg(alice, media_store, async_client, name, content):
    """T16: downloaded as what its bytes are; never text/html or image/svg+xml from our origin."""
    media = await _save(alice, content, name)
    client = await _signed_in(async_client, alice)
    download = await client.get(_url(media))
    assert download["Content-Disposition"].startswith("attachment;")
    assert download["Content-Type"] in ("image/png", "audio/wav")
    _assert_guarded(download)
    shown = await client.get(_url(media, inline=1))
    # Shown inline it is an image or a sound: with nosniff and the sandbox, the script is inert.
    assert shown["Content-Type"] in ("image/png", "audio/wav")
    _assert_guarded(shown)


@pytest.mark.parametrize(
    ("content", "served_as"),
    [
        (samples.HTML, "application/octet-stream"),
        (samples.TEXT, "text/plain; charset=utf-8"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "application/pdf"),
    ],
)
async def test_documents_are_always_downloads_even_when_asked_inline(
    alice, media_store, async_client, content, served_as
):
    media = await _save(alice, content, "page.html")
    client = await _signed_in(async_client, alice)
    response = await client.get(_url(media, inline=1))
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response["Content-Type"] == served_as
    assert await _body(response) == content
    _assert_guarded(response)


async def test_a_name_in_any_script_reaches_the_download_intact(alice, media_store, async_client):
    media = await _save(alice, samples.TEXT, '报告 "final".txt')
    client = await _signed_in(async_client, alice)
    response = await client.get(_url(media))
    assert "filename*=utf-8''%E6%8A%A5%E5%91%8A%20%22final%22.txt" in response["Content-Disposition"]


async def test_bob_gets_404_for_alices_file(alice, bob, media_store, async_client):
    media = await _save(alice, samples.png(), "private.png")
    client = await _signed_in(async_client, bob)
    for query in ({}, {"inline": 1}):
        response = await client.get(_url(media, **query))
        assert response.status_code == 404
        assert samples.png() not in response.content


async def test_an_unknown_file_is_404(alice, async_client):
    client = await _signed_in(async_client, alice)
    response = await client.get("/media/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404


async def test_an_anonymous_visitor_is_sent_to_sign_in(alice, media_store, async_client):
    """T10: no stored file is public."""
    media = await _save(alice, samples.png(), "private.png")
    response = await async_client.get(_url(media))
    assert response.status_code == 302
    assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))


async def test_a_file_can_only_be_read(alice, media_store, async_client):
    media = await _save(alice, samples.png(), "a.png")
    client = await _signed_in(async_client, alice)
    for method in (client.post, client.put, client.delete):
        assert (await method(_url(media))).status_code == 405


async def test_a_deleted_file_is_gone_for_its_owner_too(alice, media_store, async_client):
    media = await _save(alice, samples.png(), "a.png")
    url = _url(media)
    await sync_to_async(media.delete)()  # autocommit: the stored file goes at once
    assert media_store.names() == set()
    client = await _signed_in(async_client, alice)
    assert (await client.get(url)).status_code == 404


def test_the_store_is_never_under_static_files_or_a_public_media_url():
    """T10: the folder is under the data directory, not STATIC_ROOT, and nothing maps MEDIA_URL."""
    from django.urls import Resolver404, resolve

    root = settings.STORAGES["media"]["OPTIONS"].get("location")
    if root is not None:
        assert not str(root).startswith(str(settings.STATIC_ROOT))
        assert str(root).startswith(str(settings.DATA_DIR))
        assert settings.STORAGES["media"]["OPTIONS"]["base_url"] is None
    assert settings.MEDIA_URL in ("", "/")  # no URL prefix serves the store's files directly
    with pytest.raises(Resolver404):
        resolve("/media/00/0123456789abcdef0123456789abcdef.png")
