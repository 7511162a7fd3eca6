"""Model grants: which models of which kind a member may call (T07).

A model is usable when it and its provider are enabled and it is granted to one of the
member's groups, or to no group at all (everyone). Every kind of call asks here, through
admission (chat.core.calls), and the pickers list from here, so what a member is offered and
what they may call are the same set.

:func:`model_granted`, asked at the start of every reply, reads a per-process copy of the
catalog (the enabled models with their providers and allowed groups) and of the members'
groups instead of querying the database each time (issue 21). The copy is valid for one
version of the catalog: any change an admin makes through Django (a model or provider saved
or deleted, a grant added or removed, a member added to or removed from a group, a group
deleted, the admin's enable and disable actions) bumps a version key in the shared cache, at
once and again when the change commits, so every worker process reloads before its next
check; a revoked grant is never used after the change has committed. Writes that bypass
Django (raw SQL) are picked up within ``_MAX_AGE`` seconds, as is a change made by another
process when there is no shared cache (no ``REDIS_URL``: the in-memory cache is per process);
a refusal is always checked against the database once, so a model or grant added elsewhere
is usable at once.

The copy holds the rows' stored values, the provider key encrypted as in the database (T24,
T26); each call gets fresh model instances, and the key is decrypted into an endpoint just
before a call, as before.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q, QuerySet
from django.db.models.signals import m2m_changed, post_delete, post_save

from chat.errors import ModelUnavailable, NoProvider
from chat.models import ChatModel, ModelKind, Provider

_VERSION_KEY = "parley:grants:version"
_MAX_AGE = 10.0  # seconds: the bound for writes no signal sees
_MAX_MEMBERS = 10_000  # members whose groups a process keeps


def models_granted(*, user, kind: str = ModelKind.CHAT) -> QuerySet[ChatModel]:
    """Enabled models of ``kind`` on enabled providers that the member may use."""
    qs = ChatModel.objects.filter(enabled=True, provider__enabled=True, kind=kind).select_related("provider")
    # One query: the member's groups are a subquery, not a separate round trip.
    granted = ChatModel.groups.through.objects.filter(group__user=user).values("chatmodel_id")
    return qs.filter(Q(groups__isnull=True) | Q(pk__in=granted)).distinct().order_by("provider__name", "model_id")


def model_granted(*, user, model_id, kind: str = ModelKind.CHAT) -> ChatModel:
    """The member's chosen model of ``kind``, or the default one when ``model_id`` is empty.

    Ungranted, disabled and other-kind models are refused exactly like missing ones
    (ModelUnavailable); no usable model at all is NoProvider. The same set as
    :func:`models_granted`, read from the process's copy of the catalog.
    """
    try:
        return _granted_in(_catalog(), user, model_id, kind)
    except (ModelUnavailable, NoProvider):
        # A refusal is checked against the database once before it is given: the copy may be
        # older than a model or grant *added* by another process that had no shared cache to
        # tell this one (the embedded default: the in-memory cache is per process; a model
        # added with ``manage.py shell`` would otherwise be offered by the pickers, which read
        # the database, and refused here for up to _MAX_AGE). Only refusals pay for it.
        return _granted_in(_reload(), user, model_id, kind)


def granted_copies(*, user_id: int, kind: str, recheck: bool = True) -> list[Granted]:
    """The models of ``kind`` the member may use, from the process's copy of the catalog, in
    the order of :func:`models_granted` (provider name, model id); each one's
    ``instance()`` is a fresh ChatModel.

    An empty answer is checked against the database once, as :func:`model_granted` checks a
    refusal, unless ``recheck`` is False: for a caller to whom "none" is an answer rather than
    a refusal, asked often (whether search by meaning is available, for every finished turn
    and sidebar search: chat.services.search), which may then miss a model added by another
    process without a shared cache for up to ``_MAX_AGE`` seconds.
    """
    rows = _catalog().granted(user_id, kind)
    if not rows and recheck:
        rows = _reload().granted(user_id, kind)
    return rows


def _granted_in(catalog: _Catalog, user, model_id, kind: str) -> ChatModel:
    rows = catalog.granted(user.pk, kind)
    if model_id in (None, ""):
        row = (next((r for r in rows if r.is_default), None) if kind == ModelKind.CHAT else None) or (
            rows[0] if rows else None
        )
        if row is None:
            raise NoProvider()
        return row.instance()
    try:
        wanted = int(model_id)
    except (TypeError, ValueError):
        raise ModelUnavailable() from None
    for row in rows:
        if row.pk == wanted:
            return row.instance()
    raise ModelUnavailable()


# --- the per-process copy -------------------------------------------------------------------------
_MODEL_FIELDS = tuple(f.attname for f in ChatModel._meta.concrete_fields)
_PROVIDER_FIELDS = tuple(f.attname for f in Provider._meta.concrete_fields)


@dataclass(frozen=True)
class Granted:
    """One enabled model on an enabled provider, as stored (the key still encrypted)."""

    pk: int
    model_id: str
    kind: str
    is_default: bool
    groups: frozenset[int]  # empty: every member
    model: tuple
    provider: tuple

    def instance(self) -> ChatModel:
        """A fresh ChatModel with its Provider, so no caller shares an instance with another."""
        model = ChatModel.from_db(DEFAULT_DB_ALIAS, _MODEL_FIELDS, _copied(self.model))
        model.provider = Provider.from_db(DEFAULT_DB_ALIAS, _PROVIDER_FIELDS, _copied(self.provider))
        return model


def _copied(values: tuple) -> list:
    return [copy.deepcopy(v) if isinstance(v, dict | list) else v for v in values]


@dataclass
class _Catalog:
    version: object
    loaded_at: float
    by_kind: dict[str, tuple[Granted, ...]]
    members: OrderedDict[int, frozenset[int]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def granted(self, user_id: int, kind: str) -> list[Granted]:
        rows = self.by_kind.get(kind, ())
        if not any(r.groups for r in rows):
            return list(rows)
        mine = self._groups_of(user_id)
        return [r for r in rows if not r.groups or r.groups & mine]

    def _groups_of(self, user_id: int) -> frozenset[int]:
        with self.lock:
            mine = self.members.get(user_id)
            if mine is not None:
                self.members.move_to_end(user_id)
                return mine
        through = get_user_model().groups.through
        mine = frozenset(through.objects.filter(user_id=user_id).values_list("group_id", flat=True))
        with self.lock:
            self.members[user_id] = mine
            while len(self.members) > _MAX_MEMBERS:
                self.members.popitem(last=False)
        return mine


_current: _Catalog | None = None
_load_lock = threading.Lock()


def _load(version) -> _Catalog:
    models = (
        ChatModel.objects.filter(enabled=True, provider__enabled=True)
        .select_related("provider")
        .order_by("provider__name", "model_id")
    )
    groups: dict[int, set[int]] = {}
    for model_pk, group_pk in ChatModel.groups.through.objects.values_list("chatmodel_id", "group_id"):
        groups.setdefault(model_pk, set()).add(group_pk)
    by_kind: dict[str, list[Granted]] = {}
    for m in models:
        by_kind.setdefault(m.kind, []).append(
            Granted(
                pk=m.pk,
                model_id=m.model_id,
                kind=m.kind,
                is_default=m.is_default,
                groups=frozenset(groups.get(m.pk, ())),
                model=tuple(getattr(m, name) for name in _MODEL_FIELDS),
                provider=tuple(getattr(m.provider, name) for name in _PROVIDER_FIELDS),
            )
        )
    return _Catalog(version, time.monotonic(), {k: tuple(v) for k, v in by_kind.items()})


def _catalog() -> _Catalog:
    global _current
    version = cache.get(_VERSION_KEY)
    current = _current
    if current is not None and current.version == version and time.monotonic() - current.loaded_at < _MAX_AGE:
        return current
    with _load_lock:
        current = _current
        if current is None or current.version != version or time.monotonic() - current.loaded_at >= _MAX_AGE:
            current = _current = _load(version)
    return current


def _reload() -> _Catalog:
    global _current
    with _load_lock:
        _current = _load(cache.get(_VERSION_KEY))
        return _current


def _bump() -> None:
    global _current
    _current = None
    cache.set(_VERSION_KEY, time.time_ns(), timeout=None)


def catalog_changed(**_kwargs) -> None:
    """Make every process reload the catalog before its next check: now, and again when the
    current transaction commits (a process that reloaded in between read the rows as they were
    before the commit)."""
    _bump()
    transaction.on_commit(_bump)


def _member_groups_changed(*, action: str, **_kwargs) -> None:
    if action.startswith("post_"):
        catalog_changed()


def forget() -> None:
    """Drop this process's copy (tests: a database rolled back under an unchanged version)."""
    global _current
    _current = None


def connect_signals() -> None:
    """Called from ChatConfig.ready: every change to the catalog or to who may use it."""
    for sender in (ChatModel, Provider):
        post_save.connect(catalog_changed, sender=sender, dispatch_uid=f"parley-grants-save-{sender.__name__}")
        post_delete.connect(catalog_changed, sender=sender, dispatch_uid=f"parley-grants-delete-{sender.__name__}")
    post_delete.connect(catalog_changed, sender=Group, dispatch_uid="parley-grants-delete-group")
    for through, uid in ((ChatModel.groups.through, "model"), (get_user_model().groups.through, "member")):
        m2m_changed.connect(_member_groups_changed, sender=through, dispatch_uid=f"parley-grants-{uid}-groups")
