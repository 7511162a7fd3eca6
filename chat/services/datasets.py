"""Fine-tuning datasets: from marked conversations to checked examples and the JSONL sent.

An example is a conversation's current branch (the path from the root of its message tree to
its current leaf, chat.selectors.message_path), cleaned by :func:`example_messages`: blocked,
failed, unchecked and empty messages never go in, nor does the turn they belong to. The
validation (:func:`dataset_validate`) counts tokens with the base model's encoding and writes
the JSONL from the very examples it shows, with its SHA-256; an upload sends those bytes only
if the digest the admin saw is still the digest (chat.services.finetuning.dataset_upload).

Only conversations whose owner consented (``training_consent_at``) are ever read here
(:func:`candidates`, and again at every build), whatever the admin may otherwise read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import tokens
from chat.catalog import families
from chat.errors import BadRequest, NotFound
from chat.models import (
    ChatModel,
    Conversation,
    DatasetFormat,
    FineTuneDataset,
    FineTuneExample,
    Message,
    ModelKind,
)

# Never in an example: what moderation stopped or could not check, what failed, what is still being written.
NEVER = {Message.Status.BLOCKED, Message.Status.ERROR, Message.Status.UNCHECKED, Message.Status.STREAMING}
# "Only replies the member kept": a reply stopped or cut off is left out with its turn.
NOT_KEPT = {Message.Status.STOPPED, Message.Status.INTERRUPTED}
MILLION = Decimal(1_000_000)


def candidates(
    *,
    member_id=None,
    group_id=None,
    model_id=None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> QuerySet[Conversation]:
    """Conversations marked for training, filtered; never an unmarked one."""
    qs = Conversation.objects.filter(training_consent_at__isnull=False, current_leaf__isnull=False)
    if member_id:
        qs = qs.filter(owner_id=member_id)
    if group_id:
        qs = qs.filter(owner__groups__id=group_id)
    if model_id:
        qs = qs.filter(model_id=model_id)
    if date_from:
        qs = qs.filter(created_at__gte=_midnight(date_from))
    if date_to:
        qs = qs.filter(created_at__lt=_midnight(date_to + dt.timedelta(days=1)))
    return qs.select_related("owner").order_by("-created_at").distinct()


def _midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def dataset_create(
    *,
    admin,
    name: str,
    base_model_id,
    conversation_ids,
    system_prompt: str = "",
    kept_only: bool = True,
    format: str = DatasetFormat.CHAT,
    n_epochs: int = 3,
) -> FineTuneDataset:
    """A dataset of the picked conversations that are marked for training (others are ignored)."""
    base = ChatModel.objects.filter(pk=base_model_id, kind=ModelKind.CHAT).first()
    if base is None:
        raise BadRequest(_("Pick the base model to fine-tune."))
    if format not in DatasetFormat.values:
        raise BadRequest(_("Unknown dataset format."))
    if not 1 <= int(n_epochs) <= 50:
        raise BadRequest(_("Epochs must be between 1 and 50."))
    picked = list(candidates().filter(pk__in=list(conversation_ids)).values_list("pk", flat=True))
    if not picked:
        raise BadRequest(_("Pick at least one conversation marked for training."))
    with transaction.atomic():
        dataset = FineTuneDataset.objects.create(
            name=(name or "").strip()[:200] or _("Dataset"),
            base_model=base,
            system_prompt=system_prompt or "",
            kept_only=bool(kept_only),
            format=format,
            n_epochs=int(n_epochs),
            created_by=admin,
        )
        FineTuneExample.objects.bulk_create([FineTuneExample(dataset=dataset, conversation_id=pk) for pk in picked])
    return dataset


def dataset_exclude(*, dataset: FineTuneDataset, conversation_id) -> None:
    """Take a conversation out of a dataset not uploaded yet."""
    if dataset.uploaded_at is not None:
        raise BadRequest(_("This dataset was uploaded; make a new one to change it."))
    deleted, _rows = FineTuneExample.objects.filter(dataset=dataset, conversation_id=conversation_id).delete()
    if not deleted:
        raise NotFound(_("That conversation is not in this dataset."))


# --- examples (pure) ----------------------------------------------------------------------
def example_messages(path: list[Message], *, system_prompt: str, kept_only: bool) -> list[dict]:
    """The chat messages of one example from a branch, oldest first.

    A member's message that is left out takes the reply to it along, and a reply that is left
    out takes the member's message it answered: a turn goes in whole or not at all. A last
    message without a reply is dropped. ``system_prompt`` (the dataset's, else the
    conversation's own) comes first when there is one.
    """
    out: list[dict] = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    skip_reply = False
    for message in path:
        left_out = (
            message.status in NEVER
            or not message.content.strip()
            or (kept_only and message.role == Message.Role.ASSISTANT and message.status in NOT_KEPT)
        )
        if message.role == Message.Role.ASSISTANT:
            if left_out or skip_reply:
                if out and out[-1]["role"] == "user":
                    out.pop()
            else:
                out.append({"role": "assistant", "content": message.content})
            skip_reply = False
        elif message.role == Message.Role.USER:
            skip_reply = left_out
            if not left_out:
                out.append({"role": "user", "content": message.content})
        elif not left_out and not out:
            out.append({"role": "system", "content": message.content})
    while out and out[-1]["role"] != "assistant":
        out.pop()
    return out if any(m["role"] == "assistant" for m in out) else []


def roles_in_order(messages: list[dict]) -> bool:
    """An optional system message, then user and assistant alternating, ending with the assistant."""
    roles = [m["role"] for m in messages]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles or roles[-1] != "assistant":
        return False
    return all(role == ("user" if i % 2 == 0 else "assistant") for i, role in enumerate(roles))


def prompt_completion(messages: list[dict]) -> dict:
    """The legacy format: the conversation up to the last reply as the prompt, the reply as the completion."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{names[m['role']]}: {m['content']}" for m in messages[:-1]]
    return {"prompt": "\n\n".join([*lines, "Assistant:"]), "completion": " " + messages[-1]["content"]}


def example_tokens(messages: list[dict], fmt: str, encoding: str) -> int:
    """Tokens of one example under ``encoding``: chat messages with their framing (chat.tokens),
    or the prompt and completion texts."""
    if fmt == DatasetFormat.PROMPT:
        pair = prompt_completion(messages)
        return tokens.count_tokens(pair["prompt"], encoding) + tokens.count_tokens(pair["completion"], encoding)
    per_message = tokens.TOKENS_PER_MESSAGE + tokens.ROLE_TOKENS
    return sum(per_message + tokens.count_tokens(m["content"], encoding) for m in messages) + tokens.REPLY_PRIMING


def example_line(messages: list[dict], fmt: str) -> str:
    record = prompt_completion(messages) if fmt == DatasetFormat.PROMPT else {"messages": messages}
    return json.dumps(record, ensure_ascii=False)


# --- validation ---------------------------------------------------------------------------
@dataclass
class Example:
    conversation_id: str
    title: str
    owner: str
    messages: list[dict]
    tokens: int
    over_limit: bool
    in_order: bool

    @property
    def usable(self) -> bool:
        return bool(self.messages)


@dataclass
class Validation:
    examples: list[Example]
    encoding: str
    limit: int
    epochs: int
    total_tokens: int = 0
    over_limit: int = 0
    out_of_order: int = 0
    empty: int = 0
    training_price: Decimal | None = None
    estimated_cost: Decimal | None = None
    jsonl: bytes = b""
    sha256: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(1 for example in self.examples if example.usable)

    @property
    def ok(self) -> bool:
        return not self.errors


def training_price(model: ChatModel) -> Decimal | None:
    """The base model's training price: the catalog's, else OpenAI's list price for its family."""
    if model.training_price_per_million is not None:
        return model.training_price_per_million
    tuning = families.fine_tuning_of(model.model_id)
    return tuning.training if tuning is not None else None


def dataset_conversations(dataset: FineTuneDataset) -> list[Conversation]:
    """The dataset's conversations whose owners still consent (checked at every build)."""
    ids = FineTuneExample.objects.filter(dataset=dataset).values("conversation_id")
    return list(
        Conversation.objects.filter(pk__in=ids, training_consent_at__isnull=False)
        .select_related("owner")
        .order_by("created_at", "id")
    )


def _current_paths(conversations: list[Conversation], batch: int = 200) -> dict:
    """Each conversation's current branch, oldest first: the messages of a batch of conversations
    in one query, each path walked up from its current leaf in memory (one query per 200
    conversations instead of one each; docs/fine-tuning.md, measured there)."""
    paths: dict = {}
    fields = ("id", "conversation_id", "parent_id", "role", "content", "status", "created_at")
    for start in range(0, len(conversations), batch):
        part = conversations[start : start + batch]
        rows: dict = {m.pk: m for m in Message.objects.filter(conversation_id__in=[c.pk for c in part]).only(*fields)}
        for conversation in part:
            path: list[Message] = []
            node = rows.get(conversation.current_leaf_id)
            while node is not None and len(path) <= len(rows):  # the bound: a cycle cannot loop forever
                path.append(node)
                node = rows.get(node.parent_id)
            paths[conversation.pk] = path[::-1]
    return paths


def dataset_validate(dataset: FineTuneDataset) -> Validation:
    """Every example as it will be sent, its tokens, the problems that block an upload, the cost."""
    base = dataset.base_model
    encoding = tokens.encoding_name_for_model(base.model_id)
    result = Validation(examples=[], encoding=encoding, limit=base.context_window, epochs=dataset.n_epochs)
    lines = []
    conversations = dataset_conversations(dataset)
    paths = _current_paths(conversations)
    for conversation in conversations:
        path = paths.get(conversation.pk, [])
        prompt = dataset.system_prompt or conversation.system_prompt
        messages = example_messages(path, system_prompt=prompt, kept_only=dataset.kept_only)
        count = example_tokens(messages, dataset.format, encoding) if messages else 0
        example = Example(
            conversation_id=str(conversation.pk),
            title=conversation.title or _("Untitled conversation"),
            owner=conversation.owner.get_username(),
            messages=messages,
            tokens=count,
            over_limit=count > base.context_window,
            in_order=roles_in_order(messages) if messages else True,
        )
        result.examples.append(example)
        if not messages:
            result.empty += 1
            continue
        result.total_tokens += count
        result.over_limit += example.over_limit
        result.out_of_order += not example.in_order
        lines.append(example_line(messages, dataset.format))
    result.jsonl = "".join(line + "\n" for line in lines).encode()
    result.sha256 = hashlib.sha256(result.jsonl).hexdigest()
    _judge(result, dataset)
    return result


def _judge(result: Validation, dataset: FineTuneDataset) -> None:
    minimum = settings.PARLEY_FINETUNE_MIN_EXAMPLES
    if result.count < minimum:
        result.errors.append(
            _("%(count)d examples; fine-tuning needs at least %(minimum)d.")
            % {"count": result.count, "minimum": minimum}
        )
    if result.over_limit:
        result.errors.append(
            _("%(count)d examples are longer than the base model's limit of %(limit)d tokens.")
            % {"count": result.over_limit, "limit": result.limit}
        )
    if result.out_of_order:
        result.errors.append(
            _("%(count)d examples have their roles out of order (user and assistant must alternate).")
            % {"count": result.out_of_order}
        )
    if len(result.jsonl) > settings.PARLEY_FINETUNE_MAX_FILE_BYTES:
        result.errors.append(
            _("The file would be %(size)d bytes; the limit is %(limit)d.")
            % {"size": len(result.jsonl), "limit": settings.PARLEY_FINETUNE_MAX_FILE_BYTES}
        )
    if result.empty:
        result.warnings.append(
            _("%(count)d conversations have no complete turn left after cleaning and are left out.")
            % {"count": result.empty}
        )
    result.training_price = training_price(dataset.base_model)
    if result.training_price is None:
        result.warnings.append(_("The base model has no training price: the cost cannot be estimated."))
    else:
        result.estimated_cost = result.training_price * result.total_tokens * dataset.n_epochs / MILLION
