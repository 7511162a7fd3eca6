"""A member's own security pages: two-factor sign-in (set up, recovery codes, turn off) and
their sessions (list, sign out one or all others). The rules live in accounts/twofactor.py and
accounts/sessions.py."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import oidc, selectors, sessions, signin, twofactor
from accounts.errors import SignInRefused, TwoFactorCodeWrong
from accounts.forms import TwoFactorForm


def _acting_user(request):
    """The signed-in member, or the person half-way through a sign-in that requires setting up
    a second factor first."""
    if request.user.is_authenticated:
        return request.user, None
    return signin.pending_user(request)


@login_required
@never_cache
def two_factor(request):
    user = request.user
    required = selectors.sign_in_policy().two_factor_required(user)
    context = {
        "enabled": twofactor.two_factor_enabled(user=user),
        "required": required,
        "codes_left": twofactor.recovery_codes_left(user=user),
        "form": TwoFactorForm(),
        "has_password": user.has_usable_password(),
    }
    return render(request, "accounts/two_factor.html", context)


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
def two_factor_setup(request):
    user, pending = _acting_user(request)
    if user is None:
        return redirect_to_login(request.get_full_path())
    form = TwoFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = twofactor.totp_enrol_confirm(user=user, code=form.cleaned_data["code"])
        except TwoFactorCodeWrong as error:
            if pending is not None and not signin.failure_counted(request, user.get_username()):
                return signin.lockout(request)
            form.add_error("code", error.message)
        else:
            next_url = reverse("two_factor")
            if pending is not None:
                next_url = signin.safe_next(request, pending.get("next"))
                request.session.pop(signin.PENDING, None)
                login(request, user, backend=pending["backend"])
            return render(request, "accounts/recovery_codes.html", {"codes": codes, "next_url": next_url})
    device = twofactor.totp_pending(user=user) or twofactor.totp_enrol_start(user=user)
    context = {
        "form": form,
        "qr_svg": mark_safe(twofactor.qr_svg(device)),  # noqa: S308 - segno's SVG of our own otpauth URL
        "secret": twofactor.secret_text(device),
        "pending": pending is not None,
    }
    return render(request, "accounts/two_factor_setup.html", context)


@require_POST
@login_required
@csrf_protect
def recovery_codes_new(request):
    if not twofactor.two_factor_enabled(user=request.user):
        return redirect("two_factor")
    codes = twofactor.recovery_codes_regenerate(user=request.user)
    return render(request, "accounts/recovery_codes.html", {"codes": codes, "next_url": reverse("two_factor")})


@require_POST
@login_required
@csrf_protect
@sensitive_post_parameters("code")
def two_factor_off(request):
    form = TwoFactorForm(request.POST)
    required = selectors.sign_in_policy().two_factor_required(request.user)
    try:
        if not form.is_valid():
            raise TwoFactorCodeWrong()
        twofactor.two_factor_disable(user=request.user, code=form.cleaned_data["code"], required=required)
    except SignInRefused as error:
        messages.error(request, error.message)
    else:
        messages.success(request, gettext("Two-factor sign-in is off."))
    return redirect("two_factor")


@login_required
@never_cache
def member_sessions(request):
    rows = sessions.sessions_for_member(user=request.user)
    labels = {p.slug: p.label for p in oidc.providers()} if any(row.provider_slug for row in rows) else {}
    current = request.session.session_key
    listed = [
        {
            "id": row.pk,
            "device": sessions.describe_device(row.user_agent) or gettext("Unknown device"),
            "address": row.ip_address or "",
            "last_seen": row.last_seen,
            "created_at": row.created_at,
            "via": labels.get(row.provider_slug, row.provider_slug),
            "current": row.session_key == current,
        }
        for row in rows
    ]
    return render(request, "accounts/sessions.html", {"sessions": listed})


@require_POST
@login_required
@csrf_protect
def member_session_end(request, session_id: int):
    ended_key = sessions.session_end(user=request.user, session_id=session_id)
    if ended_key == request.session.session_key:
        auth_logout(request)
        return redirect("login")
    messages.success(request, gettext("That session is signed out."))
    return redirect("member_sessions")


@require_POST
@login_required
@csrf_protect
def member_sessions_end_others(request):
    sessions.sessions_end_all(user=request.user, keep_request=request)
    messages.success(request, gettext("Every other session is signed out."))
    return redirect("member_sessions")
