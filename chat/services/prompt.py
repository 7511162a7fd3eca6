"""Building the prompt for a reply: history replay with token-budget trimming.

The prompt is the conversation's system prompt, its usable history in order, and the
member's new message, trimmed to the model's context window minus the tokens reserved for
the reply (issue 3). Token counts are read from each message's stored ``token_count``, so
the prompt of a 10,000-message conversation is built without tokenizing old messages.

The history is the path from the root of the conversation's tree to the new message (the
branch the member sees), read newest first by walking up the parents
(chat.selectors.walk_up) only as far as the budget reaches (trimming.trim_history stops
there); then the rest of the branch is counted by one more walk that reads no bodies. A
conversation that fits takes one query; a trimmed one a page or two more plus the count. Reading all 10,000
bodies to send 1,000 of them would cost more than everything else together
(bench/prompt_build.py measures it).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

from django.conf import settings

from chat import tokens
from chat.catalog import families
from chat.core.calls import caller_pseudonym
from chat.errors import NoProvider
from chat.models import Conversation, Message
from chat.selectors import SETTLED, count_up, walk_up
from chat.services.sources import Sources, sources_pick
from chat.services.trimming import PromptMessage, fixed_cost, trim_history
from chat.services.vision import IMAGE_TOKENS, image_parts

# Sampling parameters copied into the request only when the conversation sets them, so the
# provider's own defaults apply otherwise (and models that reject some of them still work).
SAMPLING_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_REPLAYED = [Message.Role.USER, Message.Role.ASSISTANT]
_REPLAYED_STATUSES = [Message.Status.COMPLETE, Message.Status.STOPPED]
# Rows in the first page read while trimming walks back from the newest message; each
# further page is twice as large, so a long history takes a handful of queries.
_FIRST_PAGE = 200


@dataclass(frozen=True)
class Prompt:
    # Body for POST /chat/completions without ``stream``/``stream_options`` (chat/upstream/client.py adds them).
    payload: dict
    prompt_tokens: int  # what the messages cost, framing and reply priming included
    reply_tokens: int  # the most the reply can cost: what budget_reserve must hold for it
    omitted: int  # history messages left out to fit the context window
    encoding: str = tokens.O200K  # the encoding counts were made in (for usage_estimate)
    sources: Sources = Sources()  # passages of the conversation's documents, numbered from 1
    history: int | None = None  # the history's whole length when it can be kept (Message.replayed_above)
    # The member's messages above the newest, nearest first, as (id, status, content) with the
    # id as the database gives it, when the walk read the whole branch: what the moderation gate
    # reads besides the newest (chat.services.turns), which then costs no query. None when
    # trimming stopped the walk.
    earlier_questions: tuple[tuple[object, str, str], ...] | None = None


def message_token_count(message: Message, encoding_name: str) -> int:
    """The token count of ``message.content`` under ``encoding_name``.

    The stored count is used when it was made with that encoding. Otherwise (the
    conversation switched to a model with another encoding, or the row predates counting)
    the content is counted once and the row updated, so it is never counted again.
    """
    if message.token_encoding == encoding_name:
        return message.token_count
    count = tokens.count_tokens(message.content, encoding_name)
    message.token_count = count
    message.token_encoding = encoding_name
    if message.pk is not None:
        Message.objects.filter(pk=message.pk).update(token_count=count, token_encoding=encoding_name)
    return count


@functools.lru_cache(maxsize=256)
def _system_tokens(text: str, encoding_name: str) -> int:
    # System prompts repeat on every turn of a conversation and are not stored per message,
    # so their counts are cached here instead.
    return tokens.count_tokens(text, encoding_name)


def _reply_reservation(conversation: Conversation, window: int) -> tuple[int, bool]:
    """Tokens the trimming keeps free for the reply, and whether the member chose that limit."""
    assert conversation.model is not None  # reply_begin gives every replied conversation a model
    max_output = conversation.model.max_output_tokens or window
    if conversation.max_tokens:
        # The member's choice, but never above what the model can write: a larger value
        # would be refused upstream.
        return min(conversation.max_tokens, max_output), True
    # No limit chosen: reserve the model's maximum output, capped at half the window so a
    # model whose maximum output equals its window (gpt-4: 8,192 and 8,192) still leaves
    # room for a prompt.
    return min(max_output, window // 2), False


def _replayed(role: str, status: str, count: int, counted_with: str) -> bool:
    """Whether a history message is replayed (chat.selectors.count_up counts the same way; a
    message never counted is counted here and left out when it is read and found empty)."""
    return role in _REPLAYED and status in _REPLAYED_STATUSES and not (count == 0 and counted_with)


class _History:
    """Reads the history newest first, for ``trim_history``, stopping where it stops.

    The history is the branch above ``newest`` (its parent, the parent's parent...) less what
    is not replayed: blocked, failed, interrupted and still-streaming messages, and empty ones
    (a reply stopped before its first token carries nothing, and some compatible servers
    refuse empty content; a stored count of 0 means empty, a message never counted is checked
    when it is read). Rows come from walks up the branch in pages that double in size, each
    starting where the last stopped (chat.selectors.walk_up), so the database reads only the
    rows the prompt can hold plus part of one page. Messages counted under another encoding
    (the conversation switched model families) are counted again as they are read;
    ``save_counts`` stores those counts so it happens once.
    """

    def __init__(self, conversation: Conversation, newest: Message, encoding: str):
        self.conversation_id = conversation.pk
        self.encoding = encoding
        self.top = newest.parent_id
        self.next_id = newest.parent_id  # where the next page's walk starts
        self.replayed = 0  # replayed messages read so far
        self.settled = True  # whether every message read has a status that no longer changes
        self.recounted: list[Message] = []
        self.questions: list[tuple[object, str, str]] = []  # Prompt.earlier_questions, as read
        self.whole = False  # whether the walk reached the top of the branch

    def newest_first(self):
        size = _FIRST_PAGE
        while self.next_id is not None:
            page = walk_up(conversation_id=self.conversation_id, message_id=self.next_id, limit=size)
            self.next_id = page[-1][1] if len(page) == size else None
            for key, _parent, role, status, count, counted_with, content in page:
                self.settled = self.settled and status in SETTLED
                if role == Message.Role.USER:
                    self.questions.append((key, status, content))
                if not _replayed(role, status, count, counted_with):
                    continue
                self.replayed += 1
                if counted_with != self.encoding:
                    count = tokens.count_tokens(content, self.encoding)
                    recounted = Message(id=uuid.UUID(str(key)), token_count=count, token_encoding=self.encoding)
                    self.recounted.append(recounted)
                    if not content:
                        continue
                yield PromptMessage(role=role, content=content, tokens=count + tokens.ROLE_TOKENS)
            size *= 2
        self.whole = True
        self.length = self.replayed if self.settled else None

    length: int | None = None  # the history's length, once known and settled

    def count(self) -> int:
        """The whole history's length (asked only when trimming left something out): one walk
        down from the top that stops at the nearest reply which knows its count."""
        total, settled = count_up(
            conversation_id=self.conversation_id, message_id=self.top, roles=_REPLAYED, statuses=_REPLAYED_STATUSES
        )
        self.length = total if settled else None
        return total

    def save_counts(self) -> None:
        if self.recounted:
            Message.objects.bulk_update(self.recounted, ["token_count", "token_encoding"], batch_size=500)


def replayed_above_reply(prompt: Prompt, question: Message) -> int | None:
    """``Message.replayed_above`` for a reply to ``question`` built from ``prompt``: the history
    above the question and the question itself, when all of it is settled; else None."""
    if prompt.history is None or question.status not in SETTLED:
        return None
    replayed = _replayed(question.role, question.status, question.token_count, question.token_encoding)
    return prompt.history + int(replayed)


def prompt_build(*, conversation: Conversation, newest: Message, query_vector=None, images=()) -> Prompt:
    """The request body for the reply to ``newest`` (a saved user message), trimmed to fit.

    Raises NoProvider when the conversation has no model, ContextTooLong when the system
    prompt and ``newest`` alone do not fit.
    """
    model = conversation.model
    if model is None:
        raise NoProvider()
    encoding = tokens.encoding_name_for_model(model.model_id)
    window = model.context_window
    reserved, chosen = _reply_reservation(conversation, window)

    system = None
    if conversation.system_prompt:
        system = PromptMessage(
            role=Message.Role.SYSTEM,
            content=conversation.system_prompt,
            tokens=_system_tokens(conversation.system_prompt, encoding) + tokens.ROLE_TOKENS,
        )
    latest = PromptMessage(
        role=Message.Role.USER,
        content=newest.content,
        tokens=message_token_count(newest, encoding) + tokens.ROLE_TOKENS + IMAGE_TOKENS * len(images),
    )
    # --- documents (chat/services/sources.py): numbered passages after the system prompt ---
    sources = Sources()
    if conversation.has_documents:
        room = window - reserved - fixed_cost(system=system, newest=latest, budget=window - reserved)
        room = min(room - tokens.TOKENS_PER_MESSAGE, settings.PARLEY_DOCUMENT_CONTEXT_TOKENS)
        sources = sources_pick(
            conversation=conversation, question=newest.content, vector=query_vector, room=room, encoding=encoding
        )
        if sources.block:
            content = (system.content + "\n\n" if system else "") + sources.block
            system = PromptMessage(
                role=Message.Role.SYSTEM,
                content=content,
                tokens=tokens.count_tokens(content, encoding) + tokens.ROLE_TOKENS,
            )
    # --- end documents ---
    history = _History(conversation, newest, encoding)
    trimmed = trim_history(
        system=system,
        newest_first=history.newest_first(),
        newest=latest,
        budget=window - reserved,
        # Asked only when something was left out, to say how much (a walk that stops at a reply
        # which stored the history's length).
        count_history=history.count,
    )
    history.save_counts()
    messages, omitted, prompt_tokens = trimmed.messages, trimmed.omitted, trimmed.prompt_tokens

    if chosen:
        reply_tokens = reserved
    else:
        # No limit chosen: the reply may be as long as the model's maximum output or the rest
        # of the window, whichever is less.
        reply_tokens = min(model.max_output_tokens or window, window - prompt_tokens)

    payload: dict = {
        "model": model.model_id,
        "messages": [{"role": str(m.role), "content": m.content} for m in messages],
    }
    if images:
        # The newest message's images, after its text (reply_begin checked the model reads them).
        newest_body = payload["messages"][-1]
        newest_body["content"] = [{"type": "text", "text": newest_body["content"]}, *image_parts(list(images))]
    for name in SAMPLING_FIELDS:
        value = getattr(conversation, name)
        if value is not None:
            payload[name] = value
    # The reply's reservation is always sent as its limit (issue 20): a server that is not
    # told one (llama.cpp, vLLM) writes until the context is full, past the member's budget.
    # The reply task also stops a stream that goes on past it (chat.tokens.ReplyCap).
    payload[families.output_limit_field(model.model_id)] = reply_tokens
    stop = [sequence for sequence in conversation.stop or [] if sequence][:4]
    if stop:
        payload["stop"] = stop
    if conversation.n and conversation.n > 1:
        payload["n"] = conversation.n
    if conversation.seed is not None:
        payload["seed"] = conversation.seed
    if conversation.response_format:
        payload["response_format"] = {"type": conversation.response_format}
    if conversation.logit_bias:
        # Words become token ids in the model's own encoding (settings refuse logit_bias for a
        # model whose encoding Parley does not know, so one is known here).
        bias = tokens.bias_token_ids(conversation.logit_bias, model.model_id)
        if bias:
            payload["logit_bias"] = bias
    payload["user"] = caller_pseudonym(conversation.owner_id)
    return Prompt(
        payload=payload,
        prompt_tokens=prompt_tokens,
        reply_tokens=reply_tokens,
        omitted=omitted,
        encoding=encoding,
        sources=sources,
        history=history.length,
        earlier_questions=tuple(history.questions) if history.whole else None,
    )
