"""Collections in the console: an admin makes one, or shares a member's with groups.

Sharing is the admin's: members keep their collections private, and an admin picks the groups
whose members may read one and use it. Admins see files' names and states, never their text.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from chat.models import Collection, Document
from chat.services.collections import collections_files_delete


class DocumentInline(admin.TabularInline):
    model = Document
    fields = ("name", "kind", "size", "pages", "status", "error_code", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False  # files are uploaded by the collection's owner on the Collections page


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "shared_with", "files", "updated_at")
    list_filter = ("groups",)
    search_fields = ("name", "owner__username")
    filter_horizontal = ("groups",)
    fields = ("name", "owner", "groups", "created_at", "updated_at")
    inlines = [DocumentInline]

    def get_readonly_fields(self, request, obj=None):
        # The owner is whoever made it: the admin adding one here, or the member.
        return ("owner", "created_at", "updated_at")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .prefetch_related("groups")
            .annotate(file_count=Count("documents"))
        )

    @admin.display(description=_("files"), ordering="file_count")
    def files(self, obj):
        return obj.file_count

    @admin.display(description=_("shared with"))
    def shared_with(self, obj):
        return ", ".join(g.name for g in obj.groups.all()) or _("private")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        collections_files_delete(Collection.objects.filter(pk=obj.pk))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        collections_files_delete(queryset)
        super().delete_queryset(request, queryset)
