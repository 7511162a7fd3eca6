"""The moderation gate: every user message passes it before any model sees it (issue 3).

Two checks, in order:

1. the admin-managed blocklist (:class:`chat.models.BlocklistEntry`): words and regular
   expressions, matched case-insensitively on the forms of :mod:`chat.core.textforms` (NFKC,
   marks and invisible characters removed, the UTS #39 confusables skeleton, case folded), so
   fullwidth letters, homoglyphs from other scripts, combining marks, variation selectors,
   zero-width characters and Hangul fillers do not hide a word; a word also matches with
   punctuation between its letters and inside a run of spaced-out letters;
2. the provider's ``POST /moderations`` when it has ``use_moderation`` on, or the
   ``moderation_provider`` it names. It is sent the text as written and, when it differs, the
   text as a reader sees it (:func:`chat.core.textforms.readable`).

A flagged message is saved as ``blocked`` with its categories, a :class:`ModerationEvent`
records who, what and which check, and :class:`MessageBlocked` tells the member which
categories; the caller then makes no completion call. When the moderation call itself fails
the gate refuses (fail closed) unless ``PARLEY_MODERATION_FAIL_OPEN`` lets the message through,
recorded as unchecked.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import unicodedata
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat.core import textforms
from chat.core.calls import Units, model_call
from chat.errors import MessageBlocked, ModerationUnavailable, UpstreamError
from chat.models import BlocklistEntry, Message, ModerationEvent, Provider, UsageKind
from chat.upstream import client

logger = logging.getLogger(__name__)

# The compiled blocklist is shared by every request of a process. Saving or deleting an entry
# bumps a version in the shared cache (Redis in a team deployment), so every worker process
# recompiles on its next message; the age bound covers edits that bypass signals
# (``QuerySet.update``) and a flushed cache.
_VERSION_KEY = "parley:blocklist:version"
# Longer texts are read for the provider in a worker thread, not on the event loop (a text of
# 100,000 characters in mixed scripts takes tens of milliseconds).
READABLE_INLINE_CHARS = 4_000
_MAX_AGE = 60.0
_SEPARATORS = re.compile(r"[\W_]+")
_WORD = re.compile(r"\w+")
# Scripts written without spaces between words: a word there has no word boundary to match.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")

# Readable names for the categories of OpenAI's moderation models; blocklist categories are
# the admin's own words and are shown as written.
CATEGORY_LABELS = {
    "harassment": gettext_lazy("harassment"),
    "harassment/threatening": gettext_lazy("threatening harassment"),
    "hate": gettext_lazy("hate"),
    "hate/threatening": gettext_lazy("threatening hate"),
    "illicit": gettext_lazy("illicit activity"),
    "illicit/violent": gettext_lazy("violent illicit activity"),
    "self-harm": gettext_lazy("self-harm"),
    "self-harm/intent": gettext_lazy("self-harm intent"),
    "self-harm/instructions": gettext_lazy("self-harm instructions"),
    "sexual": gettext_lazy("sexual content"),
    "sexual/minors": gettext_lazy("sexual content involving minors"),
    "violence": gettext_lazy("violence"),
    "violence/graphic": gettext_lazy("graphic violence"),
    "blocklist": gettext_lazy("blocked words"),
}


@dataclass(frozen=True)
class _Compiled:
    """The enabled entries, each with its position, made ready to match.

    Most entries are one word: the text's words are looked up in ``words`` at once, rather
    than each entry searching the text (a regex per entry cost 6 ms for a 100,000-character
    message and 50 entries; the lookup costs the same for any number of entries).
    """

    version: object
    loaded_at: float
    words: dict[str, list[tuple[int, str]]]  # a folded word -> its entries' (position, category)
    phrases: tuple[tuple[int, str, re.Pattern], ...]  # other words, with their edges
    regexes: tuple[tuple[int, str, re.Pattern], ...]  # the admin's regular expressions
    joined: tuple[tuple[int, str, str], ...]  # each word's letters, for runs of spaced-out letters

    @property
    def empty(self) -> bool:
        return not (self.words or self.phrases or self.regexes)


_compiled: _Compiled | None = None
_compile_lock = threading.Lock()


def _word_pattern(word: str) -> str:
    # \b would fail on words that start or end with punctuation ("c++"); look-arounds on \w
    # express "not inside a longer word" for any edge character.
    left = "" if _UNSPACED.match(word[0]) or not re.match(r"\w", word[0]) else r"(?<!\w)"
    right = "" if _UNSPACED.match(word[-1]) or not re.match(r"\w", word[-1]) else r"(?!\w)"
    return left + re.escape(word) + right


def _compile(version) -> _Compiled:
    words: dict[str, list[tuple[int, str]]] = {}
    phrases, regexes, joined = [], [], []
    entries = BlocklistEntry.objects.filter(enabled=True).values_list("pk", "pattern", "is_regex", "category")
    for position, (pk, pattern, is_regex, category) in enumerate(entries):
        category = (category or "blocklist").strip() or "blocklist"
        if is_regex:
            # Regexes are the admin's own syntax: normalized (fullwidth → ASCII) but not case
            # folded, which could change their meaning (\S → \s); IGNORECASE does the rest.
            try:
                regexes.append((position, category, re.compile(unicodedata.normalize("NFKC", pattern), re.IGNORECASE)))
            except re.error as exc:
                logger.warning("blocklist entry %s is not a valid regular expression and is skipped: %s", pk, exc)
            continue
        word = textforms.fold(pattern).strip()
        if not word:
            continue
        if _WORD.fullmatch(word) and not _UNSPACED.search(word):
            words.setdefault(word, []).append((position, category))
        else:
            phrases.append((position, category, re.compile(_word_pattern(word))))
        letters = _SEPARATORS.sub("", word)
        if letters:
            joined.append((position, category, letters))
    return _Compiled(version, time.monotonic(), words, tuple(phrases), tuple(regexes), tuple(joined))


def _rules() -> _Compiled:
    global _compiled
    version = cache.get(_VERSION_KEY)
    current = _compiled
    if current is not None and current.version == version and time.monotonic() - current.loaded_at < _MAX_AGE:
        return current
    with _compile_lock:
        current = _compiled
        if current is None or current.version != version or time.monotonic() - current.loaded_at >= _MAX_AGE:
            current = _compiled = _compile(version)
    return current


def blocklist_invalidate(**_kwargs) -> None:
    """Make every process recompile the blocklist before its next check."""
    global _compiled
    _compiled = None
    cache.set(_VERSION_KEY, time.time_ns(), timeout=None)


def connect_signals() -> None:
    """Called from ChatConfig.ready: entries saved or deleted anywhere take effect at once."""
    post_save.connect(blocklist_invalidate, sender=BlocklistEntry, dispatch_uid="parley-blocklist-save")
    post_delete.connect(blocklist_invalidate, sender=BlocklistEntry, dispatch_uid="parley-blocklist-delete")


def blocklist_match(text: str) -> list[str]:
    """The categories of the blocklist entries ``text`` hits, in entry order, each once.

    Words match the folded text, the folded text with punctuation between letters removed,
    and (anywhere inside them) its runs of spaced-out letters; regular expressions match the
    folded text and the text folded without the skeleton (:mod:`chat.core.textforms`).
    """
    rules = _rules()
    if rules.empty:
        return []
    folded = textforms.fold(text)
    unpunctuated, runs = textforms.variants(folded)
    readings = (folded,) if unpunctuated == folded else (folded, unpunctuated)
    plain = textforms.plain(text)
    regex_targets = (folded,) if plain == folded else (folded, plain)
    first: dict[str, int] = {}  # category -> the position of its first entry that hit

    def hit(position: int, category: str) -> None:
        if category not in first or position < first[category]:
            first[category] = position

    if rules.words:
        found = set()
        for reading in readings:
            found.update(_WORD.findall(reading))
        for word in found & rules.words.keys():
            for position, category in rules.words[word]:
                hit(position, category)
    for position, category, pattern in rules.phrases:
        if any(pattern.search(reading) for reading in readings):
            hit(position, category)
    for position, category, pattern in rules.regexes:
        if any(pattern.search(target) for target in regex_targets):
            hit(position, category)
    for position, category, letters in rules.joined:
        if any(letters in run for run in runs):
            hit(position, category)
    return sorted(first, key=first.__getitem__)


def category_label(category: str) -> str:
    return str(CATEGORY_LABELS.get(category, category))


# --- the gate -----------------------------------------------------------------------------
async def _moderation_endpoint(provider: Provider) -> client.Endpoint | None:
    """The endpoint whose /moderations checks messages for ``provider``, if any. Only a
    separate moderation provider is read from the database (a trip to its thread)."""
    if provider.moderation_provider_id:
        return await sync_to_async(_checker_endpoint)(provider.moderation_provider_id)
    if provider.use_moderation:
        return client.Endpoint.for_provider(provider)
    return None


def _checker_endpoint(checker_id) -> client.Endpoint:
    checker = Provider.objects.filter(pk=checker_id).first()
    if checker is None or not checker.enabled:
        raise UpstreamError(_("The moderation provider is disabled."), code="upstream_unavailable")
    return client.Endpoint.for_provider(checker)


def _record(message: Message, *, source: str, categories: list[str], detail: str = "", status=None) -> None:
    now = timezone.now()
    if status is not None:
        message.status = status
        message.moderation_categories = categories
        message.updated_at = now
        message.save(update_fields=["status", "moderation_categories", "updated_at"])
    elif source in (ModerationEvent.Source.UNCHECKED, ModerationEvent.Source.FAILED):
        # Not checked: kept out of every later prompt until a gate passes it (status UNCHECKED).
        message.moderation_unchecked = True
        message.status = Message.Status.UNCHECKED
        message.updated_at = now
        message.save(update_fields=["moderation_unchecked", "status", "updated_at"])
    owner_id = message.conversation.owner_id if message.conversation_id else None
    ModerationEvent.objects.create(
        user_id=owner_id,
        message=message,
        text=message.content,
        categories=categories,
        source=source,
        detail=detail,
        created_at=now,
    )


@dataclass(frozen=True)
class GateInput:
    """What one turn sends a model that a member wrote, for the gate to check together.

    ``system_prompt``: the conversation's, checked on every turn (it may have been set in a new
    chat's settings, by editing the conversation or in the member's defaults). ``previous``: the
    member's previous message, checked together with the new one so that text split across two
    messages is read whole (the policy in docs/security.md, "Moderation"). ``unchecked``: earlier
    messages the gate could not check when they were sent (ids and texts), replayed again only
    once this gate passes them.
    """

    system_prompt: str = ""
    previous: str = ""
    unchecked: tuple[tuple[str, str], ...] = ()
    # The document passages the turn's prompt carries, only when PARLEY_MODERATE_DOCUMENTS is on
    # (off by default: a member's files are data they chose to read, and checking every
    # passage of every turn costs a moderation call's worth of text; reply_begin fills it).
    documents: str = ""

    def texts(self, question: str) -> list[tuple[str, str]]:
        """(where, text) pairs to check, the question first."""
        found = [("message", question)]
        if self.previous:
            found.append(("message", f"{self.previous} {question}"))
        if self.system_prompt:
            found.append(("system_prompt", self.system_prompt))
        found.extend(("earlier", text) for _id, text in self.unchecked)
        if self.documents:
            found.append(("documents", self.documents))
        return found


_WHERE = {
    "message": gettext_lazy("This message was blocked by moderation: %(categories)s."),
    "system_prompt": gettext_lazy(
        "The conversation's system prompt was blocked by moderation: %(categories)s. Change it in the "
        "conversation's settings."
    ),
    "earlier": gettext_lazy(
        "An earlier message of this conversation that could not be checked when it was sent was blocked by "
        "moderation: %(categories)s."
    ),
    "documents": gettext_lazy(
        "A passage of this conversation's documents was blocked by moderation: %(categories)s. Remove the file, "
        "or ask about another part of it."
    ),
}


def gate_blocklist(question: str, gate: GateInput) -> tuple[list[str], str]:
    """The blocklist's verdict on every text of the turn: (categories, where), or ([], "")."""
    for where, text in gate.texts(question):
        hits = blocklist_match(text)
        if hits:
            return hits, where
    return [], ""


async def _block(message: Message, categories: list[str], source: str, where: str = "message") -> None:
    await sync_to_async(_record)(message, source=source, categories=categories, status=Message.Status.BLOCKED)
    labels = ", ".join(category_label(c) for c in categories)
    raise MessageBlocked(str(_WHERE[where]) % {"categories": labels}, categories=categories, where=where)


async def _as_read(texts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``texts`` and, after each, its readable form (textforms.readable) where that differs."""
    out = []
    for where, text in texts:
        if len(text) > READABLE_INLINE_CHARS:
            seen = await asyncio.to_thread(textforms.readable, text)
        else:
            seen = textforms.readable(text)
        out.append((where, text))
        if seen != text:
            out.append((where, seen))
    return out


def _passed(gate: GateInput) -> None:
    """Earlier unchecked messages passed this gate: they are replayed from the next turn on."""
    ids = [message_id for message_id, _text in gate.unchecked]
    Message.objects.filter(pk__in=ids, status=Message.Status.UNCHECKED).update(
        status=Message.Status.COMPLETE, moderation_unchecked=False, updated_at=timezone.now()
    )


async def _pass(gate: GateInput) -> None:
    """:func:`_passed`, with a trip to the database thread only when there is something to
    update: a trip waits behind every start queued there, and at 100 replies at once that
    held each reply's request to the provider until all 100 had started (performance.md)."""
    if gate.unchecked:
        await sync_to_async(_passed)(gate)


async def moderation_gate(
    *,
    message: Message,
    provider: Provider,
    blocklist_hits: list[str] | None = None,
    blocklist_where: str = "",
    gate: GateInput | None = None,
) -> None:
    """Let ``message`` (a member's, saved) and the rest of the turn's input through, or block it.

    ``gate``: the other text of the turn a model will read (system prompt, the previous
    message, earlier unchecked ones; see GateInput). ``blocklist_hits`` and ``blocklist_where``:
    the blocklist's verdict on all of it when the caller already has it (reply_begin finds it
    in its database call, saving the reply a trip to the database thread). Raises :class:`MessageBlocked` or
    :class:`ModerationUnavailable`; returns when the completion call may go ahead.
    """
    gate = gate or GateInput()
    where = blocklist_where
    if blocklist_hits is None:
        blocklist_hits, where = await sync_to_async(gate_blocklist)(message.content, gate)
    if blocklist_hits:
        await _block(message, blocklist_hits, ModerationEvent.Source.BLOCKLIST, where or "message")

    texts = gate.texts(message.content)
    try:
        endpoint = await _moderation_endpoint(provider)
        if endpoint is None:
            await _pass(gate)
            return
        # The provider's model reads as written; what a person sees goes too, where it differs.
        texts = await _as_read(texts)
        owner = get_user_model()(pk=message.conversation.owner_id)
        characters = sum(len(text) for _where, text in texts)
        # The check is a model call: recorded as usage of kind moderation (never refused for budget).
        async with model_call(
            user=owner,
            kind=UsageKind.MODERATION,
            estimate=Units(characters=characters),
            purpose="moderation",
            rate=False,
            endpoint=endpoint,
            conversation_id=message.conversation_id,
        ) as call:
            results = await client.moderate_each(endpoint, [text for _where, text in texts])
            call.usage = Units(characters=characters)
    except UpstreamError as exc:
        detail = f"{exc.code}: {exc.message}"
        if settings.PARLEY_MODERATION_FAIL_OPEN:
            logger.warning("moderation unavailable, message %s let through unchecked: %s", message.pk, exc.code)
            await sync_to_async(_record)(message, source=ModerationEvent.Source.UNCHECKED, categories=[], detail=detail)
            return
        logger.warning("moderation unavailable, message %s refused: %s", message.pk, exc.code)
        await sync_to_async(_record)(message, source=ModerationEvent.Source.FAILED, categories=[], detail=detail)
        raise ModerationUnavailable(reason=exc.code) from None
    for (where, _text), result in zip(texts, results, strict=True):
        if result.flagged:
            await _block(message, result.categories, ModerationEvent.Source.PROVIDER, where)
    await _pass(gate)


# --- the gate for text that is not a saved message (the member API) ------------------------
def _record_text(*, user_id, text: str, source: str, categories: list[str], detail: str = "") -> None:
    ModerationEvent.objects.create(
        user_id=user_id, message=None, text=text, categories=categories, source=source, detail=detail
    )


def moderation_text(texts: list[str]) -> str:
    """The one text :func:`moderation_check` checks for ``texts``."""
    return "\n\n".join(t for t in texts if t)


async def moderation_check(
    *, user, texts: list[str], provider: Provider, api_token_id=None, blocklist_hits: list[str] | None = None
) -> None:
    """The gate of :func:`moderation_gate` for ``texts`` that are not a saved message (a request
    to the member API): the blocklist, then the provider's /moderations; the same audit trail
    (a :class:`ModerationEvent` without a message) and the same fail-closed rule.

    ``blocklist_hits``: the blocklist's verdict on ``moderation_text(texts)`` when the caller
    already has it (found on the database thread with its other work).
    Raises :class:`MessageBlocked` naming the categories, or :class:`ModerationUnavailable`.
    """
    text = moderation_text(texts)
    if not text:
        return
    hits = blocklist_hits if blocklist_hits is not None else await sync_to_async(blocklist_match)(text)
    if hits:
        await sync_to_async(_record_text)(
            user_id=user.pk, text=text, source=ModerationEvent.Source.BLOCKLIST, categories=hits
        )
        raise _blocked(hits)
    try:
        endpoint = await _moderation_endpoint(provider)
        if endpoint is None:
            return
        async with model_call(
            user=user,
            kind=UsageKind.MODERATION,
            estimate=Units(characters=len(text)),
            purpose="moderation",
            rate=False,
            endpoint=endpoint,
            api_token_id=api_token_id,
        ) as call:
            result = await client.moderate(endpoint, text)
            call.usage = Units(characters=len(text))
    except UpstreamError as exc:
        detail = f"{exc.code}: {exc.message}"
        fail_open = settings.PARLEY_MODERATION_FAIL_OPEN
        source = ModerationEvent.Source.UNCHECKED if fail_open else ModerationEvent.Source.FAILED
        await sync_to_async(_record_text)(user_id=user.pk, text=text, source=source, categories=[], detail=detail)
        logger.warning("moderation unavailable for an API request of member %s: %s", user.pk, exc.code)
        if fail_open:
            return
        raise ModerationUnavailable(reason=exc.code) from None
    if result.flagged:
        await sync_to_async(_record_text)(
            user_id=user.pk, text=text, source=ModerationEvent.Source.PROVIDER, categories=result.categories
        )
        raise _blocked(result.categories)


def _blocked(categories: list[str]) -> MessageBlocked:
    labels = ", ".join(category_label(c) for c in categories)
    return MessageBlocked(
        _("This message was blocked by moderation: %(categories)s.") % {"categories": labels},
        categories=categories,
    )
