"""The member API in the console: every member's tokens (see, revoke) and who may use the API."""

from __future__ import annotations

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from chat.models import ApiPolicy, ApiToken
from chat.services.api_tokens import api_token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by their members (or ``manage.py api_token``); admins see and revoke them.
    The secret is never stored, so it cannot be shown here."""

    list_display = ("name", "user", "hint", "created_at", "expires_at", "last_used_at", "last_used_ip", "revoked")
    list_filter = ("revoked", ("user", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "hint")
    fields = (
        "name",
        "user",
        "hint",
        "created_at",
        "expires_at",
        "allowed_models",
        "save_conversations",
        "revoked",
        "revoked_at",
        "last_used_at",
        "last_used_ip",
    )
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Viewable only; revoking is the action below (a change permission it checks itself).
        return False

    @admin.action(description=_("Revoke the selected API tokens"), permissions=["revoke"])
    def revoke(self, request, queryset):
        tokens = list(queryset.filter(revoked=False))
        for token in tokens:
            api_token_revoke(token=token)
        self.message_user(
            request,
            ngettext("%(count)d token revoked.", "%(count)d tokens revoked.", len(tokens)) % {"count": len(tokens)},
            messages.SUCCESS,
        )

    def has_revoke_permission(self, request):
        return request.user.has_perm("chat.change_apitoken")


@admin.register(ApiPolicy)
class ApiPolicyAdmin(admin.ModelAdmin):
    """One row: whether members may use the API, and which groups (PARLEY_API_ENABLED=false
    turns it off for everyone whatever this says)."""

    fields = ("enabled", "groups")
    filter_horizontal = ("groups",)

    def has_add_permission(self, request):
        return not ApiPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # One policy: the list is its form.
        return redirect("admin:chat_apipolicy_change", ApiPolicy.current().pk)
