"""A tab that closes while events for it are in flight (issue 20 item 12): silence, not tracebacks."""

import logging

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.chat.wsclient import DaphneRules, Tab, settle

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _streaming(settings, fake_upstream):
    settings.PARLEY_AUTO_TITLE = False
    settings.PARLEY_DELTA_COALESCE_MS = 0  # a frame per token: many sends after the close
    fake_upstream.always(tokens=150, token_delay=0.004)


async def test_a_tab_closed_while_a_reply_streams_logs_nothing_and_the_reply_is_saved(alice, upstream_model, caplog):
    server = DaphneRules()
    tab = await Tab.open(alice, application=server)
    await tab.send_message("stream to a tab that closes")
    first = await tab.until_type("reply.delta")
    with caplog.at_level(logging.DEBUG):
        server.closing = True  # the browser's close frame is in; the reply streams on
        await settle()
        await tab.ws.send_input({"type": "websocket.disconnect", "code": 1001})
        await tab.ws.wait(timeout=5)  # raises what escaped the application, if anything did
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Traceback" not in caplog.text and "closed protocol" not in caplog.text
    reply = await database_sync_to_async(Message.objects.get)(id=first["message_id"])
    assert reply.status == "complete" and len(reply.content.split()) == 150


async def test_a_real_send_failure_is_logged_once_and_ends_the_socket(alice, upstream_model, caplog):
    server = DaphneRules()
    tab = await Tab.open(alice, application=server)
    await tab.send_message("stream to a socket whose server breaks")
    await tab.until_type("reply.delta")
    with caplog.at_level(logging.DEBUG):
        server.failing = RuntimeError("the transport broke")
        await settle()
        out = await tab.ws.receive_output(timeout=5)
        while out["type"] == "websocket.send":  # frames sent before the failure
            out = await tab.ws.receive_output(timeout=5)
    assert out == {"type": "websocket.close", "code": 1011}
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert "the transport broke" in caplog.text  # with its traceback
    await tab.ws.send_input({"type": "websocket.disconnect", "code": 1011})
    await tab.ws.wait(timeout=5)
