"""The model catalog: limits, prices, enabled, exactly one default, groups that may use each."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from chat.models import ChatModel

pytestmark = pytest.mark.django_db


def _data(model, **overrides):
    data = {
        "provider": model.provider_id,
        "model_id": model.model_id,
        "display_name": model.display_name,
        "kind": model.kind,
        "image_prices": "{}",
        "enabled": "on" if model.enabled else "",
        "is_default": "on" if model.is_default else "",
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "input_price_per_million": model.input_price_per_million or "",
        "output_price_per_million": model.output_price_per_million or "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v not in ("", None)}


@pytest.fixture
def second(chat_model):
    return ChatModel.objects.create(provider=chat_model.provider, model_id="gpt-4o", context_window=128_000)


def test_saving_a_model_as_default_unsets_the_previous_default(admin_client, chat_model, second):
    response = admin_client.post(
        reverse("admin:chat_chatmodel_change", args=[second.pk]), _data(second, is_default="on")
    )
    assert response.status_code == 302
    assert list(ChatModel.objects.filter(is_default=True)) == [second]


def test_the_make_default_action_leaves_exactly_one_default(admin_client, chat_model, second):
    admin_client.post(
        reverse("admin:chat_chatmodel_changelist"), {"action": "make_default", "_selected_action": [second.pk]}
    )
    assert list(ChatModel.objects.filter(is_default=True)) == [second]


def test_admins_edit_limits_prices_and_allowed_groups(admin_client, chat_model):
    team = Group.objects.create(name="Research")
    response = admin_client.post(
        reverse("admin:chat_chatmodel_change", args=[chat_model.pk]),
        _data(
            chat_model,
            context_window="32000",
            max_output_tokens="2000",
            input_price_per_million="2.5",
            output_price_per_million="10",
            enabled="",
            groups=[team.pk],
        ),
    )
    assert response.status_code == 302
    chat_model.refresh_from_db()
    assert (chat_model.context_window, chat_model.max_output_tokens) == (32000, 2000)
    assert str(chat_model.input_price_per_million) == "2.5000"
    assert not chat_model.enabled
    assert list(chat_model.groups.all()) == [team]
    listing = admin_client.get(reverse("admin:chat_chatmodel_changelist")).content.decode()
    assert "Research" in listing


def test_the_output_limit_must_fit_the_context_window(admin_client, chat_model):
    response = admin_client.post(
        reverse("admin:chat_chatmodel_change", args=[chat_model.pk]),
        _data(chat_model, context_window="4096", max_output_tokens="8192"),
    )
    assert response.status_code == 200
    assert "smaller than the context window" in response.content.decode()


def test_the_groups_picker_is_the_two_box_selector(admin_client, chat_model):
    body = admin_client.get(reverse("admin:chat_chatmodel_change", args=[chat_model.pk])).content.decode()
    assert 'class="selectfilter"' in body or "selectfilter" in body
    assert "everyone" in admin_client.get(reverse("admin:chat_chatmodel_changelist")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_database_itself_refuses_a_second_default():
    """Whatever writes the rows (a bulk update, a script, a race between two admins), there is
    never more than one default model: the constraint is in the database, not only the forms."""
    from django.db import IntegrityError, transaction

    from chat.models import ChatModel, Provider

    provider = Provider.objects.create(name="P", base_url="http://127.0.0.1:9/v1")
    first = ChatModel.objects.create(provider=provider, model_id="a", is_default=True)
    second = ChatModel.objects.create(provider=provider, model_id="b")
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatModel.objects.filter(pk=second.pk).update(is_default=True)
    # Saving a model as the default takes it from the one that had it.
    second.is_default = True
    second.save()
    assert list(ChatModel.objects.filter(is_default=True)) == [second]
    first.refresh_from_db()
    assert first.is_default is False


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_one_default_where_an_older_version_left_several():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("chat", "0002_message_history_index")])
    old_apps = executor.loader.project_state([("chat", "0002_message_history_index")]).apps
    Provider, OldModel = old_apps.get_model("chat", "Provider"), old_apps.get_model("chat", "ChatModel")
    provider = Provider.objects.create(name="P", base_url="http://127.0.0.1:9/v1", api_key_encrypted="")
    OldModel.objects.create(provider=provider, model_id="older", is_default=True)
    OldModel.objects.create(provider=provider, model_id="newer", is_default=True)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert list(ChatModel.objects.filter(is_default=True).values_list("model_id", flat=True)) == ["newer"]


def test_an_admin_corrects_the_kind_the_sync_guessed_and_prices_it_in_its_units(admin_client, chat_model):
    guessed = ChatModel.objects.create(provider=chat_model.provider, model_id="bge-m3", context_window=8192)
    assert guessed.kind == "chat"
    response = admin_client.post(
        reverse("admin:chat_chatmodel_change", args=[guessed.pk]),
        _data(guessed, kind="embedding", input_price_per_million="0.01"),
    )
    assert response.status_code == 302
    guessed.refresh_from_db()
    assert (guessed.kind, str(guessed.input_price_per_million)) == ("embedding", "0.0100")


def test_image_prices_must_be_sizes_with_prices_of_zero_or_more(admin_client, chat_model):
    image = ChatModel.objects.create(provider=chat_model.provider, model_id="dall-e-3", kind="image")
    url = reverse("admin:chat_chatmodel_change", args=[image.pk])
    bad = admin_client.post(url, _data(image, image_prices='{"1024x1024": "-1"}'))
    assert bad.status_code == 200 and "a price per image is a size" in bad.content.decode()
    good = admin_client.post(url, _data(image, image_prices='{"1024x1024": 0.04, "1024x1024/hd": "0.08"}'))
    assert good.status_code == 302
    image.refresh_from_db()
    assert image.image_prices == {"1024x1024": "0.04", "1024x1024/hd": "0.08"}


def test_only_a_chat_model_can_be_the_default(admin_client, chat_model):
    embedding = ChatModel.objects.create(
        provider=chat_model.provider, model_id="text-embedding-3-small", kind="embedding"
    )
    response = admin_client.post(
        reverse("admin:chat_chatmodel_change", args=[embedding.pk]), _data(embedding, is_default="on")
    )
    assert response.status_code == 200
    assert "Only a chat model can be the default" in response.content.decode()
    assert list(ChatModel.objects.filter(is_default=True)) == [chat_model]
