"""What a member keeps beside their conversations: presets, a prompt library, folders and
share links.

Presets and prompts have an owner (a member's own) or none (made by an admin); either kind is
published to groups by an admin in the Django admin. A member sees their own and those
published to a group they are in; every other row answers 404 (chat.selectors, T01).
A share link holds a copy of what was shared (``title``, ``messages``), never a reference to
the live conversation, so later edits, branches and deletion leave it as it was shared.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.models.catalog import ChatModel

NAME_MAX = 100
PROMPT_BODY_MAX = 20_000


class Preset(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="presets",
        help_text=_("Empty for a preset made by an admin: it is seen by the groups it is published to."),
    )
    name = models.CharField(_("name"), max_length=NAME_MAX)
    system_prompt = models.TextField(_("system prompt"), blank=True)
    model = models.ForeignKey(
        ChatModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("model")
    )
    # The conversation settings it starts with, cleaned exactly like a conversation's own
    # (chat.services.conversations.SETTING_FIELDS, system prompt apart).
    settings = models.JSONField(_("parameters"), default=dict, blank=True)
    # Document collections a chat started from it searches (chat/services/collections.py):
    # only ones its author may read are saved; a member using it gets those they may read, and
    # is told of the others. Deleting a collection takes it out of every preset.
    collections = models.ManyToManyField(
        "chat.Collection",
        blank=True,
        related_name="presets",
        verbose_name=_("collections"),
        help_text=_("Collections a chat started from this preset searches."),
    )
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        verbose_name=_("published to groups"),
        help_text=_("Members of these groups see this preset under “New chat”."),
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["owner", "name"], name="preset_owner_name")]
        verbose_name = _("preset")
        verbose_name_plural = _("presets")

    def __str__(self) -> str:
        return self.name


class Prompt(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="prompts",
        help_text=_("Empty for a prompt made by an admin: it is seen by the groups it is shared with."),
    )
    title = models.CharField(_("title"), max_length=NAME_MAX)
    # Text with variables written {{name}}, filled in by the member before insertion.
    body = models.TextField(_("text"), max_length=PROMPT_BODY_MAX)
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        verbose_name=_("shared with groups"),
        help_text=_("Members of these groups can insert this prompt with “/”."),
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["title"]
        indexes = [models.Index(fields=["owner", "title"], name="prompt_owner_title")]
        verbose_name = _("prompt")
        verbose_name_plural = _("prompts")

    def __str__(self) -> str:
        return self.title


class Folder(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(_("name"), max_length=NAME_MAX)
    # Folded in the sidebar: remembered per member (a folder has one owner).
    collapsed = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "created_at"]
        indexes = [models.Index(fields=["owner", "name"], name="folder_owner_name")]
        verbose_name = _("folder")
        verbose_name_plural = _("folders")

    def __str__(self) -> str:
        return self.name


def share_token() -> str:
    # 32 random bytes (256 bits), URL-safe: a link cannot be guessed or enumerated (T03's bar).
    return secrets.token_urlsafe(32)


class ShareLink(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links")
    # Where it was shared from, for the owner's list only; never shown on the shared page.
    conversation = models.ForeignKey(
        "chat.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="share_links"
    )
    token = models.CharField(max_length=64, unique=True, default=share_token, editable=False)
    # The snapshot: the title and the current path as they were when shared,
    # [{"role", "content", "model"}], nothing else of the owner.
    title = models.CharField(_("title"), max_length=200, blank=True)
    messages = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner_created")]
        verbose_name = _("share link")
        verbose_name_plural = _("share links")

    def __str__(self) -> str:
        return self.title or self.token[:8]
