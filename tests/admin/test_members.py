"""Members in the console: role, budgets beside this month's usage, creation with a password."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chat.core.budget import month_start
from chat.models import UsageMonth

pytestmark = pytest.mark.django_db
User = get_user_model()


def _change_data(user, **overrides):
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": "admin" if user.is_staff else "member",
        "is_active": "on" if user.is_active else "",
        "monthly_token_budget": user.monthly_token_budget or "",
        "monthly_cost_budget": user.monthly_cost_budget or "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v not in (None, "")}


def _row_for(body: str, username: str) -> str:
    start = body.index(f">{username}</a>")
    return body[start : body.index("</tr>", start)]


def test_the_member_list_shows_this_months_usage_beside_the_budget(admin_client, alice, bob):
    alice.monthly_token_budget = 100_000
    alice.monthly_cost_budget = Decimal("5")
    alice.save()
    UsageMonth.objects.create(
        user=alice,
        month=month_start(),
        tokens_used=12_345,
        cost_used=Decimal("1.25"),
        tokens_reserved=655,
        cost_reserved=Decimal("0.25"),
    )
    # Last month's usage does not count against this month.
    UsageMonth.objects.create(user=bob, month=month_start() - dt.timedelta(days=40), tokens_used=999_999)

    body = admin_client.get(reverse("admin:accounts_user_changelist")).content.decode()
    alice_row = _row_for(body, "alice")
    assert "12,345 / 100,000" in alice_row
    assert "$1.25 / $5.00" in alice_row
    assert "87,000 tokens" in alice_row  # 100,000 - 12,345 used - 655 held by a reply in flight
    assert "$3.50" in alice_row
    bob_row = _row_for(body, "bob")
    assert "999,999" not in bob_row
    assert "unlimited" in bob_row


def test_the_member_list_reads_usage_in_one_query_whatever_the_number_of_members(
    admin_client, django_assert_max_num_queries
):
    for i in range(30):
        user = User.objects.create_user(f"member{i}", monthly_token_budget=1000)
        UsageMonth.objects.create(user=user, month=month_start(), tokens_used=i)
    admin_client.get(reverse("admin:accounts_user_changelist"))
    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 200


def test_making_a_member_an_admin_gives_them_the_console(admin_client, alice):
    response = admin_client.post(
        reverse("admin:accounts_user_change", args=[alice.pk]), _change_data(alice, role="admin")
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.is_staff and alice.is_superuser


def test_the_role_of_an_admin_can_go_back_to_member(admin_client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    admin_client.post(reverse("admin:accounts_user_change", args=[alice.pk]), _change_data(alice, role="member"))
    alice.refresh_from_db()
    assert not alice.is_staff and not alice.is_superuser


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(admin_client, admin_user):
    url = reverse("admin:accounts_user_change", args=[admin_user.pk])
    response = admin_client.post(url, _change_data(admin_user, role="member"))
    assert response.status_code == 200
    assert "only active admin" in response.content.decode()
    response = admin_client.post(url, _change_data(admin_user, is_active=""))
    assert response.status_code == 200
    admin_user.refresh_from_db()
    assert admin_user.is_staff and admin_user.is_superuser and admin_user.is_active


def test_budgets_are_edited_and_blank_means_unlimited(admin_client, alice):
    alice.monthly_token_budget = 5000
    alice.save()
    url = reverse("admin:accounts_user_change", args=[alice.pk])
    admin_client.post(url, _change_data(alice, monthly_token_budget="", monthly_cost_budget="12.50"))
    alice.refresh_from_db()
    assert alice.monthly_token_budget is None
    assert alice.monthly_cost_budget == Decimal("12.50")


def test_extra_fields_posted_to_the_member_form_are_ignored(admin_client, alice):
    alice_last_login = alice.last_login
    admin_client.post(
        reverse("admin:accounts_user_change", args=[alice.pk]),
        {
            **_change_data(alice, first_name="Alice"),
            "is_superuser": "on",
            "is_staff": "on",
            "last_login": "2001-01-01 00:00:00",
            "user_permissions": "1",
            "password": "plain",
        },
    )
    alice.refresh_from_db()
    assert alice.first_name == "Alice"
    assert not alice.is_staff and not alice.is_superuser
    assert alice.last_login == alice_last_login
    assert alice.user_permissions.count() == 0
    assert alice.check_password("correct-horse-battery-9")


def test_creating_a_member_sets_a_password_and_the_default_budgets(admin_client, settings):
    settings.PARLEY_DEFAULT_MONTHLY_TOKEN_BUDGET = 250_000
    settings.PARLEY_DEFAULT_MONTHLY_COST_BUDGET = "3.5"
    form = admin_client.get(reverse("admin:accounts_user_add")).content.decode()
    assert 'value="250000"' in form
    assert 'value="3.5"' in form
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "carol",
            "email": "carol@example.test",
            "usable_password": "true",
            "password1": "another-long-passphrase-7",
            "password2": "another-long-passphrase-7",
            "role": "member",
            "monthly_token_budget": "250000",
            "monthly_cost_budget": "3.5",
            "is_superuser": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    carol = User.objects.get(username="carol")
    assert carol.check_password("another-long-passphrase-7")
    assert carol.monthly_token_budget == 250_000
    assert carol.monthly_cost_budget == Decimal("3.5")
    assert not carol.is_staff and not carol.is_superuser


def test_creating_a_member_refuses_a_weak_password(admin_client):
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {"username": "dave", "usable_password": "true", "password1": "123", "password2": "123", "role": "member"},
    )
    assert response.status_code == 200
    assert not User.objects.filter(username="dave").exists()


def test_the_change_form_shows_usage_and_what_is_held_by_replies_in_progress(admin_client, alice):
    UsageMonth.objects.create(user=alice, month=month_start(), tokens_used=10, tokens_reserved=4096)
    body = admin_client.get(reverse("admin:accounts_user_change", args=[alice.pk])).content.decode()
    assert "10 tokens" in body
    assert "4,096 tokens" in body
    assert alice.password not in body  # the password hash is never rendered whole (T11)


def test_deleting_a_member_takes_their_usage_records_with_them(admin_client, alice):
    from chat.models import UsageRecord

    UsageRecord.objects.create(user=alice, model_name="m", prompt_tokens=1, completion_tokens=1)
    url = reverse("admin:accounts_user_delete", args=[alice.pk])
    assert "Are you sure" in admin_client.get(url).content.decode()
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not User.objects.filter(pk=alice.pk).exists()
    assert not UsageRecord.objects.exists()


def test_the_list_filters_by_role(admin_client, admin_user, alice, bob):
    body = admin_client.get(reverse("admin:accounts_user_changelist"), {"role": "admin"}).content.decode()
    assert ">root</a>" in body and ">alice</a>" not in body
    body = admin_client.get(reverse("admin:accounts_user_changelist"), {"role": "member"}).content.decode()
    assert ">root</a>" not in body and ">alice</a>" in body and ">bob</a>" in body
