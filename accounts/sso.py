"""Who a single sign-on sign-in is: the rules that turn an identity provider's verified
claims into a Parley member (accounts/oidc.py verified them first).

- A person already linked (same issuer and subject) is that member.
- Otherwise the email must be verified by the provider and in the provider's allowed domains;
  then it links to the one member with that email, or creates a member when the provider may.
- The groups claim is mapped onto Parley's groups at every sign-in, so grants follow the
  directory; a claim value makes an admin only when the deployment allows it (T08, T50).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import errors
from accounts.models import OIDCIdentity, User
from accounts.oidc import ProviderConfig
from accounts.services import default_budgets


def _email(claims: dict) -> str:
    email = claims.get("email")
    return email.strip() if isinstance(email, str) else ""


def _verified(claims: dict) -> bool:
    # Some providers send the flag as the string "true" (OpenID Connect says boolean).
    # Microsoft Entra sends no email_verified; its optional claim xms_edov says the email's
    # domain owner is verified (docs/deployment.md, Entra).
    for name in ("email_verified", "xms_edov"):
        value = claims.get(name)
        if value is True or (isinstance(value, str) and value.lower() == "true"):
            return True
    return False


def _check_email(*, config: ProviderConfig, claims: dict, required: bool) -> str:
    email = _email(claims)
    if not email or not _verified(claims):
        if required or config.allowed_domains:
            raise errors.OIDCEmailUnverified()
        return ""
    domain = email.rsplit("@", 1)[-1].lower()
    if config.allowed_domains and domain not in config.allowed_domains:
        raise errors.OIDCDomainNotAllowed(errors.OIDCDomainNotAllowed.default_message % {"domain": domain})
    return email


def _claim_values(claims: dict, name: str) -> set[str]:
    value = claims.get(name) if name else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def _new_username(claims: dict, email: str) -> str:
    wanted = claims.get("preferred_username") if isinstance(claims.get("preferred_username"), str) else ""
    base = re.sub(r"[^\w.@+-]", "", wanted or email.split("@")[0])[:140] or "member"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


def groups_apply(*, user: User, config: ProviderConfig, claims: dict) -> None:
    """Make the member's groups what the provider says, for the groups this provider manages.

    With an explicit mapping only the mapped Parley groups are managed (others an admin set
    stay); without one every Parley group is managed and matched by name.
    """
    if not config.groups_claim:
        return
    values = _claim_values(claims, config.groups_claim)
    if config.mapping:
        managed = Group.objects.filter(name__in=set(config.mapping.values()))
        wanted = {config.mapping[v] for v in values if v in config.mapping}
    else:
        managed = Group.objects.all()
        wanted = values
    managed = list(managed)
    keep = [g for g in managed if g.name in wanted]
    user.groups.remove(*[g for g in managed if g.name not in wanted])
    user.groups.add(*keep)


def _admin_apply(*, user: User, identity: OIDCIdentity, config: ProviderConfig, claims: dict) -> None:
    if not (settings.PARLEY_OIDC_ALLOW_ADMIN_MAPPING and config.admin_values and config.groups_claim):
        return
    is_admin_claim = bool(_claim_values(claims, config.groups_claim) & set(config.admin_values))
    if is_admin_claim and not user.is_staff:
        user.is_staff = user.is_superuser = True
        identity.made_admin = True
    elif not is_admin_claim and identity.made_admin:
        # Only the rights this provider granted are taken back; an admin made in the admin stays.
        others = User.objects.filter(is_superuser=True, is_active=True).exclude(pk=user.pk)
        if others.exists():
            user.is_staff = user.is_superuser = False
            identity.made_admin = False
    user.save(update_fields=["is_staff", "is_superuser"])


def member_sign_in(*, config: ProviderConfig, claims: dict) -> User:
    """The member these verified claims sign in, linked or created as the rules above say.

    Raises a :class:`accounts.errors.SignInRefused` saying why not. The same person's first
    sign-in twice at once (two tabs) meets the unique indexes: the loser's whole transaction is
    rolled back and tried again, and then finds the member the winner created (T08).
    """
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _member_sign_in(config=config, claims=claims)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _member_sign_in(*, config: ProviderConfig, claims: dict) -> User:
    issuer, subject = str(claims.get("iss", config.issuer)), str(claims.get("sub", ""))
    if not subject:
        raise errors.OIDCTokenInvalid()
    identity = OIDCIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is not None:
        _check_email(config=config, claims=claims, required=False)
        user = identity.user
    else:
        email = _check_email(config=config, claims=claims, required=True)
        matches = list(User.objects.filter(email__iexact=email)[:2])
        if len(matches) > 1:
            raise errors.OIDCAmbiguousEmail(errors.OIDCAmbiguousEmail.default_message % {"email": email})
        if matches:
            user = matches[0]
        elif config.create_members:
            user = _member_create(claims=claims, email=email)
        else:
            raise errors.OIDCNoAccount(errors.OIDCNoAccount.default_message % {"email": email})
        identity = OIDCIdentity.objects.create(user=user, issuer=issuer, subject=subject, provider_slug=config.slug)
    if not user.is_active:
        raise errors.AccountDisabled()
    groups_apply(user=user, config=config, claims=claims)
    _admin_apply(user=user, identity=identity, config=config, claims=claims)
    identity.last_login = timezone.now()
    identity.save(update_fields=["last_login", "made_admin"])
    return user


def _member_create(*, claims: dict, email: str) -> User:
    # Never staff: admins come from the admin, ensure_admin or an allowed admin claim (T08).
    user = User(
        username=_new_username(claims, email),
        email=email,
        first_name=str(claims.get("given_name") or "")[:150],
        last_name=str(claims.get("family_name") or "")[:150],
        is_staff=False,
        is_superuser=False,
        **default_budgets(),
    )
    user.set_unusable_password()
    user.save(force_insert=True)
    return user
