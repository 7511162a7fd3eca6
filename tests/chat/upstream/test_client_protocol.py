"""The pure half of the upstream client: SSE framing, chunk reading, retry arithmetic, error text."""

import time
from email.utils import formatdate
from pathlib import Path

import pytest

from chat.upstream import sse, wire
from chat.upstream.wire import Endpoint, StreamEvent, Usage

ENDPOINT = Endpoint("https://api.openai.com/v1", api_key="sk-test-PROTOCOLKEY123456789")
ROOT = Path(__file__).resolve().parents[3]


def decode(lines):
    decoder = sse.Decoder()
    out = [m for m in (decoder.feed(line) for line in lines) if m is not None]
    tail = decoder.flush()
    return out + ([tail] if tail else [])


def test_sse_joins_data_lines_and_skips_comments_and_unknown_fields():
    messages = decode(
        ["\ufeff: ping", "id: 7", "retry: 10", 'data: {"a":', "data:1}", "", "event: execute", "data: x", ""]
    )
    assert messages == [sse.Message('{"a":\n1}'), sse.Message("x", "execute")]


def test_sse_keeps_the_event_name_to_its_own_message_and_dispatches_a_last_unterminated_one():
    assert decode(["event: error", "", "data: [DONE]"]) == [sse.Message("[DONE]")]


def test_sse_strips_exactly_one_space_after_the_colon():
    assert decode(["data:  two spaces", ""]) == [sse.Message(" two spaces")]


def chunk(data: str, event=None):
    return wire.chunk_event(sse.Message(data, event), ENDPOINT)


def test_a_chunk_passes_on_only_content_finish_reason_and_usage():
    data = (
        '{"choices":[{"index":0,"delta":{"content":"Hi","refusal":null,"tool_calls":[{"x":1}]},'
        '"finish_reason":null,"logprobs":null}],"system_fingerprint":"fp","obfuscation":"abc","usage":null}'
    )
    assert chunk(data) == StreamEvent(delta="Hi")


def test_empty_and_role_only_chunks_are_not_events():
    assert chunk('{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}') is None
    assert chunk('{"choices":[],"prompt_filter_results":[]}') is None
    assert chunk('{"choices":[{"index":0,"delta":{}}]}') is None


def test_a_usage_chunk_and_a_finish_chunk_are_events():
    assert chunk('{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}') == StreamEvent(
        usage=Usage(9, 3)
    )
    assert chunk('{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}') == StreamEvent(finish_reason="length")


def test_other_choices_unknown_events_and_non_json_are_dropped():
    assert chunk('{"choices":[{"index":1,"delta":{"content":"alt"}}]}') is None
    assert chunk('{"choices":[{"index":0,"delta":{"content":"<b>"}}]}', "execute") is None
    assert chunk("not-json") is None
    assert chunk("[1, 2]") is None
    assert chunk('{"choices":[{"index":0,"delta":{"content":42}}]}') is None


def test_an_error_chunk_raises_with_the_providers_text_cleaned():
    with pytest.raises(wire.UpstreamError) as caught:
        chunk('{"error":{"message":"<script>x</script>\\noverloaded","type":"server_error"}}')
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.detail["upstream_message"] == "<script>x</script> overloaded"
    with pytest.raises(wire.UpstreamError):
        chunk('{"message":"boom"}', "error")


def test_retry_after_reads_milliseconds_seconds_and_dates():
    assert wire.retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert wire.retry_after_seconds({"retry-after": "7"}) == 7.0
    assert 9 <= wire.retry_after_seconds({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert wire.retry_after_seconds({"retry-after": "soon"}) is None
    assert wire.retry_after_seconds({}) is None


def test_backoff_doubles_from_half_a_second_to_eight_with_jitter():
    for retries_done, top in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [wire.backoff_seconds(retries_done) for _ in range(50)]
        assert all(0.75 * top <= d <= top for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_error_bodies_of_many_shapes_are_read():
    assert wire.error_fields(b'{"error":{"message":"m","type":"t","code":"c"}}') == {
        "message": "m",
        "type": "t",
        "code": "c",
    }
    assert wire.error_fields(b'{"error":"plain"}') == {"message": "plain"}
    assert wire.error_fields(b'{"detail":"fastapi style"}')["message"] == "fastapi style"
    assert wire.error_fields(b"<html>Bad gateway</html>") == {"message": "<html>Bad gateway</html>"}


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (302, {}, "upstream_bad_response"),
        (400, {"code": "context_length_exceeded"}, "context_too_long"),
        (413, {}, "context_too_long"),
        (429, {"type": "insufficient_quota"}, "upstream_quota_exhausted"),
        (429, {"code": "rate_limit_exceeded"}, "rate_limited"),
        (401, {}, "upstream_auth_failed"),
        (408, {}, "upstream_timeout"),
        (504, {}, "upstream_timeout"),
        (500, {}, "upstream_unavailable"),
        (418, {}, "bad_request"),
    ],
)
def test_statuses_become_stable_codes(status, error, code):
    assert wire.status_error(status, error, ENDPOINT).code == code


def test_only_retryable_statuses_are_retryable():
    assert [s for s in (400, 401, 403, 404, 408, 409, 422, 429, 500, 503) if wire.retryable(s, {})] == [
        408,
        409,
        429,
        500,
        503,
    ]
    assert not wire.retryable(429, {"code": "insufficient_quota"})


def test_moderation_and_model_answers_are_read_defensively():
    flagged = {"results": [{"flagged": True, "categories": {"violence": True, "hate": False, "x": "yes"}}]}
    assert wire.moderation_result(flagged).categories == ["violence"]
    assert wire.moderation_result({"results": [{"flagged": False}]}).flagged is False
    with pytest.raises(wire.UpstreamError):
        wire.moderation_result({"results": []})
    assert wire.model_ids({"data": [{"id": "a"}, {"id": "a"}, {"id": 3}, {"nope": 1}, {"id": "b"}]}) == ["a", "b"]
    with pytest.raises(wire.UpstreamError):
        wire.model_ids({"data": "nope"})
