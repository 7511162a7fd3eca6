"""A fake OpenAI-compatible upstream: a real HTTP/1.1 server on 127.0.0.1 that can fail on purpose.

It speaks just enough of the OpenAI API for Parley: ``POST /v1/chat/completions`` (streaming SSE in
the exact chunk format, or a plain ``chat.completion``), ``POST /v1/completions`` (legacy
``text_completion``, whole or streamed; knobs ``reply``, ``tokens``, ``token_delay``,
``finish_reason``, ``status`` with ``endpoint="completions"``), ``POST /v1/embeddings``,
``POST /v1/moderations`` and ``GET /v1/models``, files and fine-tuning jobs on both the current and
the legacy API, and ``DELETE /v1/models/{id}`` (tests/fakeupstream/finetuning.py); any other path
answers OpenAI's 404. It runs on
asyncio with keep-alive, so one instance serves hundreds of concurrent streams (the benchmarks open 500 at once).

Two ways to run it
------------------
* In tests, in a background thread: the ``fake_upstream`` fixture (tests/conftest.py) yields a
  started :class:`FakeUpstream`; or ``server = FakeUpstream().start()`` ... ``server.stop()``.
* As a process, for benchmarks and browser tests::

      python -m tests.fakeupstream --port 8765 [--tokens 40 --token-delay 0.02 --first-token-delay 0]

  It prints ``fake upstream listening on http://127.0.0.1:8765/v1`` once it accepts connections.

Driving it: knobs
-----------------
A request is answered by a :class:`Behaviour`. It comes from, in this order:

1. the queue: ``server.script(status=429, headers={"Retry-After": "2"})`` queues one behaviour,
   ``server.script(Behaviour(...), Behaviour(...))`` several; each serves ``times`` requests
   (default 1) of its ``endpoint`` ("chat", "moderations", "models" or "any") in order;
2. a directive in the last user message, for processes that cannot be scripted, e.g.
   ``hello [[fake tokens=50 token_delay=0.05 cut_after=10 cut=reset]]``: ``key=value`` pairs
   (``reply="two words"`` is a JSON string, ``'single quotes'`` are literal, lists and objects are JSON;
   ``oddities=ping,crlf`` is a comma list; ``retry_after=2`` is short for a Retry-After header);
3. the standing default, ``server.always(**knobs)`` (the CLI flags set it); it applies to chat
   completions unless ``endpoint=`` names another ("any" for all).

Behaviour knobs (all optional):

``status`` (200), ``headers`` (extra response headers), ``body`` (raw error body: a dict is sent as
JSON, a string as is), ``error_code`` / ``error_type`` / ``error_message`` (fields of the standard
``{"error": {...}}`` body of a non-2xx answer; e.g. ``status=429,
error_code="insufficient_quota"``), ``redirect`` (answer 302 with this Location), ``headers_delay``
(seconds before the status line), ``silence`` (read the request, never answer; the connection stays
open until the client leaves), ``drop`` (read the request, then reset the connection without a byte
of answer), ``stream`` (False: answer a plain ``chat.completion`` JSON even when streaming was asked
for), ``reply`` (the text; default :func:`default_reply` of the prompt), ``deltas`` (explicit list
of content deltas, for hostile split points), ``tokens`` (number of deltas; default 12),
``first_token_delay``, ``token_delay`` (seconds), ``finish_reason`` ("stop"; or "length",
"content_filter", or None for none at all), ``choices`` (n>1 sends extra choices with indexes 1..n-1
that a client must ignore; default: the request's ``n``), ``usage`` (send the usage-only final
chunk; default: what ``stream_options.include_usage`` asks), ``done`` (send ``data: [DONE]``),
``cut_after`` (stop after this many deltas, then ``cut``: "reset" = TCP RST, "eof" = end the body
cleanly without finish_reason or [DONE], "error" = ``data: {"error": {...}}`` with ``stream_error``
/ ``stream_error_type`` / ``stream_error_code`` in it and then [DONE], "hang" = keep the connection
open and send nothing more), ``chunked`` (True: chunked transfer encoding; False: no length, the
body ends when the connection closes), ``oddities`` (a tuple of names: "ping" keep-alive comments,
"unknown_event" ``event: execute`` blocks, "not_json" a ``data: not-json`` line, "empty_choices" an
Azure-style chunk with ``"choices": []``, "extra_fields" unknown fields and non-content deltas
(refusal, tool_calls, logprobs), "crlf" CRLF line endings, "split" every event written in two TCP
writes cut mid-line, "multiline" each JSON spread over two ``data:`` lines, "no_role" no initial
role-only chunk).

Other switches on the server: ``models`` (ids served by /v1/models), ``moderation_triggers``
(word → category; default ``{"FLAGME": "violence", "HATEME": "hate"}``, matched case-sensitively),
``require_key`` (when set, a request without ``Authorization: Bearer <it>`` gets a 401).

What it records
---------------
``server.requests`` lists a :class:`RequestRecord` per request (method, path, headers with
lower-case names including ``authorization``, parsed JSON ``body``, ``status``, ``deltas_sent``,
``received_at`` / ``finished_at`` / ``disconnected_at`` as ``time.monotonic()`` values;
``disconnected_at`` is set when the client closed the connection before the answer was complete).
``server.completion_requests`` keeps the chat completion ones. ``server.stats()`` has
``open_streams``, ``max_open_streams``, ``open_connections``, ``connections_total``.
``server.wait_until(predicate)`` polls for conditions seen from another thread.

A separate process exposes the same over HTTP: ``GET /_fake/requests``, ``GET /_fake/stats``,
``POST /_fake/script`` (``{"behaviours": [{...knobs}]}``), ``POST /_fake/always`` (knobs),
``POST /_fake/reset``. These control calls are not logged.
"""

from tests.fakeupstream.behaviour import (
    DEFAULT_MODELS,
    DEFAULT_TOKENS,
    Behaviour,
    default_reply,
    estimate_prompt_tokens,
    last_user_text,
    parse_directive,
    split_reply,
)
from tests.fakeupstream.connection import RequestRecord
from tests.fakeupstream.server import FakeUpstream

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_TOKENS",
    "Behaviour",
    "FakeUpstream",
    "RequestRecord",
    "default_reply",
    "estimate_prompt_tokens",
    "last_user_text",
    "parse_directive",
    "split_reply",
]
