"""docs/security.md T04: every admin page and action refuses members and anonymous visitors.

The routes come from the URLconf itself, so a ModelAdmin or a custom admin view added later is
checked without anyone remembering to list it. Only the admin login and logout are public.
"""

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.urls import URLResolver, get_resolver

from accounts.models import Invite
from chat.models import (
    BlocklistEntry,
    ChatModel,
    Conversation,
    FineTuneDataset,
    FineTuneFile,
    FineTuneJob,
    Message,
    ModerationEvent,
    Provider,
    UsageRecord,
)
from tests.admin.conftest import SECRET_KEY, assert_no_key

pytestmark = pytest.mark.django_db

# The login form, and logout, which only ever ends the caller's own session.
PUBLIC = {"admin:login", "admin:logout"}


def _admin_patterns():
    root = get_resolver()
    admin = next(p for p in root.url_patterns if isinstance(p, URLResolver) and p.namespace == "admin")
    found = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            else:
                found.append((prefix + str(p.pattern), f"admin:{p.name}" if p.name else None))

    walk(admin.url_patterns, "/admin/")
    return found


@pytest.fixture
def world(admin_user, alice, upstream):
    """One object of every registered model, so every object URL can be filled in."""
    provider = Provider(name="P", base_url=upstream.base_url)
    provider.api_key = SECRET_KEY
    provider.save()
    model = ChatModel.objects.create(provider=provider, model_id="m", is_default=True)
    conversation = Conversation.objects.create(owner=alice, title="t")
    message = Message.objects.create(conversation=conversation, role="user", content="hello")
    invite = Invite.objects.create(expires_at="2099-01-01T00:00:00Z", created_by=admin_user)
    objects = {
        "chat/provider/": provider,
        "chat/chatmodel/": model,
        "chat/conversation/": conversation,
        "chat/usagerecord/": UsageRecord.objects.create(
            user=alice, conversation=conversation, model_name="m", prompt_tokens=1, cost=Decimal("0.1")
        ),
        "chat/blocklistentry/": BlocklistEntry.objects.create(pattern="x"),
        "chat/moderationevent/": ModerationEvent.objects.create(
            user=alice, message=message, text="x", source="blocklist"
        ),
        "accounts/user/": alice,
        "accounts/invite/": invite,
        "auth/group/": Group.objects.create(name="g"),
    }
    dataset = FineTuneDataset.objects.create(name="d", base_model=model, created_by=admin_user)
    upload = FineTuneFile.objects.create(provider=provider, dataset=dataset, filename="f.jsonl", sha256="0" * 64)
    objects["chat/finetunedataset/"] = dataset
    objects["chat/finetunefile/"] = upload
    objects["chat/finetunejob/"] = FineTuneJob.objects.create(
        provider=provider, dataset=dataset, file=upload, base_model=model, created_by=admin_user, job_id="ftjob-1"
    )
    return objects


def _concrete_urls(world):
    """(url, name) for every admin route, with its parameters filled in from ``world``."""
    urls = []
    for pattern, name in _admin_patterns():
        if "(?P<app_label>" in pattern:
            labels = re.search(r"\(\?P<app_label>([^)]*)\)", pattern).group(1).split("|")
            urls += [(f"/admin/{label}/", name) for label in labels]
            continue
        if "(?P<url>" in pattern:  # the catch-all
            urls.append(("/admin/no/such/page/", name))
            continue
        url = pattern.replace("^", "").replace("$", "")
        if "content_type_id>" in url:
            obj = world["chat/provider/"]
            ct = ContentType.objects.get_for_model(obj)
            url = re.sub(r"<[^>]*content_type_id>", str(ct.pk), url).replace("<path:object_id>", str(obj.pk))
        elif "<path:object_id>" in url or "<id>" in url:
            # Third-party admins (django-axes' access logs) get an id that may not exist: 404 is fine.
            obj = next((o for prefix, o in world.items() if f"/admin/{prefix}" in url), None)
            pk = str(obj.pk) if obj is not None else "1"
            url = url.replace("<path:object_id>", pk).replace("<id>", pk)
        assert "<" not in url and "(?" not in url, f"classify this admin route in the test: {pattern}"
        urls.append((url, name))
    return urls


def test_the_inventory_covers_every_registered_model_and_custom_view(world):
    names = {name for _, name in _concrete_urls(world)}
    for expected in (
        "admin:chat_provider_test_connection",
        "admin:chat_provider_sync_models",
        "admin:chat_usagerecord_export",
        "admin:chat_usagerecord_dashboard",
        "admin:accounts_user_changelist",
        "admin:accounts_invite_add",
        "admin:chat_moderationevent_changelist",
        "admin:auth_user_password_change",
        "admin:chat_finetunedataset_upload",
        "admin:chat_finetunejob_cancel",
        "admin:chat_finetunefile_provider",
    ):
        assert expected in names


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_members_and_visitors_are_refused_every_admin_page_and_action(client, world, alice, upstream, who):
    if who == "member":
        client.force_login(alice)
    provider = world["chat/provider/"]
    before = (Provider.objects.count(), ChatModel.objects.count(), Invite.objects.count(), provider.api_key_encrypted)
    checked = 0
    for url, name in _concrete_urls(world):
        if name in PUBLIC:
            continue
        for method in ("get", "post"):
            data = {"action": "delete_selected", "_selected_action": [1], "post": "yes", "name": "x", "uses": "9"}
            response = getattr(client, method)(url, data if method == "post" else None)
            assert response.status_code in (302, 401, 403, 404, 405), (method, url, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/admin/login/"), (method, url, response["Location"])
            assert_no_key(response.content)
            checked += 1
    assert checked > 100
    provider.refresh_from_db()
    after = (Provider.objects.count(), ChatModel.objects.count(), Invite.objects.count(), provider.api_key_encrypted)
    assert after == before
    assert upstream.requests == []  # no test connection or sync reached the provider


def test_the_admin_actions_refuse_members(client, world, alice, upstream):
    client.force_login(alice)
    provider = world["chat/provider/"]
    for action in ("test_connection", "sync_models", "delete_selected"):
        response = client.post("/admin/chat/provider/", {"action": action, "_selected_action": [provider.pk]})
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert Provider.objects.filter(pk=provider.pk).exists()
    assert upstream.requests == []


def test_every_admin_page_renders_for_an_admin_without_inline_script_or_style(admin_client, world):
    """The CSP allows neither inline script nor inline style: no page may rely on them."""
    for url, name in _concrete_urls(world):
        if name in ("admin:logout", "admin:view_on_site") or "/delete/" in url:
            continue
        if name in ("admin:chat_provider_test_connection", "admin:chat_provider_sync_models"):
            continue  # POST-only actions, exercised in test_providers
        if name in (
            "admin:chat_finetunedataset_exclude",
            "admin:chat_finetunedataset_upload",
            "admin:chat_finetunedataset_start",
            "admin:chat_finetunejob_cancel",
            "admin:chat_finetunejob_delete_model",
        ):
            assert admin_client.get(url).status_code == 405  # POST-only, exercised in test_finetuning
            continue
        response = admin_client.get(url)
        if response.streaming:  # the CSV export
            assert_no_key(b"".join(response.streaming_content))
            continue
        # 403: read-only models (usage, moderation, conversations, axes logs) have no add page.
        assert response.status_code in (200, 302, 403, 404), (url, response.status_code)
        assert_no_key(response.content)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html.replace('type="application/json"', "src=json")), url
        assert not re.search(r"\sstyle=", html), url
        assert not re.search(r"\son[a-z]+=", html), url
        assert "javascript:" not in html, url
