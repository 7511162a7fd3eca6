"""Reads on the path of every reply, composed by the ORM once per database connection.

The ORM spends 150-450 µs of CPU composing a read by a unique key that the database answers
in 10-30 (docs/performance.md, "Issue 21, eighth session"), on the one database thread every
socket's start waits for. A :class:`PreparedRead` keeps the read written as a QuerySet, asks
the ORM for its SQL once per connection, and on each call only binds the values, converted
by the fields they are compared with as the ORM converts them, then builds the rows as the
ORM's own iterable does (converters, ``select_related``, annotations). The tests check that
each prepared read's SQL and parameters are the ORM's for the same values, on both databases.

A :class:`PreparedUpdate` does the same for an ``update()`` of rows picked by a unique key,
and a :class:`PreparedInsert` for the INSERT of ``save()`` of a new row. For statements on
hot paths only; anything else stays a plain QuerySet. A value bound is
compared with ``=``: None there matches nothing (the ORM would write ``IS NULL``), so bind
only keys that are never null.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Field, Model, QuerySet, Value
from django.db.models.query import get_related_populators
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import InsertQuery, UpdateQuery
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=Model)


class Param:
    """A value bound at each call, named by the keyword the call passes it as; ``for_save``:
    written to a column (an UPDATE's SET), so converted as a save converts it."""

    __slots__ = ("name", "for_save")

    def __init__(self, name: str, for_save: bool = False):
        self.name = name
        self.for_save = for_save

    def __repr__(self) -> str:
        return f"Param({self.name!r})"


class _Placeholder(Value):
    """Where a call's value goes: typed by the field it is compared with or written to (so the
    SQL is the one the ORM writes for a value of that type), composed as a bare ``%s``.
    ``bare``: the whole new value of a column, which the ORM writes as ``%s`` even where, inside
    an expression, SQLite's money would be ``CAST(%s AS NUMERIC)``."""

    bare = False

    def as_sql(self, compiler, connection):
        return "%s", [Param(self.value, for_save=self.for_save)]

    def as_sqlite(self, compiler, connection, **extra_context):
        if self.bare:
            return self.as_sql(compiler, connection)
        return super().as_sqlite(compiler, connection, **extra_context)


class _Placeholders:
    """What ``build`` receives when the read is prepared: ``p.owner_id`` stands for the value."""

    def __init__(self, fields: dict):
        self._fields = fields

    def __getattr__(self, name: str) -> Value:
        return _Placeholder(name, output_field=self._fields[name])


class _Values:
    """What ``build`` receives to compose the same read the ORM's way (``PreparedRead.queryset``)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


class _Statement:
    """A statement's SQL for one connection and its parameters: a Param where a call's value
    goes, else a constant of the statement itself."""

    def __init__(self, sql: str, slots: list):
        self.sql = sql
        self.slots = slots


class _Compiled(_Statement):
    """A read's SQL for one connection, and what turns its row into the ORM's objects."""

    def __init__(self, queryset: QuerySet, connection):
        compiler = queryset.query.get_compiler(connection=connection)
        super().__init__(*compiler.as_sql())
        self.locks = bool(queryset.query.select_for_update) and connection.features.has_select_for_update
        select, klass_info = compiler.select, compiler.klass_info
        self.converters = list(compiler.get_converters([column[0] for column in select]).items())
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        self.populators = get_related_populators(klass_info, select, connection.alias)
        self.annotations = list(compiler.annotation_col_map.items())


class _PerConnection:
    """A statement composed once per database connection."""

    def __init__(self):
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _compose(self, connection) -> Any:
        raise NotImplementedError

    def compiled(self, connection) -> Any:
        """The statement for ``connection``, a wrapper from ``django.db.connections``, composed
        on its first call there."""
        compiled = self._compiled.get(connection)
        if compiled is None:
            compiled = self._compiled[connection] = self._compose(connection)
        return compiled


class _Prepared(_PerConnection):
    """A statement composed with values bound at each call: ``build(p)`` composes it with
    ``p.<name>`` where each call's value goes; ``fields`` names, for each, the model field it
    is compared with or written to."""

    def __init__(self, build: Callable[[Any], Any], **fields: Field):
        super().__init__()
        self.build = build
        self.fields = fields

    def params(self, connection, values: dict) -> list:
        return self._bind(self.compiled(connection), connection, values)

    def _bind(self, statement: _Statement, connection, values: dict) -> list:
        """The statement's parameters: each call's value converted by its field, as the ORM
        converts it there (a save's conversion for a value written, a lookup's for one compared)."""
        params = []
        for slot in statement.slots:
            if not isinstance(slot, Param):
                params.append(slot)
            elif slot.for_save:
                params.append(self.fields[slot.name].get_db_prep_save(values[slot.name], connection))
            else:
                params.append(self.fields[slot.name].get_db_prep_value(values[slot.name], connection, prepared=False))
        return params


class PreparedRead(_Prepared, Generic[M]):
    """One row read by a unique key: ``build(p)`` returns the QuerySet.

    _BY_OWNER = PreparedRead(
        lambda p: Conversation.objects.filter(id=p.id, owner_id=p.owner_id),
        id=Conversation._meta.pk,
        owner_id=Conversation._meta.get_field("owner"),
    )
    conversation = _BY_OWNER.get(id=cid, owner_id=user.pk)  # or Conversation.DoesNotExist
    """

    def __init__(self, build: Callable[[Any], QuerySet[M]], **fields: Field):
        super().__init__(build, **fields)

    def queryset(self, **values) -> QuerySet[M]:
        """The same read composed by the ORM with ``values`` (what the tests compare against)."""
        return self.build(_Values(values))

    def _compose(self, connection) -> _Compiled:
        # For a select_for_update read this raises outside a transaction, as the ORM does.
        return _Compiled(self.build(_Placeholders(self.fields)), connection)

    def get(self, **values) -> M:
        """The one row, as the ORM's ``get()`` returns it; ``DoesNotExist`` or
        ``MultipleObjectsReturned`` as it raises them."""
        connection = connections[DEFAULT_DB_ALIAS]
        compiled = self.compiled(connection)
        if compiled.locks and connection.get_autocommit():
            # The ORM's own check, made when it composes the read (here, only once).
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, self._bind(compiled, connection, values))
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


class PreparedUpdate(_Prepared):
    """An UPDATE of rows picked by a unique key: ``build(p)`` returns the QuerySet and the
    changes its ``update()`` would be given.

        _LEAF = PreparedUpdate(
            lambda p: (Conversation.objects.filter(pk=p.pk), {"current_leaf_id": p.leaf_id}),
            pk=Conversation._meta.pk,
            leaf_id=Conversation._meta.get_field("current_leaf"),
        )
        changed = _LEAF.run(pk=conversation.pk, leaf_id=reply.pk)  # rows changed, as update()
    """

    def __init__(self, build: Callable[[Any], tuple[QuerySet, dict]], **fields: Field):
        super().__init__(build, **fields)

    @staticmethod
    def _query(queryset: QuerySet, changes: dict):
        # What QuerySet.update() composes (its related updates are for inherited models: none).
        for value in changes.values():
            if isinstance(value, _Placeholder):
                value.bare = True
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(changes)
        query.annotations = {}
        return query

    def update_sql(self, connection, **values) -> tuple[str, tuple]:
        """The same UPDATE composed by the ORM with ``values`` (what the tests compare against)."""
        return self._query(*self.build(_Values(values))).get_compiler(connection=connection).as_sql()

    def _compose(self, connection) -> _Statement:
        query = self._query(*self.build(_Placeholders(self.fields)))
        if query.related_updates:
            raise ValueError("a prepared update changes one table")
        return _Statement(*query.get_compiler(connection=connection).as_sql())

    def run(self, **values) -> int:
        """Rows changed, as ``update()`` returns them."""
        connection = connections[DEFAULT_DB_ALIAS]
        statement = self.compiled(connection)
        with transaction.mark_for_rollback_on_error(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(statement.sql, self._bind(statement, connection, values))
            return cursor.rowcount


class _Insert:
    """An INSERT of one row for one connection: its SQL, the fields whose values it takes, in
    order, and what the database returns (an auto-increment key), with its converters."""

    def __init__(self, model: type[Model], connection):
        meta = model._meta
        # The fields a save of a new row writes: all (none is generated: PreparedInsert refuses
        # those), but an auto-increment key the database picks.
        self.fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
        self.returning = list(meta.db_returning_fields)
        query = InsertQuery(model)
        query.insert_values(self.fields, [model()])  # a row of plain values: one ``%s`` each
        compiler = query.get_compiler(connection=connection)
        compiler.returning_fields = self.returning
        [(self.sql, _params)] = compiler.as_sql()
        self.tail = tuple(compiler.returning_params)
        self.returns_columns = bool(self.returning) and connection.features.can_return_columns_from_insert
        columns = [field.get_col(meta.db_table) for field in self.returning]
        self.converters = list(compiler.get_converters(columns).items())


class PreparedInsert(_PerConnection, Generic[M]):
    """``save()`` of a new row of ``model``, with its INSERT composed once per connection.

    Each call does what the save does around the SQL: the related objects' keys, the
    ``pre_save`` and ``post_save`` signals, each field's ``pre_save`` (``auto_now_add``) and
    ``get_db_prep_save``, the auto-increment key read back, the instance marked saved. For a
    model of one table whose fields all take a plain ``%s`` (checked here); a row with an
    expression among its values, or an explicit key for an auto-increment one, is saved by
    the ORM instead.

        _NEW_MESSAGE = PreparedInsert(Message)
        _NEW_MESSAGE.insert(Message(conversation=conversation, role="user", content=text))
    """

    def __init__(self, model: type[M]):
        meta = model._meta
        if meta.parents or meta.proxy or meta.order_with_respect_to or meta.auto_created:
            raise ValueError(f"{meta.label}: a prepared insert writes one table of its own")
        for field in meta.local_concrete_fields:
            if field.generated or field.has_db_default() or hasattr(field, "get_placeholder"):
                raise ValueError(f"{meta.label}.{field.name} is not written as a plain value")
        super().__init__()
        self.model = model

    def _compose(self, connection) -> _Insert:
        return _Insert(self.model, connection)

    @staticmethod
    def _params(statement: _Insert, obj: M, connection) -> list:
        params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in statement.fields]
        params.extend(statement.tail)
        return params

    def insert(self, obj: M) -> M:
        """Save ``obj``, a new ``model`` instance, as ``obj.save(force_insert=True)`` does."""
        if type(obj) is not self.model or not obj._state.adding:
            raise ValueError(f"a new {self.model._meta.label} is expected")
        meta = self.model._meta
        if meta.auto_field is None and obj.pk is None:
            obj.pk = meta.pk.get_pk_value_on_save(obj)
        if (meta.auto_field is not None and obj.pk is not None) or any(
            hasattr(getattr(obj, field.attname), "resolve_expression") for field in meta.local_concrete_fields
        ):
            obj.save(force_insert=True)
            return obj
        obj._prepare_related_fields_for_save(operation_name="save")
        connection = connections[DEFAULT_DB_ALIAS]
        using = connection.alias
        pre_save.send(sender=self.model, instance=obj, raw=False, using=using, update_fields=None)
        statement = self.compiled(connection)
        with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
            cursor.execute(statement.sql, self._params(statement, obj, connection))
            if statement.returns_columns:
                row = connection.ops.fetch_returned_insert_columns(cursor, statement.tail)
            elif statement.returning:
                key = statement.returning[0]
                row = (connection.ops.last_insert_id(cursor, meta.db_table, key.column),)
            else:
                row = ()
        if row:
            values = list(row)
            for position, (converters, expression) in statement.converters:
                for converter in converters:
                    values[position] = converter(values[position], expression, connection)
            for value, field in zip(values, statement.returning, strict=True):
                setattr(obj, field.attname, value)
        obj._state.db = using
        obj._state.adding = False
        post_save.send(sender=self.model, instance=obj, created=True, update_fields=None, raw=False, using=using)
        return obj
