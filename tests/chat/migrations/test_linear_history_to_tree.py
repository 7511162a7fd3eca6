"""The migration to the message tree: an existing conversation shows exactly what it showed."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("chat", "0007_member_api")]
AFTER = [("chat", "0009_linear_history_to_tree")]


def migrate(target=None):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    target = target or executor.loader.graph.leaf_nodes()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.fixture
def before():
    apps = migrate(BEFORE)
    yield apps
    migrate()  # the latest schema again, for the tests after this one


def test_a_linear_history_becomes_one_branch_with_blocked_and_failed_messages_in_place(before, alice, bob):
    Conversation = before.get_model("chat", "Conversation")
    Message = before.get_model("chat", "Message")
    start = timezone.now() - dt.timedelta(hours=1)
    history = [
        ("user", "hello", "complete"),
        ("assistant", "Hi! How can I help?", "complete"),
        ("user", "something rude", "blocked"),
        ("user", "tell me a story", "complete"),
        ("assistant", "", "error"),
        ("user", "tell me a story, please", "complete"),
        ("assistant", "Once upon a time", "stopped"),
    ]
    stories = Conversation.objects.create(owner_id=alice.pk, title="Stories")
    for n, (role, content, status) in enumerate(history):
        Message.objects.create(
            conversation=stories, role=role, content=content, status=status, created_at=start + dt.timedelta(seconds=n)
        )
    bobs = Conversation.objects.create(owner_id=bob.pk, title="Bob's")
    Message.objects.create(conversation=bobs, role="user", content="bob's only message", created_at=start)
    empty = Conversation.objects.create(owner_id=alice.pk, title="Nothing yet")

    after = migrate(AFTER)
    Conversation = after.get_model("chat", "Conversation")
    Message = after.get_model("chat", "Message")

    def thread(conversation_id):
        """What the member sees: walk up from the current leaf."""
        conversation = Conversation.objects.get(pk=conversation_id)
        seen, message = [], conversation.current_leaf
        while message is not None:
            seen.append((message.role, message.content, message.status))
            message = message.parent
        return list(reversed(seen))

    assert thread(stories.pk) == history
    assert thread(bobs.pk) == [("user", "bob's only message", "complete")]
    assert thread(empty.pk) == []
    # One branch: no message has a sibling.
    assert Message.objects.filter(parent__isnull=True).count() == 2

    # And the member's page reads the same thread through the selectors of today's code.
    migrate()
    from chat.models import Conversation as Current
    from chat.selectors import conversation_messages

    shown = conversation_messages(conversation=Current.objects.get(pk=stories.pk))
    assert [(m.role, m.content, m.status) for m in shown] == history
    assert all(m.version_count == 1 for m in shown)
