"""Moderation: the admin's blocklist and the audit trail of checked input."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.conversations import Message


class BlocklistEntry(models.Model):
    pattern = models.CharField(_("word or pattern"), max_length=500)
    is_regex = models.BooleanField(_("regular expression"), default=False)
    category = models.CharField(_("category"), max_length=100, default="blocklist")
    enabled = models.BooleanField(_("enabled"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pattern"]
        verbose_name = _("blocklist entry")
        verbose_name_plural = _("blocklist")

    def __str__(self) -> str:
        return self.pattern


class ModerationEvent(models.Model):
    class Source(models.TextChoices):
        BLOCKLIST = "blocklist", _("blocklist")
        PROVIDER = "provider", _("provider moderation")
        UNCHECKED = "unchecked", _("moderation unavailable, let through")
        FAILED = "failed", _("moderation unavailable, refused")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField()
    categories = models.JSONField(default=list)
    source = models.CharField(max_length=16, choices=Source.choices)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("moderation event")
        verbose_name_plural = _("moderation events")
