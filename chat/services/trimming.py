"""History trimming: fit a conversation into a model's context window. Pure, no database.

The prompt is the system prompt, then the longest run of the newest history messages that
fits, then the member's new message. Whole messages are dropped from the oldest end; a
reply is never kept once the question it answered has been dropped (a reply on its own
would read to the model as something it said unprompted). The caller learns how many
messages were left out, so the interface can say so instead of losing context silently
(docs/architecture.md, promise 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.utils.translation import gettext as _

from chat.errors import ContextTooLong
from chat.tokens import REPLY_PRIMING, TOKENS_PER_MESSAGE

ASSISTANT = "assistant"


@dataclass(frozen=True)
class PromptMessage:
    """One chat message as the prompt will carry it.

    ``tokens`` is everything the message costs except the per-message framing
    (``TOKENS_PER_MESSAGE``), which trimming adds: its content's tokens plus its role's.
    """

    role: str
    content: str
    tokens: int


@dataclass(frozen=True)
class TrimResult:
    messages: list[PromptMessage]
    omitted: int  # history messages left out
    prompt_tokens: int  # what ``messages`` cost, including framing and the reply priming


def trim_history(
    *,
    system: PromptMessage | None,
    newest_first: Iterable[PromptMessage],
    newest: PromptMessage,
    budget: int,
    count_history: Callable[[], int],
) -> TrimResult:
    """Keep the system prompt, the newest message and as much recent history as ``budget`` allows.

    ``newest_first`` is the history, newest message first; it is read only as far as the budget
    reaches (the prompt builder feeds it rows from a database cursor). Kept history is a
    contiguous suffix of the history: the longest one that fits whose first message is not an
    assistant reply cut off from its question (a history that starts with a reply is kept whole
    when everything fits, since nothing was dropped before it). ``count_history`` is asked for
    the length of the whole history only when some of it was left out, to say how much.

    Raises ContextTooLong (detail ``needed`` and ``budget``) when the system prompt and the
    newest message alone do not fit.
    """
    needed = fixed_cost(system=system, newest=newest, budget=budget)
    reader = _Reader(newest_first)
    kept, used = keep_newest(reader, room=budget - needed)
    omitted = 0 if reader.exhausted else count_history() - len(kept)
    messages = [system] if system is not None else []
    messages.extend(reversed(kept))
    messages.append(newest)
    return TrimResult(messages=messages, omitted=omitted, prompt_tokens=needed + used)


class _Reader:
    """An iterator that remembers whether it ran to the end."""

    def __init__(self, items: Iterable[PromptMessage]):
        self._items = iter(items)
        self.exhausted = False

    def __iter__(self) -> Iterator[PromptMessage]:
        return self

    def __next__(self) -> PromptMessage:
        try:
            return next(self._items)
        except StopIteration:
            self.exhausted = True
            raise


def fixed_cost(*, system: PromptMessage | None, newest: PromptMessage, budget: int) -> int:
    """What the system prompt, the newest message and the reply priming cost; refused over ``budget``."""
    needed = REPLY_PRIMING + newest.tokens + TOKENS_PER_MESSAGE
    if system is not None:
        needed += system.tokens + TOKENS_PER_MESSAGE
    if needed > budget:
        raise ContextTooLong(
            _(
                "The system prompt and this message need %(needed)s tokens, but only %(budget)s tokens "
                "of the model's context window are left for the prompt once the reply is reserved. "
                "Shorten the message or the system prompt, lower the maximum reply length, "
                "or pick a model with a larger context window."
            )
            % {"needed": needed, "budget": budget},
            needed=needed,
            budget=budget,
        )
    return needed


def keep_newest(newest_first: Iterable[PromptMessage], *, room: int) -> tuple[list[PromptMessage], int]:
    """The history messages to keep, newest first, and what they cost, within ``room`` tokens.

    Consumes ``newest_first`` only until the first message that does not fit (the cost of
    a suffix only grows with its length), so a caller can feed it rows straight from a
    database cursor and stop reading there. O(kept).
    """
    kept: list[PromptMessage] = []
    used = 0
    dropped = False
    for message in newest_first:
        cost = message.tokens + TOKENS_PER_MESSAGE
        if used + cost > room:
            dropped = True
            break
        used += cost
        kept.append(message)
    if dropped:
        # A kept reply whose question was dropped goes too (and a run of such replies).
        while kept and kept[-1].role == ASSISTANT:
            used -= kept.pop().tokens + TOKENS_PER_MESSAGE
    return kept, used
