"""Voice endpoints: a dictation transcribed, a reply read aloud, the member's voice.

Thin, like the other endpoints: the service reads the audio, checks the limits, admits and
settles the call. ``POST /api/voice/transcriptions/`` takes the recording as a multipart file
(``audio``) with ``mode`` = ``transcribe`` | ``translate`` and answers ``{"text", "seconds"}``.
``GET /api/messages/<id>/speech/`` answers the reply's MP3, streamed as the provider sends it
(or from the cache), for an ``<audio>`` element; another member's reply is 404.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from chat.errors import AudioRefused, BadRequest, ParleyError
from chat.services.preferences import voice_preferences_update
from chat.services.voice import dictation_transcribe, speech_open, voice_preferences
from chat.web.api import _json_body, api_view, error_response
from chat.web.media import SANDBOX_CSP

MODES = {"transcribe": False, "translate": True}


@api_view("POST")
def transcription_create(request):
    mode = request.POST.get("mode", "transcribe")
    if mode not in MODES:
        raise BadRequest(_("The mode must be transcribe or translate."))
    upload = request.FILES.get("audio")
    if upload is None:
        raise AudioRefused(_("Record something first."), code="audio_empty")
    limit = settings.PARLEY_VOICE_MAX_UPLOAD_BYTES
    # Read one byte past the limit: the service refuses what is larger, before any call.
    data = upload.read(limit + 1)
    transcript = async_to_sync(dictation_transcribe)(user=request.user, data=data, translate=MODES[mode])
    return JsonResponse({"text": transcript.text, "seconds": str(transcript.seconds)})


@api_view("GET", "PUT")
def voice_settings(request):
    if request.method == "PUT":
        return JsonResponse({"voice": voice_preferences_update(user=request.user, values=_json_body(request))})
    return JsonResponse({"voice": voice_preferences(user=request.user)})


@require_GET
async def message_speech(request, message_id):
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": {"code": "session_ended", "message": _("Please sign in again.")}}, status=401)
    try:
        audio = await speech_open(user=user, message_id=message_id)
    except ParleyError as exc:
        return error_response(exc)
    response = StreamingHttpResponse(audio.chunks, content_type=audio.content_type)
    if audio.size is not None:
        response["Content-Length"] = str(audio.size)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = SANDBOX_CSP  # opened on its own, it runs and loads nothing
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Cache-Control"] = "private, no-store"
    # Through nginx: the first bytes go out at once, so playing starts before the file is whole.
    response["X-Accel-Buffering"] = "no"
    return response
