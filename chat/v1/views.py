"""The ``/v1/`` endpoints: each translates an OpenAI request into chat.v1.calls and back.

Every view answers in the OpenAI API's shapes, success or failure (chat.v1.errors), needs no
cookie and no CSRF token, and is never cached.
"""

from __future__ import annotations

import functools

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from chat.errors import ParleyError
from chat.v1 import calls
from chat.v1.auth import caller_for, credentials_for
from chat.v1.errors import ApiError, from_parley


def _schemas():
    # The request models (pydantic, about 6 MB) load with the first API call, not at start-up:
    # a deployment whose members never script it never pays for them.
    from chat.v1 import schemas

    return schemas


def api_view(*methods: str, reads_body: bool = True, admits: bool = False):
    """Authenticate the token, check the method, read the JSON body (POST), and turn every
    failure into OpenAI's error body.

    ``admits``: the view admits a model call (chat.v1.calls._begin), whose one trip to the
    database thread checks the key too; the view gets the unchecked :class:`Credentials` as
    its caller. Whatever it answers before that trip (a wrong method, a bad body) waits for
    the key's check, so a bad key is still answered first, as when it was checked first.
    """

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        async def wrapped(request, *args, **kwargs):
            # The request's database work runs on the process's one database thread
            # (calls.database_thread), and only the view's: Django's middleware after it goes
            # back to the request's own thread.
            with calls.database_thread():
                response = await _answer(request, view, methods, reads_body, admits, args, kwargs)
            if not response.has_header("Cache-Control"):
                response["Cache-Control"] = "no-store"
            return response

        return wrapped

    return decorate


async def _answer(request, view, methods, reads_body: bool, admits: bool, args, kwargs):
    """What :func:`api_view` answers, success or failure, before its Cache-Control."""
    model, body = "", {}
    try:
        credentials = credentials_for(request) if admits else None
        caller = credentials or await caller_for(request)
        try:
            if request.method not in methods:
                raise ApiError(
                    405,
                    _("Invalid method for URL (%(method)s %(path)s)")
                    % {"method": request.method, "path": request.path},
                    headers={"Allow": ", ".join(methods)},
                )
            body = _json_body(request) if reads_body and request.method == "POST" else {}
            model = body.get("model") if isinstance(body.get("model"), str) else ""
            return await view(request, caller, body, *args, **kwargs)
        except Exception:
            if credentials is not None and not credentials.checked:
                await sync_to_async(credentials.caller)()  # a bad key is answered instead
            raise
    except ApiError as exc:
        return exc.response()
    except ParleyError as exc:
        text_param = next((k for k in ("messages", "prompt", "input") if k in body), "messages")
        return from_parley(exc, model=model, text_param=text_param).response()


def _too_large() -> ApiError:
    limit = settings.PARLEY_API_MAX_BODY_BYTES
    return ApiError(
        413,
        _("The request body is too large: at most %(limit)s bytes are accepted.") % {"limit": limit},
        code="request_too_large",
    )


def _json_body(request) -> dict:
    limit = settings.PARLEY_API_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _too_large()
    try:
        raw = request.body
    except RequestDataTooBig:
        raise _too_large() from None
    if len(raw) > limit:
        raise _too_large()
    return _schemas().parse_json(raw)


def _stream_response(relay: calls.Relay) -> StreamingHttpResponse:
    response = StreamingHttpResponse(relay.events(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once (docs/deployment)
    return response


@api_view("GET")
async def models_index(request, caller, body):
    data = await sync_to_async(calls.models_list)(caller=caller)
    return JsonResponse({"object": "list", "data": data})


@api_view("GET")
async def model_detail(request, caller, body, model):
    return JsonResponse(await sync_to_async(calls.model_get)(caller=caller, name=model))


async def _completion(caller, body: dict, schema, path: str):
    fields = _schemas().fields_set(_schemas().parse(schema, body))
    if fields.get("stream"):
        return _stream_response(await calls.completion_stream(caller=caller, body=fields, path=path))
    return JsonResponse(await calls.completion_json(caller=caller, body=fields, path=path))


@api_view("POST", admits=True)
async def chat_completions(request, caller, body):
    return await _completion(caller, body, _schemas().ChatCompletionRequest, "chat/completions")


@api_view("POST", admits=True)
async def completions(request, caller, body):
    return await _completion(caller, body, _schemas().CompletionRequest, "completions")


@api_view("POST", admits=True)
async def edits(request, caller, body):
    return await _completion(caller, body, _schemas().EditRequest, "edits")


@api_view("POST", admits=True)
async def embeddings(request, caller, body):
    fields = _schemas().fields_set(_schemas().parse(_schemas().EmbeddingRequest, body))
    return JsonResponse(await calls.embeddings_json(caller=caller, body=fields))


@api_view("POST")
async def moderations(request, caller, body):
    fields = _schemas().fields_set(_schemas().parse(_schemas().ModerationRequest, body))
    return JsonResponse(await calls.moderations_json(caller=caller, body=fields))


@api_view("GET", "POST", "PUT", "PATCH", "DELETE", reads_body=False)
async def unknown(request, caller, body, rest=""):
    raise ApiError(404, _("Invalid URL (%(method)s %(path)s)") % {"method": request.method, "path": request.path})
