"""The fake upstream itself: what it sends is what real OpenAI servers send, and its log is true.

These tests talk raw HTTP/1.1 over sockets so that they depend on nothing but the standard library.
"""

import asyncio
import json
import time

import pytest

from tests.fakeupstream import Behaviour, default_reply, parse_directive, split_reply


def _request(method: str, path: str, body=None, headers=None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + data


async def _exchange(server, method, path, body=None, headers=None) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(_request(method, path, body, headers))
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if hdrs.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return status, hdrs, payload


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def _events(payload: bytes) -> list[str]:
    return [line[6:] for line in payload.decode().replace("\r\n", "\n").split("\n") if line.startswith("data: ")]


def _chat(text="hello", **extra):
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "stream": True, **extra}


async def test_it_streams_the_exact_openai_chunk_format(fake_upstream):
    body = _chat("hi", stream_options={"include_usage": True})
    status, headers, payload = await _exchange(fake_upstream, "POST", "/v1/chat/completions", body)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = _events(payload)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o-mini" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "".join(default_reply("hi"))
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12


async def test_it_sends_no_usage_chunk_unless_asked(fake_upstream):
    _, _, payload = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    chunks = [json.loads(e) for e in _events(payload)[:-1]]
    assert all("usage" not in c for c in chunks)


async def test_a_non_stream_request_gets_a_chat_completion(fake_upstream):
    fake_upstream.script(reply="Plain answer.")
    status, _, payload = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat(stream=False))
    data = json.loads(payload)
    assert status == 200 and data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "Plain answer."


async def test_scripted_errors_are_served_in_order_then_it_recovers(fake_upstream):
    fake_upstream.script(status=429, retry_after=2).script(status=429, error_code="insufficient_quota")
    s1, h1, p1 = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    s2, _, p2 = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    s3, _, _ = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    assert (s1, h1["retry-after"]) == (429, "2")
    assert json.loads(p2)["error"]["code"] == "insufficient_quota" and s2 == 429
    assert s3 == 200
    assert [r.status for r in fake_upstream.completion_requests] == [429, 429, 200]


async def test_a_directive_in_the_last_user_message_drives_a_separate_process(fake_upstream):
    text = 'go [[fake reply="one two three" cut_after=2 cut=error stream_error="overloaded"]]'
    _, _, payload = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat(text))
    events = _events(payload)
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[1:3]]
    assert contents == ["one", " two"]
    assert json.loads(events[3]) == {"error": {"message": "overloaded", "type": "server_error", "code": None}}


def test_directives_parse_numbers_lists_and_json():
    knobs = parse_directive('x [[fake tokens=5 token_delay=0.5 oddities=ping,crlf deltas=["<im","g>"] done=false]]')
    assert knobs == {"tokens": 5, "token_delay": 0.5, "oddities": "ping,crlf", "deltas": ["<im", "g>"], "done": False}
    assert Behaviour().merged(**knobs).oddities == ("ping", "crlf")


def test_a_reply_splits_into_word_deltas_or_equal_pieces():
    assert split_reply("one two  three ") == ["one", " two", "  three", " "]
    assert split_reply("abcdef", 3) == ["ab", "cd", "ef"]


async def test_it_records_headers_bodies_and_an_early_disconnect(fake_upstream):
    fake_upstream.script(tokens=100, token_delay=0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", fake_upstream.port)
    writer.write(_request("POST", "/v1/chat/completions", _chat("bye"), {"Authorization": "Bearer sk-x"}))
    await writer.drain()
    await reader.readuntil(b"content")
    closed_at = time.monotonic()
    writer.close()
    assert await fake_upstream.await_until(lambda: fake_upstream.requests[-1].disconnected_at is not None, 2)
    record = fake_upstream.requests[-1]
    assert record.authorization == "Bearer sk-x"
    assert record.body["messages"][0]["content"] == "bye"
    assert record.disconnected_at - closed_at < 1.0
    assert record.deltas_sent < 100


async def test_silence_holds_the_connection_until_the_client_leaves(fake_upstream):
    fake_upstream.script(silence=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", fake_upstream.port)
    writer.write(_request("POST", "/v1/chat/completions", _chat()))
    await writer.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.close()
    assert await fake_upstream.await_until(lambda: fake_upstream.requests[-1].disconnected_at is not None, 2)
    assert fake_upstream.requests[-1].status is None


async def test_a_reset_cut_ends_the_stream_with_a_tcp_reset(fake_upstream):
    fake_upstream.script(tokens=10, cut_after=3, cut="reset")
    reader, writer = await asyncio.open_connection("127.0.0.1", fake_upstream.port)
    writer.write(_request("POST", "/v1/chat/completions", _chat()))
    with pytest.raises(ConnectionResetError):
        while await reader.read(65536):
            pass
    writer.close()
    assert fake_upstream.requests[-1].deltas_sent == 3
    assert fake_upstream.requests[-1].disconnected_at is None


async def test_oddities_are_what_real_servers_send(fake_upstream):
    fake_upstream.script(oddities=("ping", "unknown_event", "not_json", "empty_choices", "crlf", "extra_fields"))
    _, _, payload = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    text = payload.decode()
    assert "\r\n\r\n" in text and ": ping" in text and "event: execute" in text
    assert "data: not-json" in text and '"choices": []' in text and "system_fingerprint" in text


async def test_moderation_flags_the_trigger_word_and_models_lists_ids(fake_upstream):
    _, _, flagged = await _exchange(fake_upstream, "POST", "/v1/moderations", {"input": "please FLAGME now"})
    _, _, clean = await _exchange(fake_upstream, "POST", "/v1/moderations", {"input": "hello"})
    _, _, models = await _exchange(fake_upstream, "GET", "/v1/models")
    result = json.loads(flagged)["results"][0]
    assert result["flagged"] and result["categories"]["violence"] and not result["categories"]["hate"]
    assert json.loads(clean)["results"][0]["flagged"] is False
    assert "gpt-4o-mini" in [m["id"] for m in json.loads(models)["data"]]


async def test_a_wrong_key_gets_a_401_when_a_key_is_required(fake_upstream):
    fake_upstream.require_key = "sk-right"
    status, _, payload = await _exchange(fake_upstream, "GET", "/v1/models", headers={"Authorization": "Bearer no"})
    assert status == 401 and json.loads(payload)["error"]["code"] == "invalid_api_key"


async def test_it_serves_many_concurrent_streams(fake_upstream):
    fake_upstream.always(tokens=5, token_delay=0.05)
    results = await asyncio.gather(
        *(_exchange(fake_upstream, "POST", "/v1/chat/completions", _chat(str(i))) for i in range(100))
    )
    assert all(status == 200 and _events(p)[-1] == "[DONE]" for status, _, p in results)
    assert fake_upstream.stats()["max_open_streams"] >= 50
    assert fake_upstream.stats()["open_streams"] == 0


async def test_the_control_endpoints_script_and_read_the_log(fake_upstream):
    await _exchange(fake_upstream, "POST", "/_fake/script", {"behaviours": [{"status": 503}]})
    status, _, _ = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    _, _, log = await _exchange(fake_upstream, "GET", "/_fake/requests")
    assert status == 503
    assert [r["status"] for r in json.loads(log)] == [503]


async def test_a_standing_behaviour_applies_to_completions_unless_told_otherwise(fake_upstream):
    fake_upstream.always(status=500)
    chat_status, _, _ = await _exchange(fake_upstream, "POST", "/v1/chat/completions", _chat())
    moderation_status, _, _ = await _exchange(fake_upstream, "POST", "/v1/moderations", {"input": "x"})
    fake_upstream.always(status=503, endpoint="any")
    models_status, _, _ = await _exchange(fake_upstream, "GET", "/v1/models")
    assert (chat_status, moderation_status, models_status) == (500, 200, 503)
