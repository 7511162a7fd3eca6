"""The member API as the official ``openai`` package sees it: a live daphne, the fake upstream.

Whatever a script written for OpenAI does, it does against Parley unchanged, under the
member's grants, budget, rate and moderation, and its usage is recorded with the token.
"""

from __future__ import annotations

from datetime import timedelta

import openai
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from chat.core.calls import caller_pseudonym
from chat.models import ApiToken, BlocklistEntry, ChatModel, Conversation, UsageKind, UsageRecord
from tests.fakeupstream import default_reply

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


def test_alice_lists_the_models_she_may_use_and_no_other(alice, alice_key, openai_client, api_model, make_token):
    secret_model = ChatModel.objects.create(provider=api_model.provider, model_id="gpt-4o")
    secret_model.groups.add(Group.objects.create(name="research"))
    client = openai_client(alice_key)

    ids = {model.id for model in client.models.list()}

    assert ids == {"gpt-4o-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct"}
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("gpt-4o")
    assert refused.value.code == "model_not_found"


def test_a_token_limited_to_one_model_lists_and_calls_only_that_one(alice, api_model, make_token, openai_client):
    client = openai_client(make_token(alice, model_ids=[api_model.pk]))

    assert [model.id for model in client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="words")


def test_a_chat_completion_answers_and_is_billed_to_the_token(alice, alice_key, openai_client, fake_upstream):
    client = openai_client(alice_key)

    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "".join(default_reply("Hello there"))
    record = UsageRecord.objects.get(kind=UsageKind.CHAT, purpose="api")
    assert record.user == alice
    assert record.api_token == ApiToken.objects.get(user=alice)
    assert (record.prompt_tokens, record.completion_tokens) == (answer.usage.prompt_tokens, 12)
    assert record.cost > 0
    assert not record.estimated
    assert not Conversation.objects.exists(), "scripts are not chats: nothing is saved by default"


def test_every_sampling_parameter_reaches_the_provider_and_the_user_is_a_pseudonym(
    alice, alice_key, openai_client, fake_upstream
):
    client = openai_client(alice_key)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]

    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=HELLO,
        temperature=0.3,
        top_p=0.9,
        n=2,
        stop=["END"],
        max_tokens=50,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        seed=7,
        response_format={"type": "json_object"},
        tools=tools,
        tool_choice="auto",
        user="alice@example.test",
    )

    sent = fake_upstream.completion_requests[-1].body
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9 and sent["n"] == 2
    assert sent["stop"] == ["END"] and sent["max_tokens"] == 50 and sent["seed"] == 7
    assert sent["presence_penalty"] == 0.5 and sent["frequency_penalty"] == -0.5
    assert sent["logit_bias"] == {"50256": -100}
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["user"] == caller_pseudonym(alice.pk)
    assert "alice" not in fake_upstream.completion_requests[-1].raw_body.decode()


def test_a_streamed_chat_completion_arrives_in_chunks_with_usage_when_asked(alice_key, openai_client):
    client = openai_client(alice_key)

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(default_reply("Hello there"))
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 12
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    record = UsageRecord.objects.get(purpose="api")
    assert record.completion_tokens == 12 and not record.estimated


def test_a_stream_without_include_usage_carries_no_usage_but_is_still_billed(alice_key, openai_client):
    client = openai_client(alice_key)

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))

    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert UsageRecord.objects.get(purpose="api").completion_tokens == 12


def test_legacy_completions_answer_whole_and_streamed(alice_key, openai_client):
    client = openai_client(alice_key)

    whole = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this is a test")
    streamed = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this", stream=True))

    assert whole.object == "text_completion" and whole.choices[0].text == "".join(default_reply("Say this is a test"))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "".join(default_reply("Say this"))
    assert UsageRecord.objects.filter(purpose="api", kind=UsageKind.CHAT).count() == 2


def test_edits_answer_the_openai_404_when_the_provider_does_not_serve_them(alice_key, openai_client):
    client = openai_client(alice_key)

    with pytest.raises(openai.NotFoundError):
        client.post(
            "/edits",
            body={"model": "gpt-4o-mini", "instruction": "Fix the spelling", "input": "Helo"},
            cast_to=object,
        )
    assert not UsageRecord.objects.filter(kind=UsageKind.CHAT).exists()


def test_embeddings_come_back_one_per_input_and_are_billed_as_embeddings(alice, alice_key, openai_client):
    client = openai_client(alice_key)

    answer = client.embeddings.create(model="text-embedding-3-small", input=["red apples", "green pears"])

    assert [item.index for item in answer.data] == [0, 1]
    assert len(answer.data[0].embedding) == 256
    record = UsageRecord.objects.get(kind=UsageKind.EMBEDDING)
    assert record.user == alice and record.prompt_tokens == answer.usage.prompt_tokens


def test_moderations_say_what_the_provider_flags(alice_key, openai_client):
    client = openai_client(alice_key)

    answer = client.moderations.create(input=["a quiet day", "FLAGME now"])

    assert [result.flagged for result in answer.results] == [False, True]
    assert answer.results[1].categories.violence is True
    assert UsageRecord.objects.get(kind=UsageKind.MODERATION).purpose == "api"


def test_a_blocked_input_is_a_400_naming_the_categories_and_no_model_sees_it(alice_key, openai_client, fake_upstream):
    client = openai_client(alice_key)
    BlocklistEntry.objects.create(pattern="launch codes", category="secrets")

    with pytest.raises(openai.BadRequestError) as flagged:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FLAGME"}])
    with pytest.raises(openai.BadRequestError) as listed:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "the launch codes"}])

    assert flagged.value.code == "content_policy_violation" and "violence" in flagged.value.message
    assert listed.value.code == "content_policy_violation" and "secrets" in listed.value.message
    assert fake_upstream.completion_requests == []
    assert not UsageRecord.objects.filter(kind=UsageKind.CHAT).exists()


def test_revoked_and_expired_tokens_stop_at_once(alice, alice_key, openai_client):
    client = openai_client(alice_key)
    assert client.models.list().data

    ApiToken.objects.filter(user=alice).update(revoked=True)
    with pytest.raises(openai.AuthenticationError) as revoked:
        client.models.list()
    ApiToken.objects.filter(user=alice).update(revoked=False, expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.AuthenticationError) as expired:
        client.models.list()

    assert revoked.value.code == expired.value.code == "invalid_api_key"


def test_a_deactivated_members_tokens_stop_at_once(alice, alice_key, openai_client):
    client = openai_client(alice_key)
    assert client.models.list().data

    alice.is_active = False
    alice.save()

    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def test_a_budget_too_small_for_the_request_refuses_it_before_the_provider(
    alice, alice_key, openai_client, fake_upstream
):
    alice.monthly_token_budget = 1000
    alice.save()
    client = openai_client(alice_key)

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # reserves 4,096 for the reply

    assert refused.value.code == "insufficient_quota"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert int(refused.value.response.headers["retry-after"]) >= 1  # until the month resets
    assert fake_upstream.completion_requests == []
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=100)
    assert answer.choices[0].message.content


def test_the_members_rate_limit_answers_429_with_retry_after(alice_key, openai_client, settings, fake_upstream):
    settings.PARLEY_RATE_LIMIT_PER_MINUTE = 2
    client = openai_client(alice_key)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    client.embeddings.create(model="text-embedding-3-small", input="two")

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    assert limited.value.code == "rate_limit_exceeded"
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 120
    assert len(fake_upstream.completion_requests) == 1


def test_a_provider_rate_limit_passes_on_as_429_with_retry_after(alice_key, openai_client, fake_upstream, settings):
    settings.PARLEY_UPSTREAM_MAX_RETRIES = 0
    fake_upstream.script(status=429, headers={"Retry-After": "7"})
    client = openai_client(alice_key)

    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    assert limited.value.response.headers["retry-after"] == "7"
    assert not UsageRecord.objects.filter(kind=UsageKind.CHAT).exists()


def test_a_token_that_saves_conversations_puts_the_exchange_in_the_history(alice, api_model, make_token, openai_client):
    client = openai_client(make_token(alice, save_conversations=True))

    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, *HELLO]
    )
    list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))

    conversations = Conversation.objects.filter(owner=alice).order_by("created_at")
    assert conversations.count() == 2
    first = conversations[0]
    assert first.system_prompt == "Be brief." and first.title == "Hello there"
    assert [(m.role, m.content) for m in first.messages.order_by("created_at")] == [
        ("user", "Hello there"),
        ("assistant", answer.choices[0].message.content),
    ]
    assert conversations[1].messages.get(role="assistant").content == "".join(default_reply("Hello there"))
    assert UsageRecord.objects.filter(conversation__in=conversations).count() == 2
