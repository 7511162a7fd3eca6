"""Building the request body for a reply: what the upstream would receive."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import tokens
from chat.core.calls import caller_pseudonym
from chat.errors import ContextTooLong, NoProvider
from chat.models import ChatModel, Conversation, Message, Provider
from chat.services.prompt import message_token_count, prompt_build, replayed_above_reply
from chat.tokens import CL100K, O200K, REPLY_PRIMING, ROLE_TOKENS, TOKENS_PER_MESSAGE, count_tokens

pytestmark = pytest.mark.django_db

START = timezone.now() - dt.timedelta(days=1)


@pytest.fixture
def provider():
    return Provider.objects.create(name="OpenAI", base_url="https://api.openai.com/v1")


def make_model(provider, model_id="gpt-4o", context_window=128_000, max_output_tokens=16_384):
    return ChatModel.objects.create(
        provider=provider, model_id=model_id, context_window=context_window, max_output_tokens=max_output_tokens
    )


@pytest.fixture
def gpt4o(provider):
    return make_model(provider)


def tokens_for(message: Message) -> int:
    """Count ``message.content`` under its conversation's model, as saving a message does."""
    model = message.model or message.conversation.model
    encoding = tokens.encoding_name_for_model(model.model_id if model else "")
    message.token_count = tokens.count_tokens(message.content, encoding)
    message.token_encoding = encoding
    return message.token_count


class Chat:
    """A conversation whose messages get strictly increasing timestamps, each the child of the
    one before (one branch)."""

    def __init__(self, owner, model, **fields):
        self.conversation = Conversation.objects.create(owner=owner, model=model, **fields)
        self.clock = START
        self.last = None

    def add(self, role, content, status=Message.Status.COMPLETE, counted=True, parent="last"):
        self.clock += dt.timedelta(seconds=1)
        message = Message(
            conversation=self.conversation,
            role=role,
            content=content,
            status=status,
            created_at=self.clock,
            parent=self.last if parent == "last" else parent,
        )
        if counted:
            tokens_for(message)
        message.save()
        self.last = message
        Conversation.objects.filter(pk=self.conversation.pk).update(current_leaf=message)
        return message

    def ask(self, content):
        return self.add(Message.Role.USER, content)

    def answer(self, content, status=Message.Status.COMPLETE):
        return self.add(Message.Role.ASSISTANT, content, status)


def cost(contents, encoding=O200K):
    return sum(count_tokens(c, encoding) + ROLE_TOKENS + TOKENS_PER_MESSAGE for c in contents) + REPLY_PRIMING


def test_the_prompt_is_system_then_history_in_order_then_the_new_message(alice, gpt4o):
    chat = Chat(alice, gpt4o, system_prompt="You are terse.")
    chat.ask("What is 2+2?")
    chat.answer("4.")
    chat.ask("And 3+3?")
    chat.answer("6.")
    newest = chat.ask("And 4+4?")

    prompt = prompt_build(conversation=chat.conversation, newest=newest)

    assert prompt.payload["model"] == "gpt-4o"
    assert prompt.payload["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6."},
        {"role": "user", "content": "And 4+4?"},
    ]
    assert prompt.omitted == 0
    assert prompt.prompt_tokens == cost(["You are terse.", "What is 2+2?", "4.", "And 3+3?", "6.", "And 4+4?"])
    assert "stream" not in prompt.payload and "stream_options" not in prompt.payload


def test_only_the_sampling_parameters_the_conversation_sets_are_sent(alice, gpt4o):
    plain = Chat(alice, gpt4o)
    prompt = prompt_build(conversation=plain.conversation, newest=plain.ask("hi"))
    # The reply's limit is always sent (issue 20); sampling parameters only when set.
    assert set(prompt.payload) == {"model", "messages", "user", "max_tokens"}

    tuned = Chat(
        alice,
        gpt4o,
        temperature=0.2,
        top_p=0.9,
        max_tokens=300,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        stop=["\n\n", "END"],
    )
    prompt = prompt_build(conversation=tuned.conversation, newest=tuned.ask("hi"))
    assert prompt.payload["temperature"] == 0.2
    assert prompt.payload["top_p"] == 0.9
    assert prompt.payload["max_tokens"] == 300
    assert prompt.payload["presence_penalty"] == 0.5
    assert prompt.payload["frequency_penalty"] == -0.5
    assert prompt.payload["stop"] == ["\n\n", "END"]
    assert prompt.reply_tokens == 300


def test_a_temperature_of_zero_is_sent_not_mistaken_for_unset(alice, gpt4o):
    chat = Chat(alice, gpt4o, temperature=0.0)
    assert prompt_build(conversation=chat.conversation, newest=chat.ask("hi")).payload["temperature"] == 0.0


def test_the_user_field_is_a_stable_pseudonym_that_reveals_nothing(alice, bob, gpt4o):
    first = Chat(alice, gpt4o)
    second = Chat(alice, gpt4o)
    other = Chat(bob, gpt4o)
    a1 = prompt_build(conversation=first.conversation, newest=first.ask("x")).payload["user"]
    a2 = prompt_build(conversation=second.conversation, newest=second.ask("y")).payload["user"]
    b = prompt_build(conversation=other.conversation, newest=other.ask("z")).payload["user"]
    assert a1 == a2 == caller_pseudonym(alice.pk)
    assert a1 != b
    assert len(a1) == 32 and int(a1, 16) >= 0
    for revealing in ("alice", alice.email):
        assert revealing not in a1


def test_the_pseudonym_changes_with_the_secret_key(alice, settings):
    before = caller_pseudonym(alice.pk)
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert caller_pseudonym(alice.pk) != before


def test_failed_blocked_unfinished_and_empty_messages_are_not_replayed(alice, gpt4o):
    chat = Chat(alice, gpt4o)
    chat.ask("kept question")
    chat.answer("kept answer")
    chat.add(Message.Role.USER, "blocked question", Message.Status.BLOCKED)
    chat.ask("question whose reply failed")
    chat.answer("half a reply that errored", Message.Status.ERROR)
    chat.answer("reply cut by a dead worker", Message.Status.INTERRUPTED)
    chat.answer("still streaming", Message.Status.STREAMING)
    chat.answer("", Message.Status.STOPPED)
    chat.add(Message.Role.ASSISTANT, "", Message.Status.STOPPED, counted=False)  # a row never counted
    chat.answer("stopped with partial text", Message.Status.STOPPED)
    newest = chat.ask("the new one")
    chat.answer("a reply written after the new message", Message.Status.COMPLETE)
    Chat(alice, gpt4o).ask("another conversation")

    prompt = prompt_build(conversation=chat.conversation, newest=newest)

    assert [m["content"] for m in prompt.payload["messages"]] == [
        "kept question",
        "kept answer",
        "question whose reply failed",
        "stopped with partial text",
        "the new one",
    ]
    assert prompt.omitted == 0


def test_older_messages_are_left_out_and_counted_when_the_window_is_small(alice, provider):
    model = make_model(provider, model_id="gpt-4o-mini", context_window=400, max_output_tokens=100)
    chat = Chat(alice, model, system_prompt="Be brief.")
    history = []
    for n in range(20):
        history.append(f"Question number {n}: tell me something about the number {n}.")
        history.append(f"The number {n} is a fine number, with many interesting properties.")
        chat.ask(history[-2])
        chat.answer(history[-1])
    newest = chat.ask("Last question.")

    prompt = prompt_build(conversation=chat.conversation, newest=newest)

    messages = prompt.payload["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[-1] == {"role": "user", "content": "Last question."}
    assert prompt.omitted > 0
    assert len(messages) - 2 + prompt.omitted == 40
    assert messages[1]["role"] == "user"  # never a reply without its question
    assert prompt.prompt_tokens <= 400 - 100
    assert prompt.prompt_tokens == cost([m["content"] for m in messages])
    assert [m["content"] for m in messages[1:-1]] == history[prompt.omitted :]
    # The next older question and answer together would not have fit.
    next_pair = history[prompt.omitted - 2 : prompt.omitted]
    assert cost([m["content"] for m in messages] + next_pair) > 400 - 100


def test_a_message_too_long_for_the_window_is_refused_before_any_call(alice, provider):
    model = make_model(provider, model_id="gpt-4", context_window=8192, max_output_tokens=8192)
    chat = Chat(alice, model)
    newest = chat.ask("word " * 6000)
    with pytest.raises(ContextTooLong) as raised:
        prompt_build(conversation=chat.conversation, newest=newest)
    error = raised.value
    assert error.code == "context_too_long"
    # gpt-4's maximum output equals its window, so half the window is kept for the reply.
    assert error.detail["budget"] == 8192 - 4096
    assert error.detail["needed"] == cost(["word " * 6000], CL100K)
    assert str(error.detail["needed"]) in error.message and "4096" in error.message


def test_a_conversation_without_a_model_is_refused(alice):
    conversation = Conversation.objects.create(owner=alice)
    newest = Message.objects.create(conversation=conversation, role="user", content="hi")
    with pytest.raises(NoProvider):
        prompt_build(conversation=conversation, newest=newest)


def test_the_reply_reservation_is_what_the_upstream_could_write(alice, provider):
    model = make_model(provider, model_id="gpt-4", context_window=8192, max_output_tokens=8192)
    chat = Chat(alice, model)
    prompt = prompt_build(conversation=chat.conversation, newest=chat.ask("hello"))
    # No limit chosen: the reply may run to the end of the window, and that is the limit sent
    # (issue 20: a server told no limit writes until its context is full).
    assert prompt.reply_tokens == 8192 - prompt.prompt_tokens
    assert prompt.payload["max_tokens"] == prompt.reply_tokens

    roomy = make_model(provider, model_id="gpt-4o", context_window=128_000, max_output_tokens=16_384)
    chat = Chat(alice, roomy)
    assert prompt_build(conversation=chat.conversation, newest=chat.ask("hello")).reply_tokens == 16_384


@pytest.mark.parametrize(
    ("model_id", "field"),
    [
        ("gpt-4o-mini", "max_tokens"),
        ("llama-3.1-8b-instruct", "max_tokens"),  # a compatible server's model
        ("o3-mini", "max_completion_tokens"),  # reasoning models refuse max_tokens
        ("gpt-5-mini-2025-08-07", "max_completion_tokens"),
    ],
)
def test_the_reply_reservation_is_always_sent_as_the_limit_in_the_field_the_model_takes(
    model_id, field, alice, provider
):
    model = make_model(provider, model_id=model_id, context_window=128_000, max_output_tokens=4_096)
    chat = Chat(alice, model)
    prompt = prompt_build(conversation=chat.conversation, newest=chat.ask("hello"))
    assert prompt.payload[field] == prompt.reply_tokens == 4_096
    assert {"max_tokens", "max_completion_tokens"} & set(prompt.payload) == {field}


def test_a_max_tokens_above_the_models_maximum_output_is_capped(alice, provider):
    model = make_model(provider, model_id="gpt-4o", context_window=128_000, max_output_tokens=16_384)
    chat = Chat(alice, model, max_tokens=100_000)
    prompt = prompt_build(conversation=chat.conversation, newest=chat.ask("hello"))
    assert prompt.payload["max_tokens"] == 16_384
    assert prompt.reply_tokens == 16_384


def test_stored_counts_are_trusted_so_old_messages_are_not_tokenized_again(alice, provider):
    model = make_model(provider, model_id="gpt-4o", context_window=1000, max_output_tokens=100)
    chat = Chat(alice, model)
    old = chat.ask("short")
    chat.answer("short too")
    newest = chat.ask("now")
    # Pretend the old question was counted as huge: trimming must believe the stored count.
    Message.objects.filter(pk=old.pk).update(token_count=5000)

    prompt = prompt_build(conversation=chat.conversation, newest=newest)

    assert [m["content"] for m in prompt.payload["messages"]] == ["now"]
    assert prompt.omitted == 2


def test_building_a_prompt_reads_the_history_in_one_query(alice, gpt4o):
    chat = Chat(alice, gpt4o, system_prompt="sys")
    for n in range(50):
        chat.ask(f"q{n}")
        chat.answer(f"a{n}")
    newest = chat.ask("last")
    conversation = Conversation.objects.select_related("model").get(pk=chat.conversation.pk)
    with CaptureQueriesContext(connection) as queries:
        prompt_build(conversation=conversation, newest=newest)
    assert len(queries) == 1


def bulk_history(chat, count, *, every_tenth_blocked=False):
    """``count`` short alternating messages, stored with their counts, oldest first."""
    rows = []
    for n in range(count):
        chat.clock += dt.timedelta(seconds=1)
        role = Message.Role.USER if n % 2 == 0 else Message.Role.ASSISTANT
        status = Message.Status.BLOCKED if every_tenth_blocked and n % 10 == 0 else Message.Status.COMPLETE
        message = Message(
            conversation=chat.conversation, role=role, content=f"message {n}", status=status, parent=chat.last
        )
        message.created_at = chat.clock
        tokens_for(message)
        rows.append(message)
        chat.last = message
    Message.objects.bulk_create(rows)
    return [m.content for m in rows if m.status == Message.Status.COMPLETE]


def test_a_long_trimmed_history_is_read_only_as_far_as_it_fits_and_omitted_is_exact(alice, provider):
    model = make_model(provider, model_id="gpt-4o", context_window=4_000, max_output_tokens=1_000)
    chat = Chat(alice, model)
    replayable = bulk_history(chat, 3_000, every_tenth_blocked=True)
    newest = chat.ask("and now?")

    with CaptureQueriesContext(connection) as queries:
        prompt = prompt_build(conversation=chat.conversation, newest=newest)

    sent = [m["content"] for m in prompt.payload["messages"]]
    assert sent[-1] == "and now?"
    kept = sent[:-1]
    assert kept == replayable[len(replayable) - len(kept) :]
    assert prompt.omitted == len(replayable) - len(kept)
    assert 300 < len(kept) < 600  # room for ~3,000 tokens at 7 tokens a message
    assert prompt.prompt_tokens <= 3_000
    # Pages of 200, 400 (newest first), then one count; the oldest messages' text is never read.
    reads = [q["sql"] for q in queries.captured_queries]
    assert len(reads) == 3
    assert "SUM(CASE" in reads[-1].upper() and "content" not in reads[-1]


def test_a_long_history_that_fits_entirely_is_sent_entirely(alice, provider):
    model = make_model(provider, model_id="gpt-4.1", context_window=1_000_000, max_output_tokens=32_768)
    chat = Chat(alice, model)
    replayable = bulk_history(chat, 1_000, every_tenth_blocked=True)
    newest = chat.ask("summarise")
    prompt = prompt_build(conversation=chat.conversation, newest=newest)
    assert [m["content"] for m in prompt.payload["messages"]] == [*replayable, "summarise"]
    assert prompt.omitted == 0


def test_messages_counted_with_another_encoding_are_counted_again_and_stored(alice, provider):
    old_model = make_model(provider, model_id="gpt-3.5-turbo", context_window=16_385, max_output_tokens=4096)
    chat = Chat(alice, old_model)
    first = chat.ask("Counted under cl100k_base first.")
    unc = chat.add(Message.Role.ASSISTANT, "Never counted at all.", counted=False)
    assert Message.objects.get(pk=first.pk).token_encoding == CL100K

    chat.conversation.model = make_model(provider, model_id="gpt-4o")
    chat.conversation.save()
    newest = chat.add(Message.Role.USER, "Now on gpt-4o.", counted=False)
    prompt = prompt_build(conversation=chat.conversation, newest=newest)

    assert prompt.prompt_tokens == cost(["Counted under cl100k_base first.", "Never counted at all.", "Now on gpt-4o."])
    for message, text in ((first, "Counted under cl100k_base first."), (unc, "Never counted at all.")):
        stored = Message.objects.get(pk=message.pk)
        assert (stored.token_encoding, stored.token_count) == (O200K, count_tokens(text, O200K))
    stored = Message.objects.get(pk=newest.pk)
    assert (stored.token_encoding, stored.token_count) == (O200K, count_tokens("Now on gpt-4o.", O200K))
    # The next build reads the history and counts nothing: one query, no writes.
    with CaptureQueriesContext(connection) as queries:
        prompt_build(conversation=chat.conversation, newest=stored)
    assert len(queries) == 1


def test_message_token_count_uses_the_stored_count_when_the_encoding_matches(alice, gpt4o):
    chat = Chat(alice, gpt4o)
    message = chat.ask("four words right here")
    message.token_count = 99  # what is stored wins, no tokenizing
    assert message_token_count(message, O200K) == 99
    assert message_token_count(message, CL100K) == count_tokens("four words right here", CL100K)
    assert Message.objects.get(pk=message.pk).token_encoding == CL100K


def test_special_token_text_in_a_message_is_sent_and_counted_as_text(alice, gpt4o):
    chat = Chat(alice, gpt4o)
    newest = chat.ask("What does <|endoftext|> mean?")
    prompt = prompt_build(conversation=chat.conversation, newest=newest)
    assert prompt.payload["messages"][-1]["content"] == "What does <|endoftext|> mean?"
    assert prompt.prompt_tokens == cost(["What does <|endoftext|> mean?"])


def test_a_reply_keeps_the_history_length_so_the_next_count_stops_at_it(alice, provider):
    model = make_model(provider, model_id="gpt-4o", context_window=4_000, max_output_tokens=1_000)
    chat = Chat(alice, model)
    replayable = bulk_history(chat, 3_000, every_tenth_blocked=True)
    question = chat.ask("and now?")
    prompt = prompt_build(conversation=chat.conversation, newest=question)
    assert prompt.history == len(replayable)  # every status settled: the length can be kept
    assert replayed_above_reply(prompt, question) == len(replayable) + 1

    reply = chat.answer("an answer")
    # What the reply stores is what the next count trusts: it walks no further up than the
    # reply (a wrong stored figure shows in the count, which proves the walk stopped there).
    Message.objects.filter(pk=reply.pk).update(replayed_above=10_000)
    follow_up = chat.ask("and then?")
    again = prompt_build(conversation=chat.conversation, newest=follow_up)
    kept = len(again.payload["messages"]) - 1
    assert again.omitted == 10_000 + 1 - kept
    assert again.history == 10_001

    Message.objects.filter(pk=reply.pk).update(replayed_above=len(replayable) + 1)
    again = prompt_build(conversation=chat.conversation, newest=follow_up)
    assert again.omitted == len(replayable) + 2 - (len(again.payload["messages"]) - 1)


def test_a_history_with_a_message_still_unsettled_is_counted_but_not_kept(alice, provider):
    model = make_model(provider, model_id="gpt-4o", context_window=4_000, max_output_tokens=1_000)
    chat = Chat(alice, model)
    bulk_history(chat, 1_000)
    chat.ask("not checked yet").__class__.objects.filter(pk=chat.last.pk).update(status=Message.Status.UNCHECKED)
    chat.answer("a reply")
    question = chat.ask("and now?")
    prompt = prompt_build(conversation=chat.conversation, newest=question)
    assert prompt.omitted > 0
    assert prompt.history is None
    assert replayed_above_reply(prompt, question) is None

    short = Chat(alice, model)
    short.ask("hello")
    short.answer("hi")
    question = short.ask("how are you?")
    prompt = prompt_build(conversation=short.conversation, newest=question)
    assert prompt.omitted == 0 and prompt.history == 2  # read whole: known without a count
