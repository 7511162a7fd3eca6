"""Model grants: which models of which kind a member may call (T07).

A model is usable when it and its provider are enabled and it is granted to one of the
member's groups, or to no group at all (everyone). Every kind of call asks here, through
admission (chat.core.calls), and the pickers list from here, so what a member is offered and
what they may call are the same set.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from chat.errors import ModelUnavailable, NoProvider
from chat.models import ChatModel, ModelKind


def models_granted(*, user, kind: str = ModelKind.CHAT) -> QuerySet[ChatModel]:
    """Enabled models of ``kind`` on enabled providers that the member may use."""
    qs = ChatModel.objects.filter(enabled=True, provider__enabled=True, kind=kind).select_related("provider")
    # One query: the member's groups are a subquery, not a separate round trip.
    granted = ChatModel.groups.through.objects.filter(group__user=user).values("chatmodel_id")
    return qs.filter(Q(groups__isnull=True) | Q(pk__in=granted)).distinct().order_by("provider__name", "model_id")


def model_granted(*, user, model_id, kind: str = ModelKind.CHAT) -> ChatModel:
    """The member's chosen model of ``kind``, or the default one when ``model_id`` is empty.

    Ungranted, disabled and other-kind models are refused exactly like missing ones
    (ModelUnavailable); no usable model at all is NoProvider.
    """
    qs = models_granted(user=user, kind=kind)
    if model_id in (None, ""):
        model = (qs.filter(is_default=True).first() if kind == ModelKind.CHAT else None) or qs.first()
        if model is None:
            raise NoProvider()
        return model
    try:
        return qs.get(pk=int(model_id))
    except (ChatModel.DoesNotExist, TypeError, ValueError):
        raise ModelUnavailable() from None
