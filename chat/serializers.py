"""Plain-dict views of conversations and messages, shared by the websocket and the HTTP API.

Only whitelisted fields leave the server (never keys, never another member's data).
"""

from __future__ import annotations

from django.urls import reverse

from chat.models import Collection, Conversation, Document, Folder, Message, Preset, Prompt, ShareLink


def conversation_to_dict(conversation: Conversation) -> dict:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "pinned": conversation.pinned,
        "model_id": conversation.model_id,
        "system_prompt": conversation.system_prompt,
        "temperature": conversation.temperature,
        "top_p": conversation.top_p,
        "max_tokens": conversation.max_tokens,
        "presence_penalty": conversation.presence_penalty,
        "frequency_penalty": conversation.frequency_penalty,
        "stop": conversation.stop,
        "n": conversation.n,
        "logit_bias": conversation.logit_bias,
        "seed": conversation.seed,
        "response_format": conversation.response_format,
        "current_leaf_id": None if conversation.current_leaf_id is None else str(conversation.current_leaf_id),
        "choosing": conversation.choosing,
        "folder_id": conversation.folder_id,
        # The preset it started from, by its name then ("" when none).
        "preset_name": conversation.preset_name,
        "training": conversation.training_state,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def _id(value) -> str | None:
    return None if value is None else str(value)


def message_to_dict(message: Message) -> dict:
    usage = None
    if message.status != Message.Status.STREAMING and (
        message.prompt_tokens is not None or message.completion_tokens is not None
    ):
        usage = {
            "prompt_tokens": message.prompt_tokens or 0,
            "completion_tokens": message.completion_tokens or 0,
            "estimated": message.usage_estimated,
            "cost": None if message.cost is None else str(message.cost),
        }
    error = {"code": message.error_code, "message": message.error_text} if message.error_code else None
    count = getattr(message, "version_count", None) or 1
    return {
        "id": str(message.id),
        "parent_id": None if message.parent_id is None else str(message.parent_id),
        # Its place among the versions under the same parent ("2 / 3") and the ids of the ones
        # before and after it (known for a thread read by chat.selectors.conversation_messages;
        # null for an event about one message).
        "versions": {
            "index": (getattr(message, "versions_before", None) or 0) + 1,
            "count": count,
            "previous_id": _id(getattr(message, "version_previous", None)),
            "next_id": _id(getattr(message, "version_next", None)),
        }
        if count > 1
        else None,
        "choice": message.choice,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "finish_reason": message.finish_reason or None,
        "error": error,
        "usage": usage,
        "omitted_messages": message.omitted_messages,
        "passages": message.passages,  # numbered document sources the reply could cite
        "omitted_passages": message.omitted_passages,
        "moderation_categories": message.moderation_categories,
        "attachments": attachments_to_list(message.attachments),
        "model": message.model_name,
        "created_at": message.created_at.isoformat(),
    }


_ATTACHMENT_FIELDS = ("kind", "content_type", "name", "width", "height", "revised_prompt")


def attachments_to_list(attachments) -> list[dict]:
    """A message's files with their owner-only URLs (``/media/<id>/``; add ``?inline=1`` to show one)."""
    shown = []
    for item in attachments if isinstance(attachments, list) else []:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        entry = {"id": str(item["id"]), **{key: item.get(key) for key in _ATTACHMENT_FIELDS}}
        entry["url"] = reverse("chat:media", args=[item["id"]])
        shown.append(entry)
    return shown


def document_to_dict(document: Document) -> dict:
    error = {"code": document.error_code, "message": document.error_message} if document.error_code else None
    return {
        "id": str(document.id),
        "name": document.name,
        "kind": document.kind,
        "size": document.size,
        "pages": document.pages,
        "status": document.status,
        "error": error,
        "conversation_id": str(document.conversation_id) if document.conversation_id else None,
        "collection_id": str(document.collection_id) if document.collection_id else None,
    }


def collection_to_dict(collection: Collection, *, user) -> dict:
    """A collection as the member sees it: the owner's name only, never the groups' (an admin's
    business), and whether it is theirs to change."""
    return {
        "id": str(collection.id),
        "name": collection.name,
        "mine": collection.owner_id == user.pk,
        "owner": collection.owner.get_username() if collection.owner_id != user.pk else None,
        "documents": getattr(collection, "document_count", None),
    }


def preset_to_dict(preset: Preset, *, user, collections: bool = False) -> dict:
    """A preset as the member sees it; ``collections``: with the collections it searches that
    the member may read (id and name) and how many others it names (never their names)."""
    from chat.selectors import may_change, preset_collections_for_user

    data = {
        "id": preset.pk,
        "name": preset.name,
        "system_prompt": preset.system_prompt,
        "model_id": preset.model_id,
        "settings": preset.settings,
        # The member's own (they may change it) or published to their group by an admin.
        "mine": preset.owner_id == user.pk,
        # Theirs, or a published one and they are an admin allowed to change it.
        "editable": may_change(preset, user),
    }
    if collections:
        readable, hidden = preset_collections_for_user(user=user, preset=preset)
        data["collections"] = [{"id": str(c.pk), "name": c.name} for c in readable]
        data["collections_hidden"] = hidden
    return data


def prompt_to_dict(prompt: Prompt, *, user) -> dict:
    from chat.errors import InvalidPrompt
    from chat.selectors import may_change
    from chat.services.library import prompt_variables  # the one definition of a variable

    try:
        variables = prompt_variables(prompt.body)
    except InvalidPrompt:  # saved before the rule (or by hand): inserted as plain text
        variables = []
    return {
        "id": prompt.pk,
        "title": prompt.title,
        "body": prompt.body,
        "variables": variables,
        "mine": prompt.owner_id == user.pk,
        "editable": may_change(prompt, user),
    }


def folder_to_dict(folder: Folder) -> dict:
    data = {"id": folder.pk, "name": folder.name, "collapsed": folder.collapsed}
    count = getattr(folder, "conversation_count", None)  # read by folders_for_user
    if count is not None:
        data["conversations"] = count
    return data


def share_to_dict(share: ShareLink) -> dict:
    """A share link as its owner sees it in their list (the snapshot itself is not included)."""
    return {
        "id": share.pk,
        "title": share.title,
        "url": reverse("chat:shared", args=[share.token]),
        "conversation_id": None if share.conversation_id is None else str(share.conversation_id),
        "created_at": share.created_at.isoformat(),
    }
