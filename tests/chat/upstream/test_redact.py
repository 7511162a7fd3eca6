"""The one redaction of provider keys in upstream text (issue 20 item 1, T27)."""

import pytest

from chat.upstream import redact

OPENAI_KEY = "sk-proj-Q7vXk2LmN9pR4tWz8yBc3dFgHj6K"
GROQ_KEY = "gsk_4fTq9ZmW2xLp7RvN1sKc8DhJ3bYe6GaU"
HEX_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize("key", [OPENAI_KEY, GROQ_KEY, HEX_KEY])
@pytest.mark.parametrize(
    "echo",
    [
        lambda k: k,  # whole
        lambda k: k[3:],  # without its first characters
        lambda k: k[:-5],  # cut short
        lambda k: k[6:20],  # a middle part
        lambda k: k[10:18],  # 8 characters: the shortest part that is masked
        lambda k: k.upper()[4:],  # with its case changed
        lambda k: f"{k[:12]} … {k[14:30]}",  # in two pieces
    ],
)
def test_no_part_of_the_key_of_8_or_more_characters_survives(key, echo):
    text = f"Incorrect API key provided: {echo(key)}. You can find your key at the dashboard."
    cleaned = redact.clean(text, [key])
    for start in range(len(key) - 7):
        assert key[start : start + 8].lower() not in cleaned.lower()
    assert cleaned.startswith("Incorrect API key provided: ")
    assert cleaned.endswith("You can find your key at the dashboard.")


def test_the_whole_key_becomes_its_mask_so_an_admin_knows_which_key_was_meant():
    assert redact.clean(f"bad key {GROQ_KEY}", [GROQ_KEY]) == "bad key gsk…6GaU"


def test_words_that_merely_share_short_runs_with_the_key_are_left_alone():
    text = "The model gpt-4o-mini does not exist or you do not have access to it."
    assert redact.clean(text, [OPENAI_KEY, GROQ_KEY, HEX_KEY]) == text


def test_keys_of_other_providers_and_bearer_tokens_are_masked_too():
    text = f"proxy says: Authorization: Bearer abc.def.ghi; upstream key {GROQ_KEY}; hash {HEX_KEY}"
    cleaned = redact.clean(text, [], limit=1000)
    assert "abc.def.ghi" not in cleaned
    assert GROQ_KEY[6:20] not in cleaned
    assert HEX_KEY[6:30] not in cleaned


def test_a_short_key_is_masked_where_it_appears_whole():
    assert redact.clean("secret 'hunter22' refused", ["hunter22"]) == "secret '…' refused"
    assert redact.clean("token l0cal1 refused", ["l0cal1"]) == "token … refused"


def test_redaction_happens_before_the_text_is_cut():
    text = "x" * 290 + OPENAI_KEY
    cleaned = redact.clean(text, [OPENAI_KEY])
    assert len(cleaned) <= 300
    assert OPENAI_KEY[:10] not in cleaned


def test_control_characters_and_line_breaks_are_flattened():
    assert redact.clean("a\x00b\n\x1b[31mc", []) == "a b [31mc"


def test_upstream_text_loses_keys_control_characters_and_length():
    key = "sk-test-PROTOCOLKEY0123456789"
    text = f"key {key} and sk-proj-abcdefghijklmnop and Bearer abc.def\x00\x1b[31m" + "x" * 500
    cleaned = redact.clean(text, [key])
    assert "PROTOCOLKEY" not in cleaned and "abcdefghijklmnop" not in cleaned and "abc.def" not in cleaned
    assert "\x00" not in cleaned and "\x1b" not in cleaned
    assert len(cleaned) == 300
