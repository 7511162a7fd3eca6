"""Sign-up, sign-in (password, second factor, single sign-on), sign-out and the lockout page.
Password change is Django's view in Parley's templates (see accounts/urls.py); the rules live
in accounts/services.py, accounts/sso.py, accounts/twofactor.py and accounts/sessions.py.

A password sign-in that needs a second factor does not sign anyone in until the code is
right: the person is "pending" in their session (for PENDING_SECONDS) and nothing else.
"""

from __future__ import annotations

import time

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login, user_login_failed
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import oidc, selectors, services, sessions, sso, throttle, twofactor
from accounts.errors import (
    InviteRequired,
    PasswordSignInOff,
    SignInRefused,
    SignupClosed,
    SignupRateLimited,
    SignupRefused,
    TwoFactorCodeWrong,
)
from accounts.forms import SignupForm, TwoFactorForm
from accounts.models import User

PENDING = "_parley_pending_sign_in"
PENDING_SECONDS = 300
OIDC_SESSION = "_parley_oidc"
OIDC_NEXT = "_parley_oidc_next"

# Service errors are keyed by what they are about; the form names its two password boxes.
_FORM_FIELD_FOR = {"username": "username", "password": "password1"}


def _safe_next(request, url: str | None) -> str:
    hosts = {request.get_host()}
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts=hosts, require_https=request.is_secure()):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _sign_in(request, user: User, backend: str, next_url: str):
    """Finish a password sign-in, or hold it for a second factor (or its set-up) first."""
    policy = selectors.sign_in_policy()
    has_code = twofactor.two_factor_enabled(user=user)
    if has_code or policy.two_factor_required(user):
        request.session.cycle_key()  # nothing said before this point carries over
        request.session[PENDING] = {"user": user.pk, "backend": backend, "next": next_url, "at": time.time()}
        return redirect("two_factor_verify" if has_code else "two_factor_setup")
    login(request, user, backend=backend)
    return redirect(next_url)


def pending_user(request) -> tuple[User, dict] | tuple[None, None]:
    """Who passed the password step in this browser and still owes a second factor."""
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        return None, None
    user = User.objects.filter(pk=pending.get("user"), is_active=True).first()
    return (user, pending) if user else (None, None)


def finish_pending(request, user: User, pending: dict):
    request.session.pop(PENDING, None)
    login(request, user, backend=pending["backend"])
    return redirect(_safe_next(request, pending.get("next")))


def _sign_in_context(request) -> dict:
    policy = selectors.sign_in_policy()
    configured = oidc.providers()
    return {
        # Only open sign-up gets a link: invite mode needs the link from the invite itself.
        "signup_open": selectors.signup_mode() == "open",
        "sso_providers": [
            {"slug": p.slug, "label": p.label, "redirect_uri": oidc.redirect_uri(request, p.slug)} for p in configured
        ],
        "env_redirect_uri": oidc.redirect_uri(request, oidc.ENV_SLUG),
        "password_form": policy.password_for_members or policy.password_for_admins,
        "password_admins_only": policy.password_for_admins and not policy.password_for_members,
    }


class SignInView(LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(_sign_in_context(self.request))
        return context

    def form_valid(self, form):
        user = form.get_user()
        if not selectors.sign_in_policy().password_allowed(user):
            form.add_error(None, PasswordSignInOff().message)
            return self.form_invalid(form)
        return _sign_in(self.request, user, user.backend, self.get_success_url())


class AdminSignInView(SignInView):
    """The admin's sign-in page, with the same password policy and second factor as the app's."""

    authentication_form = AdminAuthenticationForm
    template_name = "admin/login.html"
    redirect_authenticated_user = False  # a signed-in member may still sign in as an admin

    def get_redirect_url(self):
        return super().get_redirect_url() or reverse("admin:index")

    def get_default_redirect_url(self):
        return reverse("admin:index")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(admin.site.each_context(self.request))
        context.update(
            {
                "title": gettext("Log in"),
                "subtitle": None,
                "app_path": self.request.get_full_path(),
                "username": self.request.user.get_username(),
                "next": context.get("next") or reverse("admin:index"),
            }
        )
        return context

    def dispatch(self, request, *args, **kwargs):
        if request.method == "GET" and admin.site.has_permission(request):
            return redirect(self.get_redirect_url())
        return super().dispatch(request, *args, **kwargs)


def _axes_credentials(username: str) -> dict:
    return {"username": username}


def _sign_in_refused(request, error: SignInRefused, *, credentials: dict | None = None):
    """The page saying why signing in failed; counted by axes when ``credentials`` name who."""
    if credentials is not None:
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return render(request, "registration/sign_in_refused.html", {"error": error}, status=error.status)


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
def two_factor_verify(request):
    user, pending = pending_user(request)
    if user is None:
        return redirect("login")
    credentials = _axes_credentials(user.get_username())
    if not AxesProxyHandler.is_allowed(request, credentials):
        return lockout(request)
    form = TwoFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if twofactor.two_factor_verify(user=user, code=form.cleaned_data["code"]):
            return finish_pending(request, user, pending)
        # A wrong code counts like a wrong password, on the same account and address (T33).
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if not AxesProxyHandler.is_allowed(request, credentials):
            return lockout(request)
        form.add_error("code", TwoFactorCodeWrong().message)
    return render(request, "registration/two_factor_verify.html", {"form": form})


# --- single sign-on ---------------------------------------------------------------------------


@never_cache
def oidc_start(request, slug: str):
    # A plain link, not a form: the page's CSP allows forms to submit only to Parley
    # (form-action 'self'), and Chromium applies that to the redirect to the provider too.
    # Nothing is decided here; the state bound to this session guards the answer.
    try:
        config = oidc.provider(slug)
        request.session[OIDC_NEXT] = _safe_next(request, request.GET.get("next"))
        return oidc.authorize_redirect(request, config)
    except SignInRefused as error:
        return _sign_in_refused(request, error)


@never_cache
def oidc_callback(request, slug: str):
    # Failed answers are counted per provider and address: guessing codes or states gets locked.
    credentials = _axes_credentials(f"sso:{slug}")
    if not AxesProxyHandler.is_allowed(request, credentials):
        return lockout(request)
    try:
        config = oidc.provider(slug)
        claims, id_token = oidc.complete(request, config)
        user = sso.member_sign_in(config=config, claims=claims)
    except SignInRefused as error:
        return _sign_in_refused(request, error, credentials=credentials)
    next_url = _safe_next(request, request.session.pop(OIDC_NEXT, None))
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[OIDC_SESSION] = {"slug": slug, "id_token": id_token}
    from accounts.models import MemberSession

    MemberSession.objects.filter(session_key=request.session.session_key).update(provider_slug=slug)
    return redirect(next_url)


@require_POST
@csrf_protect
@never_cache
def sign_out(request):
    """End the session here, then at the identity provider when the member came from one and
    it has an end-session endpoint (OpenID Connect RP-initiated logout)."""
    signed_in = request.session.get(OIDC_SESSION) or {}
    auth_logout(request)
    if signed_in.get("slug"):
        try:
            config = oidc.provider(signed_in["slug"])
        except SignInRefused:
            config = None
        url = config and oidc.end_session_url(request, config, signed_in.get("id_token", ""))
        if url:
            # A page that moves on by itself (meta refresh) rather than a redirect: the sign-out
            # form may only submit to Parley (CSP form-action), redirects included.
            return render(request, "registration/signed_out.html", {"end_session_url": url, "provider": config.label})
    return redirect(settings.LOGOUT_REDIRECT_URL)


def _refused(request, error: SignupRefused):
    return render(request, "accounts/signup_refused.html", {"error": error}, status=error.status)


@sensitive_post_parameters("password1", "password2")
@csrf_protect
@never_cache
def signup(request, code: str | None = None):
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    mode = selectors.signup_mode()
    code = code or request.POST.get("invite") or request.GET.get("invite") or None
    invite = None
    try:
        if mode == "closed":
            raise SignupClosed()
        if mode == "invite":
            invite = selectors.invite_usable(code=code) if code else None
            if invite is None:
                raise InviteRequired()
    except SignupRefused as error:
        return _refused(request, error)

    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not throttle.signup_allowed(request):
            return _refused(request, SignupRateLimited())
        try:
            user = services.user_signup(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                invite_code=code if mode == "invite" else None,
            )
        except SignupRefused as error:
            return _refused(request, error)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                form.add_error(_FORM_FIELD_FOR.get(field), messages)
        else:
            throttle.signup_counted(request)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/signup.html", {"form": form, "invite": invite, "invite_code": code})


def lockout(request, *args, **kwargs):
    """What django-axes answers once sign-in is locked (``AXES_LOCKOUT_CALLABLE``).

    Our own view rather than axes' template path so that the answer is the same page for
    every client: axes' AJAX branch would add ``Access-Control-Allow-Origin: *`` (T22).
    Axes calls this with (request, response, credentials) or, from its async path,
    (request, credentials); neither is needed here.
    """
    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    return render(
        request,
        "registration/lockout.html",
        {"cooloff_minutes": minutes, "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )


# --- the member's own security pages: two-factor sign-in and sessions ---------------------------


def _acting_user(request):
    """The signed-in member, or the person half-way through a sign-in that requires setting up
    a second factor first."""
    if request.user.is_authenticated:
        return request.user, None
    return pending_user(request)


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
            if pending is not None:
                user_login_failed.send(sender=__name__, credentials=_axes_credentials(user.username), request=request)
                if not AxesProxyHandler.is_allowed(request, _axes_credentials(user.username)):
                    return lockout(request)
            form.add_error("code", error.message)
        else:
            next_url = reverse("two_factor")
            if pending is not None:
                next_url = _safe_next(request, pending.get("next"))
                request.session.pop(PENDING, None)
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
    current = request.session.session_key
    listed = [
        {
            "id": row.pk,
            "device": sessions.describe_device(row.user_agent) or gettext("Unknown device"),
            "address": row.ip_address or "",
            "last_seen": row.last_seen,
            "created_at": row.created_at,
            "via": row.provider_slug,
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
