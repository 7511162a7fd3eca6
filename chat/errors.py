"""Parley's failures, each with a stable code the browser and the docs rely on.

Every failure that reaches a member is a :class:`ParleyError`: ``code`` never changes
meaning (docs/websocket-protocol.md lists them), ``message`` is readable and translatable.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _


class ParleyError(Exception):
    code = "internal_error"
    default_message = _("Something went wrong on our side. Please try again.")

    def __init__(self, message=None, *, code: str | None = None, retry_after: float | None = None, **detail):
        self.message = str(message if message is not None else self.default_message)
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.detail = detail
        super().__init__(self.message)

    def as_frame(self) -> dict:
        frame = {"type": "error", "code": self.code, "message": self.message}  # chat.transport.events.error
        if self.retry_after is not None:
            frame["retry_after"] = round(self.retry_after, 1)
        if self.detail:
            frame["detail"] = self.detail
        return frame


class BadRequest(ParleyError):
    code = "bad_request"
    default_message = _("The request was not understood.")


class UnknownSetting(BadRequest):
    # A setting Parley does not know is refused, never silently dropped (issue 18).
    code = "unknown_setting"
    default_message = _("That setting does not exist.")


class InvalidSetting(BadRequest):
    code = "invalid_setting"
    default_message = _("A setting has a value out of range.")


class NotFound(ParleyError):
    # Another member's object is reported exactly like one that does not exist (T01).
    code = "not_found"
    default_message = _("That conversation or message does not exist.")


class Busy(ParleyError):
    code = "reply_in_progress"
    default_message = _("A reply is already being written in this conversation. Stop it or wait for it to finish.")


class TooManyReplies(ParleyError):
    code = "too_many_replies"
    default_message = _("You have too many replies in progress. Wait for one to finish.")


class RateLimited(ParleyError):
    code = "rate_limited"
    default_message = _("Too many requests. Please wait a moment and try again.")


class TextRateLimited(ParleyError):
    code = "text_rate_limited"
    default_message = _("You sent too much text in the last minute. Please wait a moment and try again.")


class QuotaExceeded(ParleyError):
    code = "quota_exceeded"
    default_message = _("Your monthly budget is used up.")


class ModelUnavailable(ParleyError):
    code = "model_unavailable"
    default_message = _("That model is not available to you. Pick another one.")


class NoProvider(ParleyError):
    code = "no_provider"
    default_message = _("No model is configured yet. An admin can add a provider in the admin console.")


class ContextTooLong(ParleyError):
    code = "context_too_long"
    default_message = _("This message is too long for the model's context window.")


class MessageBlocked(ParleyError):
    code = "moderation_blocked"
    default_message = _("This message was blocked by moderation.")


class ModerationUnavailable(ParleyError):
    code = "moderation_unavailable"
    default_message = _("Your message could not be checked by moderation, so it was not sent. Try again shortly.")


class UpstreamError(ParleyError):
    """A failure talking to the model provider (raised by chat/upstream/client.py)."""

    code = "upstream_unavailable"
    default_message = _("The model provider is unavailable. Try again in a moment.")

    def __init__(self, message=None, *, code=None, retry_after=None, status: int | None = None, **detail):
        super().__init__(message, code=code, retry_after=retry_after, **detail)
        self.status = status


class MediaNotFound(NotFound):
    default_message = _("That file does not exist.")


class MediaTooLarge(ParleyError):
    code = "media_too_large"
    default_message = _("This file is too large.")


class MediaQuotaExceeded(ParleyError):
    code = "media_quota_exceeded"
    default_message = _("Your file storage is full. Delete files or conversations to make room.")


class MediaTypeUnsupported(ParleyError):
    code = "media_type_unsupported"
    default_message = _("This kind of file is not supported.")


class MediaEmpty(ParleyError):
    code = "media_empty"
    default_message = _("The file is empty.")


class DocumentRefused(ParleyError):
    """A file that cannot be attached or read; ``code`` says which rule (chat/services/extract.py)."""

    code = "document_refused"
    default_message = _("This file cannot be used.")


class CollectionRefused(ParleyError):
    """A collection that cannot be made, changed or used; ``code`` says which rule
    (chat/services/collections.py)."""

    code = "collection_refused"
    default_message = _("This collection cannot be changed.")


class CollectionReadOnly(ParleyError):
    # A member of a group the collection is shared with may read it; only its owner changes it.
    code = "collection_read_only"
    default_message = _("Only the owner of this collection can change it.")


class VisionUnsupported(ParleyError):
    # Images are never dropped silently: a model the catalog does not mark as reading them is
    # refused before any call.
    code = "model_no_vision"
    default_message = _("This model cannot read images. Pick a model that accepts images, or remove them.")


class VisionImageRefused(ParleyError):
    code = "vision_image_refused"
    default_message = _("This image cannot be attached.")


class ImageRefused(ParleyError):
    """An image request that cannot be made, or an image that cannot be used; ``code`` says
    which rule (chat/media/images.py, chat/services/images.py): ``image_invalid`` (not an
    image, or a truncated one), ``image_too_large``, ``image_bomb`` (too many pixels),
    ``image_option_invalid``, ``image_operation_unsupported``, ``image_no_result``,
    ``image_url_only`` (the provider sent a link instead of the image)."""

    code = "image_refused"
    default_message = _("This image request cannot be made.")


class AudioRefused(ParleyError):
    """Audio Parley will not send to a provider; ``code`` says why (chat/media/audio.py):
    ``audio_type_unsupported``, ``audio_unreadable``, ``audio_too_long``, ``audio_too_large``,
    ``audio_empty``."""

    code = "audio_refused"
    default_message = _("This audio cannot be used.")


class SpeechRefused(ParleyError):
    """A reply that cannot be read aloud: ``speech_unavailable``, ``speech_too_long``, ``speech_empty``."""

    code = "speech_refused"
    default_message = _("This reply cannot be read aloud.")


class LimitReached(ParleyError):
    """A member has as many presets, prompts, folders or share links as the settings allow."""

    code = "limit_reached"
    default_message = _("You have reached the limit for these.")


class InvalidName(BadRequest):
    code = "invalid_name"
    default_message = _("A name is required, and it must be at most 100 characters.")


class InvalidPrompt(BadRequest):
    # A prompt's text with a malformed {{variable}}, or a fill that names an unknown variable
    # or leaves one out (``detail.variable``).
    code = "invalid_prompt"
    default_message = _("This prompt's variables are not written correctly.")


class TrainingConsentLocked(ParleyError):
    # Consent is withdrawn freely until the conversation leaves Parley in an uploaded dataset.
    code = "training_consent_locked"
    default_message = _(
        "This conversation is already in a training file sent to the model provider, so it can no longer be taken back."
    )


class DatasetInvalid(ParleyError):
    code = "dataset_invalid"
    default_message = _("This dataset has errors. Fix them before uploading it.")


class DatasetChanged(ParleyError):
    code = "dataset_changed"
    default_message = _(
        "The dataset changed since it was checked (a member took back consent, or it was edited). Check it again."
    )


class FineTuneRefused(ParleyError):
    code = "fine_tune_refused"
    default_message = _("That cannot be done with this fine-tuning job or file now.")
