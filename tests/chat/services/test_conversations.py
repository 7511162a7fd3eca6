"""Conversation settings: every parameter Parley offers, and a clear refusal for anything else."""

import random
import string

import pytest

from chat import tokens
from chat.errors import InvalidSetting, UnknownSetting
from chat.models import ChatModel, Conversation, Message, Provider
from chat.services.conversations import conversation_create, conversation_update
from chat.services.prompt import prompt_build

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider():
    return Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")


@pytest.fixture
def gpt4o(provider):
    return ChatModel.objects.create(provider=provider, model_id="gpt-4o", is_default=True)


@pytest.fixture
def llama(provider):
    return ChatModel.objects.create(provider=provider, model_id="llama-3.1-8b-instruct")


def payload(conversation):
    question = Message.objects.create(conversation=conversation, role="user", content="hello")
    return prompt_build(conversation=Conversation.objects.get(pk=conversation.pk), newest=question).payload


def test_n_seed_and_response_format_reach_the_request(alice, gpt4o):
    conversation = conversation_create(user=alice, settings={"n": 3, "seed": 42, "response_format": "json_object"})
    body = payload(conversation)
    assert body["n"] == 3 and body["seed"] == 42
    assert body["response_format"] == {"type": "json_object"}


def test_settings_left_at_their_defaults_send_nothing(alice, gpt4o):
    body = payload(conversation_create(user=alice))
    assert not {"n", "seed", "response_format", "logit_bias"} & set(body)


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"n": 0}, "n"),
        ({"n": 5}, "n"),
        ({"n": 2.5}, "n"),
        ({"temperature": 2.1}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"seed": 2**64}, "seed"),
        ({"seed": "soon"}, "seed"),
        ({"response_format": "xml"}, "response_format"),
        ({"logit_bias": [{"text": "x", "bias": 101}]}, "logit_bias"),
        ({"logit_bias": [{"text": "", "bias": -100}]}, "logit_bias"),
        ({"logit_bias": [{"text": "x", "bias": -100, "id": 5}]}, "logit_bias"),
        ({"logit_bias": {"123": -100}}, "logit_bias"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_a_value_out_of_range_is_refused_and_named(alice, gpt4o, values, setting):
    with pytest.raises(InvalidSetting) as refused:
        conversation_create(user=alice, settings=values)
    assert refused.value.code == "invalid_setting"
    assert refused.value.detail["setting"] == setting
    assert not Conversation.objects.exists()


def test_an_unknown_setting_is_refused_never_dropped(alice, gpt4o):
    with pytest.raises(UnknownSetting) as refused:
        conversation_create(user=alice, settings={"temperature": 0.5, "best_of": 3})
    assert refused.value.code == "unknown_setting"
    assert refused.value.detail["setting"] == "best_of"
    assert "best_of" in refused.value.message
    conversation = conversation_create(user=alice)
    with pytest.raises(UnknownSetting):
        conversation_update(conversation=conversation, values={"n": 2, "logprobs": True})
    conversation.refresh_from_db()
    assert conversation.n == 1


def test_words_to_avoid_become_every_variant_of_their_tokens_in_the_models_encoding(alice, gpt4o):
    conversation = conversation_create(
        user=alice, settings={"logit_bias": [{"text": "banana", "bias": -100}, {"text": "Cherry", "bias": 7}]}
    )
    bias = payload(conversation)["logit_bias"]
    encoding = tokens._encoding(tokens.O200K)
    for spelled in ("banana", " banana", "Banana", " Banana", "BANANA", " BANANA"):
        assert all(bias[str(token)] == -100 for token in encoding.encode(spelled)), spelled
    for spelled in ("cherry", " cherry", "Cherry", " CHERRY"):
        assert all(bias[str(token)] == 7 for token in encoding.encode(spelled)), spelled
    assert len(bias) <= tokens.BIAS_MAX_ENTRIES


def test_words_to_avoid_are_refused_for_a_model_whose_encoding_parley_does_not_know(alice, gpt4o, llama):
    with pytest.raises(InvalidSetting) as refused:
        conversation_create(user=alice, model_id=llama.pk, settings={"logit_bias": [{"text": "x", "bias": -5}]})
    assert refused.value.detail["setting"] == "logit_bias"
    conversation = conversation_create(user=alice, settings={"logit_bias": [{"text": "x", "bias": -5}]})
    with pytest.raises(InvalidSetting):
        conversation_update(conversation=conversation, values={"model_id": llama.pk})


def test_words_that_make_more_than_300_tokens_are_refused(alice, gpt4o):
    letters = random.Random(18)
    many = [{"text": "".join(letters.choices(string.ascii_lowercase, k=12)), "bias": -100} for _ in range(100)]
    with pytest.raises(InvalidSetting) as refused:
        conversation_create(user=alice, settings={"logit_bias": many})
    assert "300" in refused.value.message
