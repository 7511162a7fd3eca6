"""The JSON endpoints of presets, prompts, folders and share links, and the shared page.

Thin, like chat/web/api.py: ids go through the ownership selectors (another member's preset,
prompt, folder or link answers 404 exactly like a missing one, T01), writes through
chat/services/library.py, which refuses unknown fields (T06) and enforces the limits.
The shared page (``/s/<token>/``) shows only the snapshot the link holds (T52).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.http import require_GET

from chat import selectors
from chat.errors import NotFound
from chat.serializers import folder_to_dict, preset_to_dict, prompt_to_dict, share_to_dict
from chat.services import library
from chat.web.api import _json_body, api_view
from chat.web.ui_text import catalog, library_catalog


@api_view("GET")
def library_text(request):
    """The translated strings of static/app/library.js, loaded with it when first used."""
    return JsonResponse({"strings": library_catalog()})


# --- presets ----------------------------------------------------------------------------------
@api_view("GET", "POST")
def preset_list(request):
    if request.method == "POST":
        preset = library.preset_create(user=request.user, values=_json_body(request))
        return JsonResponse({"preset": preset_to_dict(preset, user=request.user, collections=True)}, status=201)
    presets = selectors.presets_for_user(user=request.user, collections=True)
    return JsonResponse({"presets": [preset_to_dict(p, user=request.user, collections=True) for p in presets]})


@api_view("PATCH", "DELETE")
def preset_detail(request, preset_id):
    # Only the member's own (an admin's: also the published ones, with the console's
    # permission): a preset published to a member's group is used, not changed.
    action = "delete" if request.method == "DELETE" else "change"
    preset = selectors.preset_for_user(user=request.user, preset_id=preset_id, own=True, action=action)
    if request.method == "DELETE":
        library.preset_delete(preset=preset)
        return HttpResponse(status=204)
    preset = library.preset_update(user=request.user, preset=preset, values=_json_body(request))
    return JsonResponse({"preset": preset_to_dict(preset, user=request.user, collections=True)})


# --- prompts ----------------------------------------------------------------------------------
@api_view("GET", "POST")
def prompt_list(request):
    if request.method == "POST":
        prompt = library.prompt_create(user=request.user, values=_json_body(request))
        return JsonResponse({"prompt": prompt_to_dict(prompt, user=request.user)}, status=201)
    prompts = selectors.prompts_for_user(user=request.user)
    return JsonResponse({"prompts": [prompt_to_dict(p, user=request.user) for p in prompts]})


@api_view("PATCH", "DELETE")
def prompt_detail(request, prompt_id):
    action = "delete" if request.method == "DELETE" else "change"
    prompt = selectors.prompt_for_user(user=request.user, prompt_id=prompt_id, own=True, action=action)
    if request.method == "DELETE":
        library.prompt_delete(prompt=prompt)
        return HttpResponse(status=204)
    prompt = library.prompt_update(prompt=prompt, values=_json_body(request))
    return JsonResponse({"prompt": prompt_to_dict(prompt, user=request.user)})


@api_view("POST")
def prompt_fill(request, prompt_id):
    """The prompt's text with the member's values in its variables: ``{"values": {...}}``."""
    prompt = selectors.prompt_for_user(user=request.user, prompt_id=prompt_id)
    body = _json_body(request)
    return JsonResponse({"text": library.prompt_fill(prompt=prompt, values=body.get("values", {}))})


# --- folders ----------------------------------------------------------------------------------
@api_view("GET", "POST")
def folder_list(request):
    if request.method == "POST":
        folder = library.folder_create(user=request.user, values=_json_body(request))
        return JsonResponse({"folder": folder_to_dict(folder)}, status=201)
    return JsonResponse({"folders": [folder_to_dict(f) for f in selectors.folders_for_user(user=request.user)]})


@api_view("PATCH", "DELETE")
def folder_detail(request, folder_id):
    folder = selectors.folder_for_user(user=request.user, folder_id=folder_id)
    if request.method == "DELETE":
        library.folder_delete(folder=folder)
        return HttpResponse(status=204)
    folder = library.folder_update(folder=folder, values=_json_body(request))
    return JsonResponse({"folder": folder_to_dict(folder)})


# --- share links ------------------------------------------------------------------------------
@api_view("POST")
def conversation_share(request, conversation_id):
    """A new share link to a snapshot of the conversation as it is now."""
    conversation = selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
    share = library.share_create(user=request.user, conversation=conversation)
    return JsonResponse({"share": share_to_dict(share)}, status=201)


@api_view("GET")
def share_list(request):
    return JsonResponse({"shares": [share_to_dict(s) for s in selectors.share_links_for_user(user=request.user)]})


@api_view("DELETE")
def share_detail(request, share_id):
    share = selectors.share_link_for_user(user=request.user, share_id=share_id)
    library.share_revoke(share=share)
    return HttpResponse(status=204)


@require_GET
def shared(request, token):
    """The read-only page of a share link: the snapshot, rendered by the chat's own pipeline
    (static/app/render.js) under the app's CSP. Signed-in members only, unless the admin
    allows public links (PARLEY_PUBLIC_SHARE_LINKS)."""
    if not settings.PARLEY_PUBLIC_SHARE_LINKS and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        share = selectors.share_link_by_token(token=token)
    except NotFound:
        raise Http404 from None
    config = {
        # Only the snapshot: no owner, no conversation id, no other link.
        "shared": {"title": share.title, "messages": share.messages, "created_at": share.created_at.isoformat()},
        "urls": {
            "highlight": static("vendor/highlight.js/highlight.min.mjs"),
            "katex_js": static("vendor/katex/katex.min.js"),
            "katex_css": static("vendor/katex/katex.min.css"),
        },
    }
    response = render(
        request,
        "chat/shared.html",
        {"share": share, "parley_config": config, "parley_i18n": catalog()},
    )
    # Not for search engines or the proxy's cache, even when public.
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
