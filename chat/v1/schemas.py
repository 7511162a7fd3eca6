"""The request bodies the member API accepts, as the OpenAI API defines them (pydantic).

Strict: a field the OpenAI API does not define is refused (``extra="forbid"``), and a value of
the wrong JSON type is refused rather than coerced (``strict=True``: ``"0.5"`` is not a
number, ``1`` is not a boolean). Structures the provider itself validates (message content
parts, tools, response formats) are checked to be JSON objects or lists and passed through
untouched. :func:`parse` turns pydantic's first error into the OpenAI API's wording.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chat.v1.errors import ApiError

Penalty = Annotated[float, Field(ge=-2, le=2)]
Stop = str | Annotated[list[str], Field(max_length=4)]
# A prompt or an embedding input: text, texts, tokens, or lists of tokens.
TextOrTokens = str | list[str] | list[int] | list[list[int]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None


class ChatCompletionRequest(_Strict):
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: Stop | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None


class CompletionRequest(_Strict):
    model: str
    prompt: TextOrTokens | None = None
    suffix: str | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool | None = None
    stop: Stop | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    seed: int | None = None
    user: str | None = None


class EditRequest(_Strict):
    model: str
    instruction: str
    input: str | None = None
    n: Annotated[int, Field(ge=1, le=20)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None


class EmbeddingRequest(_Strict):
    model: str
    input: TextOrTokens
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


class ModerationRequest(_Strict):
    input: str | list[str] | list[dict[str, Any]]
    model: str | None = None


_TYPE_NAMES = {
    "string_type": gettext_lazy("a string"),
    "int_type": gettext_lazy("an integer"),
    "float_type": gettext_lazy("a number"),
    "bool_type": gettext_lazy("a boolean"),
    "dict_type": gettext_lazy("an object"),
    "list_type": gettext_lazy("an array"),
    "model_type": gettext_lazy("an object"),
}


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _("a boolean")
    if isinstance(value, int | float):
        return _("a number")
    if isinstance(value, str):
        return _("a string")
    if isinstance(value, list):
        return _("an array")
    return _("an object")


def _param(loc) -> str:
    # pydantic's location of a union member names the member's type ("list[str]"): not a field.
    parts = [p for p in loc if isinstance(p, int) or ("[" not in p and p not in ("str", "int", "float", "bool"))]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def parse_json(raw: bytes) -> dict:
    """The JSON object of a request body, or the OpenAI API's answer to one it cannot read."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400,
            _(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
                "valid JSON.)"
            ),
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            _("Invalid type for request body: expected an object, but got %(got)s instead.")
            % {"got": _json_type(data)},
            code="invalid_type",
        )
    return data


def parse(schema: type[_Strict], data: dict) -> _Strict:
    """``data`` checked against ``schema``; the first problem as the OpenAI API words it."""
    try:
        return schema.model_validate(data, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    # The error of a union names each member: report the one closest to a type error.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), None) or errors[0]
    param = _param(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        raise ApiError(400, _("Unrecognized request argument supplied: %(name)s") % {"name": param})
    if kind == "missing":
        raise ApiError(
            400,
            _("Missing required parameter: '%(name)s'.") % {"name": param},
            param=param,
            code="missing_required_parameter",
        )
    if kind in _TYPE_NAMES:
        raise ApiError(
            400,
            _("Invalid type for '%(name)s': expected %(expected)s, but got %(got)s instead.")
            % {"name": param, "expected": _TYPE_NAMES[kind], "got": _json_type(error.get("input"))},
            param=param,
            code="invalid_type",
        )
    raise ApiError(
        400,
        _("Invalid value for '%(name)s': %(reason)s") % {"name": param, "reason": error["msg"]},
        param=param,
        code="invalid_value",
    )


def fields_set(request: _Strict) -> dict:
    """The fields the client sent (explicit nulls included), as JSON values, in its own order."""
    return request.model_dump(mode="json", exclude_unset=True)
