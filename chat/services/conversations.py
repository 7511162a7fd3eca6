"""Creating and changing conversations. Ownership is checked by the caller's selector."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.core.grants import model_granted
from chat.errors import BadRequest, ModelUnavailable
from chat.models import Conversation

# Settings a member may change, with the type each must have. Anything else in a payload is
# ignored, so extra fields (owner, user_id, tokens...) can never be mass-assigned (T06).
SETTING_FIELDS = {
    "system_prompt": str,
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
}
TITLE_MAX = 200


def _clean_settings(values: dict) -> dict:
    cleaned: dict = {}
    for name, kind in SETTING_FIELDS.items():
        if name not in values:
            continue
        value = values[name]
        if value in (None, "") and name != "system_prompt":
            cleaned[name] = [] if name == "stop" else None
            continue
        try:
            if kind is list:
                if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) for s in value):
                    raise ValueError
                value = [s[:200] for s in value if s]
            elif kind is str:
                if not isinstance(value, str):
                    raise ValueError
                value = value[:20_000]
            elif isinstance(value, bool):
                raise ValueError
            else:
                value = kind(value)
        except (TypeError, ValueError):
            raise BadRequest(_("The setting “%(name)s” has an invalid value.") % {"name": name}) from None
        cleaned[name] = value
    return cleaned


def conversation_create(
    *, user, title: str = "", model_id=None, settings: dict | None = None, fresh_user: bool = False
) -> Conversation:
    # Read the member's defaults fresh: a socket's user object was loaded when it connected,
    # and the member may have changed them in another tab since (``fresh_user``: the caller
    # read ``user`` from the database just now).
    if fresh_user:
        defaults = dict(user.chat_defaults or {})
    else:
        defaults = dict(
            get_user_model().objects.filter(pk=user.pk).values_list("chat_defaults", flat=True).first() or {}
        )
    default_model = defaults.pop("model_id", None)
    if model_id in (None, "") and default_model is not None:
        try:
            model = model_granted(user=user, model_id=default_model)
        except ModelUnavailable:
            model = model_granted(user=user, model_id=None)  # the default was disabled since
    else:
        model = model_granted(user=user, model_id=model_id)
    values = _clean_settings({**defaults, **(settings or {})})
    conversation = Conversation(owner=user, title=title[:TITLE_MAX], model=model, **values)
    try:
        # validate_unique would query for the fresh random UUID: a round trip for nothing.
        conversation.full_clean(exclude=["owner", "model"], validate_unique=False)
    except ValidationError as exc:
        raise BadRequest("; ".join(exc.messages)) from None
    conversation.save()
    return conversation


def conversation_update(*, conversation: Conversation, values: dict) -> Conversation:
    """Rename, pin, change model or sampling settings. Unknown keys are ignored (T06)."""
    fields = ["updated_at"]
    if "title" in values:
        if not isinstance(values["title"], str):
            raise BadRequest(_("The title must be text."))
        conversation.title = values["title"].strip()[:TITLE_MAX]
        fields.append("title")
    if "pinned" in values:
        conversation.pinned = bool(values["pinned"])
        fields.append("pinned")
    if "model_id" in values:
        conversation.model = model_granted(user=conversation.owner, model_id=values["model_id"])
        fields.append("model")
    cleaned = _clean_settings(values)
    for name, value in cleaned.items():
        setattr(conversation, name, value)
    fields.extend(cleaned)
    try:
        conversation.full_clean(exclude=["owner", "model"])
    except ValidationError as exc:
        raise BadRequest("; ".join(exc.messages)) from None
    if "title" in fields or "pinned" in fields:
        # Renaming or pinning is not activity: keep the sidebar order stable.
        fields.remove("updated_at")
    else:
        conversation.updated_at = timezone.now()
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation; a reply in progress in it is cancelled by the caller first."""
    with transaction.atomic():
        conversation.delete()
