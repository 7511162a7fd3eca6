"""Members and invites in the operations console.

A member's role is one of two: *admin* (runs the deployment from this console: ``is_staff``
and ``is_superuser``) or *member* (chats). Budgets sit beside this month's usage, which the
changelist reads in the same query as the members (subqueries on UsageMonth, no N+1).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import Count, DecimalField, OuterRef, PositiveBigIntegerField, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Invite, OIDCIdentity, User
from chat.admin.privacy import PrivateDeletionSummaryMixin
from chat.models import UsageMonth, UsageRecord

ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"
ROLE_CHOICES = [(ROLE_MEMBER, _("Member: chats")), (ROLE_ADMIN, _("Admin: runs this console"))]
ROLE_HELP = _("Admins can change providers, keys, models, members and budgets.")


def _month_start():
    from chat.core.budget import month_start

    return month_start()


def _default_budgets() -> dict:
    from accounts.services import default_budgets

    return default_budgets()


class RoleFormMixin:
    """Maps the two roles onto Django's flags and keeps at least one active admin."""

    def _init_role(self):
        self.fields["role"].initial = ROLE_ADMIN if self.instance.is_staff else ROLE_MEMBER

    def _check_last_admin(self, data):
        instance = self.instance
        if not instance.pk or not (instance.is_superuser and instance.is_active):
            return
        stays_admin = data.get("role") == ROLE_ADMIN and data.get("is_active", instance.is_active)
        if stays_admin:
            return
        others = User.objects.filter(is_superuser=True, is_active=True).exclude(pk=instance.pk)
        if not others.exists():
            raise ValidationError(
                _("This is the only active admin. Make someone else an admin first, or nobody can run Parley.")
            )

    def _apply_role(self, user):
        is_admin = self.cleaned_data.get("role") == ROLE_ADMIN
        user.is_staff = user.is_superuser = is_admin
        return user


class MemberChangeForm(RoleFormMixin, UserChangeForm):
    role = forms.ChoiceField(label=_("role"), choices=ROLE_CHOICES, help_text=ROLE_HELP)

    class Meta(UserChangeForm.Meta):
        model = User
        fields = (
            "username",
            "password",
            "first_name",
            "last_name",
            "email",
            "is_active",
            "groups",
            "monthly_token_budget",
            "monthly_cost_budget",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_role()

    def clean(self):
        data = super().clean()
        self._check_last_admin(data)
        return data

    def save(self, commit=True):
        user = self._apply_role(super().save(commit=False))
        if commit:
            user.save()
            self.save_m2m()
        return user


class MemberCreationForm(RoleFormMixin, AdminUserCreationForm):
    role = forms.ChoiceField(label=_("role"), choices=ROLE_CHOICES, initial=ROLE_MEMBER, help_text=ROLE_HELP)

    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email", "monthly_token_budget", "monthly_cost_budget")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = _default_budgets()
        for name, value in defaults.items():
            if name in self.fields:
                self.fields[name].initial = value

    def save(self, commit=True):
        user = self._apply_role(super().save(commit=False))
        if commit:
            user.save()
            self.save_m2m()
        return user


def _usage_subquery(field: str, output_field):
    rows = UsageMonth.objects.filter(user=OuterRef("pk"), month=_month_start()).values(field)[:1]
    return Coalesce(Subquery(rows, output_field=output_field), Value(0), output_field=output_field)


def _tokens(value) -> str:
    return number_format(int(value), force_grouping=True)


def _money(value) -> str:
    amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return "$" + number_format(amount, decimal_pos=2, force_grouping=True)


class RoleFilter(admin.SimpleListFilter):
    title = _("role")
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return [(ROLE_ADMIN, _("admin")), (ROLE_MEMBER, _("member"))]

    def queryset(self, request, queryset):
        if self.value() == ROLE_ADMIN:
            return queryset.filter(is_staff=True)
        if self.value() == ROLE_MEMBER:
            return queryset.filter(is_staff=False)
        return queryset


@admin.action(description=_("Unlink single sign-on identities (next sign-in links again by verified email)"))
def unlink_identities(modeladmin, request, queryset):
    deleted, _counts = OIDCIdentity.objects.filter(user__in=queryset).delete()
    modeladmin.message_user(
        request,
        ngettext("%(n)d identity unlinked.", "%(n)d identities unlinked.", deleted) % {"n": deleted},
    )


@admin.action(description=_("Turn off two-factor sign-in (for a member who lost their phone and codes)"))
def reset_two_factor(modeladmin, request, queryset):
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.filter(user__in=queryset).delete()
    StaticDevice.objects.filter(user__in=queryset).delete()
    modeladmin.message_user(request, gettext("Two-factor sign-in is off for the selected members."))


@admin.action(description=_("Sign out everywhere (ends every session and open chat)"))
def sign_out_everywhere(modeladmin, request, queryset):
    from accounts.sessions import sessions_end_all

    members = list(queryset)
    for member in members:
        sessions_end_all(user=member, keep_request=request if member.pk == request.user.pk else None)
    modeladmin.message_user(
        request,
        ngettext("%(n)d member signed out everywhere.", "%(n)d members signed out everywhere.", len(members))
        % {"n": len(members)},
    )


@admin.register(User)
class MemberAdmin(PrivateDeletionSummaryMixin, DjangoUserAdmin):
    form = MemberChangeForm
    add_form = MemberCreationForm
    list_display = (
        "username",
        "full_name",
        "email",
        "role",
        "is_active",
        "tokens_this_month",
        "cost_this_month",
        "remaining",
        "last_login",
    )
    list_filter = (RoleFilter, "is_active", "groups")
    readonly_fields = ("usage_this_month", "remaining", "invite", "last_login", "date_joined", "sign_in_identities")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Personal info"), {"fields": ("first_name", "last_name", "email")}),
        (_("Role and access"), {"fields": ("role", "is_active", "groups")}),
        (
            _("Monthly budget"),
            {
                "fields": ("monthly_token_budget", "monthly_cost_budget", "usage_this_month", "remaining"),
                "description": _("Leave a budget blank for unlimited. Budgets reset on the 1st of each month (UTC)."),
            },
        ),
        (_("History"), {"fields": ("invite", "last_login", "date_joined", "sign_in_identities")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "usable_password", "password1", "password2", "role"),
            },
        ),
        (
            _("Monthly budget"),
            {
                "fields": ("monthly_token_budget", "monthly_cost_budget"),
                "description": _("Leave a budget blank for unlimited. The defaults come from the environment."),
            },
        ),
    )
    filter_horizontal = ("groups",)
    actions = [sign_out_everywhere, reset_two_factor, unlink_identities]

    def get_deleted_objects(self, objs, request):
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Usage records are read-only in the console (nobody deletes them one by one), but they
        # belong to their member and go with them.
        perms_needed.discard(UsageRecord._meta.verbose_name)
        return to_delete, model_count, perms_needed, protected

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _tokens_used=_usage_subquery("tokens_used", PositiveBigIntegerField()),
                _tokens_reserved=_usage_subquery("tokens_reserved", PositiveBigIntegerField()),
                _cost_used=_usage_subquery("cost_used", DecimalField(max_digits=14, decimal_places=6)),
                _cost_reserved=_usage_subquery("cost_reserved", DecimalField(max_digits=14, decimal_places=6)),
            )
        )

    @admin.display(description=_("name"), ordering="last_name")
    def full_name(self, obj: User) -> str:
        return obj.get_full_name()

    @admin.display(description=_("role"), ordering="is_staff")
    def role(self, obj: User) -> str:
        return gettext("admin") if obj.is_staff else gettext("member")

    @admin.display(description=_("tokens this month"), ordering="_tokens_used")
    def tokens_this_month(self, obj: User) -> str:
        used = _tokens(obj._tokens_used)
        if obj.monthly_token_budget is None:
            return used
        return f"{used} / {_tokens(obj.monthly_token_budget)}"

    @admin.display(description=_("cost this month"), ordering="_cost_used")
    def cost_this_month(self, obj: User) -> str:
        used = _money(obj._cost_used)
        if obj.monthly_cost_budget is None:
            return used
        return f"{used} / {_money(obj.monthly_cost_budget)}"

    @admin.display(description=_("remaining this month"))
    def remaining(self, obj: User) -> str:
        """What is left after used and in-flight (reserved) usage, as quota enforcement sees it."""
        if obj.pk is None:
            return ""
        parts = []
        if obj.monthly_token_budget is not None:
            left = max(obj.monthly_token_budget - obj._tokens_used - obj._tokens_reserved, 0)
            parts.append(gettext("%(n)s tokens") % {"n": _tokens(left)})
        if obj.monthly_cost_budget is not None:
            left = max(obj.monthly_cost_budget - obj._cost_used - obj._cost_reserved, Decimal(0))
            parts.append(_money(left))
        return ", ".join(parts) if parts else gettext("unlimited")

    @admin.display(description=_("single sign-on identities"))
    def sign_in_identities(self, obj: User):
        identities = list(obj.oidc_identities.order_by("created_at")) if obj.pk else []
        if not identities:
            return gettext("none")
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 - a constant
            "{} · {} · {}",
            ((i.provider_slug, i.issuer, i.subject) for i in identities),
        )

    @admin.display(description=_("usage this month"))
    def usage_this_month(self, obj: User) -> str:
        if obj.pk is None:
            return ""
        text = gettext("%(tokens)s tokens, %(cost)s") % {
            "tokens": _tokens(obj._tokens_used),
            "cost": _money(obj._cost_used),
        }
        if obj._tokens_reserved or obj._cost_reserved:
            text += " " + gettext("(plus %(tokens)s tokens, %(cost)s held by replies in progress)") % {
                "tokens": _tokens(obj._tokens_reserved),
                "cost": _money(obj._cost_reserved),
            }
        return text


def invite_join_path(invite: Invite) -> str:
    return reverse("join", kwargs={"code": invite.code})


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "uses_display", "expires_at", "member_count", "created_by", "created_at")
    list_select_related = ("created_by",)
    search_fields = ("note", "created_by__username")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("members"))

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("expires_at", timezone.now() + timezone.timedelta(days=7))
        return initial

    def _join_link(self, request):
        """The absolute join link needs this request's scheme and host, so it is a per-request callable.

        It is cached on the request: the change form matches readonly fields by identity.
        """
        link = getattr(request, "_parley_join_link", None)
        if link is None:

            def link(obj: Invite):
                url = request.build_absolute_uri(invite_join_path(obj))
                return format_html('<a href="{}">{}</a>', url, url)

            link.short_description = _("join link")
            request._parley_join_link = link
        return link

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("note", "expires_at", "max_uses")
        return (
            "note",
            "expires_at",
            "max_uses",
            self._join_link(request),
            "uses",
            "status",
            "members_joined",
            "joined",
            "created_by",
            "created_at",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (self._join_link(request), "uses", "status", "members_joined", "joined", "created_by", "created_at")

    def get_list_display(self, request):
        display = list(super().get_list_display(request))
        display.insert(1, self._join_link(request))
        return display

    @admin.display(description=_("status"))
    def status(self, obj: Invite) -> str:
        if obj.is_expired:
            return gettext("expired")
        if obj.is_used_up:
            return gettext("used up")
        return gettext("active")

    @admin.display(description=_("uses"))
    def uses_display(self, obj: Invite) -> str:
        return f"{obj.uses} / {obj.max_uses}"

    @admin.display(description=_("members joined"))
    def members_joined(self, obj: Invite) -> int:
        return obj._members

    @admin.display(description=_("members joined"), ordering="_members")
    def member_count(self, obj: Invite) -> int:
        return obj._members

    @admin.display(description=_("who joined"))
    def joined(self, obj: Invite):
        members = list(obj.members.order_by("date_joined"))
        if not members:
            return gettext("nobody yet")
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:accounts_user_change", args=[m.pk]), m.username) for m in members),
        )

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


# Single sign-on providers and the sign-in policy (importing registers their pages).
from accounts import admin_signin  # noqa: E402, F401
