"""The rules that turn a provider's verified claims into a member (accounts/sso.py), without
the protocol: the flow itself is tested against a real provider in test_oidc.py."""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connections

from accounts import errors, sso
from accounts.models import OIDCIdentity, User
from accounts.oidc import ProviderConfig

ACME = ProviderConfig(
    slug="acme",
    label="Acme SSO",
    issuer="https://login.acme.test",
    client_id="parley",
    secret_plain="s",
    allowed_domains=("acme.test",),
    create_members=True,
    groups_claim="groups",
)


def _claims(**extra):
    return {"iss": ACME.issuer, "sub": "carol-1", "email": "carol@acme.test", "email_verified": True, **extra}


@pytest.mark.django_db
@pytest.mark.parametrize("flag", [{"email_verified": "true"}, {"email_verified": False, "xms_edov": True}])
def test_providers_that_spell_verified_differently_are_understood(flag):
    user = sso.member_sign_in(config=ACME, claims=_claims(**flag))
    assert user.email == "carol@acme.test"


@pytest.mark.django_db
@pytest.mark.parametrize("flag", [{"email_verified": "false"}, {"email_verified": None}, {"email_verified": 1}])
def test_anything_but_a_clear_yes_is_unverified(flag):
    with pytest.raises(errors.OIDCEmailUnverified):
        sso.member_sign_in(config=ACME, claims=_claims(**flag))
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_linked_person_whose_email_moves_to_another_domain_is_refused():
    sso.member_sign_in(config=ACME, claims=_claims())
    with pytest.raises(errors.OIDCDomainNotAllowed):
        sso.member_sign_in(config=ACME, claims=_claims(email="carol@gmail.test"))


@pytest.mark.django_db
def test_a_sign_in_never_adds_a_group_that_does_not_exist():
    Group.objects.create(name="engineering")
    user = sso.member_sign_in(config=ACME, claims=_claims(groups=["engineering", "admins", "superusers"]))
    assert list(user.groups.values_list("name", flat=True)) == ["engineering"]
    assert Group.objects.count() == 1


@pytest.mark.django_db
def test_two_people_who_want_the_same_username_both_get_in():
    first = sso.member_sign_in(config=ACME, claims=_claims(preferred_username="carol"))
    second = sso.member_sign_in(
        config=ACME, claims=_claims(sub="carol-2", email="carol.b@acme.test", preferred_username="carol")
    )
    assert first.username == "carol" and second.username == "carol2"


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_sign_ins_of_one_person_make_one_member_and_no_admin():
    barrier = threading.Barrier(8)
    outcomes = [None] * 8

    def run(index):
        try:
            barrier.wait()
            outcomes[index] = sso.member_sign_in(config=ACME, claims=_claims()).pk
        except Exception as error:  # noqa: BLE001 - the outcome is what the test inspects
            outcomes[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert User.objects.count() == 1
    assert OIDCIdentity.objects.count() == 1
    assert set(outcomes) == {User.objects.get().pk}, outcomes
    assert not User.objects.filter(is_staff=True).exists()
