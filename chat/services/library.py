"""A member's presets, prompt library, sidebar folders and share links.

Ownership is checked by the caller's selector (chat.selectors: ``preset_for_user`` and the
others, with ``own=True`` for a change). Every write names the fields it accepts and refuses
any other (T06); names, texts and counts are bounded by settings; a refused write saves
nothing. Admins publish presets and prompts to groups in the Django admin (chat/admin/library.py).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.core.grants import model_granted
from chat.errors import (
    BadRequest,
    CollectionRefused,
    InvalidName,
    InvalidPrompt,
    LimitReached,
    NotFound,
    UnknownSetting,
)
from chat.models import Collection, Conversation, Folder, Message, Preset, Prompt, ShareLink
from chat.models.library import NAME_MAX, PROMPT_BODY_MAX
from chat.selectors import _as_uuid, message_path, readable_collection_ids
from chat.services.conversations import TITLE_MAX, _check_bias_for_model, _clean_settings

# {{name}}: a letter or underscore, then letters, digits or underscores (spaces inside allowed).
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,39})\s*\}\}")
# Anything between double braces, to find the ones that are not a variable.
BRACES = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
VARIABLES_MAX = 20
VALUE_MAX = 20_000


def _only(values, allowed: frozenset) -> dict:
    if not isinstance(values, dict):
        raise BadRequest(_("The request body must be a JSON object."))
    unknown = sorted(str(name) for name in values if name not in allowed)
    if unknown:
        raise UnknownSetting(_("Parley has no field “%(name)s” here.") % {"name": unknown[0]}, setting=unknown[0])
    return values


def _name(value, *, field: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidName(_("A name is required."), field=field)
    name = " ".join(value.split())
    if len(name) > NAME_MAX:
        raise InvalidName(_("A name must be at most %(limit)s characters.") % {"limit": NAME_MAX}, field=field)
    return name


def _lock_member(user) -> None:
    # The member's row locked (on PostgreSQL; SQLite writes one at a time anyway) until the
    # transaction ends, so two tabs cannot both take the last place under a limit.
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


def _check_limit(count: int, limit: int, what: str) -> None:
    if count >= limit:
        raise LimitReached(
            _("You can keep at most %(limit)s %(what)s. Delete one to make room.") % {"limit": limit, "what": what},
            limit=limit,
        )


# --- presets ----------------------------------------------------------------------------------
PRESET_FIELDS = frozenset({"name", "system_prompt", "model_id", "settings", "collection_ids"})


def _preset_collections(*, user, values: dict) -> list[Collection] | None:
    """The collections ``values["collection_ids"]`` names, each one its author may read (None
    when the field is absent: unchanged). Another member's private collection, a missing one
    and a malformed id are all ``not_found`` with the id in ``detail``, never a hint that a
    collection exists (T45)."""
    if "collection_ids" not in values:
        return None
    ids = values["collection_ids"] if values["collection_ids"] is not None else []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest(_("“collection_ids” must be a list of collection ids."))
    ids = list(dict.fromkeys(ids))
    if len(ids) > settings.PARLEY_COLLECTIONS_PER_CONVERSATION:
        raise CollectionRefused(
            _("A preset searches at most %(limit)s collections.")
            % {"limit": settings.PARLEY_COLLECTIONS_PER_CONVERSATION},
            code="collection_too_many",
            limit=settings.PARLEY_COLLECTIONS_PER_CONVERSATION,
        )
    keys = {}
    for value in ids:
        try:
            keys[value] = _as_uuid(value)
        except NotFound:
            raise NotFound(_("That collection does not exist."), collection_id=value[:64]) from None
    readable = Collection.objects.filter(pk__in=list(keys.values())).filter(pk__in=readable_collection_ids(user.pk))
    found = {c.pk: c for c in readable}
    for value, key in keys.items():
        if key not in found:
            raise NotFound(_("That collection does not exist."), collection_id=value[:64])
    return [found[key] for key in keys.values()]


def _preset_values(*, user, preset: Preset, values: dict) -> None:
    if "name" in values:
        preset.name = _name(values["name"])
    if "system_prompt" in values:
        prompt = values["system_prompt"]
        if prompt is None:
            prompt = ""
        if not isinstance(prompt, str) or len(prompt) > 20_000:
            raise BadRequest(_("The system prompt must be text of at most 20,000 characters."))
        preset.system_prompt = prompt
    if "model_id" in values:
        preset.model = (
            None if values["model_id"] in (None, "") else model_granted(user=user, model_id=values["model_id"])
        )
    if "settings" in values:
        chosen = values["settings"] if values["settings"] is not None else {}
        cleaned = _clean_settings(chosen)
        cleaned.pop("system_prompt", None)  # a preset's system prompt is its own field
        preset.settings = cleaned
    # Words to avoid or prefer need the model's encoding: the same check as a conversation's.
    _check_bias_for_model(Conversation(model=preset.model, logit_bias=preset.settings.get("logit_bias") or []))


def preset_create(*, user, values: dict) -> Preset:
    values = _only(values, PRESET_FIELDS)
    preset = Preset(owner=user, name=_name(values.get("name")))
    _preset_values(user=user, preset=preset, values=values)
    collections = _preset_collections(user=user, values=values)
    with transaction.atomic():
        _lock_member(user)
        _check_limit(Preset.objects.filter(owner=user).count(), settings.PARLEY_MAX_PRESETS, _("presets"))
        preset.save()
        if collections:
            preset.collections.set(collections)
    return preset


def preset_update(*, user, preset: Preset, values: dict) -> Preset:
    """Change a preset: its name, prompt, model, parameters or collections (each field given
    is checked before anything is saved; a refused change leaves the preset as it was).
    ``user`` is who changes it, the one whose collections count: the owner, or an admin for a
    published preset."""
    values = _only(values, PRESET_FIELDS)
    _preset_values(user=user, preset=preset, values=values)
    collections = _preset_collections(user=user, values=values)
    preset.updated_at = timezone.now()
    with transaction.atomic():
        preset.save()
        if collections is not None:
            preset.collections.set(collections)
    return preset


def preset_delete(*, preset: Preset) -> None:
    # Conversations started from it keep its name (Conversation.preset_name).
    preset.delete()


# --- prompts ----------------------------------------------------------------------------------
PROMPT_FIELDS = frozenset({"title", "body"})


def prompt_variables(body: str) -> list[str]:
    """The variables of a prompt's text, in order of first use, each once.

    Raises InvalidPrompt for double braces that do not hold a variable name ("{{ }}",
    "{{1st}}", "{{a b}}") and for more than VARIABLES_MAX variables.
    """
    for match in BRACES.finditer(body):
        if not VARIABLE.fullmatch(match.group(0)):
            raise InvalidPrompt(
                _("“%(text)s” is not a variable: write {{name}} with letters, digits and _.")
                % {"text": match.group(0)[:60]},
                variable=match.group(1)[:60],
            )
    names = list(dict.fromkeys(VARIABLE.findall(body)))
    if len(names) > VARIABLES_MAX:
        raise InvalidPrompt(_("A prompt can have at most %(limit)s variables.") % {"limit": VARIABLES_MAX})
    return names


def _prompt_values(prompt: Prompt, values: dict) -> None:
    if "title" in values:
        prompt.title = _name(values["title"], field="title")
    if "body" in values:
        body = values["body"]
        if not isinstance(body, str) or not body.strip():
            raise InvalidPrompt(_("A prompt needs some text."))
        if len(body) > PROMPT_BODY_MAX:
            raise InvalidPrompt(_("A prompt must be at most %(limit)s characters.") % {"limit": PROMPT_BODY_MAX})
        prompt_variables(body)
        prompt.body = body


def prompt_create(*, user, values: dict) -> Prompt:
    values = _only(values, PROMPT_FIELDS)
    prompt = Prompt(owner=user, title=_name(values.get("title"), field="title"))
    _prompt_values(prompt, {"body": values.get("body"), **values})
    with transaction.atomic():
        _lock_member(user)
        _check_limit(Prompt.objects.filter(owner=user).count(), settings.PARLEY_MAX_PROMPTS, _("prompts"))
        prompt.save()
    return prompt


def prompt_update(*, prompt: Prompt, values: dict) -> Prompt:
    values = _only(values, PROMPT_FIELDS)
    _prompt_values(prompt, values)
    prompt.updated_at = timezone.now()
    prompt.save()
    return prompt


def prompt_delete(*, prompt: Prompt) -> None:
    prompt.delete()


def prompt_fill(*, prompt: Prompt, values) -> str:
    """The prompt's text with every variable replaced by the member's value.

    Every variable must be given (an empty value is allowed) and no other: an unknown name or a
    missing one is refused (``invalid_prompt``, ``detail.variable``), never left as braces.
    """
    if not isinstance(values, dict):
        raise BadRequest(_("“values” must be an object."))
    names = prompt_variables(prompt.body)
    for name in values:
        if name not in names:
            raise InvalidPrompt(
                _("This prompt has no variable “%(name)s”.") % {"name": str(name)[:60]}, variable=str(name)[:60]
            )
    for name in names:
        value = values.get(name)
        if not isinstance(value, str):
            raise InvalidPrompt(_("Fill in “%(name)s”.") % {"name": name}, variable=name)
        if len(value) > VALUE_MAX:
            raise InvalidPrompt(_("“%(name)s” is too long.") % {"name": name}, variable=name)
    # One pass over the text: a value that itself contains {{x}} is inserted as it is.
    return VARIABLE.sub(lambda match: values[match.group(1)], prompt.body)


# --- folders ----------------------------------------------------------------------------------
def folder_create(*, user, values: dict) -> Folder:
    values = _only(values, frozenset({"name"}))
    folder = Folder(owner=user, name=_name(values.get("name")))
    with transaction.atomic():
        _lock_member(user)
        _check_limit(Folder.objects.filter(owner=user).count(), settings.PARLEY_MAX_FOLDERS, _("folders"))
        folder.save()
    return folder


def folder_update(*, folder: Folder, values: dict) -> Folder:
    """Rename, or fold and unfold (remembered for the member)."""
    values = _only(values, frozenset({"name", "collapsed"}))
    fields = []
    if "name" in values:
        folder.name = _name(values["name"])
        fields.append("name")
    if "collapsed" in values:
        if not isinstance(values["collapsed"], bool):
            raise BadRequest(_("“collapsed” must be true or false."))
        folder.collapsed = values["collapsed"]
        fields.append("collapsed")
    if fields:
        folder.save(update_fields=fields)
    return folder


def folder_delete(*, folder: Folder) -> None:
    """Delete a folder; its conversations stay, outside any folder (SET_NULL)."""
    folder.delete()


# --- share links --------------------------------------------------------------------------------
SHARED_STATUSES = (Message.Status.COMPLETE, Message.Status.STOPPED, Message.Status.INTERRUPTED)


def share_create(*, user, conversation: Conversation) -> ShareLink:
    """A link to a copy of ``conversation`` as it is now: its title and the current path.

    Only what a reader needs is copied (role, text, the model's name), never ids, the owner,
    settings, the system prompt, documents or other branches. A reply still streaming, an
    error or a blocked message is left out (a reader sees what the member saw finished).
    """
    path = message_path(conversation=conversation)
    messages = [
        {
            "role": m.role,
            "content": m.content,
            "model": m.model_name if m.role == Message.Role.ASSISTANT else "",
        }
        for m in path
        if m.role in (Message.Role.USER, Message.Role.ASSISTANT) and m.status in SHARED_STATUSES and m.content.strip()
    ]
    if not messages:
        raise BadRequest(_("There is nothing to share yet."), code="nothing_to_share")
    with transaction.atomic():
        _lock_member(user)
        _check_limit(ShareLink.objects.filter(owner=user).count(), settings.PARLEY_MAX_SHARE_LINKS, _("share links"))
        return ShareLink.objects.create(
            owner=user,
            conversation=conversation,
            title=(conversation.title or _("Shared conversation"))[:TITLE_MAX],
            messages=messages,
        )


def share_revoke(*, share: ShareLink) -> None:
    """Revoke a link: the row and its copy are deleted, so the link is a 404 at once."""
    share.delete()
