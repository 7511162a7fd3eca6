"""Sign-in in the operations console: single sign-on providers (with the redirect URI to
register, the client secret write-only) and the one-row sign-in policy."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import OIDCProvider, SignInPolicy


class OIDCProviderForm(forms.ModelForm):
    issuer = forms.URLField(
        label=_("issuer URL"),
        assume_scheme="https",
        help_text=_("Its discovery document is read from /.well-known/openid-configuration."),
    )
    client_secret = forms.CharField(
        label=_("client secret"),
        required=False,
        strip=True,
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the current one."),
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = OIDCProvider
        fields = (
            "label",
            "slug",
            "enabled",
            "issuer",
            "client_id",
            "scopes",
            "allowed_domains",
            "create_members",
            "groups_claim",
            "group_mapping",
            "admin_values",
        )

    def clean(self):
        data = super().clean()
        if not self.instance.client_secret_encrypted and not data.get("client_secret"):
            self.add_error("client_secret", _("Enter the client secret the provider gave you."))
        scopes = (data.get("scopes") or "").split()
        if scopes and "openid" not in scopes:
            self.add_error("scopes", _("The scopes must include “openid”."))
        return data

    def save(self, commit=True):
        provider = super().save(commit=False)
        if self.cleaned_data.get("client_secret"):
            provider.client_secret = self.cleaned_data["client_secret"]
        if commit:
            provider.save()
        return provider


@admin.register(OIDCProvider)
class OIDCProviderAdmin(admin.ModelAdmin):
    form = OIDCProviderForm
    list_display = ("label", "slug", "issuer", "enabled", "create_members", "redirect_uri_display")
    prepopulated_fields = {"slug": ("label",)}

    def get_fieldsets(self, request, obj=None):
        self._request = request
        return (
            (None, {"fields": ("label", "slug", "enabled", "redirect_uri_display")}),
            (_("Provider"), {"fields": ("issuer", "client_id", "client_secret", "scopes")}),
            (
                _("Who may sign in"),
                {"fields": ("allowed_domains", "create_members", "groups_claim", "group_mapping", "admin_values")},
            ),
        )

    def get_readonly_fields(self, request, obj=None):
        self._request = request
        return ("redirect_uri_display",)

    @admin.display(description=_("redirect URI to register with the provider"))
    def redirect_uri_display(self, obj: OIDCProvider) -> str:
        from accounts.oidc import redirect_uri

        request = getattr(self, "_request", None)
        if request is None or not obj.slug:
            return gettext("Shown once the short name is saved.")
        return redirect_uri(request, obj.slug)

    def get_list_display(self, request):
        self._request = request
        return super().get_list_display(request)

    def changelist_view(self, request, extra_context=None):
        from accounts.oidc import ENV_SLUG, _from_environment, redirect_uri

        if request.method == "GET" and _from_environment() is not None:
            self.message_user(
                request,
                gettext("“%(label)s” (%(issuer)s) is set in the environment; its redirect URI is %(uri)s")
                % {
                    "label": settings.PARLEY_OIDC_NAME,
                    "issuer": settings.PARLEY_OIDC_ISSUER,
                    "uri": redirect_uri(request, ENV_SLUG),
                },
                messages.INFO,
            )
        return super().changelist_view(request, extra_context)


@admin.register(SignInPolicy)
class SignInPolicyAdmin(admin.ModelAdmin):
    fields = ("password_for_members", "password_for_admins", "require_two_factor")

    def has_add_permission(self, request):
        return not SignInPolicy.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        policy, _created = SignInPolicy.objects.get_or_create(pk=1)
        return redirect("admin:accounts_signinpolicy_change", policy.pk)

    def save_model(self, request, obj, form, change):
        if not obj.password_for_admins:
            from accounts.oidc import providers

            if not providers():
                messages.warning(
                    request,
                    gettext(
                        "Admins can no longer sign in with a password and no single sign-on provider is set up: "
                        "nobody can sign in to this console until one is."
                    ),
                )
        super().save_model(request, obj, form, change)


# django-otp's own admin pages would show members' authenticator secrets (and QR codes) to
# admins; members manage their devices themselves, admins only reset them (action above).
for _otp_model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_otp_model):
        admin.site.unregister(_otp_model)
