"""Starting a turn: admit the member's message, save it, then check every rule, then begin a reply.

A message is first admitted against the member's rates (requests, and bytes of text a minute):
one refused there is not saved, so no flood of messages can grow the database without bound.
An admitted message is committed before any other rule can refuse the reply, so nothing the
member typed is lost; a refused reply leaves the message saved and says why. The rules that
must hold across concurrent requests (one reply per conversation, concurrent replies per
member, the budget reservation) run in one transaction that locks the conversation row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import tokens
from chat.core.calls import Admission, Units, call_admit
from chat.core.grants import model_granted
from chat.core.moderation import GateInput, gate_blocklist
from chat.core.rate import message_admit
from chat.errors import BadRequest, Busy, NoProvider, ParleyError, TooManyReplies
from chat.models import Citation, Conversation, Message, ModelKind
from chat.prepared import PreparedInsert, PreparedUpdate
from chat.selectors import (
    conversation_for_user,
    message_for_user,
    path_ids,
    preset_collections_for_user,
    replies_streaming,
)
from chat.services.collections import collections_use
from chat.services.conversations import conversation_create
from chat.services.documents import documents_attach
from chat.services.prompt import Prompt, prompt_build, replayed_above_reply
from chat.services.vision import images_attach, message_images, vision_check

CLIENT_ID_MAX = 64


class MessageTooLong(ParleyError):
    code = "message_too_long"


class NothingToRegenerate(ParleyError):
    code = "nothing_to_regenerate"


@dataclass(frozen=True)
class SavedTurn:
    conversation: Conversation
    message: Message
    created_conversation: bool
    duplicate: bool
    # A new chat from a preset: how many of its collections the member may not read, so were
    # not applied (the member is told, chat.transport.consumer).
    collections_skipped: int = 0


@dataclass(frozen=True)
class ReplyPlan:
    conversation: Conversation
    question: Message
    reply: Message
    prompt: Prompt
    admission: Admission
    # The blocklist's verdict on the question, found in the same database call (the first
    # check of the moderation gate, which the reply task then applies before any model call).
    blocklist_hits: list[str] | None = None
    # The rest of the turn's input that the gate checks with the question (system prompt, the
    # previous message, earlier unchecked ones) and which of it the blocklist hit.
    gate: GateInput = GateInput()
    blocklist_where: str = ""
    # Every answer of the turn, ``reply`` first: more than one when the conversation asks for
    # several (``n``); they are siblings, written by one upstream request.
    others: tuple[Message, ...] = ()

    @property
    def replies(self) -> tuple[Message, ...]:
        return (self.reply, *self.others)


# Every turn saves the member's message and its reply, and makes the reply the branch's leaf:
# composed once (chat/prepared.py).
_NEW_MESSAGE = PreparedInsert(Message)
_REPLY_LEAF = PreparedUpdate(
    lambda p: (
        Conversation.objects.filter(pk=p.pk),
        {"updated_at": p.now, "current_leaf": p.leaf_id, "choosing": p.choosing},
    ),
    pk=Conversation._meta.pk,
    now=Conversation._meta.get_field("updated_at"),
    leaf_id=Conversation._meta.get_field("current_leaf"),
    choosing=Conversation._meta.get_field("choosing"),
)
# A follow-up's message made the leaf, if the leaf is still the one it was read with (_append).
_APPENDED = PreparedUpdate(
    lambda p: (
        Conversation.objects.filter(pk=p.pk, current_leaf_id=p.expected),
        {"updated_at": p.now, "current_leaf": p.leaf_id, "choosing": False},
    ),
    pk=Conversation._meta.pk,
    expected=Conversation._meta.get_field("current_leaf"),
    now=Conversation._meta.get_field("updated_at"),
    leaf_id=Conversation._meta.get_field("current_leaf"),
)


def _validate_content(content) -> str:
    if not isinstance(content, str):
        raise BadRequest(_("The message must be text."), code="bad_frame")
    if len(content) > settings.PARLEY_MAX_MESSAGE_CHARS:
        raise MessageTooLong(
            _("This message is %(length)s characters long; the limit is %(limit)s.")
            % {"length": len(content), "limit": settings.PARLEY_MAX_MESSAGE_CHARS}
        )
    if not content.strip():
        raise BadRequest(_("The message is empty."), code="bad_frame")
    return content


def _validate_client_id(client_id) -> None:
    if not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX:
        raise BadRequest(_("Every message needs a client id."), code="bad_frame")


def _encoding_for(conversation: Conversation) -> str:
    return tokens.encoding_name_for_model(conversation.model.model_id if conversation.model else "")


def _set_content(message: Message, content: str, encoding: str) -> None:
    message.content = content
    message.token_count = tokens.count_tokens(content, encoding)
    message.token_encoding = encoding


def message_save(
    *,
    user,
    conversation_id,
    client_id,
    content,
    model_id=None,
    chat_settings=None,
    fresh_user=False,
    document_ids=None,
    preset_id=None,
    collection_ids=None,
    image_ids=None,
) -> SavedTurn:
    """Save the member's message (creating the conversation if ``conversation_id`` is None).

    ``fresh_user``: ``user`` was just read from the database (the consumer's session check), so
    its chat defaults need not be read again.
    """
    content = _validate_content(content)
    _validate_client_id(client_id)
    if conversation_id is None:
        title = title_fallback(content)
        message_id = uuid.uuid4()
        # No savepoint of its own inside turn_start's transaction: any error here undoes the
        # whole turn, as nothing of it is kept without the message.
        with transaction.atomic(savepoint=False):
            try:
                conversation = conversation_create(
                    user=user,
                    title=title,
                    model_id=model_id,
                    settings=chat_settings,
                    fresh_user=fresh_user,
                    first_message_id=message_id,
                    preset_id=preset_id,
                )
            except NoProvider:
                # Keep the message even when no model is configured yet: it is saved, and the
                # reply is refused with ``no_provider`` by reply_begin.
                conversation = Conversation.objects.create(owner=user, title=title, current_leaf_id=message_id)
            message = _user_message(conversation, client_id, content)
            message.id = message_id
            # The conversation already names it as its leaf (checked when this commits).
            _NEW_MESSAGE.insert(message)
            conversation.current_leaf = message
            documents_attach(user=user, conversation=conversation, message=message, document_ids=document_ids)
            skipped = _preset_collections_use(user=user, conversation=conversation)
            collections_use(user=user, conversation=conversation, collection_ids=collection_ids)
            images_attach(user=user, conversation=conversation, message=message, image_ids=image_ids)
        return SavedTurn(conversation, message, created_conversation=True, duplicate=False, collections_skipped=skipped)
    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    message = _user_message(conversation, client_id, content)
    try:
        with transaction.atomic():
            _append(conversation, message)
            documents_attach(user=user, conversation=conversation, message=message, document_ids=document_ids)
            collections_use(user=user, conversation=conversation, collection_ids=collection_ids)
            images_attach(user=user, conversation=conversation, message=message, image_ids=image_ids)
    except IntegrityError:
        # This client id was saved already (a resend after a reconnect, or the same frame
        # racing in from another socket): that message is the one, and nothing is added.
        existing = conversation.messages.filter(client_id=client_id).first()
        if existing is None:
            raise
        return SavedTurn(conversation, existing, created_conversation=False, duplicate=True)
    return SavedTurn(conversation, message, created_conversation=False, duplicate=False)


def _preset_collections_use(*, user, conversation: Conversation) -> int:
    """A chat started from a preset searches the preset's collections the member may read,
    exactly as if picked in the composer (collections_use); answers how many others the preset
    names, which are skipped (a collection not shared with the member stays unread)."""
    preset = conversation.preset if conversation.preset_id is not None else None
    if preset is None:
        return 0
    readable, skipped = preset_collections_for_user(user=user, preset=preset)
    collections_use(user=user, conversation=conversation, collection_ids=[str(c.pk) for c in readable])
    return skipped


def _append(conversation: Conversation, message: Message) -> None:
    """Save ``message`` at the end of the current branch and make it the branch's leaf.

    The leaf read with the conversation is assumed to be still current, and the update
    checks it: only when another message got in between is the row locked and the leaf read
    again (no extra query in the usual case).
    """
    expected = conversation.current_leaf_id
    message.parent_id = expected
    _NEW_MESSAGE.insert(message)
    rows = Conversation.objects.filter(pk=conversation.pk)
    changes = {"updated_at": message.created_at, "current_leaf": message, "choosing": False}
    if expected is not None:  # the usual case: composed once (a bound None would match nothing)
        appended = _APPENDED.run(pk=conversation.pk, expected=expected, now=message.created_at, leaf_id=message.pk)
    else:
        appended = rows.filter(current_leaf_id=None).update(**changes)
    if not appended:
        leaf = rows.select_for_update().values_list("current_leaf_id", flat=True).first()
        Message.objects.filter(pk=message.pk).update(parent_id=leaf)
        message.parent_id = leaf
        rows.update(**changes)
    conversation.current_leaf_id = message.pk
    conversation.choosing = False


def _user_message(conversation: Conversation, client_id: str, content: str) -> Message:
    message = Message(conversation=conversation, role=Message.Role.USER, client_id=client_id)
    _set_content(message, content, _encoding_for(conversation))
    return message


@dataclass(frozen=True)
class TurnStart:
    saved: SavedTurn
    plan: ReplyPlan | None  # None for a duplicate, or when the reply was refused
    refusal: ParleyError | None  # why the reply was refused; the message is saved regardless


def turn_start(
    *,
    user,
    conversation_id,
    client_id,
    content,
    model_id=None,
    chat_settings=None,
    document_ids=None,
    collection_ids=None,
    image_ids=None,
    query_vector=None,
    preset_id=None,
) -> TurnStart:
    """Save the member's message, then begin its reply: one call, so one trip to the database
    thread before the upstream request (docs/performance.md). ``user`` must be freshly read.

    Errors about the message itself (empty, too long, not found) and a message over the
    member's rates raise before anything is saved; a reply refused by a later rule (budget,
    busy...) is returned, with the message saved, and any other error while beginning the
    reply is raised once the message is committed. ``query_vector``: the question's embedding
    for retrieval, computed by the caller before this trip (documents.question_vector), never
    here: an upstream call inside the database thread would hold every other socket's queries.
    """
    content = _validate_content(content)
    _validate_client_id(client_id)
    try:
        message_admit(user=user, size=len(content.encode()))
    except ParleyError:
        # A resend of a message saved before (a reconnect) is no new message: it is answered
        # as the duplicate it is, however busy the member has been since.
        resent = _saved_already(user=user, conversation_id=conversation_id, client_id=client_id)
        if resent is None:
            raise
        return TurnStart(resent, None, None)
    failure = None
    # The message and the reply's start commit together: one commit per turn, where a commit
    # on PostgreSQL waits for its write-ahead log to reach the disk while every other socket's
    # start waits for the database thread (docs/performance.md). The reply's part runs in a
    # savepoint, so a refusal or a failure undoes only it and the message still commits.
    with transaction.atomic():
        saved = message_save(
            user=user,
            conversation_id=conversation_id,
            client_id=client_id,
            content=content,
            model_id=model_id,
            chat_settings=chat_settings,
            fresh_user=True,
            document_ids=document_ids,
            preset_id=preset_id,
            collection_ids=collection_ids,
            image_ids=image_ids,
        )
        if saved.duplicate:
            return TurnStart(saved, None, None)
        # A conversation created just now had its model checked for this member a moment ago.
        checked = saved.conversation.model if saved.created_conversation else None
        try:
            with transaction.atomic():
                plan = reply_begin(
                    conversation=saved.conversation,
                    question=saved.message,
                    user=user,
                    model=checked,
                    admitted=True,
                    first_turn=saved.created_conversation,
                    locked=True,  # message_save's update of its leaf, in this transaction
                    query_vector=query_vector,
                    # A message saved without images has none to read back (one statement fewer).
                    images=None if image_ids else [],
                )
        except ParleyError as exc:
            exc.detail.setdefault("message_id", str(saved.message.id))
            return TurnStart(saved, None, exc)
        except Exception as exc:  # noqa: BLE001 - raised again once the message is committed
            failure = exc
    if failure is not None:
        raise failure
    return TurnStart(saved, plan, None)


def _saved_already(*, user, conversation_id, client_id) -> SavedTurn | None:
    if conversation_id is None:
        return None
    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    message = conversation.messages.filter(client_id=client_id).first()
    if message is None:
        return None
    return SavedTurn(conversation, message, created_conversation=False, duplicate=True)


def title_fallback(content: str) -> str:
    words = content.split()
    title = " ".join(words[:8])
    return (title[:80] + "…") if len(title) > 80 or len(words) > 8 else title


def reply_begin(
    *,
    conversation: Conversation,
    question: Message,
    user=None,
    model=None,
    admitted: bool = False,
    first_turn: bool = False,
    locked: bool = False,
    query_vector=None,
    images: list | None = None,
) -> ReplyPlan:
    """Check the rules and create the streaming assistant message that will hold the reply.

    ``user`` is the conversation's owner when the caller has it loaded; ``model`` the
    conversation's model when the caller checked it for this member in the same call;
    ``admitted``: the request was counted against the member's rate already (turn_start).
    ``first_turn``: the conversation was created with ``question`` in this same call, so no
    earlier message can exist for the moderation gate to read. ``locked``: the caller's
    transaction holds the conversation's row already (turn_start saved the question in it and
    made it the leaf). ``images``: the question's images when the caller knows them (none, for
    a message it saved without any); read otherwise.
    """
    if user is None:
        user = conversation.owner
    if conversation.model_id is None:
        model = model_granted(user=user, model_id=None)  # raises NoProvider when there is none
        conversation.model = model
        conversation.save(update_fields=["model"])
    elif model is None or model.pk != conversation.model_id:
        # A model that was disabled or ungranted since the conversation began is refused (T07).
        model = model_granted(user=user, model_id=conversation.model_id)
    # Images go to a model that reads them, or the reply is refused before any call.
    if images is None:
        images = message_images(question)
    vision_check(model=model, images=images)
    # No savepoint of its own: called alone it is the transaction, and turn_start calls it in a
    # savepoint that also undoes the writes above.
    with transaction.atomic(savepoint=False):
        if not (first_turn or locked):
            # Lock the conversation row: two sends racing into one conversation serialize here.
            # One created in this same call has no other sender yet: its id is not out; one
            # whose question was saved in this transaction was locked by that update.
            Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        # The member's replies in progress, and whether one is in this conversation: one query.
        in_flight, here = replies_streaming(owner_id=user.pk, conversation_id=conversation.pk)
        if here:
            raise Busy()
        if in_flight >= settings.PARLEY_MAX_CONCURRENT_REPLIES:
            raise TooManyReplies(
                _("You already have %(count)s replies in progress; the limit is %(limit)s.")
                % {"count": in_flight, "limit": settings.PARLEY_MAX_CONCURRENT_REPLIES}
            )
        conversation.model = model
        prompt = prompt_build(conversation=conversation, newest=question, query_vector=query_vector, images=images)
        now = timezone.now()
        count = prompt.payload.get("n", 1)
        replies = [
            Message(
                conversation=conversation,
                parent=question,
                choice=index,
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model,
                model_name=model.label,
                omitted_messages=prompt.omitted,
                passages=len(prompt.sources.chunks),
                omitted_passages=prompt.sources.omitted,
                replayed_above=replayed_above_reply(prompt, question),
                # The prompt as built; the provider's own count replaces it when the reply ends.
                # Several answers are one request: its usage (the prompt once, every answer's
                # tokens) is recorded on the first, so the others carry none of their own.
                prompt_tokens=prompt.prompt_tokens if index == 0 else None,
                created_at=now,
                updated_at=now,
                heartbeat_at=now,
            )
            for index in range(count)
        ]
        if count == 1:
            _NEW_MESSAGE.insert(replies[0])
        else:
            Message.objects.bulk_create(replies)
        reply = replies[0]
        # The model-call core: the rate and the budget, reserved in this transaction so that a
        # refusal leaves no reply behind (the grant was checked above, in this same trip).
        # Several answers are one request whose output is ``n`` replies: n times the reservation.
        admission = call_admit(
            user=user,
            kind=ModelKind.CHAT,
            estimate=Units(input_tokens=prompt.prompt_tokens, output_tokens=prompt.reply_tokens * count),
            purpose="reply",
            model=model,
            granted=True,
            # A new message was counted against the rate before it was saved (turn_start).
            rate=not admitted,
            conversation_id=conversation.pk,
            message=reply,
        )
        if prompt.sources.chunks:  # the numbers [1], [2] of the reply open these passages
            Citation.objects.bulk_create(
                [Citation(message=reply, number=n, chunk=c) for n, c in enumerate(prompt.sources.chunks, start=1)]
            )
        # The first answer is the branch's leaf; with several, the member picks (``choosing``).
        _REPLY_LEAF.run(pk=conversation.pk, now=now, leaf_id=reply.pk, choosing=count > 1)
        conversation.current_leaf_id = reply.pk
        conversation.choosing = count > 1
    gate = (
        GateInput(system_prompt=conversation.system_prompt or "")
        if first_turn
        else _gate_input(conversation, question, prompt.earlier_questions)
    )
    if settings.PARLEY_MODERATE_DOCUMENTS and prompt.sources.chunks:
        gate = replace(gate, documents="\n\n".join(chunk.text for chunk in prompt.sources.chunks))
    hits, where = gate_blocklist(question.content, gate)
    return ReplyPlan(
        conversation=conversation,
        question=question,
        reply=reply,
        prompt=prompt,
        admission=admission,
        blocklist_hits=hits,
        gate=gate,
        blocklist_where=where,
        others=tuple(replies[1:]),
    )


UNCHECKED_RECHECKED = 20  # earlier unchecked messages the gate checks again with a new turn


def _gate_input(conversation: Conversation, question: Message, earlier=None) -> GateInput:
    """The text besides ``question`` that this turn sends a model, for the moderation gate: the
    earlier messages are those of its branch (the path to its parent). ``earlier``: the
    member's messages on that path, nearest first, as (id, status, content), when the prompt's
    walk read all of them (Prompt.earlier_questions); else they are read here, in two queries."""
    if earlier is not None:
        complete = (content for _key, status, content in earlier if status == Message.Status.COMPLETE)
        oldest_first = reversed(earlier)
        return GateInput(
            system_prompt=conversation.system_prompt or "",
            previous=next(complete, ""),
            unchecked=tuple(
                # Ids as the selectors give them back (a UUID, or SQLite's hex text).
                (str(uuid.UUID(str(key))), content)
                for key, status, content in oldest_first
                if status == Message.Status.UNCHECKED
            )[:UNCHECKED_RECHECKED],
        )
    if question.parent_id is None:
        earlier = Message.objects.none()
    else:
        earlier = conversation.messages.filter(role=Message.Role.USER, id__in=path_ids(question.parent_id))
    previous = (
        earlier.filter(status=Message.Status.COMPLETE).order_by("-created_at").values_list("content", flat=True).first()
    )
    unchecked = earlier.filter(status=Message.Status.UNCHECKED).order_by("created_at")[:UNCHECKED_RECHECKED]
    return GateInput(
        system_prompt=conversation.system_prompt or "",
        previous=previous or "",
        unchecked=tuple((str(pk), content) for pk, content in unchecked.values_list("pk", "content")),
    )


def _refuse_while_streaming(conversation: Conversation) -> None:
    # One reply at a time per conversation, whichever branch it is on.
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise Busy()


def regenerate_prepare(*, user, conversation_id, message_id=None) -> tuple[Conversation, Message]:
    """The question to answer again: the parent of the reply ``message_id`` (the current
    leaf's by default), or the user message ``message_id`` itself. Nothing is removed: the new
    reply is a sibling of the old ones (reply_begin makes it the current leaf)."""
    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    if message_id is None:
        if conversation.current_leaf_id is None:
            raise NothingToRegenerate(_("There is no message to answer yet."))
        message_id = conversation.current_leaf_id
    target = message_for_user(user=user, conversation=conversation, message_id=message_id)
    question = target if target.role == Message.Role.USER else target.parent
    if question is None or question.role != Message.Role.USER:
        raise NothingToRegenerate(_("There is no message to answer yet."))
    question.conversation = conversation
    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        _refuse_while_streaming(conversation)
        if question.status in (Message.Status.BLOCKED, Message.Status.UNCHECKED):
            # Moderation runs again on the same text; start from a clean slate.
            question.status = Message.Status.COMPLETE
            question.moderation_categories = []
            question.save(update_fields=["status", "moderation_categories"])
    return conversation, question


def edit_prepare(*, user, conversation_id, message_id, content) -> tuple[Conversation, Message]:
    """Save ``content`` as a new version of the user message ``message_id`` (a sibling under
    the same parent, which becomes the current leaf); the old version and its branch stay."""
    content = _validate_content(content)
    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    original = message_for_user(user=user, conversation=conversation, message_id=message_id)
    if original.role != Message.Role.USER:
        raise NothingToRegenerate(_("Only your own messages can be edited."))
    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        _refuse_while_streaming(conversation)
        question = Message(conversation=conversation, role=Message.Role.USER, parent_id=original.parent_id)
        _set_content(question, content, _encoding_for(conversation))
        question.save()
        Conversation.objects.filter(pk=conversation.pk).update(
            current_leaf=question, choosing=False, updated_at=question.created_at
        )
        conversation.current_leaf_id = question.pk
        conversation.choosing = False
    return conversation, question
