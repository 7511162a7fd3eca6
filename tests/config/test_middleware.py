"""The middleware chain works in Django's async mode from end to end.

Under daphne one sync-only middleware makes Django run everything below it, async views
included, on the one thread-sensitive thread, so every streaming API request waited for the
one before it to reach its first token (docs/performance.md, "The member API").
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import AsyncClient
from django.utils.module_loading import import_string


def test_every_middleware_can_run_in_async_mode():
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]

    assert sync_only == []


@pytest.mark.django_db(transaction=True)
async def test_pages_and_the_private_cache_header_still_work_in_async_mode(alice):
    client = AsyncClient()
    await client.aforce_login(alice)

    page = await client.get("/usage/")
    health = await client.get("/healthz")

    assert page.status_code == 200 and page["Cache-Control"] == "private, no-store"
    assert health.status_code == 200
