"""A member chats with the bundled SmolLM2 model through the whole stack (issue 8).

Browser protocol → consumer → reply task → chat/upstream/client.py → the real llama.cpp server, and back:
a non-empty streamed reply, saved, with usage recorded.
"""

import pytest
from channels.db import database_sync_to_async

from chat.models import Message, UsageRecord
from tests.chat.wsclient import Tab, settle

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]


async def test_a_member_chats_with_the_local_model_end_to_end(alice, local_model, settings):
    settings.PARLEY_AUTO_TITLE = False
    tab = await Tab.open(alice)
    await tab.send_message("What is the capital of France? Answer in one short sentence.", settings={"max_tokens": 40})
    created = (await tab.until_type("conversation.created", timeout=30))["conversation"]
    final = await tab.reply(timeout=120)
    await settle()
    assert final["status"] == "complete", final
    assert final["content"].strip()
    assert any(f["type"] == "reply.delta" for f in tab.frames)
    assert tab.texts[final["id"]] == final["content"]
    row = await database_sync_to_async(Message.objects.get)(id=final["id"])
    assert str(row.conversation_id) == created["id"]
    assert row.content == final["content"]
    assert row.model_name
    usage = await database_sync_to_async(UsageRecord.objects.get)(message_id=row.id)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.estimated is False  # llama.cpp sends the include_usage chunk
    await tab.close()
