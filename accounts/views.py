"""Sign-up, sign-in (password, second factor, single sign-on) and sign-out. Password change is
Django's view in Parley's templates (see accounts/urls.py); a member's two-factor and sessions
pages are in accounts/security_views.py; the rules live in accounts/services.py, accounts/sso.py,
accounts/signin.py and accounts/twofactor.py."""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login, user_login_failed
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import oidc, selectors, services, sessions, signin, sso, throttle, twofactor
from accounts.errors import (
    InviteRequired,
    OIDCUnavailable,
    PasswordSignInOff,
    SignInRefused,
    SignupClosed,
    SignupPasswordOff,
    SignupRefused,
    TwoFactorCodeWrong,
)
from accounts.forms import SignupForm, TwoFactorForm
from accounts.signin import lockout  # AXES_LOCKOUT_CALLABLE names accounts.views.lockout

OIDC_SESSION = "_parley_oidc"
OIDC_NEXT = "_parley_oidc_next"

# Service errors are keyed by what they are about; the form names its two password boxes.
_FORM_FIELD_FOR = {"username": "username", "password": "password1"}


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
        return signin.hold_or_sign_in(self.request, user, user.backend, self.get_success_url())


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


def _sign_in_refused(request, error: SignInRefused, *, credentials: dict | None = None):
    """The page saying why signing in failed; counted by axes when ``credentials`` name who."""
    if credentials is not None:
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return render(request, "registration/sign_in_refused.html", {"error": error}, status=error.status)


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
def two_factor_verify(request):
    user, pending = signin.pending_user(request)
    if user is None:
        return redirect("login")
    if not signin.allowed(request, user.get_username()):
        return lockout(request)
    form = TwoFactorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if twofactor.two_factor_verify(user=user, code=form.cleaned_data["code"]):
            return signin.finish_pending(request, user, pending)
        if not signin.failure_counted(request, user.get_username()):
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
        request.session[OIDC_NEXT] = signin.safe_next(request, request.GET.get("next"))
        return oidc.authorize_redirect(request, config)
    except SignInRefused as error:
        return _sign_in_refused(request, error)


@never_cache
def oidc_callback(request, slug: str):
    # Failed answers are counted per provider and address: guessing codes or states gets locked.
    credentials = signin.axes_credentials(f"sso:{slug}")
    if not AxesProxyHandler.is_allowed(request, credentials):
        return lockout(request)
    try:
        config = oidc.provider(slug)
        claims, id_token = oidc.complete(request, config)
        user = sso.member_sign_in(config=config, claims=claims)
    except OIDCUnavailable as error:
        return _sign_in_refused(request, error)  # the provider's outage is nobody's failed attempt
    except SignInRefused as error:
        return _sign_in_refused(request, error, credentials=credentials)
    next_url = signin.safe_next(request, request.session.pop(OIDC_NEXT, None))
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[OIDC_SESSION] = {"slug": slug, "id_token": id_token}
    sessions.session_came_from(session_key=request.session.session_key, provider_slug=slug)
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
        if not selectors.sign_in_policy().password_for_members:
            raise SignupPasswordOff()
        if mode == "invite":
            invite = selectors.invite_usable(code=code) if code else None
            if invite is None:
                raise InviteRequired()
    except SignupRefused as error:
        return _refused(request, error)

    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                invite_code=code if mode == "invite" else None,
                address=throttle.client_ip_address(request) or "unknown",
            )
        except SignupRefused as error:
            return _refused(request, error)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                form.add_error(_FORM_FIELD_FOR.get(field), messages)
        else:
            # Through the same door as a password sign-in: a policy that requires two-factor
            # sign-in has the new member set it up first.
            backend = "django.contrib.auth.backends.ModelBackend"
            return signin.hold_or_sign_in(request, user, backend, resolve_url(settings.LOGIN_REDIRECT_URL))
    return render(request, "accounts/signup.html", {"form": form, "invite": invite, "invite_code": code})
