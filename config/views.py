"""Project-level views that belong to no app."""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # noqa: BLE001 - a health probe reports any failure, it never raises
        logger.warning("healthz: database unreachable", exc_info=True)
        return "unavailable"
    return "ok"


async def _layer_round_trip(layer) -> None:
    # A real send and receive on a fresh channel: proves the layer (Redis) answers, and
    # leaves nothing behind to fill a capacity limit.
    name = await layer.new_channel()
    await layer.send(name, {"type": "healthz.probe"})
    await asyncio.wait_for(layer.receive(name), timeout=2)


def _channel_layer_status() -> str:
    layer = get_channel_layer()
    if layer is None:
        return "unconfigured"
    try:
        async_to_sync(_layer_round_trip)(layer)
    except Exception:  # noqa: BLE001 - see above
        logger.warning("healthz: channel layer unreachable", exc_info=True)
        return "unavailable"
    return "ok"


@never_cache
@require_GET
def healthz(request):
    database = _database_status()
    layer = _channel_layer_status()
    healthy = database == "ok"
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "database": database, "channel_layer": layer},
        status=200 if healthy else 503,
    )
