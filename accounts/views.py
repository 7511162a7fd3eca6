"""Sign-up, sign-in and the lockout page. Sign-out and password change are Django's views
in Parley's templates (see accounts/urls.py); the rules live in accounts/services.py."""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from accounts import selectors, services, throttle
from accounts.errors import InviteRequired, SignupClosed, SignupRefused
from accounts.forms import SignupForm

# Service errors are keyed by what they are about; the form names its two password boxes.
_FORM_FIELD_FOR = {"username": "username", "password": "password1"}


class SignInView(LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # Only open sign-up gets a link: invite mode needs the link from the invite itself.
        context["signup_open"] = selectors.signup_mode() == "open"
        return context


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
    # The address-wide lock (password spraying) says so: another account would not help.
    address_blocked = throttle.address_blocked(request)
    limit = settings.PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT if address_blocked else settings.AXES_FAILURE_LIMIT
    return render(
        request,
        "registration/lockout.html",
        {"cooloff_minutes": minutes, "failure_limit": limit, "address_blocked": address_blocked},
        status=429,
    )
