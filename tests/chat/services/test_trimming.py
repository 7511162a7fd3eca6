"""History trimming as a pure function: properties with hypothesis, then worked examples."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.errors import ContextTooLong
from chat.services.trimming import PromptMessage, trim_history
from chat.tokens import REPLY_PRIMING, TOKENS_PER_MESSAGE

FRAME = TOKENS_PER_MESSAGE


def trim(*, system, history, newest, budget):
    """The trimming prompt_build runs, fed the history newest first as its database reader does."""
    return trim_history(
        system=system,
        newest_first=reversed(history),
        newest=newest,
        budget=budget,
        count_history=lambda: len(history),
    )


def msg(role, tokens, content=None):
    return PromptMessage(role=role, content=content if content is not None else f"{role}-{tokens}", tokens=tokens)


def cost(messages):
    return sum(m.tokens + FRAME for m in messages) + REPLY_PRIMING


def valid_start(history, start):
    """A kept suffix may begin with an assistant reply only if nothing before it was dropped."""
    return start == 0 or start == len(history) or history[start].role != "assistant"


roles = st.sampled_from(["user", "assistant"])
history_strategy = st.lists(
    st.builds(lambda role, tokens, n: msg(role, tokens, f"{role}:{n}"), roles, st.integers(0, 60), st.integers()),
    max_size=40,
)
system_strategy = st.none() | st.builds(lambda t: msg("system", t), st.integers(0, 80))
newest_strategy = st.builds(lambda t: msg("user", t, "newest"), st.integers(0, 80))


@st.composite
def trim_cases(draw):
    system = draw(system_strategy)
    history = draw(history_strategy)
    newest = draw(newest_strategy)
    fixed = cost([m for m in (system, newest) if m is not None])
    # Budgets from "only the fixed part fits" to "everything fits", plus some slack.
    budget = draw(st.integers(fixed, fixed + sum(m.tokens + FRAME for m in history) + 20))
    return system, history, newest, budget


@settings(max_examples=400, deadline=None)
@given(trim_cases())
def test_every_trimmed_prompt_has_the_properties_the_interface_relies_on(case):
    system, history, newest, budget = case
    result = trim(system=system, history=history, newest=newest, budget=budget)
    messages = result.messages

    # It fits the budget, and prompt_tokens is exactly what the messages cost.
    assert result.prompt_tokens == cost(messages)
    assert result.prompt_tokens <= budget

    # The system prompt comes first and the newest message last, always.
    if system is not None:
        assert messages[0] is system
    assert messages[-1] is newest

    # What is kept of the history is a contiguous suffix, in order, and the count adds up.
    kept = messages[(1 if system is not None else 0) : -1]
    assert result.omitted + len(kept) == len(history)
    assert kept == list(history[result.omitted :])

    # No reply is kept without its question: if anything was dropped, the first kept
    # history message is not an assistant reply.
    if result.omitted > 0 and kept:
        assert kept[0].role != "assistant"

    # Maximal: the next longer suffix that would be allowed to start there does not fit.
    start = result.omitted
    if start > 0:
        longer = start - 1
        while not valid_start(history, longer):
            longer -= 1
        assert cost([m for m in (system, newest) if m is not None] + list(history[longer:])) > budget


@settings(max_examples=200, deadline=None)
@given(system_strategy, history_strategy, newest_strategy, st.integers(0, 400))
def test_it_either_fits_or_names_both_numbers(system, history, newest, budget):
    fixed = cost([m for m in (system, newest) if m is not None])
    if fixed > budget:
        with pytest.raises(ContextTooLong) as raised:
            trim(system=system, history=history, newest=newest, budget=budget)
        assert raised.value.detail == {"needed": fixed, "budget": budget}
    else:
        assert trim(system=system, history=history, newest=newest, budget=budget).prompt_tokens <= budget


def test_everything_is_kept_when_it_fits():
    system = msg("system", 10)
    history = [msg("user", 5), msg("assistant", 7), msg("user", 4), msg("assistant", 6)]
    newest = msg("user", 3)
    result = trim(system=system, history=history, newest=newest, budget=1000)
    assert result.messages == [system, *history, newest]
    assert result.omitted == 0
    # 6 messages of 10+5+7+4+6+3 = 35 tokens, plus 3 framing tokens each, plus 3 for the reply.
    assert result.prompt_tokens == 35 + 6 * 3 + 3


def test_it_drops_the_oldest_whole_messages_first():
    history = [msg("user", 10), msg("assistant", 10), msg("user", 10), msg("assistant", 10)]
    newest = msg("user", 10)
    # Newest costs 13 + 3 priming; two history messages cost 26 more: 42 fits, a third does not.
    result = trim(system=None, history=history, newest=newest, budget=42)
    assert result.messages == [history[2], history[3], newest]
    assert result.omitted == 2
    assert result.prompt_tokens == 42


def test_a_reply_whose_question_did_not_fit_is_dropped_too():
    question = msg("user", 50)
    reply = msg("assistant", 5)
    follow_up = msg("user", 5)
    newest = msg("user", 5)
    # Room for the reply and the follow-up but not the long question before them.
    result = trim(system=None, history=[question, reply, follow_up], newest=newest, budget=40)
    assert result.messages == [follow_up, newest]
    assert result.omitted == 2
    assert result.prompt_tokens == 8 + 8 + 3


def test_a_run_of_replies_cut_from_their_question_is_dropped_whole():
    history = [msg("user", 100), msg("assistant", 1), msg("assistant", 1), msg("user", 1)]
    result = trim(system=None, history=history, newest=msg("user", 1), budget=50)
    assert [m.role for m in result.messages] == ["user", "user"]
    assert result.omitted == 3


def test_a_history_that_begins_with_a_reply_keeps_it_when_nothing_was_dropped():
    history = [msg("assistant", 4, "Hello! How can I help?"), msg("user", 4)]
    result = trim(system=None, history=history, newest=msg("user", 4), budget=100)
    assert result.omitted == 0
    assert result.messages[0].content == "Hello! How can I help?"


def test_the_system_prompt_is_kept_even_when_no_history_fits():
    system = msg("system", 30)
    history = [msg("user", 30), msg("assistant", 30)]
    newest = msg("user", 30)
    result = trim(system=system, history=history, newest=newest, budget=33 + 33 + 3)
    assert result.messages == [system, newest]
    assert result.omitted == 2


def test_a_message_that_alone_exceeds_the_budget_is_refused_with_both_numbers():
    with pytest.raises(ContextTooLong) as raised:
        trim(system=msg("system", 100), history=[msg("user", 1)], newest=msg("user", 900), budget=500)
    error = raised.value
    assert error.code == "context_too_long"
    needed = 100 + 900 + 2 * FRAME + REPLY_PRIMING
    assert error.detail == {"needed": needed, "budget": 500}
    assert str(needed) in error.message and "500" in error.message


def test_an_empty_history_gives_just_the_system_prompt_and_the_message():
    result = trim(system=None, history=[], newest=msg("user", 7), budget=13)
    assert result.messages == [msg("user", 7)]
    assert result.omitted == 0
    assert result.prompt_tokens == 13


def test_ten_thousand_messages_are_read_only_as_far_as_the_budget_reaches():
    history = [msg("user" if i % 2 == 0 else "assistant", 20 + i % 7) for i in range(10_000)]
    read = []

    def newest_first():
        for message in reversed(history):
            read.append(message)
            yield message

    asked = []
    result = trim_history(
        system=msg("system", 40),
        newest_first=newest_first(),
        newest=msg("user", 12),
        budget=8_000,
        count_history=lambda: asked.append(True) or len(history),
    )
    kept = len(result.messages) - 2
    assert result.omitted == 10_000 - kept > 9_000
    # The kept messages, a reply dropped with its question, and the first that did not fit: O(kept).
    assert kept < len(read) <= kept + 2
    assert asked == [True]

    read.clear()
    asked.clear()
    result = trim_history(
        system=None, newest_first=newest_first(), newest=msg("user", 12), budget=400_000, count_history=asked.append
    )
    assert result.omitted == 0 and len(read) == 10_000 and asked == []  # all fits: nothing to count
