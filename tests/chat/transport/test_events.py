"""The event vocabulary: one module builds every event and frame, and only public events reach a browser."""

import ast
from pathlib import Path

import pytest
from channels.layers import get_channel_layer

from chat.models import Conversation
from chat.transport import events
from tests.chat.wsclient import Tab

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]
VOCABULARY = {
    value for name, value in vars(events).items() if name.isupper() and isinstance(value, str) and "." in value
} | {events.ERROR, events.PONG}


def test_no_module_but_the_vocabulary_builds_an_event_or_a_frame():
    builders = []
    for path in [*(ROOT / "chat").rglob("*.py"), *(ROOT / "accounts").rglob("*.py")]:
        if path.name == "events.py" and path.parent.name == "transport":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in VOCABULARY
                ):
                    builders.append(f"{path.relative_to(ROOT)}:{node.lineno} {value.value}")
    # ParleyError.as_frame (chat/errors.py, the lowest layer) builds the error frame itself.
    assert builders == ["chat/errors.py:25 error"]


async def test_an_event_that_is_not_public_never_reaches_the_browser(alice):
    conversation = await Conversation.objects.acreate(owner=alice, title="Quiet")
    tab = await Tab.open(alice)
    await tab.send({"type": "subscribe", "conversation_id": str(conversation.id)})
    await tab.until_type("conversation.state")

    layer = get_channel_layer()
    group = events.conversation_group(conversation.id)
    await layer.group_send(group, {"type": "execute", "code": "alert(1)"})
    await layer.group_send(group, events.reply_stop())  # control, published to the wrong group
    await layer.group_send(group, events.conversation_deleted(conversation_id=conversation.id))

    frame = await tab.next()
    # the first and only one relayed
    assert frame == {"type": "conversation.deleted", "conversation_id": str(conversation.id)}
    await tab.close()


def test_every_public_event_is_documented_in_the_websocket_protocol():
    protocol = (ROOT / "docs" / "websocket-protocol.md").read_text()
    missing = [
        kind
        for kind in sorted(events.PUBLIC | {events.CONVERSATION_STATE, events.CONVERSATION_CREATED})
        if f"`{kind}`" not in protocol
    ]
    assert missing == []
