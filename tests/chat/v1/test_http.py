"""The member API over plain HTTP: bad input, the token rules (docs/security.md T46), the
stream's bytes, a client that hangs up (T34). Every refusal has the OpenAI API's status and
body, and nothing reaches the provider.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from chat.models import ApiPolicy, ApiToken, Reservation, UsageKind, UsageRecord
from chat.models.api import token_hash
from tests.chat.v1.conftest import bearer
from tests.fakeupstream import default_reply

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
PROVIDER_KEY = "sk-test-KEY0123456789abcd"


def assert_openai_error(answer, status: int, code=None) -> dict:
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.error
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    if code is not None:
        assert error["code"] == code
    return error


# --- bad input --------------------------------------------------------------------------------


def test_malformed_json_is_a_400_and_reaches_no_provider(http, alice_key, fake_upstream):
    answer = http.post(CHAT, b'{"model": "gpt-4o-mini", "messages": [', key=alice_key)

    error = assert_openai_error(answer, 400)
    assert "could not parse the JSON body" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake_upstream.requests == []


def test_an_unknown_field_is_named_in_a_400(http, alice_key, fake_upstream):
    answer = http.post(CHAT, {**HELLO, "temprature": 0.5}, key=alice_key)

    error = assert_openai_error(answer, 400)
    assert error["message"] == "Unrecognized request argument supplied: temprature"
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("temperature", "0.5", "temperature"),
        ("stream", 1, "stream"),
        ("n", 1.5, "n"),
        ("messages", "Hello", "messages"),
        ("max_tokens", "100", "max_tokens"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_400_naming_the_parameter(http, alice_key, fake_upstream, field, value, param):
    answer = http.post(CHAT, {**HELLO, field: value}, key=alice_key)

    error = assert_openai_error(answer, 400, "invalid_type")
    assert error["param"] == param
    assert fake_upstream.requests == []


def test_a_missing_model_and_an_out_of_range_value_are_400s(http, alice_key, fake_upstream):
    missing = http.post(CHAT, {"messages": HELLO["messages"]}, key=alice_key)
    too_hot = http.post(CHAT, {**HELLO, "temperature": 3}, key=alice_key)

    assert assert_openai_error(missing, 400, "missing_required_parameter")["param"] == "model"
    assert assert_openai_error(too_hot, 400, "invalid_value")["param"] == "temperature"
    assert fake_upstream.requests == []


def test_a_body_over_the_size_limit_is_a_413(http, alice_key, fake_upstream, settings):
    settings.PARLEY_API_MAX_BODY_BYTES = 2000
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * 5000}]}

    answer = http.post(CHAT, big, key=alice_key)

    assert_openai_error(answer, 413, "request_too_large")
    assert fake_upstream.requests == []


def test_a_model_that_does_not_exist_or_is_not_granted_is_the_openai_404(http, alice_key, api_model, fake_upstream):
    api_model.groups.add(Group.objects.create(name="research"))

    missing = http.post(CHAT, {**HELLO, "model": "gpt-9"}, key=alice_key)
    ungranted = http.post(CHAT, HELLO, key=alice_key)
    wrong_kind = http.post("/v1/embeddings", {"model": "gpt-3.5-turbo-instruct", "input": "x"}, key=alice_key)

    for answer in (missing, ungranted, wrong_kind):
        assert assert_openai_error(answer, 404, "model_not_found")["param"] == "model"
    assert "gpt-9" in missing.error["message"]
    assert fake_upstream.requests == []


def test_an_unknown_path_and_a_wrong_method_answer_in_the_openai_shape(http, alice_key):
    assert "Invalid URL" in assert_openai_error(http.get("/v1/assistants", key=alice_key), 404)["message"]
    wrong_method = http.get(CHAT, key=alice_key)
    assert_openai_error(wrong_method, 405)
    assert wrong_method.headers["Allow"] == "POST"


# --- tokens -----------------------------------------------------------------------------------


def test_no_token_and_a_wrong_token_are_401s(http, alice_key, fake_upstream):
    nothing = http.post(CHAT, HELLO)
    wrong = http.post(CHAT, HELLO, key=alice_key[:-2] + "xx")
    not_bearer = http.post(CHAT, HELLO, headers={"Authorization": f"Basic {alice_key}"})

    assert "didn't provide an API key" in assert_openai_error(nothing, 401)["message"]
    assert_openai_error(wrong, 401, "invalid_api_key")
    assert_openai_error(not_bearer, 401, "invalid_api_key")
    assert alice_key not in wrong.body.decode()
    assert fake_upstream.requests == []


def test_a_bad_key_is_answered_before_a_bad_body_or_method_and_counted_once(http, alice_key, fake_upstream, settings):
    # The admitting endpoints check the key in the same trip as the admission (chat.v1.calls
    # Credentials); whatever they find wrong before that trip still waits for the key's answer.
    settings.PARLEY_API_AUTH_FAILURE_LIMIT = 5
    wrong = alice_key[:-2] + "xx"
    for path in (CHAT, "/v1/completions", "/v1/embeddings"):
        assert_openai_error(http.post(path, b'{"model": ', key=wrong), 401, "invalid_api_key")
    assert_openai_error(http.post(CHAT, {**HELLO, "temprature": 0.5}, key=wrong), 401, "invalid_api_key")
    assert "didn't provide an API key" in assert_openai_error(http.get(CHAT), 401)["message"]
    # Each bad key was counted once: the fifth is the last before the address is refused.
    assert_openai_error(http.post(CHAT, HELLO, key=wrong), 401, "invalid_api_key")
    assert_openai_error(http.post(CHAT, HELLO, key=wrong), 429, "rate_limit_exceeded")
    assert fake_upstream.requests == []


def test_an_admitted_request_checks_its_key_in_its_one_trip_to_the_database_thread(
    http, alice_key, fake_upstream, monkeypatch
):
    # A trip of its own waited behind every other request's: at 100 at once no request reached
    # the provider before all 100 keys were checked (docs/performance.md, "The member API").
    from chat.v1 import auth, calls

    trips = []
    begin, authenticate = calls._begin, auth.authenticate
    monkeypatch.setattr(calls, "_begin", lambda *a: trips.append("begin") or begin(*a))
    monkeypatch.setattr(auth, "authenticate", lambda *a: trips.append("key") or authenticate(*a))

    answer = http.post(CHAT, HELLO, key=alice_key)

    assert answer.status == 200, answer.body
    assert trips == ["begin", "key"]
    trips.clear()
    assert http.get("/v1/models", key=alice_key).status == 200
    assert trips == ["key"]


def test_django_middleware_after_an_api_view_runs_off_the_database_thread(http, alice_key, fake_upstream, monkeypatch):
    # On the one database thread it waited behind every other request's admission: at 100
    # streamed requests at once no answer began before all 100 were admitted.
    import threading

    from django.middleware.clickjacking import XFrameOptionsMiddleware

    from chat.v1 import calls

    threads = {}
    begin, respond = calls._begin, XFrameOptionsMiddleware.process_response

    def spy_begin(*args):
        threads["admission"] = threading.get_ident()
        return begin(*args)

    def spy_respond(self, request, response):
        threads["after the view"] = threading.get_ident()
        return respond(self, request, response)

    monkeypatch.setattr(calls, "_begin", spy_begin)
    monkeypatch.setattr(XFrameOptionsMiddleware, "process_response", spy_respond)

    answer = http.post(CHAT, {**HELLO, "stream": True}, key=alice_key)

    assert answer.status == 200 and answer.body.endswith(b"data: [DONE]\n\n")
    assert threads["after the view"] != threads["admission"]


def test_only_the_hash_of_a_token_is_stored(alice, alice_key):
    token = ApiToken.objects.get(user=alice)

    assert alice_key.startswith("pk-parley-") and len(alice_key) >= 50
    assert token.token_hash == token_hash(alice_key)
    stored = json.dumps(list(ApiToken.objects.values()), default=str)
    assert alice_key not in stored and alice_key[12:] not in stored


def test_a_token_in_the_query_string_is_refused_even_with_the_header(http, alice_key, fake_upstream):
    in_query = http.post(f"{CHAT}?api_key={alice_key}", HELLO, key=alice_key)
    in_any_parameter = http.get(f"/v1/models?x={alice_key}")

    assert_openai_error(in_query, 401, "api_key_in_url")
    assert_openai_error(in_any_parameter, 401, "api_key_in_url")
    assert fake_upstream.requests == []


def test_a_session_cookie_alone_never_authorizes_and_the_api_needs_no_csrf(alice, alice_key, live_url, http):
    browser = Client()
    browser.force_login(alice)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    with_cookie_only = http.get("/v1/models", headers={"Cookie": cookie})
    with_token_no_csrf = http.post(CHAT, HELLO, headers={**bearer(alice_key), "Cookie": cookie})

    assert_openai_error(with_cookie_only, 401)
    assert with_token_no_csrf.status == 200


def test_failed_attempts_from_one_address_are_throttled_with_retry_after(http, alice_key, settings):
    settings.PARLEY_API_AUTH_FAILURE_LIMIT = 3
    for guess in range(3):
        assert http.get("/v1/models", key=f"pk-parley-guess{guess}").status == 401

    throttled = http.get("/v1/models", key=alice_key)

    assert_openai_error(throttled, 429, "rate_limit_exceeded")
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60


def test_the_admin_can_turn_the_api_off_or_limit_it_to_groups(alice, bob, http, api_model, make_token, settings):
    bob_key = make_token(bob)
    alice_key = make_token(alice)
    policy = ApiPolicy.current()
    policy.groups.add(group := Group.objects.create(name="scripters"))
    bob.groups.add(group)

    assert_openai_error(http.get("/v1/models", key=alice_key), 403, "api_access_denied")
    assert http.get("/v1/models", key=bob_key).status == 200
    policy.enabled = False
    policy.save()
    assert_openai_error(http.get("/v1/models", key=bob_key), 403)
    policy.enabled = True
    policy.save()
    settings.PARLEY_API_ENABLED = False
    assert_openai_error(http.get("/v1/models", key=bob_key), 403)


def test_last_use_is_recorded_with_the_address(alice, alice_key, http):
    http.get("/v1/models", key=alice_key)

    token = ApiToken.objects.get(user=alice)
    assert token.last_used_at is not None and token.last_used_ip == "127.0.0.1"


# --- the provider's key -----------------------------------------------------------------------


def test_the_provider_key_never_appears_in_an_answer_a_header_or_a_log(
    http, alice_key, fake_upstream, caplog, settings
):
    settings.PARLEY_UPSTREAM_MAX_RETRIES = 0
    leaky = f"Incorrect API key provided: {PROVIDER_KEY}. Bearer {PROVIDER_KEY}"
    fake_upstream.script(status=401, error_message=leaky, error_code="invalid_api_key")
    fake_upstream.script(status=400, error_message=leaky, endpoint="completions")
    caplog.set_level(logging.DEBUG)

    answers = [
        http.post(CHAT, HELLO, key=alice_key),
        http.post("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x"}, key=alice_key),
    ]

    assert answers[0].status == 502 and answers[0].error["type"] == "server_error"
    assert answers[1].status == 400
    for answer in answers:
        seen = answer.body.decode() + str(answer.headers)
        assert PROVIDER_KEY not in seen and "KEY0123456789" not in seen
    assert PROVIDER_KEY not in caplog.text


# --- streams ----------------------------------------------------------------------------------


def test_a_stream_is_server_sent_events_ending_with_done(http, alice_key):
    answer = http.post(CHAT, {**HELLO, "stream": True}, key=alice_key)

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    events = answer.body.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "".join(default_reply("Hello there"))


def test_a_provider_failure_mid_stream_is_an_error_event_and_the_tokens_sent_are_billed(http, alice_key, fake_upstream):
    fake_upstream.script(tokens=10, cut_after=4, cut="error", stream_error="The server is overloaded.")

    answer = http.post(CHAT, {**HELLO, "stream": True}, key=alice_key)

    last = answer.body.decode().strip().split("\n\n")[-1]
    assert json.loads(last.removeprefix("data: "))["error"]["message"]
    record = UsageRecord.objects.get(kind=UsageKind.CHAT)
    assert record.estimated and 1 <= record.completion_tokens <= 8


def test_a_client_that_hangs_up_mid_stream_cancels_the_provider_request_and_is_billed(http, alice_key, fake_upstream):
    fake_upstream.always(tokens=400, token_delay=0.02)
    connection = http.connection()
    connection.request("POST", CHAT, body=json.dumps({**HELLO, "stream": True}), headers=bearer(alice_key))
    response = connection.getresponse()
    assert response.status == 200
    received = b""
    while received.count(b"\n\n") < 5:
        received += response.read1(4096)

    connection.sock.close()
    response.close()

    assert fake_upstream.wait_until(lambda: fake_upstream.completion_requests[-1].disconnected_at is not None, 10)
    record = fake_upstream.completion_requests[-1]
    assert record.deltas_sent < 400
    assert fake_upstream.wait_until(lambda: UsageRecord.objects.filter(kind=UsageKind.CHAT).exists(), 10)
    usage = UsageRecord.objects.get(kind=UsageKind.CHAT)
    assert usage.estimated and 3 <= usage.completion_tokens < 400
    assert not Reservation.objects.exists()


def test_a_client_that_hangs_up_before_a_whole_answer_cancels_it_and_is_billed_the_prompt(
    http, alice_key, fake_upstream
):
    fake_upstream.always(first_token_delay=30)
    connection = http.connection()
    connection.request("POST", CHAT, body=json.dumps(HELLO), headers=bearer(alice_key))
    assert fake_upstream.wait_until(lambda: len(fake_upstream.completion_requests) == 1, 10)

    connection.sock.close()

    assert fake_upstream.wait_until(lambda: fake_upstream.completion_requests[0].disconnected_at is not None, 10)
    assert fake_upstream.wait_until(lambda: UsageRecord.objects.filter(kind=UsageKind.CHAT).exists(), 10)
    usage = UsageRecord.objects.get(kind=UsageKind.CHAT)
    assert usage.estimated and usage.prompt_tokens > 0 and usage.completion_tokens == 0
    assert not Reservation.objects.exists()


def test_a_blocked_embedding_input_names_the_input(http, alice_key, fake_upstream):
    answer = http.post(
        "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["fine", "HATEME"]}, key=alice_key
    )

    error = assert_openai_error(answer, 400, "content_policy_violation")
    assert error["param"] == "input" and "hate" in error["message"]
    assert not [r for r in fake_upstream.requests if r.path.endswith("/embeddings")]
