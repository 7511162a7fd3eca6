"""The member's defaults for new conversations (``User.chat_defaults``)."""

from __future__ import annotations

from chat.core.grants import model_granted
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
