"""Usage in the console: filtered totals, the CSV of the filtered set, and the 30-day dashboard."""

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.models import UsageRecord

pytestmark = pytest.mark.django_db


def _at(days_ago: int, hour: int = 12) -> dt.datetime:
    day = timezone.localdate() - dt.timedelta(days=days_ago)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def _record(user, model, prompt, completion, cost, days_ago, estimated=False, hour=12):
    return UsageRecord.objects.create(
        user=user,
        model_name=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=Decimal(cost),
        estimated=estimated,
        created_at=_at(days_ago, hour),
    )


@pytest.fixture
def seeded(alice, bob):
    _record(alice, "gpt-4o", 100, 50, "0.010000", 0)
    _record(alice, "gpt-4o", 200, 100, "0.020000", 0, estimated=True)
    _record(alice, "gpt-4o-mini", 1000, 500, "0.000450", 3)
    _record(bob, "gpt-4o", 10, 5, "0.001000", 3)
    _record(bob, "gpt-4o-mini", 7, 3, "0.000010", 45)  # outside the 30-day window
    return alice, bob


def _totals(body: str) -> dict:
    return dict(re.findall(r'data-total="(\w+)">([^<]*)<', body))


def _csv(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_totals_cover_the_filtered_set(admin_client, seeded):
    alice, _ = seeded
    url = reverse("admin:chat_usagerecord_changelist")
    everything = _totals(admin_client.get(url).content.decode())
    assert everything == {
        "records": "5",
        "prompt_tokens": "1317",
        "completion_tokens": "658",
        "total_tokens": "1975",
        "cost": "0.0315",
        "estimated": "1",
    }
    only_alice = _totals(admin_client.get(url, {"user__id__exact": alice.pk}).content.decode())
    assert only_alice["records"] == "3"
    assert only_alice["total_tokens"] == str(150 + 300 + 1500)
    mini = _totals(admin_client.get(url, {"model_name": "gpt-4o-mini"}).content.decode())
    assert mini["records"] == "2"
    assert mini["total_tokens"] == "1510"


def test_the_date_range_includes_both_ends(admin_client, seeded):
    url = reverse("admin:chat_usagerecord_changelist")
    day = (timezone.localdate() - dt.timedelta(days=3)).isoformat()
    body = admin_client.get(url, {"created_from": day, "created_to": day}).content.decode()
    assert _totals(body)["records"] == "2"
    today = timezone.localdate().isoformat()
    body = admin_client.get(url, {"created_from": day, "created_to": today}).content.decode()
    assert _totals(body)["records"] == "4"
    # The sidebar form keeps the other filters when the range changes.
    body = admin_client.get(url, {"created_from": day, "model_name": "gpt-4o"}).content.decode()
    assert 'type="hidden" name="model_name" value="gpt-4o"' in body


def test_a_malformed_date_does_not_break_the_page(admin_client, seeded):
    response = admin_client.get(reverse("admin:chat_usagerecord_changelist"), {"created_from": "yesterday"})
    assert response.status_code in (200, 302)


def test_the_csv_export_has_exactly_the_filtered_records(admin_client, seeded):
    alice, _ = seeded
    export = reverse("admin:chat_usagerecord_export")
    rows = _csv(admin_client.get(export, {"user__id__exact": alice.pk, "model_name": "gpt-4o"}))
    assert [(r["member"], r["model"], r["total_tokens"], r["cost_usd"], r["estimated"]) for r in rows] == [
        ("alice", "gpt-4o", "150", "0.010000", "no"),
        ("alice", "gpt-4o", "300", "0.020000", "yes"),
    ]
    assert len(_csv(admin_client.get(export))) == 5


def test_the_changelist_links_to_the_export_of_the_same_filters(admin_client, seeded):
    body = admin_client.get(reverse("admin:chat_usagerecord_changelist"), {"model_name": "gpt-4o"}).content.decode()
    assert f'href="{reverse("admin:chat_usagerecord_export")}?model_name=gpt-4o"' in body


def test_the_export_action_exports_the_selected_records(admin_client, seeded):
    picked = list(UsageRecord.objects.filter(model_name="gpt-4o-mini").values_list("pk", flat=True))
    response = admin_client.post(
        reverse("admin:chat_usagerecord_changelist"), {"action": "export_selected", "_selected_action": picked}
    )
    assert sorted(r["total_tokens"] for r in _csv(response)) == ["10", "1500"]


def test_the_csv_neutralises_spreadsheet_formulas(admin_client, django_user_model):
    evil = django_user_model.objects.create_user("=HYPERLINK(1)")
    _record(evil, "+cmd|' /C calc'!A0", 1, 1, "0", 0)
    rows = _csv(admin_client.get(reverse("admin:chat_usagerecord_export")))
    assert rows[0]["member"] == "'=HYPERLINK(1)"
    assert rows[0]["model"].startswith("'+")


def test_usage_records_are_read_only(admin_client, seeded):
    record = UsageRecord.objects.first()
    assert admin_client.get(reverse("admin:chat_usagerecord_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:chat_usagerecord_change", args=[record.pk]), {"prompt_tokens": "1", "cost": "0"}
    )
    assert response.status_code == 403
    assert (
        admin_client.post(reverse("admin:chat_usagerecord_delete", args=[record.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert UsageRecord.objects.filter(pk=record.pk, prompt_tokens=record.prompt_tokens).exists()


def _day_row(body: str, day: dt.date) -> list[str]:
    match = re.search(rf'<tr data-day="{day.isoformat()}">(.*?)</tr>', body, re.S)
    assert match, day
    return re.findall(r"<td[^>]*>([^<]*)</td>", match.group(1))


def test_the_dashboard_shows_the_right_numbers_per_day_and_model(admin_client, seeded):
    response = admin_client.get(reverse("admin:chat_usagerecord_dashboard"))
    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["series"] == ["gpt-4o-mini", "gpt-4o"]  # biggest first
    today = timezone.localdate()
    # columns: gpt-4o-mini, gpt-4o, total tokens, cost
    assert _day_row(body, today) == ["0", "450", "450", "$0.0300"]
    assert _day_row(body, today - dt.timedelta(days=3)) == ["1,500", "15", "1,515", "$0.0015"]
    assert _day_row(body, today - dt.timedelta(days=1)) == ["0", "0", "0", "$0.0000"]
    assert f'data-day="{(today - dt.timedelta(days=45)).isoformat()}"' not in body
    assert len(re.findall(r'<tr data-day="', body)) == 30
    assert re.search(r'data-total="tokens">1,965<', body)


def test_the_dashboard_draws_stacked_bars_sized_by_attributes(admin_client, seeded):
    body = admin_client.get(reverse("admin:chat_usagerecord_dashboard")).content.decode()
    assert "<svg" in body
    assert "style=" not in body.split('id="content-main"', 1)[1]  # the CSP blocks inline styles
    assert "<script>" not in body
    rects = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="(#[0-9A-Fa-f]{6})">', body)
    # today: one gpt-4o column; three days ago: gpt-4o-mini and gpt-4o stacked (tokens and cost charts)
    assert len(rects) >= 6
    colors = {fill for _, fill in rects}
    assert len(colors) == 2


def test_the_dashboard_lists_the_top_members(admin_client, seeded):
    body = admin_client.get(reverse("admin:chat_usagerecord_dashboard")).content.decode()
    top = re.search(r'<table id="top-members">(.*?)</table>', body, re.S).group(1)
    members = re.findall(r'data-member="([^"]+)"', top)
    assert members == ["alice", "bob"]
    alice_row = re.search(r'data-member="alice">(.*?)</tr>', top, re.S).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", alice_row) == ["3", "1,950", "$0.0305"]


def test_the_dashboard_copes_with_no_usage(admin_client):
    response = admin_client.get(reverse("admin:chat_usagerecord_dashboard"))
    assert response.status_code == 200
    assert "No usage in the last 30 days." in response.content.decode()


def test_the_dashboard_reads_a_fixed_number_of_queries(admin_client, alice, bob, django_assert_max_num_queries):
    for days in range(30):
        _record(alice if days % 2 else bob, f"model-{days % 11}", 10, 10, "0.001", days)
    admin_client.get(reverse("admin:chat_usagerecord_dashboard"))
    with django_assert_max_num_queries(6):
        response = admin_client.get(reverse("admin:chat_usagerecord_dashboard"))
    assert response.context["series"][-1] == "other models"  # 11 models: 8 drawn, the rest summed


def test_the_admin_home_links_to_the_dashboard(admin_client):
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("admin:chat_usagerecord_dashboard")}"' in body


def test_every_kind_of_call_shows_in_the_dashboard_the_filters_and_the_export(admin_client, alice):
    _record(alice, "gpt-4o", 100, 50, "0.010000", 0)
    UsageRecord.objects.create(
        user=alice,
        model_name="dall-e-3",
        kind="image",
        purpose="image",
        images=3,
        cost=Decimal("0.12"),
        created_at=_at(0),
    )
    UsageRecord.objects.create(
        user=alice,
        model_name="whisper-1",
        kind="transcription",
        purpose="dictation",
        audio_seconds=Decimal("90"),
        cost=Decimal("0.009"),
        created_at=_at(1),
    )

    body = admin_client.get(reverse("admin:chat_usagerecord_dashboard")).content.decode()
    kinds = re.search(r'<table id="usage-by-kind">(.*?)</table>', body, re.S).group(1)
    rows = {
        kind: cells
        for kind, cells in (
            (m.group(1), re.findall(r"<td[^>]*>([^<]*)</td>", m.group(2)))
            for m in re.finditer(r'<th scope="row">([^<]*)</th>(.*?)</tr>', kinds, re.S)
        )
    }
    assert rows == {
        "image": ["1", "0", "3 images", "$0.1200"],
        "chat": ["1", "150", "", "$0.0100"],
        "transcription": ["1", "0", "1.5 minutes", "$0.0090"],
    }

    images = admin_client.get(reverse("admin:chat_usagerecord_changelist"), {"kind": "image"})
    assert list(images.context["cl"].queryset.values_list("model_name", flat=True)) == ["dall-e-3"]

    exported = _csv(admin_client.get(reverse("admin:chat_usagerecord_export")))
    by_model = {r["model"]: r for r in exported}
    assert (by_model["dall-e-3"]["kind"], by_model["dall-e-3"]["images"]) == ("image", "3")
    assert (by_model["whisper-1"]["purpose"], by_model["whisper-1"]["audio_seconds"]) == ("dictation", "90.000")
    assert by_model["gpt-4o"]["kind"] == "chat"
