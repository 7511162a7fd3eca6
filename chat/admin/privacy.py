"""Members' words stay private from admins unless the deployment opts in.

``PARLEY_ADMIN_CAN_READ_CONVERSATIONS`` (default false) decides whether the console shows
message text. Beyond the conversation page itself, Django's delete confirmation lists every
cascaded row by its string form, and a message's string form is its text; this mixin keeps
that page to the objects being deleted plus the per-model counts.
"""

from __future__ import annotations

from django.conf import settings


def admins_can_read_conversations() -> bool:
    return settings.PARLEY_ADMIN_CAN_READ_CONVERSATIONS


class PrivateDeletionSummaryMixin:
    def get_deleted_objects(self, objs, request):
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        if not admins_can_read_conversations():
            # Top-level entries are the selected objects; nested lists are what cascades.
            to_delete = [item for item in to_delete if not isinstance(item, list)]
        return to_delete, model_count, perms_needed, protected
