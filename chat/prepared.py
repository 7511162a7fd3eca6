"""Reads on the path of every reply, composed by the ORM once per database connection.

The ORM spends 150-450 µs of CPU composing a read by a unique key that the database answers
in 10-30 (docs/performance.md, "Issue 21, eighth session"), on the one database thread every
socket's start waits for. A :class:`PreparedRead` keeps the read written as a QuerySet, asks
the ORM for its SQL once per connection, and on each call only binds the values, converted
by the fields they are compared with as the ORM converts them, then builds the rows as the
ORM's own iterable does (converters, ``select_related``, annotations). The tests check that
each prepared read's SQL and parameters are the ORM's for the same values, on both databases.

For reads of one row by a unique key on hot paths; anything else stays a plain QuerySet.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model, QuerySet, Value
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=Model)


class Param:
    """A value bound at each call, named by the keyword the call passes it as."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Param({self.name!r})"


class _Placeholders:
    """What ``build`` receives when the read is prepared: ``p.owner_id`` stands for the value."""

    def __getattr__(self, name: str) -> Value:
        return Value(Param(name))


class _Values:
    """What ``build`` receives to compose the same read the ORM's way (``PreparedRead.queryset``)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


class _Compiled:
    """A read's SQL for one connection, and what turns its row into the ORM's objects."""

    def __init__(self, queryset: QuerySet, connection):
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        self.sql = sql
        self.locks = bool(queryset.query.select_for_update) and connection.features.has_select_for_update
        # (name, None) for a bound value, (None, value) for a constant of the read itself.
        self.slots = [(p.name, None) if isinstance(p, Param) else (None, p) for p in params]
        select, klass_info = compiler.select, compiler.klass_info
        self.converters = list(compiler.get_converters([column[0] for column in select]).items())
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        self.populators = get_related_populators(klass_info, select, connection.alias)
        self.annotations = list(compiler.annotation_col_map.items())


class PreparedRead(Generic[M]):
    """One row read by a unique key: ``build(p)`` returns the QuerySet, with ``p.<name>`` where
    each call's value goes; ``fields`` names, for each, the model field it is compared with.

        _BY_OWNER = PreparedRead(
            lambda p: Conversation.objects.filter(id=p.id, owner_id=p.owner_id),
            id=Conversation._meta.pk,
            owner_id=Conversation._meta.get_field("owner"),
        )
        conversation = _BY_OWNER.get(id=cid, owner_id=user.pk)  # or Conversation.DoesNotExist
    """

    def __init__(self, build: Callable[[Any], QuerySet[M]], **fields: Field):
        self.build = build
        self.fields = fields
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def queryset(self, **values) -> QuerySet[M]:
        """The same read composed by the ORM with ``values`` (what the tests compare against)."""
        return self.build(_Values(values))

    def compiled(self, connection) -> _Compiled:
        """The read's SQL for ``connection``, a wrapper from ``django.db.connections``. Composed
        on its first call there, which for a ``select_for_update`` read raises outside a
        transaction, as the ORM does."""
        compiled = self._compiled.get(connection)
        if compiled is None:
            compiled = self._compiled[connection] = _Compiled(self.build(_Placeholders()), connection)
        return compiled

    def params(self, connection, values: dict) -> list:
        return [
            value if name is None else self.fields[name].get_db_prep_value(values[name], connection, prepared=False)
            for name, value in self.compiled(connection).slots
        ]

    def get(self, **values) -> M:
        """The one row, as the ORM's ``get()`` returns it; ``DoesNotExist`` or
        ``MultipleObjectsReturned`` as it raises them."""
        connection = connections[DEFAULT_DB_ALIAS]
        compiled = self.compiled(connection)
        if compiled.locks and connection.get_autocommit():
            # The ORM's own check, made when it composes the read (here, only once).
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, self.params(connection, values))
            rows = cursor.fetchmany(2)
        model = compiled.model
        if len(rows) != 1:
            if not rows:
                raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
            raise model.MultipleObjectsReturned(f"get() returned more than one {model._meta.object_name}.")
        row = list(rows[0])
        for position, (converters, expression) in compiled.converters:
            value = row[position]
            for converter in converters:
                value = converter(value, expression, connection)
            row[position] = value
        obj = model.from_db(connection.alias, compiled.init_list, row[compiled.start : compiled.end])
        for populator in compiled.populators:
            populator.populate(row, obj)
        for name, position in compiled.annotations:
            setattr(obj, name, row[position])
        return obj
