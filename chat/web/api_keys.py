"""The member's "API keys" page: make, name and revoke personal tokens for the member API.

A new token's secret is shown once, on the page that answers the form, and never again (only
its hash is kept). Revoking is a POST to a token of the member's own (another member's is a
404, T01).
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from chat import selectors
from chat.core.grants import models_granted
from chat.errors import BadRequest, NotFound
from chat.models import ModelKind
from chat.services.api_tokens import NAME_MAX, api_access_allowed, api_token_create, api_token_revoke


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=NAME_MAX,
        help_text=gettext_lazy("What the key is for, such as “notebook” or “editor”."),
    )
    expires_on = forms.DateField(
        label=gettext_lazy("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=gettext_lazy("Leave empty for a key that does not expire."),
    )
    models = forms.MultipleChoiceField(
        label=gettext_lazy("Only these models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("Leave all unticked to allow every model you may use."),
    )
    save_conversations = forms.BooleanField(label=gettext_lazy("Save chat requests in my history"), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["models"].choices = [
            (str(model.pk), f"{model.model_id} ({model.get_kind_display()})")
            for kind in ModelKind.values
            for model in models_granted(user=user, kind=kind)
        ]

    def clean_expires_on(self):
        day = self.cleaned_data.get("expires_on")
        if day is not None and day <= timezone.now().date():
            raise forms.ValidationError(_("Pick a day after today."))
        return day


def _expiry(day: dt.date | None) -> dt.datetime | None:
    if day is None:
        return None
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


@require_http_methods(["GET", "POST"])
@login_required
def api_keys(request):
    allowed = api_access_allowed(user=request.user)
    form = ApiKeyForm(request.POST or None, user=request.user)
    created = None
    if request.method == "POST" and allowed and form.is_valid():
        try:
            created = api_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=_expiry(form.cleaned_data["expires_on"]),
                model_ids=form.cleaned_data["models"],
                save_conversations=form.cleaned_data["save_conversations"],
            )
        except BadRequest as exc:
            form.add_error(None, exc.message)
        else:
            form = ApiKeyForm(user=request.user)
    response = render(
        request,
        "chat/api_keys.html",
        {
            "allowed": allowed,
            "form": form,
            "created": created,
            "tokens": selectors.api_tokens_for_user(user=request.user),
            "base_url": request.build_absolute_uri("/v1"),
        },
        status=201 if created else 200,
    )
    # The page that shows a new key must not be kept by any cache or the back button.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def api_key_revoke(request, token_id):
    try:
        token = selectors.api_token_for_user(user=request.user, token_id=token_id)
    except NotFound:
        raise Http404 from None
    api_token_revoke(token=token)
    messages.success(request, _("The key “%(name)s” was revoked. It no longer works.") % {"name": token.name})
    return redirect("chat:api_keys")
