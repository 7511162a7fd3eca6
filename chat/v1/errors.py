"""Errors in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}``.

The status codes and types are those the OpenAI API gives for the same failure, so the
official clients raise their usual exceptions (``AuthenticationError`` for 401,
``RateLimitError`` for 429 with ``Retry-After``, ``NotFoundError`` for a model that does not
exist, ``BadRequestError`` for invalid input). A :class:`chat.errors.ParleyError` from the
core is translated by :func:`from_parley`; a provider's own text arrives already cleaned of
keys (chat.upstream.redact) and is cleaned once more here (T27).
"""

from __future__ import annotations

import datetime as dt
import math

from django.http import JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import (
    ContextTooLong,
    MessageBlocked,
    ModelUnavailable,
    ModerationUnavailable,
    NoProvider,
    ParleyError,
    QuotaExceeded,
    RateLimited,
    UpstreamError,
)
from chat.upstream import redact

INVALID_REQUEST = "invalid_request_error"


class ApiError(Exception):
    """One answer of the member API that is not a success."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,  # noqa: A002 - the field's name in OpenAI's body
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = redact.clean(message, limit=2000)
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        response["Cache-Control"] = "no-store"
        return response


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        _("The model '%(model)s' does not exist or you do not have access to it.") % {"model": model},
        param="model",
        code="model_not_found",
    )


def from_parley(exc: ParleyError, *, model: str = "", text_param: str = "messages") -> ApiError:
    """The OpenAI-shaped answer to a failure of the core or of the provider; ``text_param``
    names the request's field that moderation read (messages, prompt, input)."""
    if isinstance(exc, ModelUnavailable | NoProvider):
        return model_not_found(model)
    if isinstance(exc, RateLimited):
        return ApiError(429, exc.message, type="requests", code="rate_limit_exceeded", retry_after=exc.retry_after)
    if isinstance(exc, QuotaExceeded):
        # The member's own budget: retrying will not help before it resets (Retry-After says when).
        return ApiError(
            429,
            exc.message,
            type="insufficient_quota",
            code="insufficient_quota",
            retry_after=_until(exc.detail.get("resets_at")),
            headers={"x-should-retry": "false"},
        )
    if isinstance(exc, MessageBlocked):
        return ApiError(400, exc.message, param=text_param, code="content_policy_violation")
    if isinstance(exc, ModerationUnavailable):
        return ApiError(503, exc.message, type="server_error", code="moderation_unavailable")
    if isinstance(exc, ContextTooLong):
        return ApiError(400, exc.message, param="messages", code="context_length_exceeded")
    if isinstance(exc, UpstreamError):
        return _from_upstream(exc)
    return ApiError(500, exc.message, type="server_error", code=exc.code)


def _until(moment: str | None) -> float | None:
    try:
        return max((dt.datetime.fromisoformat(moment) - timezone.now()).total_seconds(), 1.0)
    except (TypeError, ValueError):
        return None


def _from_upstream(exc: UpstreamError) -> ApiError:
    code = exc.code
    if code == "rate_limited":
        return ApiError(429, exc.message, type="requests", code="rate_limit_exceeded", retry_after=exc.retry_after)
    if code == "upstream_quota_exhausted":
        return ApiError(
            429,
            exc.message,
            type="insufficient_quota",
            code="insufficient_quota",
            retry_after=exc.retry_after,
            headers={"x-should-retry": "false"},
        )
    if code == "context_too_long":
        return ApiError(400, exc.message, param="messages", code="context_length_exceeded")
    if code == "bad_request":
        status = exc.status if exc.status in (400, 404, 409, 413, 415, 422) else 400
        return ApiError(status, exc.message, code=None)
    if code == "upstream_timeout":
        return ApiError(504, exc.message, type="server_error", code="timeout")
    # The provider refused Parley's own key, is down or answered nonsense: not the client's fault.
    return ApiError(502, exc.message, type="server_error", code=code)
