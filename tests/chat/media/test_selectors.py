"""A member reads only their own files; another member's file does not exist for them (T10)."""

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser

from chat.errors import MediaNotFound
from chat.media.selectors import media_bytes_used, media_for_user
from chat.models import MediaFile

pytestmark = pytest.mark.django_db


def _record(owner, size=10):
    key = uuid.uuid4().hex
    return MediaFile.objects.create(
        owner=owner, original_name="a.png", storage_name=f"{key[:2]}/{key}.png", content_type="image/png", size=size
    )


def test_alice_reads_her_file(alice):
    media = _record(alice)
    assert media_for_user(user=alice, media_id=media.id) == media
    assert media_for_user(user=alice, media_id=str(media.id)) == media


@pytest.mark.parametrize("who", ["bob", "anonymous"])
def test_bob_and_anonymous_visitors_are_told_it_does_not_exist(alice, bob, who):
    media = _record(alice)
    user = bob if who == "bob" else AnonymousUser()
    with pytest.raises(MediaNotFound) as refused:
        media_for_user(user=user, media_id=media.id)
    assert refused.value.code == "not_found"


@pytest.mark.parametrize("media_id", ["nope", None, "", 12, uuid.uuid4()])
def test_an_id_that_is_not_a_file_is_not_found(alice, media_id):
    with pytest.raises(MediaNotFound):
        media_for_user(user=alice, media_id=media_id)


def test_the_bytes_used_are_the_members_own(alice, bob):
    _record(alice, size=100)
    _record(alice, size=50)
    _record(bob, size=7)
    assert media_bytes_used(user=alice) == 150
    assert media_bytes_used(user=bob) == 7
