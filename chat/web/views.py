"""The member's pages: the chat app (``/``, ``/new/``, ``/c/<id>/``) and the usage page.

The chat page carries everything its first paint needs in JSON data blocks (the first
sidebar page, the models, the member's defaults and budget, the browser strings), so the
browser makes no API call before it can draw: fewer requests, and nothing to wait for.
Messages arrive over the websocket (docs/websocket-protocol.md).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from chat import selectors
from chat.core import grants
from chat.core.budget import budget_status, month_begins, month_start
from chat.errors import NotFound
from chat.models.voice import VOICES
from chat.serializers import conversation_to_dict, folder_to_dict, preset_to_dict
from chat.services.images import image_models_offered
from chat.services.voice import voice_offered, voice_preferences
from chat.web.api import conversation_page, model_to_dict
from chat.web.ui_text import catalog

SUGGESTIONS = (
    _("Explain how HTTPS keeps a connection private, in simple terms"),
    _("Write a Python function that removes duplicates from a list and keeps the order"),
    _("Summarize the pros and cons of remote work in a table"),
    _("Draft a friendly reminder email about an overdue invoice"),
)


def budget_summary(user) -> dict:
    return budget_status(user=user)


def _app_context(request, *, conversation=None, sidebar=None) -> dict:
    user = request.user
    if sidebar is None:
        sidebar = conversation_page(user=user)
    models = [model_to_dict(m) for m in grants.models_granted(user=user)]
    config = {
        "conversation": conversation_to_dict(conversation) if conversation is not None else None,
        "sidebar": sidebar,
        # One query each, whatever the number of conversations: a conversation names its
        # folder by id (tests/chat/web/test_library.py counts them).
        "folders": [folder_to_dict(f) for f in selectors.folders_for_user(user=user)],
        "presets": [preset_to_dict(p, user=user) for p in selectors.presets_for_user(user=user)],
        "models": models,
        "image_models": image_models_offered(user=user),
        "defaults": user.chat_defaults or {},
        "budget": budget_summary(user),
        "user": {"name": user.get_short_name() or user.get_username(), "is_staff": user.is_staff},
        "csrf_token": get_token(request),
        "max_message_chars": settings.PARLEY_MAX_MESSAGE_CHARS,
        # Voice buttons only for the kinds a granted model serves (none with only the local model).
        "voice": {
            **voice_offered(user=user),
            "voices": list(VOICES),
            "preferences": voice_preferences(user=user),
            "max_recording_seconds": settings.PARLEY_VOICE_MAX_RECORDING_SECONDS,
        },
        "public_share_links": settings.PARLEY_PUBLIC_SHARE_LINKS,
        "urls": {
            "socket": "/ws/chat/",
            "home": reverse("chat:home"),
            "new": reverse("chat:new"),
            "conversation": reverse("chat:conversation", args=["00000000-0000-0000-0000-000000000000"]),
            "api_conversations": reverse("chat:api_conversations"),
            "api_defaults": reverse("chat:api_defaults"),
            "api_budget": reverse("chat:api_budget"),
            "api_documents": reverse("chat:api_documents"),
            "api_collections": reverse("chat:api_collections"),
            "api_vision_images": reverse("chat:api_vision_images"),
            "media": reverse("chat:media", args=["00000000-0000-0000-0000-000000000000"]),
            "api_images": reverse("chat:api_images"),
            "api_presets": reverse("chat:api_presets"),
            "api_prompts": reverse("chat:api_prompts"),
            "api_folders": reverse("chat:api_folders"),
            "api_shares": reverse("chat:api_shares"),
            "api_library_text": reverse("chat:api_library_text"),
            "sources": reverse("chat:passage", args=["00000000-0000-0000-0000-000000000000", 1]),
            "voice_transcriptions": reverse("chat:api_voice_transcriptions"),
            "voice_settings": reverse("chat:api_voice_settings"),
            "speech": reverse("chat:api_message_speech", args=["00000000-0000-0000-0000-000000000000"]),
            "usage": reverse("chat:usage"),
            "login": reverse("login"),
            "highlight": static("vendor/highlight.js/highlight.min.mjs"),
            "katex_js": static("vendor/katex/katex.min.js"),
            "katex_css": static("vendor/katex/katex.min.css"),
        },
    }
    return {
        "conversation": conversation,
        "parley_config": config,
        "parley_i18n": catalog(),
        "suggestions": SUGGESTIONS,
    }


# The chat page is the one large HTML response (its sidebar and settings are inlined): it is
# compressed, with Django's BREACH mitigation (random bytes in the gzip header, and the CSRF
# token masked per response; docs/security.md, T53). Static files are compressed by WhiteNoise.
@gzip_page
@require_GET
@login_required
def home(request):
    """The newest conversation, or the empty state for a member who has none yet."""
    sidebar = conversation_page(user=request.user)
    newest = max(sidebar["conversations"], key=lambda c: c["updated_at"], default=None)
    conversation = None
    if newest is not None:
        conversation = selectors.conversation_for_user(user=request.user, conversation_id=newest["id"])
    return render(request, "chat/app.html", _app_context(request, conversation=conversation, sidebar=sidebar))


@gzip_page
@require_GET
@login_required
def new_chat(request):
    return render(request, "chat/app.html", _app_context(request))


@gzip_page
@require_GET
@login_required
def conversation(request, conversation_id):
    try:
        found = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    except NotFound:
        raise Http404 from None
    return render(request, "chat/app.html", _app_context(request, conversation=found))


@require_GET
@login_required
def usage(request):
    status = budget_summary(request.user)
    since = month_start()
    report = selectors.usage_for_month(user=request.user, since=month_begins(since))
    tokens_used = status["tokens_used"]
    cost_used = Decimal(status["cost_used"])

    def share(used, budget):
        if budget in (None, "", 0):
            return None
        return min(int(Decimal(used) * 100 / Decimal(budget)), 100)

    return render(
        request,
        "chat/usage.html",
        {
            "status": status,
            "since": since,
            "tokens_used": tokens_used,
            "cost_used": cost_used,
            "token_share": share(tokens_used, status["token_budget"]),
            "cost_share": share(cost_used, status["cost_budget"]),
            "by_model": report["by_model"],
            "latest": report["latest"],
        },
    )
