"""Creating and changing conversations. Ownership is checked by the caller's selector."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import tokens
from chat.core.grants import model_granted
from chat.errors import BadRequest, InvalidSetting, ModelUnavailable, UnknownSetting
from chat.models import Conversation
from chat.prepared import PreparedInsert
from chat.selectors import folder_for_user, preset_for_user

# Every new chat's row, written composed once (chat/prepared.py).
_NEW_CONVERSATION = PreparedInsert(Conversation)

# Settings a member may change, with the type each must have. Anything else in a payload is
# refused with ``unknown_setting`` (never silently dropped), so extra fields (owner, user_id,
# tokens...) can never be mass-assigned (T06).
SETTING_FIELDS: dict[str, type | str] = {
    "system_prompt": str,
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": list,
    "n": int,
    "logit_bias": "bias",
    "seed": int,
    "response_format": "format",
}
# Inclusive ranges of the numeric settings (the chat completions API's own).
SETTING_RANGES = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "max_tokens": (1, 1_000_000),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
    "n": (1, 4),
    "seed": (-(2**63), 2**63 - 1),
}
# What an empty value (null or "") resets a setting to.
SETTING_EMPTY = {"stop": [], "logit_bias": [], "n": 1, "response_format": "", "system_prompt": ""}
RESPONSE_FORMATS = ("text", "json_object")
BIAS_WORD_MAX = 100  # characters of one word to avoid or prefer
TITLE_MAX = 200


def _invalid(name: str, why: str | None = None) -> InvalidSetting:
    message = why or _("The setting “%(name)s” has an invalid value.") % {"name": name}
    return InvalidSetting(message, setting=name)


def _clean_bias(value) -> list[dict]:
    if not isinstance(value, list):
        raise _invalid("logit_bias")
    entries = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) - {"text", "bias"}:
            raise _invalid("logit_bias")
        text, bias = entry.get("text"), entry.get("bias")
        if not isinstance(text, str) or not text.strip() or len(text) > BIAS_WORD_MAX:
            raise _invalid("logit_bias", _("Each word to avoid or prefer must be 1 to 100 characters."))
        if not isinstance(bias, int) or isinstance(bias, bool) or not tokens.BIAS_MIN <= bias <= tokens.BIAS_MAX:
            raise _invalid("logit_bias", _("A word's bias must be a whole number from -100 to 100."))
        entries.append({"text": text.strip(), "bias": bias})
    return entries


def _clean_settings(values: dict, *, also: frozenset = frozenset()) -> dict:
    """The settings in ``values``, checked; ``also`` names the other keys the caller handles.

    Raises UnknownSetting for any other key and InvalidSetting for a value of the wrong type or
    out of range, naming the setting in ``detail.setting``.
    """
    if not isinstance(values, dict):
        raise BadRequest(_("Settings must be an object."))
    unknown = sorted(str(name) for name in values if name not in SETTING_FIELDS and name not in also)
    if unknown:
        raise UnknownSetting(_("Parley has no setting “%(name)s”.") % {"name": unknown[0]}, setting=unknown[0])
    cleaned: dict = {}
    for name, kind in SETTING_FIELDS.items():
        if name not in values:
            continue
        value = values[name]
        if value is None or value == "":
            cleaned[name] = SETTING_EMPTY.get(name)
            continue
        try:
            if kind == "bias":
                value = _clean_bias(value)
            elif kind == "format":
                if value not in RESPONSE_FORMATS:
                    raise ValueError
            elif kind is list:
                if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) for s in value):
                    raise ValueError
                value = [s[:200] for s in value if s]
            elif kind is str:
                if not isinstance(value, str):
                    raise ValueError
                value = value[:20_000]
            elif isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError
            elif isinstance(kind, type):
                value = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise _invalid(name) from None
        if name in SETTING_RANGES:
            low, high = SETTING_RANGES[name]
            if not low <= value <= high:
                raise _invalid(
                    name,
                    _("The setting “%(name)s” must be between %(low)s and %(high)s.")
                    % {"name": name, "low": low, "high": high},
                )
        cleaned[name] = value
    return cleaned


def _check_bias_for_model(conversation: Conversation) -> None:
    """Words to avoid or prefer need the model's encoding, and at most 300 token ids."""
    if not conversation.logit_bias:
        return
    model_id = conversation.model.model_id if conversation.model else ""
    if tokens.known_encoding_for_model(model_id) is None:
        raise _invalid(
            "logit_bias", _("Words to avoid or prefer are only offered for models whose encoding Parley knows.")
        )
    if tokens.bias_token_count(conversation.logit_bias, model_id) > tokens.BIAS_MAX_ENTRIES:
        raise _invalid(
            "logit_bias",
            _("These words make more than %(limit)s tokens; the limit is %(limit)s.")
            % {"limit": tokens.BIAS_MAX_ENTRIES},
        )


def conversation_create(
    *,
    user,
    title: str = "",
    model_id=None,
    settings: dict | None = None,
    fresh_user: bool = False,
    first_message_id=None,
    preset_id=None,
) -> Conversation:
    # ``first_message_id``: the id of the message the caller saves next, in the same
    # transaction, as the conversation's first; it is the leaf from the start (the foreign key
    # is checked at commit), which saves an UPDATE on every new chat.
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
    preset = None
    if preset_id is not None:
        # A preset the member may use (their own or one published to their group; any other
        # is not found): its model and settings come before the member's defaults, and the
        # settings chosen for this chat before both.
        preset = preset_for_user(user=user, preset_id=preset_id)
        defaults.update(preset.settings or {})
        defaults["system_prompt"] = preset.system_prompt
        if preset.model_id is not None:
            default_model = preset.model_id
    if model_id in (None, "") and preset is not None and preset.model_id is not None:
        model = model_granted(user=user, model_id=preset.model_id)  # refused if not granted
    elif model_id in (None, "") and default_model is not None:
        try:
            model = model_granted(user=user, model_id=default_model)
        except ModelUnavailable:
            model = model_granted(user=user, model_id=None)  # the default was disabled since
    else:
        model = model_granted(user=user, model_id=model_id)
    if settings is not None and not isinstance(settings, dict):
        raise BadRequest(_("Settings must be an object."))
    values = _clean_settings({**defaults, **(settings or {})})
    conversation = Conversation(
        owner=user, title=title[:TITLE_MAX], model=model, current_leaf_id=first_message_id, **values
    )
    if preset is not None:
        conversation.preset = preset
        conversation.preset_name = preset.name
    _check_bias_for_model(conversation)
    try:
        # validate_unique would query for the fresh random UUID: a round trip for nothing.
        conversation.full_clean(exclude=["owner", "model", "current_leaf", "preset", "folder"], validate_unique=False)
    except ValidationError as exc:
        raise BadRequest("; ".join(exc.messages)) from None
    _NEW_CONVERSATION.insert(conversation)
    return conversation


def conversation_update(*, conversation: Conversation, values: dict) -> Conversation:
    """Rename, pin, change model or sampling settings. Unknown keys are refused (T06)."""
    cleaned = _clean_settings(values, also=frozenset({"title", "pinned", "model_id", "folder_id"}))
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
    if "folder_id" in values:
        # Only into one of the owner's folders (another member's folder is not found); null
        # takes it out of its folder.
        folder_id = values["folder_id"]
        conversation.folder = (
            None if folder_id is None else folder_for_user(user=conversation.owner, folder_id=folder_id)
        )
        fields.append("folder")
    for name, value in cleaned.items():
        setattr(conversation, name, value)
    fields.extend(cleaned)
    _check_bias_for_model(conversation)
    try:
        conversation.full_clean(exclude=["owner", "model", "current_leaf", "preset", "folder"])
    except ValidationError as exc:
        raise BadRequest("; ".join(exc.messages)) from None
    if "title" in fields or "pinned" in fields or "folder" in fields:
        # Renaming, pinning or filing is not activity: keep the sidebar order stable.
        fields.remove("updated_at")
    else:
        conversation.updated_at = timezone.now()
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation; a reply in progress in it is cancelled by the caller first."""
    with transaction.atomic():
        conversation.delete()
