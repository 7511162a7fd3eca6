"""Voice: what a member chose to hear replies in, and the replies already read aloud.

A :class:`SpeechClip` is the cached audio of one reply in one voice, model and speed: its
bytes are a MediaFile of the private media store that belongs to the reply's message, so the
clip goes with the message, the conversation or the member (chat.media.signals deletes the
file), and a second "Read aloud" plays it without calling the provider again.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.conversations import Message
from chat.models.media import MediaFile

# The voices of OpenAI's /audio/speech (its API reference); compatible servers accept a subset.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
DEFAULT_VOICE = "alloy"
# /audio/speech takes a speed from 0.25 to 4.0.
SPEED_MIN = Decimal("0.25")
SPEED_MAX = Decimal("4.00")


class VoicePreference(models.Model):
    """The member's voice and speed for replies read aloud."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="voice_preference"
    )
    voice = models.CharField(_("voice"), max_length=32, default=DEFAULT_VOICE)
    speed = models.DecimalField(
        _("speed"),
        max_digits=4,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(SPEED_MIN), MaxValueValidator(SPEED_MAX)],
    )

    class Meta:
        verbose_name = _("voice preference")
        verbose_name_plural = _("voice preferences")


class SpeechClip(models.Model):
    """One reply read aloud in one voice, model and speed, kept so it plays again for free."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="speech_clips")
    model_name = models.CharField(max_length=200)
    voice = models.CharField(max_length=32)
    speed = models.DecimalField(max_digits=4, decimal_places=2)
    media = models.OneToOneField(MediaFile, on_delete=models.CASCADE, related_name="speech_clip")
    characters = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "model_name", "voice", "speed"], name="speechclip_one_per_key")
        ]
