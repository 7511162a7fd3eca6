"""The chat page's JSON endpoints: sidebar list, rename/pin/settings, delete, fork, defaults, export.

Views are thin: every id goes through an ownership selector (another member's id answers
404 exactly like a missing one, T01), every write through a service that refuses unknown
fields (T06). POST/PATCH/PUT/DELETE are CSRF-protected by Django's middleware (T22), and
config.middleware.PrivateCacheMiddleware marks every answer ``private, no-store``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from functools import wraps

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpResponse, JsonResponse
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify
from django.utils.translation import gettext as _

from chat import selectors, tokens
from chat.core import grants
from chat.errors import (
    BadRequest,
    Busy,
    CollectionReadOnly,
    ModelUnavailable,
    NotFound,
    ParleyError,
    TrainingConsentLocked,
)
from chat.serializers import attachments_to_list, conversation_to_dict, message_to_dict
from chat.services.branches import conversation_fork as conversation_fork_service
from chat.services.conversations import conversation_delete, conversation_update
from chat.services.preferences import chat_defaults_update
from chat.services.search import conversation_search
from chat.services.training import training_consent_set, training_state
from chat.transport import events
from chat.transport.events import control_group, user_group

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
STATUS_FOR_CODE = {
    NotFound.code: 404,
    ModelUnavailable.code: 403,
    Busy.code: 409,
    TrainingConsentLocked.code: 409,
    CollectionReadOnly.code: 403,
}


def error_response(exc: ParleyError) -> JsonResponse:
    body = {"error": {"code": exc.code, "message": exc.message}}
    return JsonResponse(body, status=STATUS_FOR_CODE.get(exc.code, 400))


def api_view(*methods: str):
    """JSON endpoint for signed-in members: 401 for anonymous, 405 for other methods, and
    ParleyError answered with its stable code."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return JsonResponse(
                    {"error": {"code": "session_ended", "message": _("Please sign in again.")}}, status=401
                )
            if request.method not in methods:
                response = JsonResponse(
                    {"error": {"code": "bad_request", "message": _("Method not allowed.")}}, status=405
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except ParleyError as exc:
                return error_response(exc)

        return wrapper

    return decorate


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(_("The request body must be JSON.")) from None
    if not isinstance(body, dict):
        raise BadRequest(_("The request body must be a JSON object."))
    return body


def _notify_user(user, event: dict) -> None:
    """Tell the member's other tabs (their sockets join the member's group) about a change.

    The layer is only the fast path: a tab that misses this sees the change at its next load.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user.pk), event)
    except Exception:  # noqa: BLE001 - a notification must never fail the member's request
        logger.warning("could not notify the member's sockets", exc_info=True)


def conversation_summary(conversation) -> dict:
    """What the sidebar needs, from the fields the list selector loads (no message bodies)."""
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "pinned": conversation.pinned,
        "folder_id": conversation.folder_id,
        "training": training_state(conversation),
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def conversation_page(*, user, query: str = "", before: datetime | None = None, folder=None) -> dict:
    """One page of the sidebar in one query; ``next_before`` is the cursor of the next page
    (``folder``: a page of that folder's conversations only).

    A search's first page fuses the text matches with the conversations found by meaning
    (chat/services/search.py): in rank order, each with ``match`` (why it matched, a snippet),
    and ``search`` says whether search by meaning took part (``meaning``: "on", "unavailable"
    or "failed", with a ``notice`` {code, message} when not). Later pages (``before``) carry
    more text matches, as before."""
    rows = list(selectors.conversation_list(user=user, query=query, before=before, limit=PAGE_SIZE + 1, folder=folder))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    next_before = None
    if more:
        unpinned = [c for c in rows if not c.pinned]
        # Later pages hold only unpinned conversations (pinned ones all come first).
        next_before = unpinned[-1].updated_at.isoformat() if unpinned else "9999-12-31T00:00:00+00:00"
    if not query or before is not None or folder is not None:
        return {"conversations": [conversation_summary(c) for c in rows], "next_before": next_before}
    found = conversation_search(user=user, query=query, text_rows=rows, fields=selectors.CONVERSATION_LIST_FIELDS)
    conversations = []
    for conversation in found.conversations:
        summary = conversation_summary(conversation)
        summary["match"] = found.matches[conversation.pk.hex]
        conversations.append(summary)
    return {
        "conversations": conversations,
        "next_before": next_before,
        "search": {"meaning": found.meaning, "notice": found.notice},
    }


@api_view("GET")
def conversation_list(request):
    query = request.GET.get("q", "").strip()[:200]
    before = None
    if request.GET.get("before"):
        before = parse_datetime(request.GET["before"])
        if before is None:
            raise BadRequest(_("“before” must be an ISO 8601 date and time."))
    folder = None
    if request.GET.get("folder"):
        # A folder's own pages (the sidebar fetches them when the folder is open): another
        # member's folder is not found (T01).
        folder = selectors.folder_for_user(user=request.user, folder_id=request.GET["folder"])
    return JsonResponse(conversation_page(user=request.user, query=query, before=before, folder=folder))


@api_view("GET", "PATCH", "DELETE")
def conversation_detail(request, conversation_id):
    conversation = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    if request.method == "GET":
        return JsonResponse({"conversation": conversation_to_dict(conversation)})
    if request.method == "DELETE":
        conversation_delete(conversation=conversation)
        # A reply still running in it (on any worker) stops paying the upstream at once
        # rather than at its next periodic save.
        _send_to_group(control_group(conversation_id), events.reply_stop())
        _notify_user(request.user, events.conversation_deleted(conversation_id=conversation_id))
        return HttpResponse(status=204)
    conversation = conversation_update(conversation=conversation, values=_json_body(request))
    data = conversation_to_dict(conversation)
    _notify_user(request.user, events.conversation_updated(conversation=data))
    return JsonResponse({"conversation": data})


@api_view("POST")
def conversation_fork(request, conversation_id):
    """A new conversation from the path up to ``message_id``: answers the new conversation."""
    body = _json_body(request)
    fork = conversation_fork_service(
        user=request.user, conversation_id=conversation_id, message_id=body.get("message_id")
    )
    data = conversation_to_dict(fork)
    _notify_user(request.user, events.conversation_updated(conversation=data))
    return JsonResponse({"conversation": data}, status=201)


@api_view("PUT", "DELETE")
def conversation_training(request, conversation_id):
    """The member's consent to fine-tuning on this conversation: PUT marks, DELETE takes it back
    (409 ``training_consent_locked`` once it left in an uploaded dataset)."""
    conversation = training_consent_set(
        user=request.user, conversation_id=conversation_id, allowed=request.method == "PUT"
    )
    summary = conversation_summary(conversation)
    return JsonResponse({"conversation": summary, "training": summary["training"]})


def _send_to_group(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:  # noqa: BLE001 - the reply also stops at its next save, when it finds no row
        logger.warning("could not reach group %s", group, exc_info=True)


def model_to_dict(model) -> dict:
    return {
        "id": model.pk,
        "name": model.label,
        "model_id": model.model_id,
        "provider": model.provider.name,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "is_default": model.is_default,
        "priced": model.input_price_per_million is not None or model.output_price_per_million is not None,
        # Words to avoid or prefer need the model's encoding (chat.tokens.known_encoding_for_model).
        "token_bias": tokens.known_encoding_for_model(model.model_id) is not None,
        # Reads images attached to a message (the composer refuses them to a model without it).
        "vision": model.vision,
    }


@api_view("GET")
def model_list(request):
    return JsonResponse({"models": [model_to_dict(m) for m in grants.models_granted(user=request.user)]})


@api_view("GET", "PUT")
def chat_defaults(request):
    if request.method == "PUT":
        defaults = chat_defaults_update(user=request.user, values=_json_body(request))
    else:
        defaults = request.user.chat_defaults or {}
    return JsonResponse({"defaults": defaults})


@api_view("GET")
def budget(request):
    from chat.web.views import budget_summary

    return JsonResponse({"budget": budget_summary(request.user)})


# --- export ---------------------------------------------------------------------------------
def _export_filename(conversation, extension: str) -> str:
    name = slugify(conversation.title)[:60] or "conversation"
    return f"{name}-{conversation.created_at:%Y%m%d}.{extension}"


def export_markdown(conversation, messages) -> str:
    lines = [f"# {conversation.title or _('Untitled conversation')}", ""]
    if conversation.system_prompt:
        lines += [f"**{_('System prompt')}**", "", conversation.system_prompt, ""]
    speaker = {"user": _("You"), "assistant": _("Assistant"), "system": _("System")}
    for message in messages:
        heading = speaker.get(message.role, message.role)
        if message.role == "assistant" and message.model_name:
            heading = f"{heading} ({message.model_name})"
        lines += [f"## {heading}", "", message.content, ""]
        for image in attachments_to_list(message.attachments):
            # The link is the owner-only media view: it opens for the member, for nobody else.
            alt = (image.get("revised_prompt") or image.get("name") or _("Image")).replace("]", ")").replace("\n", " ")
            lines += [f"![{alt}]({image['url']})", ""]
        if message.status not in ("complete", "streaming"):
            lines += [f"_({message.get_status_display()})_", ""]
    return "\n".join(lines).rstrip() + "\n"


def export_json(conversation, messages, tree) -> dict:
    """The current branch as ``messages`` (what the member sees), and every message of every
    branch as ``all_messages`` (each with its ``parent_id``: the tree)."""
    return {
        "conversation": conversation_to_dict(conversation),
        "messages": [message_to_dict(m) for m in messages],
        "all_messages": [message_to_dict(m) for m in tree],
    }


@api_view("GET")
def conversation_export(request, conversation_id, fmt):
    conversation = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    messages = selectors.conversation_messages(conversation=conversation)
    if fmt == "md":
        response = HttpResponse(export_markdown(conversation, messages), content_type="text/markdown; charset=utf-8")
    else:
        tree = selectors.conversation_tree(conversation=conversation)
        response = HttpResponse(
            json.dumps(export_json(conversation, messages, tree), ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
    response["Content-Disposition"] = f'attachment; filename="{_export_filename(conversation, fmt)}"'
    return response
