"""The composer's "Collections" picker reads what a conversation searches from its state frame;
a conversation without documents costs no query for it."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group

from chat.models import Conversation
from chat.services.collections import collection_create, collections_use
from tests.chat.wsclient import Tab

pytestmark = [pytest.mark.django_db(transaction=True)]


def _conversation_with_collections(alice, bob):
    mine = collection_create(user=alice, name="Handbook")
    shared = collection_create(user=bob, name="Bob's notes")
    staff = Group.objects.create(name="Staff")
    alice.groups.add(staff)
    shared.groups.add(staff)
    conversation = Conversation.objects.create(owner=alice, title="Policies")
    collections_use(user=alice, conversation=conversation, collection_ids=[str(mine.pk), str(shared.pk)])
    plain = Conversation.objects.create(owner=alice, title="Plain")
    return conversation, plain, mine, shared, staff


async def test_the_state_frame_lists_the_collections_a_conversation_searches(alice, bob):
    conversation, plain, mine, shared, staff = await database_sync_to_async(_conversation_with_collections)(alice, bob)
    tab = await Tab.open(alice)

    await tab.send({"type": "subscribe", "conversation_id": str(conversation.pk)})
    state = await tab.until_type("conversation.state")
    assert [(c["name"], c["mine"], c["owner"]) for c in state["collections"]] == [
        ("Bob's notes", False, "bob"),
        ("Handbook", True, None),
    ]

    # Shared no more: it is no longer listed (nor searched).
    await database_sync_to_async(shared.groups.remove)(staff)
    await tab.send({"type": "subscribe", "conversation_id": str(plain.pk)})
    assert (await tab.until_type("conversation.state"))["collections"] == []
    await tab.send({"type": "subscribe", "conversation_id": str(conversation.pk)})
    state = await tab.until_type("conversation.state")
    assert [c["name"] for c in state["collections"]] == ["Handbook"]
    await tab.close()
