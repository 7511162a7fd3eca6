"""Voice: dictation and audio files transcribed, replies read aloud. Every call through the core.

- **Dictation** (``dictation_transcribe``): the recording's type and length are read from its
  bytes (chat/media/audio.py) and refused before any provider call when they break a limit;
  the call is admitted for that many seconds of the transcription model (kind
  ``transcription``, billed per minute at the model's price) and the text goes back to the
  composer: nothing is sent to a chat model until the member sends it, and then it passes the
  moderation gate like any typed message.
- **Audio documents** (``audio_transcript``): the documents job's reading step for an audio
  file: its transcript is the document's text.
- **Read aloud** (``speech_open``): a reply's spoken text (its Markdown reduced to words) is
  sent to ``/audio/speech`` in the member's voice and speed (kind ``speech``, billed per
  character). The provider's MP3 is relayed to the browser as it arrives and kept, once
  whole, as a :class:`SpeechClip` in the private media store, per reply, model, voice and
  speed: the second play reads the stored file and calls nobody.

The models are the admin's choice: ``PARLEY_TRANSCRIPTION_MODEL`` / ``PARLEY_SPEECH_MODEL``,
else the first granted model of the kind (``whisper-1`` / ``tts-1`` preferred). A member with
no granted model of a kind (a deployment with only the local model) is not offered the
buttons at all (``voice_offered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError
from django.utils.translation import gettext as _

from chat.core.calls import Admission, Units, call_admit, call_running, model_call
from chat.core.grants import models_granted
from chat.errors import NoProvider, NotFound, SpeechRefused
from chat.media.audio import AudioInfo, audio_probe
from chat.media.services import media_save
from chat.media.storage import stored_open
from chat.models import ChatModel, MediaFile, Message, ModelKind, SpeechClip, UsageKind, VoicePreference
from chat.models.voice import DEFAULT_VOICE
from chat.upstream import client
from chat.upstream.wire import SPEECH_CONTENT_TYPE

logger = logging.getLogger(__name__)

PREFERRED: dict[str, str] = {ModelKind.TRANSCRIPTION: "whisper-1", ModelKind.SPEECH: "tts-1"}
CHUNK_BYTES = 64 * 1024
# A clip larger than this is played but not kept (about 25 minutes of tts-1's MP3).
MAX_CLIP_BYTES = 32 * 1024 * 1024


# --- which model, what the page offers --------------------------------------------------------
def _chosen(kind: str) -> str:
    return settings.PARLEY_TRANSCRIPTION_MODEL if kind == ModelKind.TRANSCRIPTION else settings.PARLEY_SPEECH_MODEL


def voice_model(*, user, kind: str) -> ChatModel:
    """The admin's model of ``kind`` (transcription or speech) if granted to the member, else
    the first granted one; NoProvider (``voice_unavailable``) when there is none."""
    models = models_granted(user=user, kind=kind)
    if _chosen(kind):
        models = models.filter(model_id=_chosen(kind))
    model = models.filter(model_id=PREFERRED[kind]).first() or models.first()
    if model is None:
        raise NoProvider(_("No voice model is available to you: an admin must enable one."), code="voice_unavailable")
    return model


def voice_offered(*, user) -> dict:
    """Which voice buttons the page shows: only those a granted model can serve."""
    offered = {}
    for kind in (ModelKind.TRANSCRIPTION, ModelKind.SPEECH):
        try:
            voice_model(user=user, kind=kind)
            offered[str(kind)] = True
        except NoProvider:
            offered[str(kind)] = False
    return offered


def voice_preferences(*, user) -> dict:
    found = VoicePreference.objects.filter(user=user).first()
    if found is None:
        return {"voice": DEFAULT_VOICE, "speed": "1.00"}
    return {"voice": found.voice, "speed": str(found.speed)}


# --- transcription ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Transcript:
    text: str
    seconds: Decimal


async def transcribe_audio(
    *, user, data: bytes, info: AudioInfo, purpose: str, translate: bool = False, rate: bool = True
) -> str:
    """The text of checked audio (``audio_probe``), through the core: admitted for its length.

    ``rate=False`` for an audio document, whose upload was the member's request."""
    model = await sync_to_async(voice_model)(user=user, kind=ModelKind.TRANSCRIPTION)
    units = Units(audio_seconds=info.seconds)
    async with model_call(
        user=user,
        kind=UsageKind.TRANSCRIPTION,
        estimate=units,
        purpose=purpose,
        model=model,
        granted=True,
        rate=rate,
    ) as call:
        text = await client.transcribe(
            call.endpoint,
            model=model.model_id,
            audio=data,
            filename=f"audio{info.extension}",
            content_type=info.content_type,
            translate=translate,
        )
        # Billed for the length read from the file, whatever the provider reports.
        call.usage = units
    return text


async def dictation_transcribe(*, user, data: bytes, translate: bool = False) -> Transcript:
    """A dictation's text for the composer (into English with ``translate``), or a ParleyError
    (AudioRefused before any provider call, the core's refusals, UpstreamError)."""
    info = audio_probe(
        data,
        max_seconds=settings.PARLEY_VOICE_MAX_RECORDING_SECONDS,
        max_bytes=settings.PARLEY_VOICE_MAX_UPLOAD_BYTES,
    )
    purpose = "translation" if translate else "dictation"
    text = await transcribe_audio(user=user, data=data, info=info, purpose=purpose, translate=translate)
    return Transcript(text=text, seconds=info.seconds)


def audio_document_check(data: bytes, *, user=None) -> AudioInfo:
    """An audio file attached as a document, checked at upload (before any job or call): a
    member with no transcription model is told so at once, not when the job fails."""
    if user is not None:
        voice_model(user=user, kind=ModelKind.TRANSCRIPTION)
    return audio_probe(
        data,
        max_seconds=settings.PARLEY_AUDIO_DOCUMENT_MAX_SECONDS,
        max_bytes=settings.PARLEY_DOCUMENT_MAX_BYTES,
    )


def audio_transcript(*, user, data: bytes) -> str:
    """An audio document's text (the documents job's reading step, on its worker thread)."""
    from asgiref.sync import async_to_sync

    info = audio_document_check(data)
    return async_to_sync(transcribe_audio)(user=user, data=data, info=info, purpose="document", rate=False)


# --- read aloud ------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1[^\n]*$", re.S | re.M)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_CITATION = re.compile(r"\[\d{1,3}\]")
_LINE_MARK = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d{1,3}[.)]\s+)", re.M)
_EMPHASIS = re.compile(r"(\*\*|__|~~|\*|`)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}.*$", re.M)


def spoken_text(markdown: str) -> str:
    """What a listener should hear of a reply: its words, without code blocks, Markdown marks,
    link targets or citation numbers."""
    text = _FENCE.sub(" ", markdown or "")
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _CITATION.sub("", text)
    text = _TABLE_RULE.sub("", text)
    text = _LINE_MARK.sub("", text)
    text = _EMPHASIS.sub("", text).replace("|", " ")
    return re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n", text)).strip()


@dataclass
class SpeechPlan:
    user_id: int
    message: Message
    model: ChatModel
    voice: str
    speed: Decimal
    text: str = ""
    clip: SpeechClip | None = None
    admission: Admission | None = None


def speech_plan(*, user, message_id) -> SpeechPlan:
    """The member's reply ``message_id`` to read aloud: its cached clip, or the admitted call.

    Another member's message, or one that is not a reply, is a missing one (404); a reply
    still being written, empty, or too long is SpeechRefused; no speech model is
    ``voice_unavailable``; the budget and the rate are the core's.
    """
    try:
        message = (
            Message.objects.select_related("conversation")
            .filter(pk=uuid.UUID(str(message_id)), conversation__owner=user, role=Message.Role.ASSISTANT)
            .first()
        )
    except (ValueError, TypeError, AttributeError):
        message = None
    if message is None:
        raise NotFound(_("That reply does not exist."))
    if message.status == Message.Status.STREAMING:
        raise SpeechRefused(_("Wait until the reply is finished."), code="speech_not_ready")
    preferences = voice_preferences(user=user)
    model = voice_model(user=user, kind=ModelKind.SPEECH)
    plan = SpeechPlan(
        user_id=user.pk,
        message=message,
        model=model,
        voice=preferences["voice"],
        speed=Decimal(preferences["speed"]),
    )
    plan.clip = (
        SpeechClip.objects.select_related("media")
        .filter(message=message, model_name=model.model_id, voice=plan.voice, speed=plan.speed)
        .first()
    )
    if plan.clip is not None:
        return plan
    plan.text = spoken_text(message.content)
    if not plan.text:
        raise SpeechRefused(_("This reply has no words to read aloud."), code="speech_empty")
    if len(plan.text) > settings.PARLEY_SPEECH_MAX_CHARACTERS:
        raise SpeechRefused(
            _("This reply is too long to read aloud (%(count)s characters; the limit is %(limit)s).")
            % {"count": len(plan.text), "limit": settings.PARLEY_SPEECH_MAX_CHARACTERS},
            code="speech_too_long",
        )
    plan.admission = call_admit(
        user=user,
        kind=UsageKind.SPEECH,
        estimate=Units(characters=len(plan.text)),
        purpose="speech",
        model=model,
        granted=True,
        conversation_id=message.conversation_id,
    )
    return plan


@dataclass
class SpeechAudio:
    chunks: AsyncIterator[bytes]
    content_type: str
    size: int | None  # known for a cached clip
    cached: bool


async def speech_open(*, user, message_id) -> SpeechAudio:
    """The reply's speech, ready to stream: the cached clip, or the provider's answer already
    started (so a refusal or a failed call is an error here, not a broken stream)."""
    plan = await sync_to_async(speech_plan)(user=user, message_id=message_id)
    if plan.clip is not None:
        media = plan.clip.media
        return SpeechAudio(_stored_chunks(media.storage_name), media.content_type, media.size, cached=True)
    assert plan.admission is not None
    stack = contextlib.AsyncExitStack()
    try:
        call = await stack.enter_async_context(call_running(plan.admission))
        speech = client.speech(
            call.endpoint, model=plan.model.model_id, text=plan.text, voice=plan.voice, speed=plan.speed
        )
        upstream = await stack.enter_async_context(contextlib.aclosing(speech))
        first = await anext(upstream, b"")
        if not first:
            raise client.bad_audio()
        # The provider charges for the text once it answers, whether or not it is heard to the end.
        call.usage = Units(characters=len(plan.text))
    except BaseException:
        await stack.aclose()
        raise
    return SpeechAudio(_relay(plan, first, upstream, stack), SPEECH_CONTENT_TYPE, None, cached=False)


async def _relay(plan: SpeechPlan, first: bytes, upstream, stack: contextlib.AsyncExitStack) -> AsyncIterator[bytes]:
    kept: io.BytesIO | None = io.BytesIO()
    whole = False
    try:
        chunk = first
        while True:
            if kept is not None:
                kept.write(chunk)
                if kept.tell() > MAX_CLIP_BYTES:
                    kept = None
            yield chunk
            next_chunk = await anext(upstream, None)
            if next_chunk is None:
                break
            chunk = next_chunk
        whole = True
    finally:
        # The member left or the provider failed: the request is closed and the call settled.
        await stack.aclose()
    if whole and kept is not None:
        await sync_to_async(speech_keep)(plan=plan, data=kept.getvalue())


def speech_keep(*, plan: SpeechPlan, data: bytes) -> SpeechClip | None:
    """Keep a whole clip for the next play; a clip that cannot be kept (storage full, the
    conversation deleted meanwhile, another play kept it first) is only not kept."""
    try:
        media = media_save(
            owner=plan.message.conversation.owner,
            content=data,
            name=f"reply-{plan.voice}.mp3",
            kind=MediaFile.Kind.AUDIO,
            message=plan.message,
        )
    except Exception as exc:  # noqa: BLE001 - the audio was played; keeping it is a bonus
        logger.info("speech clip of %s not kept: %s", plan.message.pk, exc)
        return None
    try:
        return SpeechClip.objects.create(
            message=plan.message,
            model_name=plan.model.model_id,
            voice=plan.voice,
            speed=plan.speed,
            media=media,
            characters=len(plan.text),
        )
    except IntegrityError:
        media.delete()
        return None


async def _stored_chunks(name: str) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(stored_open, name)
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
