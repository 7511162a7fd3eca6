"""The per-process copy of the catalog (chat.core.grants, issue 21): a reply's start reads the
member's grants and the model and provider rows from memory, and a change an admin makes in
any worker process takes effect on the next reply in every other one.

Another worker is simulated the way it reaches this process: its change is a real write to the
database through Django (its signals bump the version in the shared cache, Redis in the team
deployment's run of these tests), while this process's memory still holds the copy it loaded
before (``elsewhere`` puts it back). A control shows the copy really is what is read: with the
version put back too, the stale copy is served.
"""

import contextlib

import pytest
from django.contrib.admin.sites import AdminSite
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from chat.admin.providers import ChatModelAdmin
from chat.core import grants
from chat.core.calls import Units, call_admit
from chat.errors import ModelUnavailable, NoProvider
from chat.models import ChatModel, ModelKind, Provider
from chat.services.turns import turn_start
from tests.conftest import create_default_model

pytestmark = pytest.mark.django_db

KEY = "sk-test-OLD0123456789abcd"
NEW_KEY = "sk-test-NEW9876543210wxyz"


@pytest.fixture
def staff():
    return Group.objects.create(name="staff")


@pytest.fixture
def model():
    provider = Provider(name="OpenAI", base_url="https://api.openai.com/v1")
    provider.api_key = KEY
    provider.save()
    return create_default_model(provider)


@pytest.fixture
def restricted(model, staff):
    """A second model, granted to the staff group only."""
    chosen = ChatModel.objects.create(provider=model.provider, model_id="gpt-4.1", context_window=128_000)
    chosen.groups.add(staff)
    return chosen


@contextlib.contextmanager
def elsewhere(*, version_too: bool = False):
    """Run a change as another worker process would: this process keeps the copy it had (and,
    with ``version_too``, the shared version is put back as if no signal had fired)."""
    copy_here = grants._catalog()
    version = cache.get(grants._VERSION_KEY)
    yield
    grants._current = copy_here
    if version_too:
        cache.set(grants._VERSION_KEY, version, timeout=None)


def start(user, text, conversation_id=None):
    return turn_start(user=user, conversation_id=conversation_id, client_id=text, content=text)


def follow_up_refusal(user, conversation_id, text):
    turn = start(user, text, conversation_id)
    return turn.refusal.code if turn.refusal else None


def settle(turn) -> None:
    from chat.core.calls import call_settle
    from chat.models import Message

    call_settle(units=Units(), message=turn.plan.reply)
    Message.objects.filter(pk=turn.plan.reply.pk).update(status=Message.Status.STOPPED)


def new_chat_on(user, model_pk, text):
    turn = turn_start(user=user, conversation_id=None, client_id=text, content=text, model_id=model_pk)
    assert turn.plan is not None, turn.refusal
    settle(turn)
    return turn.saved.conversation.pk


def test_a_grant_removed_in_another_worker_is_refused_on_the_next_reply(alice, restricted, staff):
    alice.groups.add(staff)
    conversation = new_chat_on(alice, restricted.pk, "hello")
    with elsewhere():
        alice.groups.remove(staff)
    assert follow_up_refusal(alice, conversation, "again") == "model_unavailable"


def test_control_without_the_version_the_stale_copy_would_be_served(alice, restricted, staff):
    # Shows the test above depends on the shared version: the copy is what a reply reads.
    alice.groups.add(staff)
    new_chat_on(alice, restricted.pk, "hello")
    with elsewhere(version_too=True):
        alice.groups.remove(staff)
    assert grants.model_granted(user=alice, model_id=restricted.pk).pk == restricted.pk
    grants.catalog_changed()
    with pytest.raises(ModelUnavailable):
        grants.model_granted(user=alice, model_id=restricted.pk)


def test_a_grant_taken_from_the_group_in_another_worker_is_refused(alice, bob, restricted, staff):
    alice.groups.add(staff)
    conversation = new_chat_on(alice, restricted.pk, "hello")
    other = Group.objects.create(name="others")
    with elsewhere():
        restricted.groups.set([other])  # still restricted, no longer to alice's group
    assert follow_up_refusal(alice, conversation, "again") == "model_unavailable"


def test_a_group_deleted_in_another_worker_takes_its_grants_along(alice, restricted, staff):
    alice.groups.add(staff)
    Group.objects.create(name="kept").chatmodel_set.add(restricted)  # still restricted afterwards
    conversation = new_chat_on(alice, restricted.pk, "hello")
    with elsewhere():
        staff.delete()
    assert follow_up_refusal(alice, conversation, "again") == "model_unavailable"


def test_a_model_disabled_in_another_worker_is_refused_on_the_next_reply(alice, model):
    conversation = new_chat_on(alice, model.pk, "hello")
    with elsewhere():
        model.enabled = False
        model.save()
    assert follow_up_refusal(alice, conversation, "again") == "model_unavailable"
    try:
        refusal = start(alice, "a new chat").refusal
    except NoProvider as exc:
        refusal = exc
    assert refusal is not None and refusal.code == "no_provider"


def test_a_provider_disabled_in_another_worker_is_refused_on_the_next_reply(alice, model):
    conversation = new_chat_on(alice, model.pk, "hello")
    with elsewhere():
        model.provider.enabled = False
        model.provider.save()
    assert follow_up_refusal(alice, conversation, "again") == "model_unavailable"


def test_the_admins_disable_action_reaches_other_workers(alice, model, admin_user):
    # QuerySet.update sends no signal: the action bumps the version itself.
    conversation = new_chat_on(alice, model.pk, "hello")
    request = RequestFactory().post("/admin/")
    request.user = admin_user
    admin = ChatModelAdmin(ChatModel, AdminSite())
    admin.message_user = lambda *args, **kwargs: None
    with elsewhere():
        admin.disable(request, ChatModel.objects.filter(pk=model.pk))
    assert follow_up_refusal(alice, conversation, "again") == "model_unavailable"


def test_a_key_rotated_in_another_worker_is_used_by_the_next_call(alice, model):
    def admitted_key():
        admission = call_admit(
            user=alice, kind=ModelKind.CHAT, estimate=Units(input_tokens=10), purpose="reply", model_id=model.pk
        )
        return admission.endpoint.api_key

    assert admitted_key() == KEY
    with elsewhere():
        provider = Provider.objects.get(pk=model.provider_id)
        provider.api_key = NEW_KEY
        provider.save()
    assert admitted_key() == NEW_KEY


def test_the_copy_holds_the_key_encrypted_only(alice, model):
    grants.model_granted(user=alice, model_id=None)
    held = repr(grants._current)
    assert KEY not in held
    assert Provider.objects.get(pk=model.provider_id).api_key_encrypted in held


def test_each_call_gets_its_own_instances(alice, model):
    first = grants.model_granted(user=alice, model_id=None)
    first.display_name = "changed by one caller"
    first.provider.base_url = "https://elsewhere.example/v1"
    second = grants.model_granted(user=alice, model_id=None)
    assert second.display_name == model.display_name
    assert second.provider.base_url == "https://api.openai.com/v1"


def test_the_version_moves_again_when_the_change_commits(model, django_capture_on_commit_callbacks):
    # A worker that reloads between the save and the commit reads the rows as they were; the
    # second bump at the commit makes it reload once more.
    with django_capture_on_commit_callbacks(execute=True):
        model.enabled = False
        model.save()
        during = cache.get(grants._VERSION_KEY)
    assert cache.get(grants._VERSION_KEY) != during


def test_the_same_set_as_the_pickers(alice, bob, model, restricted, staff):
    alice.groups.add(staff)
    for user in (alice, bob):
        listed = [m.pk for m in grants.models_granted(user=user)]
        for pk in (model.pk, restricted.pk):
            try:
                grants.model_granted(user=user, model_id=pk)
                allowed = True
            except ModelUnavailable:
                allowed = False
            assert allowed == (pk in listed)
    assert grants.model_granted(user=bob, model_id=None).pk == model.pk
    with pytest.raises(ModelUnavailable):
        grants.model_granted(user=alice, model_id="not a number")


def test_a_warm_reply_start_reads_no_grants(alice, model):
    conversation = new_chat_on(alice, model.pk, "hello")
    with CaptureQueriesContext(connection) as queries:
        turn = start(alice, "again", conversation)
    assert turn.plan is not None
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if "chat_chatmodel_groups" in s or "auth_user_groups" in s]
    assert not [s for s in sql if s.startswith("SELECT") and '"chat_provider"' in s and "chat_conversation" not in s]


def test_a_model_added_by_another_process_without_a_shared_cache_is_usable_at_once(alice, model):
    # The embedded default: another process (``manage.py shell``) adds a model and this
    # process's in-memory version never moves. The pickers (the database) offer it at once; a
    # refusal from the old copy is checked against the database before it is given.
    grants.model_granted(user=alice, model_id=model.pk)  # the copy is loaded
    with elsewhere(version_too=True):
        added = ChatModel.objects.create(provider=model.provider, model_id="tiny-context", context_window=400)
    assert added.pk in {m.pk for m in grants.models_granted(user=alice)}
    assert grants.model_granted(user=alice, model_id=added.pk).pk == added.pk
    # A model nobody may use is still refused after that second look.
    with pytest.raises(ModelUnavailable):
        grants.model_granted(user=alice, model_id=added.pk + 1000)
