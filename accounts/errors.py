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


class SignupPasswordOff(SignupRefused):
    code = "signup_password_off"
    status = 403
    title = _("Sign-up is through single sign-on")
    default_message = _("Members here sign in through single sign-on, so there are no password accounts to create.")


class SignupRateLimited(SignupRefused):
    code = "signup_rate_limited"
    status = 429
    title = _("Too many new accounts")
    default_message = _("Too many accounts were created from your network in the last hour. Please try again later.")


class SignInRefused(ParleyError):
    """Base for refusals on the way in (single sign-on, password policy, second factor)."""

    code = "sign_in_refused"
    status = 403
    title = _("You could not be signed in")
    default_message = _("Signing in did not work. Start again from the sign-in page.")


class OIDCUnavailable(SignInRefused):
    code = "oidc_unavailable"
    status = 502
    default_message = _("The identity provider could not be reached. Try again in a moment, or ask an admin.")


class OIDCUnknownProvider(SignInRefused):
    code = "oidc_unknown_provider"
    status = 404
    default_message = _("This single sign-on provider is not configured here.")


class OIDCDenied(SignInRefused):
    code = "oidc_denied"
    default_message = _("The identity provider did not sign you in (%(reason)s).")


class OIDCStateInvalid(SignInRefused):
    # A tampered, replayed or foreign state: the answer does not belong to a sign-in this
    # browser started (T50).
    code = "oidc_state_invalid"
    status = 400
    default_message = _(
        "This sign-in answer does not belong to a sign-in started in this browser, or it was already used. "
        "Start again from the sign-in page."
    )


class OIDCIssuerMismatch(SignInRefused):
    code = "oidc_issuer_mismatch"
    status = 400
    default_message = _("The answer came from another identity provider than the one you chose. Start again.")


class OIDCCodeRefused(SignInRefused):
    code = "oidc_code_refused"
    status = 400
    default_message = _(
        "The identity provider refused to confirm this sign-in (the code may have been used already). "
        "Start again from the sign-in page."
    )


class OIDCTokenInvalid(SignInRefused):
    code = "oidc_token_invalid"
    status = 400
    default_message = _("The identity provider's answer could not be verified, so you were not signed in.")


class OIDCTokenSignature(OIDCTokenInvalid):
    code = "oidc_token_signature"
    default_message = _("The identity token is not signed by your identity provider, so you were not signed in.")


class OIDCTokenExpired(OIDCTokenInvalid):
    code = "oidc_token_expired"
    default_message = _("The identity token has expired. Check this server's clock, then start again.")


class OIDCTokenAudience(OIDCTokenInvalid):
    code = "oidc_token_audience"
    default_message = _("The identity token was issued to another application, so you were not signed in.")


class OIDCTokenNonce(OIDCTokenInvalid):
    code = "oidc_token_nonce"
    default_message = _("The identity token belongs to another sign-in attempt, so you were not signed in.")


class OIDCTokenIssuer(OIDCTokenInvalid):
    code = "oidc_token_issuer"
    default_message = _("The identity token comes from another issuer than the one configured.")


class OIDCEmailUnverified(SignInRefused):
    code = "oidc_email_unverified"
    default_message = _(
        "Your identity provider does not confirm that your email address is verified, so it cannot be used "
        "to sign in here."
    )


class OIDCDomainNotAllowed(SignInRefused):
    code = "oidc_domain_not_allowed"
    default_message = _("Accounts from the email domain “%(domain)s” may not sign in here.")


class OIDCNoAccount(SignInRefused):
    code = "oidc_no_account"
    default_message = _("There is no Parley account for %(email)s. Ask an admin to add you.")


class OIDCAmbiguousEmail(SignInRefused):
    code = "oidc_ambiguous_email"
    default_message = _("Several Parley accounts use %(email)s, so none was chosen. Ask an admin.")


class AccountDisabled(SignInRefused):
    code = "account_disabled"
    default_message = _("This account is turned off. Ask an admin.")


class PasswordSignInOff(SignInRefused):
    code = "password_sign_in_off"
    default_message = _("Signing in with a password is turned off for this account. Use single sign-on.")


class TwoFactorCodeWrong(SignInRefused):
    code = "two_factor_code_wrong"
    status = 400
    default_message = _("That code is not right, or it was already used. Enter the current code from your app.")


class TwoFactorRequired(SignInRefused):
    code = "two_factor_required"
    default_message = _("Two-factor sign-in is required for this account, so it cannot be turned off.")
