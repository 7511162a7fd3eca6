"""Presets carry document collections (issue 18): only collections the preset's author may read
are saved (another member's private one is not_found, never hinted at); a new chat from the
preset searches them as if picked in the composer; a member using a preset published to their
group gets those they may read and is told how many were skipped; deleting a collection takes
it out of every preset."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from chat.errors import BadRequest, CollectionRefused, NotFound
from chat.models import Collection, Preset
from chat.selectors import preset_collections_for_user, presets_for_user
from chat.serializers import preset_to_dict
from chat.services import library
from chat.services.collections import collection_create, collection_delete, collection_document_add
from chat.services.documents import document_index, question_embedding_model
from chat.services.turns import turn_start
from tests.documents_support import long_pdf, make_embedding_model, media_in_folder
from tests.fakeupstream.embeddings import embed

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "Parental leave lasts twenty-six weeks at full pay, policy HR-7."
SECRET = "The merger with Globex closes on the ninth of March."
QUESTION = "How long does parental leave last?"


@pytest.fixture(autouse=True)
def _media_folder(settings, tmp_path):
    media_in_folder(settings, tmp_path / "media")
    settings.PARLEY_DOCUMENT_CONTEXT_TOKENS = 600


@pytest.fixture
def embedding(upstream_model):
    return make_embedding_model(upstream_model.provider)


def add_indexed(user, collection, name, data) -> None:
    document = collection_document_add(user=user, collection_id=str(collection.pk), name=name, data=data)
    assert document_index(document.pk) == "ready"


@pytest.fixture
def policies(alice, embedding, fake_upstream) -> Collection:
    collection = collection_create(user=alice, name="HR policies")
    add_indexed(alice, collection, "handbook.pdf", long_pdf(30, {17: FACT}))
    return collection


@pytest.fixture
def secret(alice, embedding, fake_upstream) -> Collection:
    collection = collection_create(user=alice, name="Board minutes")
    add_indexed(alice, collection, "minutes.pdf", long_pdf(10, {3: SECRET}))
    return collection


def start_chat(user, preset, text=QUESTION, collection_ids=None):
    return turn_start(
        user=user,
        conversation_id=None,
        client_id=f"c-{user.pk}-{preset.pk}-{abs(hash(text))}",
        content=text,
        preset_id=preset.pk,
        collection_ids=collection_ids,
        query_vector=embed(text),
    )


def test_a_new_chat_from_a_preset_searches_its_collection(alice, policies):
    preset = library.preset_create(user=alice, values={"name": "HR helper", "collection_ids": [str(policies.pk)]})
    assert list(preset.collections.all()) == [policies]

    start = start_chat(alice, preset)

    conversation = start.saved.conversation
    assert list(conversation.collections.all()) == [policies]
    assert conversation.has_documents and start.saved.collections_skipped == 0
    assert any(FACT in chunk.text for chunk in start.plan.prompt.sources.chunks)


def test_the_question_is_embedded_for_a_new_chat_from_a_preset_with_collections(alice, bob, policies, embedding):
    with_collection = library.preset_create(user=alice, values={"name": "HR", "collection_ids": [str(policies.pk)]})
    without = library.preset_create(user=alice, values={"name": "Plain"})
    assert question_embedding_model(user=alice, preset_id=with_collection.pk) == embedding
    assert question_embedding_model(user=alice, preset_id=without.pk) is None
    # Bob may not use alice's preset, nor read her collection: no call on anyone's bill.
    assert question_embedding_model(user=bob, preset_id=with_collection.pk) is None


def test_another_members_private_collection_cannot_go_into_a_preset(alice, bob, policies):
    with pytest.raises(NotFound) as refused:
        library.preset_create(user=bob, values={"name": "Spy", "collection_ids": [str(policies.pk)]})
    assert refused.value.code == "not_found"
    assert refused.value.detail == {"collection_id": str(policies.pk)}
    assert "HR policies" not in refused.value.message  # nothing of it is told
    assert not Preset.objects.filter(owner=bob).exists()

    # Not by a change either: bob's own preset keeps what it had.
    mine = library.preset_create(user=bob, values={"name": "Mine"})
    with pytest.raises(NotFound):
        library.preset_update(user=bob, preset=mine, values={"name": "Renamed", "collection_ids": [str(policies.pk)]})
    mine.refresh_from_db()
    assert mine.name == "Mine" and not mine.collections.exists()


@pytest.mark.parametrize(
    ("collection_ids", "error", "code"),
    [
        ("not a list", BadRequest, "bad_request"),
        ([1, 2], BadRequest, "bad_request"),
        (["not-a-uuid"], NotFound, "not_found"),
        (["6f1c2d3e-0000-4000-8000-000000000000"], NotFound, "not_found"),
    ],
)
def test_bad_collection_ids_are_refused_with_their_code_and_nothing_is_saved(
    alice, policies, collection_ids, error, code
):
    preset = library.preset_create(user=alice, values={"name": "Kept", "collection_ids": [str(policies.pk)]})
    with pytest.raises(error) as refused:
        library.preset_update(user=alice, preset=preset, values={"name": "Changed", "collection_ids": collection_ids})
    assert refused.value.code == code
    preset.refresh_from_db()
    assert preset.name == "Kept" and list(preset.collections.all()) == [policies]
    with pytest.raises(error):
        library.preset_create(user=alice, values={"name": "New", "collection_ids": collection_ids})
    assert Preset.objects.filter(owner=alice).count() == 1


def test_a_preset_names_at_most_the_collections_a_conversation_searches(alice, embedding, settings):
    settings.PARLEY_COLLECTIONS_PER_CONVERSATION = 2
    ids = [str(collection_create(user=alice, name=f"C{n}").pk) for n in range(3)]
    with pytest.raises(CollectionRefused) as refused:
        library.preset_create(user=alice, values={"name": "Many", "collection_ids": ids})
    assert refused.value.code == "collection_too_many"
    preset = library.preset_create(user=alice, values={"name": "Two", "collection_ids": ids[:2] + ids[:1]})
    assert preset.collections.count() == 2  # a repeated id counts once
    library.preset_update(user=alice, preset=preset, values={"collection_ids": []})
    assert not preset.collections.exists()


def test_a_published_preset_applies_only_the_collections_a_member_may_read_and_says_so(
    alice, bob, django_user_model, policies, secret
):
    hr = Group.objects.create(name="HR")
    policies.groups.add(hr)  # shared with HR; "Board minutes" stays alice's alone
    bob.groups.add(hr)
    preset = Preset.objects.create(owner=None, name="HR desk")  # an admin's, from the console
    preset.collections.set([policies, secret])
    preset.groups.add(hr)

    readable, skipped = preset_collections_for_user(user=bob, preset=preset)
    assert readable == [policies] and skipped == 1
    shown = preset_to_dict(presets_for_user(user=bob, collections=True)[0], user=bob, collections=True)
    assert shown["collections"] == [{"id": str(policies.pk), "name": "HR policies"}]
    assert shown["collections_hidden"] == 1 and "Board minutes" not in str(shown)

    start = start_chat(bob, preset, text="What about parental leave and the merger?")

    conversation = start.saved.conversation
    assert list(conversation.collections.all()) == [policies]
    assert start.saved.collections_skipped == 1  # the member is told (conversation.created)
    texts = " ".join(chunk.text for chunk in start.plan.prompt.sources.chunks)
    assert FACT in texts and SECRET not in texts

    # Carol, in no group: the preset is not hers to use at all.
    carol = django_user_model.objects.create_user("carol", password="pw-carol-123")
    with pytest.raises(NotFound):
        start_chat(carol, preset)


def test_the_composers_collections_add_to_the_presets(alice, policies, secret):
    preset = library.preset_create(user=alice, values={"name": "HR", "collection_ids": [str(policies.pk)]})
    start = start_chat(alice, preset, collection_ids=[str(secret.pk)])
    assert set(start.saved.conversation.collections.all()) == {policies, secret}


def test_deleting_a_collection_takes_it_out_of_every_preset(alice, policies, secret):
    preset = library.preset_create(
        user=alice, values={"name": "Both", "collection_ids": [str(policies.pk), str(secret.pk)]}
    )
    collection_delete(user=alice, collection_id=str(secret.pk))
    preset.refresh_from_db()
    assert list(preset.collections.all()) == [policies]
    collection_delete(user=alice, collection_id=str(policies.pk))
    assert Preset.objects.filter(pk=preset.pk).exists() and not preset.collections.exists()
    # The preset still starts a chat, which searches nothing.
    start = start_chat(alice, preset)
    assert not start.saved.conversation.collections.exists()
