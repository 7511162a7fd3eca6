"""The floor: the least any relay built on Parley's fixed stack can cost (bench/floor.py).

Not Parley. An ASGI application for daphne with the same components the design fixes
(daphne, Channels' ``AsyncWebsocketConsumer``, the Django ORM through
``database_sync_to_async``, httpx) doing only what no chat relay can skip: read the member's
frame, save the member's message before anything else (and the reply row that will hold the
answer) in one transaction, stream the upstream's reply with httpx, write its deltas straight
to the socket (the first at once, later ones coalesced like Parley's), save the reply once
at the end and say so. No session re-check, rules, budget, history, prompt, moderation,
token counting, channel layer, heartbeat or stop: everything Parley does on top of this is
what the gap between the two measures.

It speaks enough of docs/websocket-protocol.md (``send`` in; ``message.created``,
``reply.delta``, ``reply.done`` out) for bench.clients.Tab, so both are timed by one client.
Run on a Parley installation (bench.harness.Parley with ``app=FLOOR_APP``), which provides
the members, the provider and the tables.
"""

import asyncio
import json
import os
import time

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.db import transaction  # noqa: E402
from django.urls import path  # noqa: E402

from chat.models import ChatModel, Conversation, Message  # noqa: E402
from chat.upstream import client as upstream_client  # noqa: E402

COALESCE = float(os.environ.get("PARLEY_DELTA_COALESCE_MS", "30")) / 1000  # seconds, as Parley's setting


def _begin(user, content: str, client_id: str):
    model = ChatModel.objects.select_related("provider").get(is_default=True)
    with transaction.atomic():
        conversation = Conversation.objects.create(owner=user, title=content[:40], model=model)
        Message.objects.create(conversation=conversation, role="user", content=content, client_id=client_id)
        reply = Message.objects.create(conversation=conversation, role="assistant", status="streaming", model=model)
    return model, reply


def _finish(reply: Message, text: str) -> None:
    reply.content = text
    reply.status = "complete"
    reply.save(update_fields=["content", "status"])


class FloorConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope["user"]
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        frame = json.loads(text_data)
        model, reply = await database_sync_to_async(_begin)(self.user, frame["content"], frame["client_id"])
        message = {"id": str(reply.id), "role": "assistant", "status": "streaming", "content": ""}
        await self.send(text_data=json.dumps({"type": "message.created", "message": message}))
        provider = model.provider
        payload = {
            "model": model.model_id,
            "messages": [{"role": "user", "content": frame["content"]}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = {"Authorization": f"Bearer {provider.api_key}", "Accept": "text/event-stream"}
        parts: list[str] = []
        sent = 0  # parts already written to the socket
        offset = 0  # their length in characters
        last = 0.0
        buffer = b""

        async def flush():
            nonlocal sent, offset, last
            text = "".join(parts[sent:])
            delta = {"type": "reply.delta", "message_id": message["id"], "offset": offset, "text": text}
            sent, offset, last = len(parts), offset + len(text), time.monotonic()
            await self.send(text_data=json.dumps(delta))

        # httpx as Parley configures it (chat.upstream.client's pooled clients), without Parley's retry
        # policy, error mapping or SSE decoder.
        with upstream_client._lease() as client:
            request = client.build_request(
                "POST", provider.base_url.rstrip("/") + "/chat/completions", json=payload, headers=headers
            )
            response = await client.send(request, stream=True)
            try:
                async for data in response.aiter_raw():
                    *events, buffer = (buffer + data).split(b"\n\n")
                    for event in events:
                        body = event.partition(b"data:")[2].strip()
                        if not body or body == b"[DONE]":
                            continue
                        for choice in json.loads(body).get("choices") or ():
                            delta = (choice.get("delta") or {}).get("content")
                            if delta:
                                parts.append(delta)
                        if sent == 0 and parts:
                            # The first delta leaves before the rest of the chunk is read, and the
                            # loop gets two turns so daphne's write goes out (as Parley does).
                            await flush()
                            await asyncio.sleep(0)
                            await asyncio.sleep(0)
                    if len(parts) > sent and time.monotonic() - last >= COALESCE:
                        await flush()
            finally:
                await response.aclose()
        if len(parts) > sent:
            await flush()
        text = "".join(parts)
        await database_sync_to_async(_finish)(reply, text)
        message.update(status="complete", content=text)
        await self.send(text_data=json.dumps({"type": "reply.done", "message": message}))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter([path("ws/chat/", FloorConsumer.as_asgi())])),
    }
)
