"""Why a sign-up was refused, each with a stable code (see chat/errors.py for the base)."""

from django.utils.translation import gettext_lazy as _

from chat.errors import ParleyError


class SignupRefused(ParleyError):
    """Base for refusals a person sees on the sign-up page; ``status`` is the HTTP answer."""

    code = "signup_refused"
    status = 403
    title = _("You cannot sign up here")
    default_message = _("Sign-up is not available.")


class SignupClosed(SignupRefused):
    code = "signup_closed"
    status = 404
    title = _("Sign-up is closed")
    default_message = _("New accounts are created by an admin. Ask your Parley admin for an account.")


class InviteRequired(SignupRefused):
    code = "invite_required"
    status = 403
    title = _("You need an invite")
    default_message = _("Joining this Parley needs an invite link. Ask an admin for one.")


class InviteInvalid(SignupRefused):
    # An unknown code reads exactly like a mistyped one: nothing tells a guesser it was close.
    code = "invite_invalid"
    status = 404
    title = _("This invite link does not work")
    default_message = _("This invite link is not valid. Check that you copied all of it, or ask for a new one.")


class InviteExpired(SignupRefused):
    code = "invite_expired"
    status = 410
    title = _("This invite has expired")
    default_message = _("This invite link has expired. Ask the person who sent it for a new one.")


class InviteUsedUp(SignupRefused):
    code = "invite_used_up"
    status = 410
    title = _("This invite has been used up")
    default_message = _("This invite link has already been used as many times as allowed. Ask for a new one.")


class SignupRateLimited(SignupRefused):
    code = "signup_rate_limited"
    status = 429
    title = _("Too many new accounts")
    default_message = _("Too many accounts were created from your network in the last hour. Please try again later.")
