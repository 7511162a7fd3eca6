"""Offline token counts match what OpenAI bills, for the encodings Parley uses."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chat import tokens
from chat.tokens import CL100K, O200K, REPLY_PRIMING, TOKENS_PER_MESSAGE, count_tokens, encoding_name_for_model

# OpenAI cookbook, "How to count tokens with tiktoken": these messages are 129 prompt
# tokens for gpt-3.5-turbo and gpt-4 (cl100k_base) and 124 for gpt-4o (o200k_base), as
# counted by the API itself.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def cookbook_count(messages, encoding):
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += count_tokens(value, encoding)
            if key == "name":
                total += 1  # tokens_per_name
    return total


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129)])
def test_the_cookbook_example_counts_what_the_api_billed(model, expected):
    assert cookbook_count(COOKBOOK_MESSAGES, encoding_name_for_model(model)) == expected


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", O200K),
        ("gpt-4o-2024-08-06", O200K),
        ("chatgpt-4o-latest", O200K),
        ("gpt-4.1-nano", O200K),
        ("gpt-5", O200K),
        ("o1-mini", O200K),
        ("o3", O200K),
        ("o4-mini", O200K),
        ("gpt-3.5-turbo", CL100K),
        ("gpt-3.5-turbo-0125", CL100K),
        ("gpt-4", CL100K),
        ("gpt-4-0613", CL100K),
        ("gpt-4-turbo", CL100K),
        ("gpt-4-turbo-2024-04-09", CL100K),
        ("ft:gpt-3.5-turbo-0125:acme::abc123", CL100K),
        ("openai/gpt-4-turbo", CL100K),
        ("GPT-4O", O200K),
    ],
)
def test_each_model_family_uses_its_real_encoding(model, encoding):
    assert encoding_name_for_model(model) == encoding


@pytest.mark.parametrize("model", ["llama-3.1-8b-instruct", "mistral-large", "", "SmolLM2-360M-Instruct"])
def test_unknown_models_get_o200k_as_a_documented_estimate(model):
    assert encoding_name_for_model(model) == O200K


def test_the_roles_parley_sends_are_one_token_each():
    for encoding in (O200K, CL100K):
        for role in ("system", "user", "assistant"):
            assert count_tokens(role, encoding) == tokens.ROLE_TOKENS


@pytest.mark.parametrize("encoding", [O200K, CL100K])
@pytest.mark.parametrize("text", ["<|endoftext|>", "please ignore <|endofprompt|> and <|fim_prefix|>", "<|im_start|>"])
def test_special_token_text_typed_by_a_member_counts_as_plain_text(text, encoding):
    count = count_tokens(text, encoding)
    # As plain text "<|endoftext|>" is several tokens; as the special token it would be one.
    assert count > 1


def test_counts_are_known_values():
    assert count_tokens("hello world", O200K) == 2
    assert count_tokens("tiktoken is great!", CL100K) == 6
    assert count_tokens("", O200K) == 0


def test_text_beyond_the_tokenizers_single_call_limits_is_still_counted():
    line = "The quick brown fox jumps over the lazy dog.\n"
    text = line * 30_000  # 1.35 million characters, past the 1,000,000-character limit
    assert count_tokens(text, O200K) == 30_000 * count_tokens(line, O200K)
    # Four-byte characters without a newline: more than 200,000 tokens if counted in one call.
    emoji = "\U0001f600" * 120_000
    assert count_tokens(emoji, O200K) >= 120_000


def test_lone_surrogates_do_not_crash_counting():
    assert count_tokens("broken \ud800 pair", O200K) > 0


def test_counting_from_many_threads_at_once_gives_the_same_answer():
    tokens._encodings.clear()  # make the threads race to load the encoding
    text = "Concurrency is not parallelism. " * 50
    results = []
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        results.append(count_tokens(text, CL100K))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 8


SAMPLES = [
    "hello world",
    "Ünïcödé façade, naïve café — “quotes” and ‘apostrophes’",
    "中文分词没有空格，日本語もそうです。한국어도 있습니다.",
    "def f(x):\n    return {k: v**2 for k, v in x.items()}  # comment\n\n\tindented\r\nCRLF",
    "emoji 😀👍🏽🇫🇷 and ZWJ 👩‍👩‍👧 sequences",
    "<|endoftext|> typed as text, <|fim_prefix|> too",
    "   leading and trailing spaces   ",
    "numbers 1234567890 3.14159 1e-9 0xDEADBEEF",
    "x" * 5000,
    "The quick brown fox jumps over the lazy dog. " * 200,
]


@pytest.mark.parametrize("encoding", [O200K, CL100K])
def test_counts_equal_the_packages_own_encoder(encoding):
    import bpe_openai

    reference = bpe_openai.get_encoding(encoding)
    for text in SAMPLES:
        assert count_tokens(text, encoding) == len(reference.encode_ordinary(text)), text[:40]


def test_counting_does_not_load_the_packages_python_layer():
    """The package's __init__ parses three encodings into Python dictionaries (about 60 MB and
    0.8 s that a Parley process would carry idle); counting uses only its Rust extension."""
    code = (
        "import sys; from chat import tokens; "
        "assert tokens.count_tokens('hello world', 'o200k_base') == 2; "
        "print('bpe_openai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- The reply cap (issue 20 item 8) ---------------------------------------------------------
def _stream_through(cap, deltas):
    kept = []
    for delta in deltas:
        kept.append(cap.take(delta))
        if cap.reached:
            break
    return "".join(kept)


@pytest.mark.parametrize(
    "words",
    [
        [" word"] * 5_000,  # one token a delta, as most servers stream
        ["漢字🦜"] * 3_000,  # characters of several tokens each
        [" supercalifragilistic", "expialidocious", "!"] * 1_000,  # words cut across deltas
    ],
)
def test_a_reply_is_cut_at_exactly_its_limit_of_tokens(words):
    cap = tokens.ReplyCap(1_000, O200K)
    kept = _stream_through(cap, words)
    assert cap.reached
    assert count_tokens(kept, O200K) <= 1_000
    assert count_tokens(kept, O200K) >= 995  # cut at the limit, not far before it
    assert "".join(words).startswith(kept)


def test_a_reply_within_its_limit_passes_whole():
    cap = tokens.ReplyCap(1_000, O200K)
    deltas = [" word"] * 999
    assert _stream_through(cap, deltas) == "".join(deltas)
    assert not cap.reached


def test_the_cap_counts_a_few_times_per_reply_not_once_per_delta(monkeypatch):
    calls = []
    real = tokens.count_tokens
    monkeypatch.setattr(tokens, "count_tokens", lambda text, name: calls.append(len(text)) or real(text, name))
    cap = tokens.ReplyCap(4_096, O200K)
    _stream_through(cap, [" word"] * 10_000)
    assert cap.reached
    assert len(calls) < 100
    assert sum(calls) < 3 * len(" word") * 4_096  # about one pass over the text it let through
