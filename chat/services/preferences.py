"""The member's defaults for new conversations (``User.chat_defaults``) and voice for replies read aloud."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext as _

from chat.core.grants import model_granted
from chat.errors import InvalidSetting, UnknownSetting
from chat.models import VoicePreference
from chat.models.voice import SPEED_MAX, SPEED_MIN, VOICES
from chat.services.conversations import _clean_settings


def chat_defaults_update(*, user, values: dict) -> dict:
    """Replace the member's defaults with the known settings in ``values``.

    Only the conversation settings a member may change are accepted (unknown keys are refused,
    T06); a model is kept only if the member may use it (T07).
    """
    defaults = _clean_settings(values, also=frozenset({"model_id"}))
    if values.get("model_id") not in (None, ""):
        defaults["model_id"] = model_granted(user=user, model_id=values["model_id"]).pk
    user.chat_defaults = defaults
    user.save(update_fields=["chat_defaults"])
    return defaults


def voice_preferences_update(*, user, values: dict) -> dict:
    """Set the member's voice and speed for replies read aloud; only ``voice`` and ``speed``
    are accepted (T06), the voice one of /audio/speech's, the speed within 0.25 to 4."""
    unknown = set(values) - {"voice", "speed"}
    if unknown:
        raise UnknownSetting(_("Unknown setting: %(name)s.") % {"name": sorted(unknown)[0]})
    preference = VoicePreference.objects.filter(user=user).first() or VoicePreference(user=user)
    if "voice" in values:
        if values["voice"] not in VOICES:
            raise InvalidSetting(_("Choose one of the listed voices."))
        preference.voice = values["voice"]
    if "speed" in values:
        try:
            speed = Decimal(str(values["speed"])).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            speed = Decimal(-1)
        if not SPEED_MIN <= speed <= SPEED_MAX:
            raise InvalidSetting(_("The speed must be between 0.25 and 4."))
        preference.speed = speed
    preference.save()
    return {"voice": preference.voice, "speed": str(preference.speed)}
