"""A stored file goes with whatever owns it: its message, its conversation, its member.

Each path is tested on the folder and on the S3-compatible server, after the transaction
commits (``django_capture_on_commit_callbacks(execute=True)`` runs what commit would run).
"""

import pytest
from django.db import transaction

from chat.errors import MediaNotFound
from chat.media import storage
from chat.media.services import media_delete, media_save
from chat.models import Conversation, MediaFile, Message
from chat.services.conversations import conversation_delete
from chat.services.turns import regenerate_prepare
from tests.chat.media import samples

pytestmark = pytest.mark.django_db


@pytest.fixture
def thread(alice):
    """Alice's conversation: a question with an attached picture, and a reply with a made image."""
    conversation = Conversation.objects.create(owner=alice, title="Pictures")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, content="Draw this")
    reply = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="Here it is")
    return conversation, question, reply


def _save(owner, **where):
    return media_save(owner=owner, content=samples.png(), name="p.png", **where)


def test_deleting_a_message_deletes_its_files_and_only_those(alice, media_store, thread, capture):
    conversation, question, reply = thread
    attached = _save(alice, message=question)
    made = _save(alice, message=reply)
    with capture(execute=True):
        reply.delete()
    assert media_store.names() == {attached.storage_name}
    assert not MediaFile.objects.filter(pk=made.pk).exists()


def test_regenerating_a_reply_deletes_the_files_of_the_reply_it_replaces(alice, media_store, thread, capture):
    # The earlier reply goes through a bulk QuerySet.delete(), not Model.delete().
    conversation, question, reply = thread
    attached = _save(alice, message=question)
    _save(alice, message=reply)
    with capture(execute=True):
        regenerate_prepare(user=alice, conversation_id=conversation.id)
    assert media_store.names() == {attached.storage_name}


def test_deleting_a_conversation_deletes_all_its_files(alice, media_store, thread, capture):
    conversation, question, reply = thread
    _save(alice, message=question)
    _save(alice, message=reply)
    _save(alice, conversation=conversation)
    elsewhere = _save(alice)
    with capture(execute=True):
        conversation_delete(conversation=conversation)
    assert media_store.names() == {elsewhere.storage_name}


def test_a_bulk_delete_of_conversations_deletes_their_files(alice, bob, media_store, thread, capture):
    _save(alice, conversation=thread[0])
    bobs = _save(bob, conversation=Conversation.objects.create(owner=bob))
    with capture(execute=True):
        Conversation.objects.filter(owner=alice).delete()
    assert media_store.names() == {bobs.storage_name}


def test_deleting_a_member_deletes_all_their_files_and_not_bobs(alice, bob, media_store, thread, capture):
    _save(alice, message=thread[1])
    _save(alice)
    bobs = _save(bob)
    with capture(execute=True):
        alice.delete()
    assert media_store.names() == {bobs.storage_name}
    assert list(MediaFile.objects.all()) == [bobs]


def test_a_member_deletes_their_own_file_but_not_bobs(alice, bob, media_store, capture):
    mine = _save(alice)
    bobs = _save(bob)
    with pytest.raises(MediaNotFound), capture(execute=True):
        media_delete(user=alice, media_id=bobs.id)
    with capture(execute=True):
        media_delete(user=alice, media_id=mine.id)
    assert media_store.names() == {bobs.storage_name}


def test_a_delete_that_is_rolled_back_keeps_the_file(alice, media_store, thread, capture):
    media = _save(alice, conversation=thread[0])
    with capture(execute=True) as callbacks, pytest.raises(RuntimeError):  # noqa: PT012
        with transaction.atomic():
            thread[0].delete()
            raise RuntimeError("changed my mind")
    assert callbacks == []
    assert media_store.names() == {media.storage_name}
    assert MediaFile.objects.filter(pk=media.pk).exists()


def test_the_file_stays_until_the_transaction_commits(alice, media_store, thread, capture):
    media = _save(alice, conversation=thread[0])
    with capture(execute=False) as callbacks:
        thread[0].delete()
        assert media_store.names() == {media.storage_name}
    assert len(callbacks) == 1
    callbacks[0]()
    assert media_store.names() == set()


def test_a_store_that_fails_to_delete_is_logged_and_the_delete_still_happens(
    alice, media_store, capture, caplog, monkeypatch
):
    media = _save(alice)

    class Down:
        def delete(self, name):
            raise OSError("the store is down")

    monkeypatch.setattr(storage, "media_storage", Down)
    with capture(execute=True):
        media.delete()
    assert not MediaFile.objects.exists()
    assert "could not delete stored media file" in caplog.text
